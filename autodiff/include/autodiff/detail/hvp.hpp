#pragma once
// Internal: the forward-over-reverse sweep behind autodiff::hvp (autodiff/src/hvp.cpp), reachable
// for the tests that compare it with the create_graph path.

#include <autodiff/var.hpp>

#include <span>
#include <string_view>
#include <vector>

namespace autodiff::detail {

struct HvpResult {
  std::vector<double> gradient; // dy/dx, equal to a first-order sweep's
  std::vector<double> hv;       // H v
};

// y and the leaves xs recorded on the active tape: the gradient of y and its Hessian times v, by one
// tangent pass and one reverse sweep with dual adjoints (docs/design.md, "Note [Forward over
// reverse]"). Records nothing. Throws autodiff::Error, naming `op`, for a size mismatch, a Var of
// another tape or an x that is not a leaf.
HvpResult forward_over_reverse(std::string_view op, const Var& y, std::span<const Var> xs, std::span<const double> v);

// The Hessian of y in the leaves xs, h[i][j] = d(dy/dx_i)/dx_j as the create_graph path's, by
// forward-over-reverse sweeps of hessian_lanes unit vectors each (vector mode).
inline constexpr int hessian_lanes = 8;
std::vector<std::vector<double>> hessian_forward_over_reverse(std::string_view op, const Var& y,
                                                              std::span<const Var> xs);

} // namespace autodiff::detail
