// Hessians, Hessian-vector products, Jacobians, vector-Jacobian products.

#include <autodiff/derivatives.hpp>
#include <autodiff/detail/hvp.hpp>

#include <fmt/format.h>

namespace autodiff {

namespace {
void same_size(std::string_view op, std::span<const double> x, std::span<const double> v, std::string_view what) {
  if (x.size() != v.size())
    throw Error(fmt::format("autodiff: {}: x has {} components but {} has {}", op, x.size(), what, v.size()));
}
} // namespace

Matrix hessian(const ScalarFunction& f, std::span<const double> x) {
  const ScratchTape scratch; // a private tape, active for this call
  const std::vector<Var> xs(x.begin(), x.end());
  // Forward over reverse, 8 columns per sweep (Note [Forward over reverse]): 0.6-0.7x the
  // create_graph gradient and one first-order sweep of it per row.
  return detail::hessian_forward_over_reverse("hessian", f(xs), xs);
}

std::vector<double> hvp(const ScalarFunction& f, std::span<const double> x, std::span<const double> v) {
  same_size("hvp", x, v, "v");
  const ScratchTape scratch; // a private tape, active for this call
  const std::vector<Var> xs(x.begin(), x.end());
  // f recorded once, then forward over reverse (Note [Forward over reverse]): about 2x one
  // gradient, where the create_graph gradient and a seeded sweep of it took 4.9x.
  return detail::forward_over_reverse("hvp", f(xs), xs, v).hv;
}

Matrix jacobian(const VectorFunction& f, std::span<const double> x) {
  const ScratchTape scratch; // a private tape, active for this call
  const std::vector<Var> xs(x.begin(), x.end());
  const std::vector<Var> ys = f(xs);
  Matrix j;
  j.reserve(ys.size());
  for (const Var& y : ys)
    j.push_back(gradient(y, xs));
  return j;
}

std::vector<double> vjp(const VectorFunction& f, std::span<const double> x, std::span<const double> u) {
  const ScratchTape scratch; // a private tape, active for this call
  const std::vector<Var> xs(x.begin(), x.end());
  const std::vector<Var> ys = f(xs);
  if (ys.size() != u.size())
    throw Error(fmt::format("autodiff: vjp: f has {} outputs but u has {} components", ys.size(), u.size()));
  return gradient(ys, u, xs);
}

} // namespace autodiff
