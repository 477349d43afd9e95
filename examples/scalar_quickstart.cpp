// Quick start: gradients of a scalar function, and a finite-difference check of them.

#include <autodiff/autodiff.hpp>

#include <fmt/format.h>

#include <vector>

using namespace autodiff;

// Written once over its number type: runs with double for values, with Var for gradients.
template <class T> T rosenbrock(const std::vector<T>& x) {
  T sum = 0.0 * x[0];
  for (std::size_t i = 0; i + 1 < x.size(); ++i)
    sum = sum + 100.0 * square(x[i + 1] - square(x[i])) + square(1.0 - x[i]);
  return sum;
}

int main() {
  Var x = 1.5, y = -2.0;
  Var f = sin(x * y) + exp(x) / (1.0 + square(y));
  f.backward();
  fmt::print("f(x, y) = sin(x y) + exp(x) / (1 + y^2) at x = {}, y = {}\n", x, y);
  fmt::print("  f = {:.10f}\n  df/dx = {:.10f}\n  df/dy = {:.10f}\n\n", f, x.grad(), y.grad());

  const std::vector<double> p{-1.2, 1.0, 0.5};
  fmt::print("rosenbrock({}) = {} (double), its gradient and Hessian:\n", fmt::join(p, ", "), rosenbrock(p));
  auto fn = [](const std::vector<Var>& v) { return rosenbrock(v); };
  const GradcheckReport report = gradcheck(fn, p);
  fmt::print("{}\n\n", report);
  for (const auto& row : hessian(fn, p))
    fmt::print("  [{:10.3f}]\n", fmt::join(row, " "));
  return report.passed ? 0 : 1;
}
