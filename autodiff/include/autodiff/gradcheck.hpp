#pragma once
// Finite-difference checks of gradients (and, for higher order, of gradients of gradients).

#include <autodiff/detail/concepts.hpp>
#include <autodiff/var.hpp>

#include <fmt/format.h>

#include <cstddef>
#include <functional>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

namespace autodiff {

struct GradcheckOptions {
  double eps = 1e-6;  // step of the central difference
  double atol = 1e-5; // a component passes when |analytic - numeric| <= atol + rtol * |numeric|
  double rtol = 1e-3;
  // 2: central difference (error O(eps^2)); 4: five-point stencil (error O(eps^4)) for functions
  // whose third derivative is large relative to eps, i.e. ill-conditioned for the default.
  int order = 2;
};

struct GradcheckReport {
  bool passed = true;
  std::vector<double> analytic;
  std::vector<double> numeric;
  std::size_t worst = 0;         // the component furthest outside its tolerance (or nearest to it)
  double abs_error = 0;          // |analytic - numeric| at `worst`
  double rel_error = 0;          // abs_error / |numeric| at `worst` (inf when numeric is 0)
  std::string what = "gradient"; // "gradient", "gradient of gradient" or "claimed gradient"
  explicit operator bool() const { return passed; }
};

using ScalarFunction = std::function<Var(const std::vector<Var>&)>;

GradcheckReport gradcheck_impl(const ScalarFunction& f, std::span<const double> x, const GradcheckOptions& o);
GradcheckReport gradgradcheck_impl(const ScalarFunction& f, std::span<const double> x, const GradcheckOptions& o);

namespace detail {
template <class F> ScalarFunction as_scalar_function(F&& f) {
  if constexpr (std::is_invocable_v<F&, const std::vector<Var>&>)
    return ScalarFunction(std::forward<F>(f));
  else
    return [g = std::forward<F>(f)](const std::vector<Var>& v) mutable { return Var(g(std::span<const Var>(v))); };
}
} // namespace detail

// Compares the reverse-mode gradient of f at x with central differences of f. f takes the
// variables (as `const std::vector<Var>&` or `std::span<const Var>`) and returns a Var. It runs on
// a Tape of its own, so it neither needs nor disturbs the caller's tape.
template <class F> GradcheckReport gradcheck(F&& f, std::span<const double> x, const GradcheckOptions& options = {}) {
  return gradcheck_impl(detail::as_scalar_function(std::forward<F>(f)), x, options);
}
template <class F>
GradcheckReport gradcheck(F&& f, const std::vector<double>& x, const GradcheckOptions& options = {}) {
  return gradcheck_impl(detail::as_scalar_function(std::forward<F>(f)), std::span<const double>(x), options);
}

// A function of plain doubles and a gradient written for it by hand.
using ValueFunction = std::function<double(const std::vector<double>&)>;
using GradientFunction = std::function<std::vector<double>(const std::vector<double>&)>;

GradcheckReport gradcheck_claimed_impl(const ValueFunction& f, const GradientFunction& claimed_grad,
                                       std::span<const double> x, const GradcheckOptions& o);

// Judges a gradient written by hand: claimed_grad(x) is compared with central differences of f,
// component by component, with the same options and report as above (`what` is "claimed
// gradient"; the report names the worst component). Neither function records anything. A claimed
// gradient with the wrong number of components is an Error naming both sizes.
template <detail::invocable_r<double, std::vector<double>> F,
          detail::invocable_r<std::vector<double>, std::vector<double>> G>
GradcheckReport gradcheck(F&& f, G&& claimed_grad, const std::vector<double>& x, const GradcheckOptions& options = {}) {
  return gradcheck_claimed_impl(ValueFunction(std::forward<F>(f)), GradientFunction(std::forward<G>(claimed_grad)),
                                std::span<const double>(x), options);
}

// Compares the Hessian from a create_graph gradient with central differences of the gradient,
// entry by entry (component k is row k / n, column k % n).
template <class F>
GradcheckReport gradgradcheck(F&& f, const std::vector<double>& x, const GradcheckOptions& options = {}) {
  return gradgradcheck_impl(detail::as_scalar_function(std::forward<F>(f)), std::span<const double>(x), options);
}

} // namespace autodiff

template <> struct fmt::formatter<autodiff::GradcheckReport> {
  constexpr auto parse(format_parse_context& ctx) { return ctx.begin(); }
  format_context::iterator format(const autodiff::GradcheckReport& r, format_context& ctx) const;
};
