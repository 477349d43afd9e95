#pragma once
// The tensor op table (as the scalar op_table.hpp): every differentiable tensor op, the input shapes
// it is checked on (broadcasting on both sides, size-1 and empty dimensions where legal), its input
// domain, and an independent reference computed with plain loops.

#include "helpers.hpp"

#include <algorithm>
#include <limits>
#include <numeric>
#include <string>

namespace tapegrad_test {

using Vals = std::vector<std::vector<double>>;
using Dims = std::vector<std::vector<std::int64_t>>;
using RefFn = std::function<std::vector<double>(const Vals& x, const Dims& d, std::vector<std::int64_t>& out)>;

struct TensorOpInfo {
  std::string name;
  std::vector<std::vector<Shape>> shapes; // one list of input shapes per checked case
  std::function<Tensor(const std::vector<Tensor>&)> f;
  RefFn reference;
  double lo = 0.2, hi = 2.0; // |x| drawn from [lo, hi)
  bool signs = true;         // both signs, or positive only
  double gradcheck_atol = 1e-6;
};

// Random inputs for a row on one of its shape cases, in its domain.
inline std::vector<Tensor> inputs_for(const TensorOpInfo& op, const std::vector<Shape>& shapes,
                                      DType d = DType::float64) {
  std::vector<Tensor> xs;
  for (const Shape& s : shapes)
    xs.push_back(random_in(s, op.lo, op.hi, op.signs, d));
  return xs;
}

// The table itself is compiled once, in op_table.cpp: its 62 rows of lambdas wrapped in
// std::function cost about 14 s of compilation under the sanitizers in every file that included them.
std::vector<TensorOpInfo> tensor_op_table();

// The ops each row of `table` records when run on its first shapes, in recording order.
inline std::vector<std::vector<std::string>> ops_recorded_by(const std::vector<TensorOpInfo>& table) {
  std::vector<std::vector<std::string>> out;
  for (const TensorOpInfo& op : table) {
    autodiff::Tape tape;
    std::vector<Tensor> xs = inputs_for(op, op.shapes.at(0));
    for (Tensor& x : xs)
      if (x.dtype() != DType::int64) x.requires_grad(true);
    op.f(xs);
    out.push_back(autodiff::recorded_tensor_ops());
  }
  return out;
}

// The ops of tensor_op_names() that are neither in `seen` nor in `elsewhere`.
inline std::vector<std::string> ops_not_in(const std::vector<std::string>& seen,
                                           const std::vector<std::string>& elsewhere) {
  std::vector<std::string> missing;
  for (const std::string& name : autodiff::tensor_op_names())
    if (std::find(elsewhere.begin(), elsewhere.end(), name) == elsewhere.end() &&
        std::find(seen.begin(), seen.end(), name) == seen.end())
      missing.push_back(name);
  return missing;
}

// The ops (but those in `elsewhere`) that no row of `table` records. Recorded op names are compared
// exactly: a `maximum` row does not cover `max`.
inline std::vector<std::string> ops_without_row(const std::vector<TensorOpInfo>& table,
                                                const std::vector<std::string>& elsewhere) {
  std::vector<std::string> seen;
  for (const std::vector<std::string>& ops : ops_recorded_by(table))
    seen.insert(seen.end(), ops.begin(), ops.end());
  return ops_not_in(seen, elsewhere);
}

// The ops (but those in `elsewhere`) that are not the output of some row: a row whose last recorded
// node is the op, so that its value, gradient, gradgrad and edge-value checks are the op's own and
// not only those of a composite that uses it (`neg` inside `sub`).
inline std::vector<std::string> ops_without_own_row(const std::vector<TensorOpInfo>& table,
                                                    const std::vector<std::string>& elsewhere) {
  std::vector<std::string> outputs;
  for (const std::vector<std::string>& ops : ops_recorded_by(table))
    if (!ops.empty()) outputs.push_back(ops.back());
  return ops_not_in(outputs, elsewhere);
}

} // namespace tapegrad_test
