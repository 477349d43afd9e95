// Finite-difference gradient checks.

#include <autodiff/derivatives.hpp>
#include <autodiff/gradcheck.hpp>

#include <cmath>
#include <limits>
#include <string>

namespace autodiff {

namespace {

// Central difference of a scalar function of one coordinate, of order 2 or 4.
template <class Eval> double difference(Eval&& eval, double h, int order) {
  if (order == 4) return (-eval(2 * h) + 8 * eval(h) - 8 * eval(-h) + eval(-2 * h)) / (12 * h);
  return (eval(h) - eval(-h)) / (2 * h);
}

void check_options(const GradcheckOptions& o, std::string_view op) {
  if (!(o.eps > 0) || !(o.atol >= 0) || !(o.rtol >= 0) || (o.order != 2 && o.order != 4))
    throw Error(fmt::format("autodiff: {}: options need eps > 0, atol >= 0, rtol >= 0 and order 2 or 4 "
                            "(got eps {}, atol {}, rtol {}, order {})",
                            op, o.eps, o.atol, o.rtol, o.order));
}

// Fills the verdict fields of a report whose analytic and numeric vectors are set.
void judge(GradcheckReport& r, const GradcheckOptions& o) {
  double worst_ratio = -1;
  r.passed = true;
  for (std::size_t k = 0; k < r.analytic.size(); ++k) {
    const double err = std::fabs(r.analytic[k] - r.numeric[k]);
    const double tol = o.atol + o.rtol * std::fabs(r.numeric[k]);
    const bool ok = err <= tol; // false for NaN
    const double ratio = ok ? err / tol : std::numeric_limits<double>::infinity();
    if (!ok) r.passed = false;
    if (ratio > worst_ratio || (!ok && worst_ratio == std::numeric_limits<double>::infinity() && k == 0)) {
      worst_ratio = ratio;
      r.worst = k;
      r.abs_error = err;
      r.rel_error = r.numeric[k] != 0 ? err / std::fabs(r.numeric[k]) : std::numeric_limits<double>::infinity();
    }
  }
}

} // namespace

GradcheckReport gradcheck_impl(const ScalarFunction& f, std::span<const double> x, const GradcheckOptions& o) {
  check_options(o, "gradcheck");
  ScratchTape scratch;
  Tape& tape = scratch.tape();
  GradcheckReport r;
  {
    const std::vector<Var> xs(x.begin(), x.end());
    const Var y = f(xs);
    r.analytic = gradient(y, xs);
  }
  std::vector<double> point(x.begin(), x.end());
  r.numeric.resize(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) {
    auto eval = [&](double h) {
      tape.reset();
      point[i] = x[i] + h;
      const std::vector<Var> xs(point.begin(), point.end());
      const double v = f(xs).value();
      point[i] = x[i];
      return v;
    };
    r.numeric[i] = difference(eval, o.eps, o.order);
  }
  judge(r, o);
  return r;
}

GradcheckReport gradcheck_claimed_impl(const ValueFunction& f, const GradientFunction& claimed_grad,
                                       std::span<const double> x, const GradcheckOptions& o) {
  check_options(o, "gradcheck");
  GradcheckReport r;
  r.what = "claimed gradient";
  std::vector<double> point(x.begin(), x.end());
  r.analytic = claimed_grad(point);
  if (r.analytic.size() != x.size())
    throw Error(fmt::format("autodiff: gradcheck: the claimed gradient has {} components but x has {}",
                            r.analytic.size(), x.size()));
  r.numeric.resize(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) {
    auto eval = [&](double h) {
      point[i] = x[i] + h;
      const double v = f(point);
      point[i] = x[i];
      return v;
    };
    r.numeric[i] = difference(eval, o.eps, o.order);
  }
  judge(r, o);
  return r;
}

GradcheckReport gradgradcheck_impl(const ScalarFunction& f, std::span<const double> x, const GradcheckOptions& o) {
  check_options(o, "gradgradcheck");
  const std::size_t n = x.size();
  GradcheckReport r;
  r.what = "gradient of gradient";
  for (const auto& row : hessian(f, x))
    r.analytic.insert(r.analytic.end(), row.begin(), row.end());
  r.numeric.assign(n * n, 0.0);
  std::vector<double> point(x.begin(), x.end());
  ScratchTape scratch;
  Tape& tape = scratch.tape();
  for (std::size_t j = 0; j < n; ++j) {
    for (std::size_t i = 0; i < n; ++i) {
      // d(grad_i)/dx_j; the gradient at each shifted point is recomputed per i for clarity: the
      // check is for tests, not hot loops.
      auto eval = [&](double h) {
        tape.reset();
        point[j] = x[j] + h;
        const std::vector<Var> xs(point.begin(), point.end());
        const Var y = f(xs);
        point[j] = x[j];
        return gradient(y, std::span<const Var>(&xs[i], 1))[0];
      };
      r.numeric[i * n + j] = difference(eval, o.eps, o.order);
    }
  }
  judge(r, o);
  return r;
}

} // namespace autodiff

fmt::format_context::iterator fmt::formatter<autodiff::GradcheckReport>::format(const autodiff::GradcheckReport& r,
                                                                                format_context& ctx) const {
  // NaN's sign is noise: printf's "-nan" would only confuse.
  const auto g = [](double v, int digits) {
    return std::isnan(v) ? std::string("NaN") : fmt::format("{:.{}g}", v, digits);
  };
  auto out = ctx.out();
  out = fmt::format_to(out, "{} check {} ({} components)\n", r.what, r.passed ? "PASSED" : "FAILED", r.analytic.size());
  out = fmt::format_to(out, "  {:>5}  {:>24}  {:>24}  {:>10}\n", "k", "analytic", "numeric", "abs error");
  for (std::size_t k = 0; k < r.analytic.size(); ++k) {
    const bool mark = k == r.worst;
    out = fmt::format_to(out, "{} {:>5}  {:>24}  {:>24}  {:>10}\n", mark ? '>' : ' ', k, g(r.analytic[k], 16),
                         g(r.numeric[k], 16), g(std::fabs(r.analytic[k] - r.numeric[k]), 3));
  }
  if (!r.analytic.empty())
    out = fmt::format_to(out, "  worst component {}: abs error {}, rel error {}", r.worst, g(r.abs_error, 3),
                         g(r.rel_error, 3));
  return out;
}
