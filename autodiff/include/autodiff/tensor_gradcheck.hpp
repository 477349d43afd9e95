#pragma once
// Finite-difference checks of tensor gradients: the full Jacobian of a scalar tensor function by
// central differences in float64, or (fast mode) one random projection of it.

#include <autodiff/detail/concepts.hpp>
#include <autodiff/tensor.hpp>

#include <cstdint>
#include <functional>
#include <string>
#include <type_traits>
#include <vector>

namespace autodiff {

struct TensorGradcheckOptions {
  double eps = 1e-6;  // step of the central difference
  double atol = 1e-5; // a component passes when |analytic - numeric| <= atol + rtol * |numeric|
  double rtol = 1e-3;
  // float32 inputs are refused: a central difference with a step float32 can resolve has an error
  // near 1e-3, hiding real mistakes. With this set they are checked as float64 copies.
  bool convert_float32 = false;
  // Compare one random projection u of the Jacobian (J u against (f(x + eps u) - f(x - eps u)) / 2 eps)
  // instead of every element: two evaluations of f instead of two per element.
  bool fast = false;
  std::uint64_t seed = 0x9e3779b9; // for the projection of the fast mode
};

struct TensorGradcheckReport {
  bool passed = true;
  bool fast = false;
  std::size_t checked = 0;         // components compared
  std::size_t input = 0;           // the worst component: which input ...
  std::vector<std::int64_t> index; // ... and which element of it (empty in fast mode)
  double analytic = 0;
  double numeric = 0;
  double abs_error = 0;
  double rel_error = 0;
  explicit operator bool() const { return passed; }
};

using TensorFunction = std::function<Tensor(const std::vector<Tensor>&)>;

// f takes the inputs and returns a one-element tensor. int64 inputs are passed through as constants.
// It runs on a Tape of its own, so it neither needs nor disturbs the caller's tape.
TensorGradcheckReport gradcheck_tensors(const TensorFunction& f, const std::vector<Tensor>& inputs,
                                        const TensorGradcheckOptions& options = {});

template <detail::invocable_r<Tensor, std::vector<Tensor>> F>
TensorGradcheckReport gradcheck(F&& f, const std::vector<Tensor>& inputs, const TensorGradcheckOptions& options = {}) {
  return gradcheck_tensors(TensorFunction(std::forward<F>(f)), inputs, options);
}

// Judges a gradient written by hand: claimed_grad(inputs) returns one tensor per input (an
// undefined Tensor means zero; int64 inputs' entries are ignored) and is compared with central
// differences of f, as above: same options (fast mode included) and report, which names the input
// and element. Both run with recording off, on the inputs' float64 copies. A claimed gradient of
// the wrong shape, or the wrong number of them, is an error naming the shapes.
using TensorGradientFunction = std::function<std::vector<Tensor>(const std::vector<Tensor>&)>;
TensorGradcheckReport gradcheck_claimed_tensors(const TensorFunction& f, const TensorGradientFunction& claimed_grad,
                                                const std::vector<Tensor>& inputs,
                                                const TensorGradcheckOptions& options = {});

template <detail::invocable_r<Tensor, std::vector<Tensor>> F,
          detail::invocable_r<std::vector<Tensor>, std::vector<Tensor>> G>
TensorGradcheckReport gradcheck(F&& f, G&& claimed_grad, const std::vector<Tensor>& inputs,
                                const TensorGradcheckOptions& options = {}) {
  return gradcheck_claimed_tensors(TensorFunction(std::forward<F>(f)),
                                   TensorGradientFunction(std::forward<G>(claimed_grad)), inputs, options);
}

// Second order: the create_graph gradient of f, projected on a random direction w of the inputs'
// shapes (h(x) = sum_k <w_k, d f / d x_k>), is checked by gradcheck, so that H w from a double
// backward is compared with central differences of first-order gradients. f returns one element.
TensorGradcheckReport gradgradcheck_tensors(const TensorFunction& f, const std::vector<Tensor>& inputs,
                                            const TensorGradcheckOptions& options = {});

template <detail::invocable_r<Tensor, std::vector<Tensor>> F> TensorGradcheckReport
gradgradcheck(F&& f, const std::vector<Tensor>& inputs, const TensorGradcheckOptions& options = {}) {
  return gradgradcheck_tensors(TensorFunction(std::forward<F>(f)), inputs, options);
}

} // namespace autodiff

template <> struct fmt::formatter<autodiff::TensorGradcheckReport> {
  constexpr auto parse(format_parse_context& ctx) { return ctx.begin(); }
  format_context::iterator format(const autodiff::TensorGradcheckReport& r, format_context& ctx) const;
};
