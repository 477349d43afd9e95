// The losses: cross_entropy and nll_loss on [N, C] logits and int64 targets, fused, each one op with
// its own rules (one block: rules, then forward); mse_loss and binary_cross_entropy_with_logits, an
// elementwise op of elementwise.cpp then a reduction; the rest compositions of recorded ops. nn's
// losses are thin wrappers of these (nn/src/loss.cpp).

#include "internal.hpp"
#include "kernels.hpp"

#include <algorithm>
#include <limits>
#include <type_traits>
#include <vector>

namespace autodiff {

using detail::Access;
using detail::fail;
using detail::ptr;

namespace detail {
namespace {
void check_targets(std::string_view op, const Tensor& x, const Tensor& t) {
  check_float(op, x);
  check_defined(op, t);
  if (x.dim() != 2) fail("{}: input must be [N, C], got shape {}", op, x.shape());
  if (t.dtype() != DType::int64) fail("{}: targets must be int64, got {}", op, t.dtype());
  if (t.dim() != 1 || t.size(0) != x.size(0))
    fail("{}: targets must have shape [{}] for input of shape {}, got {}", op, x.size(0), x.shape(), t.shape());
  const std::int64_t* tv = ptr<std::int64_t>(t);
  for (std::int64_t i = 0; i < t.numel(); ++i)
    if (tv[i] < 0 || tv[i] >= x.size(1))
      fail("{}: target {} at position {} is out of range for {} classes", op, tv[i], i, x.size(1));
}
double reduction_scale(Reduction r, std::int64_t n) {
  return r == Reduction::mean ? 1.0 / static_cast<double>(n) : r == Reduction::sum ? 1.0 : 0.0;
}
// The factor a reduced loss's adjoint gets for each row: 1/N (mean), 1 (sum), or 0 for none, whose
// adjoint has a row per loss. From the node's integer parameter (the Reduction) and its input [N, C].
double loss_scale(const BackwardCtx& x) {
  return reduction_scale(static_cast<Reduction>(x.ints()[0]), x.in_shape(0)[0]);
}
// The adjoint of loss i, for the reductions mean (c = 1/N), sum (c = 1) and none (c = 0).
template <class T> T row_grad(const T* gv, double c, std::int64_t i) { return c != 0 ? gv[0] * T(c) : gv[i]; }
// The same with recorded ops: a scalar, or a column [N, 1] that broadcasts over the classes.
Tensor row_grad_graph(const BackwardCtx& x, double sign) {
  const double c = loss_scale(x);
  if (c != 0) return c * sign == 1 ? x.g : x.g * (c * sign);
  const Shape column{x.g.numel(), 1};
  const Tensor g = x.g.shape() == column ? x.g : reshape(x.g, column);
  return sign == 1 ? g : -g;
}
// A constant [N, C] of dtype d: 1 at (i, t_i), 0 elsewhere.
Tensor one_hot(const Tensor& targets, std::int64_t c, DType d) {
  const std::int64_t n = targets.numel();
  Tensor m = zeros({n, c}, d);
  dispatch_float("one_hot", d, [&](auto tag) {
    using T = decltype(tag);
    const std::int64_t* tv = ptr<std::int64_t>(targets);
    T* o = ptr<T>(m);
    for (std::int64_t i = 0; i < n; ++i)
      o[i * c + tv[i]] = T(1);
  });
  return m;
}

// The loss of each element reduced as asked (the elementwise losses record mean or sum after it).
Tensor reduce_loss(const Tensor& l, Reduction red) {
  return red == Reduction::mean ? mean(l) : red == Reduction::sum ? sum(l) : l;
}
} // namespace
} // namespace detail

// ---- cross_entropy ---------------------------------------------------------------------------------
namespace detail {
namespace {
// d/dx_ij = g_i (softmax_ij - [j == t_i]), the softmax recomputed from the saved logsumexp.
const OpInfo cross_entropy_info{
    "cross_entropy",
    [](BackwardCtx& x) {
      const Tensor& lg = x.saved(0);
      const Tensor& t = x.saved(1);
      const Tensor& lse = x.saved(2);
      const std::int64_t n = lg.size(0), c = lg.size(1);
      Tensor ga = Access::make(lg.shape(), lg.dtype());
      dispatch_float("cross_entropy", lg.dtype(), [&](auto tag) {
        using T = decltype(tag);
        const T* xv = ptr<T>(lg);
        const double* lv = ptr<double>(lse);
        const T* gv = ptr<T>(x.g);
        const std::int64_t* tv = ptr<std::int64_t>(t);
        T* o = ptr<T>(ga);
        const double scale = loss_scale(x);
        // By value: a store through o must not make the loop reload
        // the pointers through the closure (kernels.hpp, run_range).
        each_line(n, c, 1, [=](std::int64_t i, std::int64_t) {
          const T gi = row_grad(gv, scale, i);
          const T* xr = xv + i * c;
          T* orow = o + i * c;
          const double l = lv[i];
          if constexpr (std::is_same_v<T, float>)
            // x - lse in double, then exp in float lanes (libmvec): the
            // difference is rounded to float only after the subtraction,
            // so p = exp(d) is off by at most p |d| 2^-24 <= 2.2e-8 plus
            // expf's own 2 ulp, even for logits of magnitude 1e4.
            run_range(0, c, [=](std::int64_t j) { orow[j] = gi * std::exp(static_cast<float>(xr[j] - l)); });
          else // float64: scalar libm, the precise path
            for (std::int64_t j = 0; j < c; ++j)
              orow[j] = gi * std::exp(xr[j] - l);
          orow[tv[i]] -= gi;
        });
      });
      x.grad(0, std::move(ga));
    },
    // The softmax is recorded from the logits as recorded (saved(0)), not
    // taken from the detached float64 logsumexp, so the Hessian comes out:
    // c (diag(p) - p p^T) per row.
    [](BackwardCtx& x) {
      const Tensor& lg = x.saved(0);
      const Tensor p = softmax(lg, 1);
      x.grad(0, row_grad_graph(x, 1) * (p - one_hot(x.saved(1), lg.size(1), lg.dtype())));
    }};
} // namespace
} // namespace detail

Tensor cross_entropy(const Tensor& logits, const Tensor& targets, Reduction red) {
  detail::check_targets("cross_entropy", logits, targets);
  const std::int64_t n = logits.size(0), c = logits.size(1);
  const double scale = detail::reduction_scale(red, n);
  // in float64 for every dtype: exp(x - lse) in the backward is then accurate even for float32
  // logits of magnitude 1e4, where a float32 lse would be off by 1e-3.
  Tensor lse = Access::make({n}, DType::float64);
  Tensor out = Access::make(red == Reduction::none ? Shape{n} : Shape{}, logits.dtype());
  detail::dispatch_float("cross_entropy", logits.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* xv = ptr<T>(logits);
    const std::int64_t* tv = ptr<std::int64_t>(targets);
    double* lv = ptr<double>(lse);
    T* o = ptr<T>(out);
    // Row i's logsumexp into lse, and its loss.
    const auto row_loss = [=](std::int64_t i) { // by value, as the backward's
      const T* row = xv + i * c;
      const T m = detail::row_max(row, c);
      // float32: exp of the (float) difference in float lanes (libmvec), summed in double in fixed
      // blocks (Note [Vectorised kernels]); float64: scalar libm, one running sum.
      double s = 0;
      if constexpr (std::is_same_v<T, float>)
        s = detail::run_sum_of_values(c, [=](std::int64_t j) { return std::exp(row[j] - m); });
      else
        for (std::int64_t j = 0; j < c; ++j)
          s += std::exp(row[j] - m);
      lv[i] = static_cast<double>(m) + std::log(s);
      // lse - x_t computed as (m - x_t) + log s: no cancellation between two huge numbers.
      return static_cast<double>(m - row[tv[i]]) + std::log(s);
    };
    if (red == Reduction::none) {
      detail::each_line(n, c, 1, [&](std::int64_t i, std::int64_t) { o[i] = static_cast<T>(row_loss(i)); });
    } else {
      // The rows' losses are added in row order on this thread, whether or not the rows were split
      // across the pool: the same bits either way.
      double total = 0;
      if (detail::lines_split(n, c)) {
        std::vector<double> li(static_cast<std::size_t>(n));
        detail::each_line(n, c, 1,
                          [&](std::int64_t i, std::int64_t) { li[static_cast<std::size_t>(i)] = row_loss(i); });
        for (const double v : li)
          total += v;
      } else {
        for (std::int64_t i = 0; i < n; ++i)
          total += row_loss(i);
      }
      o[0] = static_cast<T>(total * scale);
    }
  });
  if (detail::any_requires_grad({&logits})) {
    const std::int64_t v[1] = {static_cast<std::int64_t>(red)};
    detail::record(detail::cross_entropy_info, out,
                   {.inputs = {&logits}, .saved = {&logits, &targets, &lse}, .ints = v});
  }
  return out;
}

// ---- nll_loss --------------------------------------------------------------------------------------
namespace detail {
namespace {
const OpInfo nll_info{"nll_loss",
                      [](BackwardCtx& x) {
                        const Tensor& t = x.saved(0);
                        const Shape& in = x.in_shape(0);
                        Tensor ga = zeros(in, x.g.dtype());
                        dispatch_float("nll_loss", ga.dtype(), [&](auto tag) {
                          using T = decltype(tag);
                          const T* gv = ptr<T>(x.g);
                          const std::int64_t* tv = ptr<std::int64_t>(t);
                          T* o = ptr<T>(ga);
                          const double scale = loss_scale(x);
                          for (std::int64_t i = 0; i < in[0]; ++i)
                            o[i * in[1] + tv[i]] = -row_grad(gv, scale, i);
                        });
                        x.grad(0, std::move(ga));
                      },
                      [](BackwardCtx& x) {
                        const Shape& in = x.in_shape(0);
                        const Tensor mask = one_hot(x.saved(0), in[1], x.g.dtype());
                        x.grad(0, where(mask, row_grad_graph(x, -1), scalar_like(x.g, 0)));
                      }};
} // namespace
} // namespace detail

Tensor nll_loss(const Tensor& log_probs, const Tensor& targets, Reduction red) {
  detail::check_targets("nll_loss", log_probs, targets);
  const std::int64_t n = log_probs.size(0), c = log_probs.size(1);
  const double scale = detail::reduction_scale(red, n);
  Tensor out = Access::make(red == Reduction::none ? Shape{n} : Shape{}, log_probs.dtype());
  detail::dispatch_float("nll_loss", log_probs.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* xv = ptr<T>(log_probs);
    const std::int64_t* tv = ptr<std::int64_t>(targets);
    T* o = ptr<T>(out);
    double total = 0;
    for (std::int64_t i = 0; i < n; ++i) {
      const T li = -xv[i * c + tv[i]];
      if (red == Reduction::none)
        o[i] = li;
      else
        total += li;
    }
    if (red != Reduction::none) o[0] = static_cast<T>(total * scale);
  });
  if (detail::any_requires_grad({&log_probs})) {
    const std::int64_t v[1] = {static_cast<std::int64_t>(red)};
    detail::record(detail::nll_info, out, {.inputs = {&log_probs}, .saved = {&targets}, .ints = v});
  }
  return out;
}

// ---- mse_loss and binary_cross_entropy_with_logits ----------------------------------------------
// Elementwise, then mean or sum as recorded ops. The per-element op and its rules are in
// elementwise.cpp (SquaredError, LogitBce), run by the elementwise ops' drivers: one formula each.
Tensor mse_loss(const Tensor& a, const Tensor& b, Reduction red) {
  detail::check_same_dtype("mse_loss", a, b);
  if (!(a.shape() == b.shape())) fail("mse_loss: input shape {} and target shape {} differ", a.shape(), b.shape());
  return detail::reduce_loss(detail::squared_error(a, b), red);
}

// Logit a against target b (they broadcast), in the form that never overflows: softplus(a) - a b.
Tensor binary_cross_entropy_with_logits(const Tensor& logits, const Tensor& targets, Reduction red) {
  return detail::reduce_loss(detail::logit_bce(logits, targets), red);
}

// ---- compositions of recorded ops: their gradients need no rule of their own --------------------
Tensor cross_entropy(const Tensor& logits, const Tensor& targets, Reduction red, double eps) {
  if (!(eps >= 0 && eps <= 1)) fail("cross_entropy: label_smoothing must be in [0, 1], got {}", eps);
  if (eps == 0) return cross_entropy(logits, targets, red);
  detail::check_targets("cross_entropy", logits, targets);
  // (1 - e) nll + e (mean over the classes of -log p), per example, then reduced.
  const Tensor logp = log_softmax(logits, 1);
  const Tensor nll = nll_loss(logp, targets, Reduction::none);
  return detail::reduce_loss((1.0 - eps) * nll + eps * -mean(logp, 1), red);
}

Tensor l1_loss(const Tensor& a, const Tensor& b, Reduction red) {
  detail::check_same_dtype("l1_loss", a, b);
  if (!(a.shape() == b.shape())) fail("l1_loss: input shape {} and target shape {} differ", a.shape(), b.shape());
  return detail::reduce_loss(abs(a - b), red);
}

Tensor huber_loss(const Tensor& a, const Tensor& b, Reduction red, double delta) {
  detail::check_same_dtype("huber_loss", a, b);
  if (!(a.shape() == b.shape())) fail("huber_loss: input shape {} and target shape {} differ", a.shape(), b.shape());
  if (!(delta > 0)) fail("huber_loss: delta must be positive, got {}", delta);
  const Tensor d = a - b;
  const Tensor m = abs(d);
  return detail::reduce_loss(where(lt(m, delta), 0.5 * square(d), delta * (m - 0.5 * delta)), red);
}

} // namespace autodiff

void autodiff::detail::touch_loss() {}
