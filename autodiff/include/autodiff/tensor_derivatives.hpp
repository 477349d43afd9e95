#pragma once
// Derivatives of whole tensor functions: Hessian-vector products, Hessians, Jacobians and
// vector-Jacobian products, by reverse sweeps (create_graph where a second order is needed). Each
// runs on the thread's scratch tape (see ScratchTape), with the points as leaves; f may also use
// leaves of its own (parameters), but not tensors recorded on the caller's tape.

#include <autodiff/tensor.hpp>

#include <functional>
#include <vector>

namespace autodiff {

using UnaryTensorFunction = std::function<Tensor(const Tensor&)>;
using TensorFunctionN = std::function<Tensor(const std::vector<Tensor>&)>;

// H v for f returning a one-element tensor, without forming H: a create_graph gradient, then the
// gradient of <grad f, v> (two reverse sweeps, the second over a graph about twice the first's).
Tensor hvp(const UnaryTensorFunction& f, const Tensor& x, const Tensor& v);
std::vector<Tensor> hvp(const TensorFunctionN& f, const std::vector<Tensor>& xs, const std::vector<Tensor>& vs);
// The Hessian of f (one-element output) at x, of shape x.shape ++ x.shape: one create_graph
// gradient, then one reverse sweep of it per element of x.
Tensor hessian(const UnaryTensorFunction& f, const Tensor& x);
// The Jacobian of f at x, of shape f(x).shape ++ x.shape. With no more outputs than inputs: one
// reverse sweep per output element (a row each). With more outputs than inputs: one create_graph
// sweep with a seed u that requires grad, then one sweep per input element of J^T u in u (a
// column each), so the cost follows the smaller of the two sizes.
Tensor jacobian(const UnaryTensorFunction& f, const Tensor& x);
// u^T J (shape of x) for u of f(x)'s shape: one reverse sweep.
Tensor vjp(const UnaryTensorFunction& f, const Tensor& x, const Tensor& u);
std::vector<Tensor> vjp(const TensorFunctionN& f, const std::vector<Tensor>& xs, const Tensor& u);

} // namespace autodiff
