// Finite-difference checks of tensor functions.

#include "internal.hpp"

#include <autodiff/tensor_gradcheck.hpp>

#include <cmath>
#include <limits>
#include <optional>
#include <random>

namespace autodiff {

namespace {
std::vector<std::int64_t> unravel(std::int64_t flat, const Shape& s) {
  std::vector<std::int64_t> idx(static_cast<std::size_t>(s.rank()));
  for (int d = s.rank() - 1; d >= 0; --d) {
    idx[static_cast<std::size_t>(d)] = s[d] == 0 ? 0 : flat % s[d];
    flat = s[d] == 0 ? 0 : flat / s[d];
  }
  return idx;
}

double eval(const TensorFunction& f, const std::vector<Tensor>& xs) {
  NoGradGuard no_grad;
  const Tensor y = f(xs);
  return y.item();
}

// Records one comparison; keeps the component furthest outside (or nearest to) its tolerance.
void judge(TensorGradcheckReport& r, double& worst, const TensorGradcheckOptions& o, double analytic, double numeric,
           std::size_t input, std::vector<std::int64_t> index) {
  const double err = std::fabs(analytic - numeric);
  const double tol = o.atol + o.rtol * std::fabs(numeric);
  const bool ok = err <= tol; // false for NaN
  const double ratio = ok ? err / tol : std::numeric_limits<double>::infinity();
  ++r.checked;
  if (!ok) r.passed = false;
  if (ratio > worst || r.checked == 1) {
    worst = ratio;
    r.input = input;
    r.index = std::move(index);
    r.analytic = analytic;
    r.numeric = numeric;
    r.abs_error = err;
    r.rel_error = numeric != 0 ? err / std::fabs(numeric) : std::numeric_limits<double>::infinity();
  }
}
} // namespace

namespace {
// float64 copies of the inputs, the float ones requiring grad, and which those are.
struct Checked {
  std::vector<Tensor> xs;
  std::vector<std::size_t> diff; // the inputs that are differentiated
};
Checked prepare(const std::vector<Tensor>& inputs, const TensorGradcheckOptions& o) {
  if (!(o.eps > 0) || !(o.atol >= 0) || !(o.rtol >= 0))
    detail::fail("gradcheck: options need eps > 0, atol >= 0 and rtol >= 0 (got eps {}, atol {}, rtol {})", o.eps,
                 o.atol, o.rtol);
  Checked c;
  for (std::size_t k = 0; k < inputs.size(); ++k) {
    const Tensor& t = inputs[k];
    detail::check_defined("gradcheck", t);
    if (t.dtype() == DType::float32 && !o.convert_float32)
      detail::fail("gradcheck: input {} (shape {}) is float32; central differences in float32 have errors near "
                   "1e-3 and hide real mistakes. Pass float64 inputs, or set convert_float32 = true to check "
                   "float64 copies",
                   k, t.shape());
    if (t.dtype() == DType::int64) {
      c.xs.push_back(t.detach());
    } else {
      c.xs.push_back(detail::convert(t, DType::float64));
      c.xs.back().requires_grad(true);
      c.diff.push_back(k);
    }
  }
  return c;
}

// Compares `analytic` (one float64 gradient per differentiated input) with central differences
// of f, element by element or (fast) along one random projection.
TensorGradcheckReport compare(const TensorFunction& f, Checked& c, const std::vector<Tensor>& analytic,
                              const TensorGradcheckOptions& o) {
  std::vector<Tensor>& xs = c.xs;
  const std::vector<std::size_t>& diff = c.diff;
  TensorGradcheckReport r;
  r.fast = o.fast;
  double worst = -1;
  if (o.fast) {
    // Zero-size inputs have no components: nothing to compare, as in the full check. Evaluating f
    // anyway would judge a NaN (the mean of nothing) against a directional derivative of 0.
    std::size_t components = 0;
    for (const Tensor& g : analytic)
      components += static_cast<std::size_t>(g.numel());
    if (components == 0) return r;
    std::mt19937_64 gen(o.seed);
    std::uniform_real_distribution<double> unif(-1.0, 1.0);
    std::vector<std::vector<double>> u(diff.size());
    double ju = 0;
    for (std::size_t j = 0; j < diff.size(); ++j) {
      const auto g = analytic[j].data<double>();
      for (double gv : g) {
        u[j].push_back(unif(gen));
        ju += gv * u[j].back();
      }
    }
    auto shifted = [&](double h) {
      std::vector<std::vector<double>> saved;
      for (std::size_t j = 0; j < diff.size(); ++j) {
        auto x = xs[diff[j]].mutable_data<double>();
        saved.emplace_back(x.begin(), x.end());
        for (std::size_t e = 0; e < x.size(); ++e)
          x[e] += h * u[j][e];
      }
      const double v = eval(f, xs);
      for (std::size_t j = 0; j < diff.size(); ++j)
        std::copy(saved[j].begin(), saved[j].end(), xs[diff[j]].mutable_data<double>().begin());
      return v;
    };
    const double numeric = (shifted(o.eps) - shifted(-o.eps)) / (2 * o.eps);
    judge(r, worst, o, ju, numeric, 0, {});
    return r;
  }
  for (std::size_t j = 0; j < diff.size(); ++j) {
    Tensor& x = xs[diff[j]];
    auto xv = x.mutable_data<double>();
    const auto g = analytic[j].data<double>();
    for (std::size_t e = 0; e < xv.size(); ++e) {
      const double orig = xv[e];
      xv[e] = orig + o.eps;
      const double up = eval(f, xs);
      xv[e] = orig - o.eps;
      const double down = eval(f, xs);
      xv[e] = orig;
      judge(r, worst, o, g[e], (up - down) / (2 * o.eps), diff[j], unravel(static_cast<std::int64_t>(e), x.shape()));
    }
  }
  return r;
}
} // namespace

TensorGradcheckReport gradcheck_tensors(const TensorFunction& f, const std::vector<Tensor>& inputs,
                                        const TensorGradcheckOptions& o) {
  Checked c = prepare(inputs, o);
  Tape tape;
  std::vector<Tensor> analytic;
  {
    const Tensor y = f(c.xs);
    detail::check_defined("gradcheck", y);
    if (y.numel() != 1)
      detail::fail("gradcheck: f must return a one-element tensor, got shape {}; reduce it, e.g. sum(w * y) with "
                   "random w",
                   y.shape());
    std::vector<Tensor> wrt;
    for (std::size_t k : c.diff)
      wrt.push_back(c.xs[k]);
    if (y.requires_grad() && !wrt.empty()) {
      analytic = grad(std::vector<Tensor>{y}, wrt);
    } else {
      for (const Tensor& w : wrt)
        analytic.push_back(zeros(w.shape(), DType::float64));
    }
  }
  tape.reset();
  return compare(f, c, analytic, o);
}

TensorGradcheckReport gradcheck_claimed_tensors(const TensorFunction& f, const TensorGradientFunction& claimed_grad,
                                                const std::vector<Tensor>& inputs, const TensorGradcheckOptions& o) {
  Checked c = prepare(inputs, o);
  Tape tape;
  std::vector<Tensor> claimed;
  {
    NoGradGuard no_grad;
    const Tensor y = f(c.xs);
    detail::check_defined("gradcheck", y);
    if (y.numel() != 1) detail::fail("gradcheck: f must return a one-element tensor, got shape {}", y.shape());
    claimed = claimed_grad(c.xs);
  }
  if (claimed.size() != inputs.size())
    detail::fail("gradcheck: the claimed gradient has {} tensors but there are {} inputs", claimed.size(),
                 inputs.size());
  std::vector<Tensor> analytic;
  for (std::size_t k : c.diff) {
    const Tensor& g = claimed[k];
    const Tensor& x = c.xs[k];
    if (!g.defined()) { // zero, as a custom function's backward may say
      analytic.push_back(zeros(x.shape(), DType::float64));
      continue;
    }
    if (!(g.shape() == x.shape()))
      detail::fail("gradcheck: the claimed gradient of input {} has shape {} but the input has shape {}", k, g.shape(),
                   x.shape());
    if (g.dtype() == DType::int64)
      detail::fail("gradcheck: the claimed gradient of input {} (shape {}) is int64; it must be float", k, g.shape());
    analytic.push_back(detail::convert(g, DType::float64));
  }
  return compare(f, c, analytic, o);
}

TensorGradcheckReport gradgradcheck_tensors(const TensorFunction& f, const std::vector<Tensor>& inputs,
                                            const TensorGradcheckOptions& o) {
  // Random directions, fixed by the seed, for the float inputs (int64 ones are constants).
  std::mt19937_64 gen(o.seed ^ 0x5bd1e995u);
  std::normal_distribution<double> normal;
  std::vector<Tensor> w(inputs.size());
  for (std::size_t k = 0; k < inputs.size(); ++k) {
    detail::check_defined("gradgradcheck", inputs[k]);
    if (inputs[k].dtype() == DType::int64) continue;
    std::vector<double> v(static_cast<std::size_t>(inputs[k].numel()));
    for (double& e : v)
      e = normal(gen);
    w[k] = from_vector(v, inputs[k].shape(), DType::float64);
  }
  // h(x) = sum_k <w_k, df/dx_k>. gradcheck differentiates it once (through a create_graph gradient)
  // and evaluates it at shifted points with recording off: there the first-order gradient is taken
  // on a scratch tape.
  const TensorFunction h = [&](const std::vector<Tensor>& xs) {
    const bool analytic = grad_enabled();
    std::optional<Tape> scratch;
    std::optional<EnableGradGuard> on;
    if (!analytic) {
      scratch.emplace();
      on.emplace();
    }
    std::vector<Tensor> wrt, dirs;
    for (std::size_t k = 0; k < xs.size(); ++k)
      if (w[k].defined()) {
        wrt.push_back(xs[k].requires_grad() ? xs[k] : xs[k].detach().requires_grad(true));
        dirs.push_back(w[k]);
      }
    std::vector<Tensor> args = xs;
    for (std::size_t k = 0, j = 0; k < xs.size(); ++k)
      if (w[k].defined()) args[k] = wrt[j++];
    const Tensor y = f(args);
    detail::check_defined("gradgradcheck", y);
    if (y.numel() != 1) detail::fail("gradgradcheck: f must return a one-element tensor, got shape {}", y.shape());
    Tensor acc = zeros({}, DType::float64);
    if (!y.requires_grad() || wrt.empty()) return acc;
    const std::vector<Tensor> g = grad(std::vector<Tensor>{y}, wrt, {.create_graph = analytic});
    for (std::size_t k = 0; k < g.size(); ++k)
      acc = acc + sum(g[k] * dirs[k]);
    return analytic ? acc : acc.detach();
  };
  return gradcheck_tensors(h, inputs, o);
}

} // namespace autodiff

fmt::format_context::iterator
fmt::formatter<autodiff::TensorGradcheckReport>::format(const autodiff::TensorGradcheckReport& r,
                                                        format_context& ctx) const {
  const char* verdict = r.passed ? "passed" : "FAILED";
  // NaN's sign is noise: printf's "-nan" would only confuse.
  const auto g = [](double v, int digits) {
    return std::isnan(v) ? std::string("NaN") : fmt::format("{:.{}g}", v, digits);
  };
  if (r.checked == 0) return fmt::format_to(ctx.out(), "gradcheck {}: nothing to check (no float inputs)", verdict);
  if (r.fast)
    return fmt::format_to(ctx.out(),
                          "gradcheck {} (fast, one random projection J u): analytic {} vs numeric {} "
                          "(abs error {}, rel error {})",
                          verdict, g(r.analytic, 10), g(r.numeric, 10), g(r.abs_error, 3), g(r.rel_error, 3));
  return fmt::format_to(ctx.out(),
                        "gradcheck {} ({} components); {}: input {} element [{}]: analytic {} vs numeric "
                        "{} (abs error {}, rel error {})",
                        verdict, r.checked, r.passed ? "closest to its tolerance" : "worst", r.input,
                        fmt::join(r.index, ","), g(r.analytic, 10), g(r.numeric, 10), g(r.abs_error, 3),
                        g(r.rel_error, 3));
}
