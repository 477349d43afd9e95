#pragma once
// Derivatives of whole functions: Hessians, Hessian-vector products, Jacobians and vector-Jacobian
// products of functions of Var. Each runs on a Tape of its own.

#include <autodiff/gradcheck.hpp>
#include <autodiff/var.hpp>

#include <functional>
#include <span>
#include <vector>

namespace autodiff {

using Matrix = std::vector<std::vector<double>>; // row-major rows
using VectorFunction = std::function<std::vector<Var>(const std::vector<Var>&)>;

// The Hessian of f at x: forward over reverse, one tangent pass and one dual reverse sweep per 8
// columns (docs/design.md, Note [Forward over reverse]).
Matrix hessian(const ScalarFunction& f, std::span<const double> x);
// H v without forming H: forward over reverse, a tangent pass and a reverse sweep with dual
// adjoints over f's record (about 2x one gradient; docs/design.md, Note [Forward over reverse]).
std::vector<double> hvp(const ScalarFunction& f, std::span<const double> x, std::span<const double> v);
// The Jacobian of f at x, one reverse sweep per output (row). For many outputs and few inputs,
// forward mode would be cheaper; reverse costs m sweeps of the whole tape for m outputs.
Matrix jacobian(const VectorFunction& f, std::span<const double> x);
// u^T J, one reverse sweep.
std::vector<double> vjp(const VectorFunction& f, std::span<const double> x, std::span<const double> u);

} // namespace autodiff
