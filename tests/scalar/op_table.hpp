#pragma once
// The scalar op table (as PyTorch's OpInfo): every differentiable function of the engine, with
// the points it is checked at. ops_test, higher_order_test and the random compositions use it.

#include <autodiff/autodiff.hpp>

#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <vector>

namespace tapegrad_test {

using autodiff::Var;

struct OpInfo {
  std::string name;
  int arity;                                                   // 1 or 2 Var operands
  std::function<Var(const std::vector<Var>&)> f;               // the op applied to x[0] (and x[1])
  std::function<double(const std::vector<double>&)> reference; // its value by <cmath>
  std::vector<std::vector<double>> points;                     // where to check; large, small, near kinks
  bool twice_differentiable = true;                            // smooth at all listed points
};

// The table itself is compiled once, in op_table.cpp: its 47 rows of lambdas wrapped in
// std::function cost about 9 s of compilation under the sanitizers in every test file that included them.
std::vector<OpInfo> op_table();

// Where some op of the table has an infinite or undefined partial derivative (0 for log, sqrt,
// cbrt, division; +-1 for asin, acos, atanh; 1 for acosh), and non-finite operands.
inline const std::vector<double> edges{0.0,
                                       -0.0,
                                       1.0,
                                       -1.0,
                                       0.5,
                                       -2.0,
                                       std::numeric_limits<double>::infinity(),
                                       -std::numeric_limits<double>::infinity(),
                                       std::numeric_limits<double>::quiet_NaN()};

// Every point of an op's arity built from `edges` (only the finite ones if asked).
inline std::vector<std::vector<double>> edge_points(const OpInfo& op, bool finite_only = false) {
  std::vector<std::vector<double>> out;
  for (double a : edges) {
    if (finite_only && !std::isfinite(a)) continue;
    if (op.arity == 1) {
      out.push_back({a});
      continue;
    }
    for (double b : edges)
      if (!finite_only || std::isfinite(b)) out.push_back({a, b});
  }
  return out;
}

} // namespace tapegrad_test
