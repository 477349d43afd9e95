// hvp, hessian, jacobian and vjp of tensor functions (see tensor_derivatives.hpp).

#include "internal.hpp"

#include <autodiff/tensor_derivatives.hpp>

namespace autodiff {
} // namespace autodiff
