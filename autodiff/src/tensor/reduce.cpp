// Reductions and softmax. Each op is one block: its rules, then its forward function. A reduction
// over `dim` views its input as [outer, n, inner]: element (o, k, i) is at (o n + k) inner + i, and
// the reduced element (o, i) at o inner + i.

#include "internal.hpp"
#include "kernels.hpp"

#include <algorithm>
#include <limits>
#include <tuple>
#include <vector>

namespace autodiff {

namespace detail {
namespace {

// What a reduction over `dim` (or over everything, dimp null) makes of its input: the normalized
// dim, the result's shape and the [outer, n, inner] view. The dim is recorded as the node's one
// integer parameter; a node without one reduced everything.
struct Reduced {
  std::int64_t dim; // 0 when reducing everything
  bool all;
  Shape shape;
  Split p;
  std::span<const std::int64_t> ints() const { return {&dim, all ? 0u : 1u}; }
};
Reduced reduced(std::string_view op, const Shape& a, const int* dimp, bool keepdim) {
  if (dimp == nullptr) return {0, true, Shape{}, Split{1, a.numel(), 1}};
  const int dim = normalize_dim(op, *dimp, a.rank());
  return {dim, false, reduced_shape(a, dim, keepdim), split_at(a, dim)};
}
// The [outer, n, inner] view of the input of the reduction node x reads.
Split reduced_split(const BackwardCtx& x, const Shape& in) {
  return x.has_ints() ? split_at(in, static_cast<int>(x.ints()[0])) : Split{1, in.numel(), 1};
}

Tensor scaled(const Tensor& t, double c) {
  if (c == 1) return t;
  Tensor out = Access::make(t.shape(), t.dtype());
  dispatch_float("scale", t.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* a = ptr<T>(t);
    T* o = ptr<T>(out);
    const T k = static_cast<T>(c);
    split(t.numel(), [=](std::int64_t i) { o[i] = a[i] * k; }); // Note [Vectorised kernels]
  });
  return out;
}

// The adjoint of a reduced tensor spread back over the input's shape (times c).
Tensor spread(const BackwardCtx& x, double c) {
  const Shape& in = x.in_shape(0);
  if (!x.has_ints()) return full(in, x.g.item() * c, x.g.dtype());
  const int dim = static_cast<int>(x.ints()[0]);
  return scaled(expand_copy(Access::view(x.g, reduced_shape(in, dim, true)), in), c);
}

// ---- create_graph helpers: recorded ops only (constants built from indices are fine) ------------
// t reshaped to s (recorded), or t itself when it has that shape already.
Tensor as_shape(const Tensor& t, const Shape& s) { return t.shape() == s ? t : reshape(t, s); }
// The shape of the reduction's output with its reduced dim kept as 1 (a scalar shape for "all"),
// so that g and r broadcast against the input.
Shape keep_shape(const BackwardCtx& x) {
  return !x.has_ints() ? Shape{} : reduced_shape(x.in_shape(0), static_cast<int>(x.ints()[0]), true);
}

Tensor spread_graph(const BackwardCtx& x, double c) {
  const Tensor g = c == 1 ? x.g : x.g * c; // scaled before expanding: fewer elements
  return expand(as_shape(g, keep_shape(x)), x.in_shape(0));
}

// ---- sum and mean ---------------------------------------------------------------------------------
const OpInfo sum_info{"sum", [](BackwardCtx& x) { x.grad(0, spread(x, 1.0)); },
                      [](BackwardCtx& x) { x.grad(0, spread_graph(x, 1.0)); }};
// mean's 1/n comes from the input's shape: 1/0 = inf for an empty slice, as in the forward.
double mean_scale(const BackwardCtx& x) { return 1.0 / static_cast<double>(reduced_split(x, x.in_shape(0)).n); }
const OpInfo mean_info{"mean", [](BackwardCtx& x) { x.grad(0, spread(x, mean_scale(x))); },
                       [](BackwardCtx& x) { x.grad(0, spread_graph(x, mean_scale(x))); }};

// A reduction along an inner dim (inner > 1) as columns(i0, i1) over ranges of its columns: the pool's
// when the view is large (each_line's threshold) and its rows are whole cache lines.
// - A range starts on a multiple of 16 columns, so a column falls in the vector body or the scalar
//   tail of its range's loops as it does in the whole loop: libmvec's expf and libm's round
//   differently, and softmax along dim 0 gave other bits at 3 threads than at 1 without it
//   (line_ops_do_not_depend_on_the_thread_count).
// - Rows that are not whole lines (1000 floats: 4000 bytes) would put a range boundary inside a
//   line of every other row, a line both threads write: softmax along dim 0 of [1024, 1000] took
//   1.37 ms at 2 threads against 1.03 at 1 (kernel_bench). Those stay on the calling thread.
template <class T, class F> void split_columns(const Split& p, const F& columns) {
  constexpr std::int64_t block = 16, line = 64;
  if (!lines_split(p.inner, p.outer * p.n) || p.inner * static_cast<std::int64_t>(sizeof(T)) % line != 0)
    return columns(0, p.inner);
  const std::int64_t per_block = block * std::max<std::int64_t>(1, p.outer * p.n);
  parallel_for((p.inner + block - 1) / block, std::max<std::int64_t>(1, map_grain / per_block),
               [&](std::int64_t b0, std::int64_t b1) { columns(b0 * block, std::min(b1 * block, p.inner)); });
}

// Sums along an inner dim: for each output element o[q inner + i], finish(the sum of term(a) over
// its slice, in double, the slice's rows added in order). Row by row, in lanes across the columns;
// large ones split their columns [i0, i1) across the pool. A column is summed by one thread in the
// same order, so the bits do not depend on the split.
template <class T, class Term, class Finish>
void column_sums(const T* av, T* o, const Split& p, const Term& term, const Finish& finish) {
  const auto columns = [&](std::int64_t i0, std::int64_t i1) {
    std::vector<double> accv(static_cast<std::size_t>(i1 - i0));
    double* acc = accv.data();
    for (std::int64_t q = 0; q < p.outer; ++q) {
      std::fill(accv.begin(), accv.end(), 0.0);
      for (std::int64_t k = 0; k < p.n; ++k) {
        const T* row = av + (q * p.n + k) * p.inner + i0;
        run_range(0, i1 - i0, [=](std::int64_t i) { acc[i] += static_cast<double>(term(row[i])); });
      }
      for (std::int64_t i = i0; i < i1; ++i)
        o[q * p.inner + i] = static_cast<T>(finish(acc[i - i0]));
    }
  };
  split_columns<T>(p, columns);
}

Tensor sum_impl(const OpInfo& op, const Tensor& a, const int* dimp, bool keepdim, bool is_mean) {
  check_float(op.name, a);
  const Reduced r = reduced(op.name, a.shape(), dimp, keepdim);
  const Split p = r.p;
  const double scale = is_mean ? 1.0 / static_cast<double>(p.n) : 1.0;
  Tensor out = Access::make(r.shape, a.dtype());
  dispatch_float(op.name, a.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* av = ptr<T>(a);
    T* o = ptr<T>(out);
    if (p.inner == 1 && p.outer == 1) {
      o[0] = static_cast<T>(run_sum(av, p.n) * scale); // float32 sums accumulate in double
    } else if (p.inner == 1) {                         // rows split across the pool, each summed on one thread
      parallel_for(p.outer, std::max<std::int64_t>(1, map_grain / std::max<std::int64_t>(1, p.n)),
                   [&](std::int64_t lo, std::int64_t hi) {
                     for (std::int64_t q = lo; q < hi; ++q)
                       o[q] = static_cast<T>(run_sum(av + q * p.n, p.n) * scale);
                   });
    } else {
      column_sums(
          av, o, p, [](T v) { return v; }, [scale](double acc) { return acc * scale; });
    }
  });
  if (any_requires_grad({&a})) record(op, out, {.inputs = {&a}, .ints = r.ints()});
  return out;
}

// ---- max and min ------------------------------------------------------------------------------
// The gradient goes to the first extremal element of each slice (the one argmax reports; the first
// NaN if there is one).
// Calls f(e, j) for each slice j and the input element e that won it.
template <class F> void for_extrema(const BackwardCtx& x, F&& f) {
  const std::int64_t* iv = ptr<std::int64_t>(x.saved(0));
  const Split p = reduced_split(x, x.in_shape(0));
  // One element a slice, not n: the pool pays only from 2 * map_grain slices (each_line's threshold
  // counted the slices' n elements, and split the 1000 writes of max(x, 0)'s backward on [1024, 1000]
  // across the threads, slower than one: 212 against 176 us with the zero fill, kernel_bench).
  each_line(p.outer, 1, p.inner, [&](std::int64_t q, std::int64_t i) {
    const std::int64_t j = q * p.inner + i;
    f((q * p.n + iv[j]) * p.inner + i, j);
  });
}
void extremum_backward(BackwardCtx& x) {
  Tensor ga = zeros(x.in_shape(0), x.g.dtype());
  dispatch_float(x.name(), ga.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* gv = ptr<T>(x.g);
    T* o = ptr<T>(ga);
    for_extrema(x, [&](std::int64_t e, std::int64_t j) { o[e] = gv[j]; });
  });
  x.grad(0, std::move(ga));
}
// where(winners, g, 0) with a constant one-hot mask: the second derivative is 0, as for the scalar
// max (a piecewise linear rule), and d/dg is the mask itself.
void extremum_backward_graph(BackwardCtx& x) {
  Tensor mask = zeros(x.in_shape(0), x.g.dtype());
  dispatch_float(x.name(), mask.dtype(), [&](auto tag) {
    using T = decltype(tag);
    T* m = ptr<T>(mask);
    for_extrema(x, [&](std::int64_t e, std::int64_t) { m[e] = T(1); });
  });
  x.grad(0, where(mask, as_shape(x.g, keep_shape(x)), scalar_like(x.g, 0)));
}
const OpInfo max_info{"max", extremum_backward, extremum_backward_graph};
const OpInfo min_info{"min", extremum_backward, extremum_backward_graph};

// Returns {values, int64 indices} of the extremum along dim (or of everything).
template <bool IsMax>
std::pair<Tensor, Tensor> extremum(std::string_view name, const Tensor& a, const int* dimp, bool keepdim) {
  check_defined(name, a);
  const Reduced r = reduced(name, a.shape(), dimp, keepdim);
  const Split p = r.p;
  if (p.n == 0) fail("{}: cannot reduce over an empty dimension (shape {})", name, a.shape());
  Tensor val = Access::make(r.shape, a.dtype());
  Tensor idx = Access::make(r.shape, DType::int64);
  dispatch_all(a.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* av = ptr<T>(a);
    T* vo = ptr<T>(val);
    std::int64_t* io = ptr<std::int64_t>(idx);
    // Note [Vectorised kernels]: lines along the last dim in lanes, a full extremum in ranges on
    // the pool, and along an inner dim row by row in lanes across the columns.
    if (p.inner == 1 && p.outer == 1) {
      std::tie(vo[0], io[0]) = long_line_extremum<IsMax>(av, p.n);
    } else if (p.inner == 1) {
      each_line(p.outer, p.n, 1, [&](std::int64_t q, std::int64_t) {
        std::tie(vo[q], io[q]) = line_extremum<IsMax>(av + q * p.n, p.n);
      });
    } else {
      const auto columns = [&](std::int64_t i0, std::int64_t i1) {
        for (std::int64_t q = 0; q < p.outer; ++q) {
          const T* base = av + q * p.n * p.inner;
          T* best = vo + q * p.inner;
          std::int64_t* at = io + q * p.inner;
          std::copy(base + i0, base + i1, best + i0);
          std::fill(at + i0, at + i1, std::int64_t{0});
          for (std::int64_t k = 1; k < p.n; ++k)
            extremum_row<IsMax>(base + k * p.inner + i0, k, best + i0, at + i0, i1 - i0);
        }
      };
      split_columns<T>(p, columns);
    }
  });
  return {val, idx};
}

template <bool IsMax> Tensor extremum_op(const Tensor& a, const int* dimp, bool keepdim) {
  const OpInfo& op = IsMax ? max_info : min_info;
  auto [val, idx] = extremum<IsMax>(op.name, a, dimp, keepdim);
  if (any_requires_grad({&a})) {
    check_float(op.name, a);
    record(op, val, {.inputs = {&a}, .saved = {&idx}, .ints = reduced(op.name, a.shape(), dimp, keepdim).ints()});
  }
  return val;
}

// ---- prod ------------------------------------------------------------------------------------
// d prod / d a_k is the product of the others, from prefix and suffix products: exact with zeros.
const OpInfo prod_info{"prod",
                       [](BackwardCtx& x) {
                         const Tensor& a = x.saved(0);
                         const Split p = reduced_split(x, a.shape());
                         Tensor ga = Access::make(a.shape(), a.dtype());
                         dispatch_float("prod", a.dtype(), [&](auto tag) {
                           using T = decltype(tag);
                           const T* av = ptr<T>(a);
                           const T* gv = ptr<T>(x.g);
                           T* o = ptr<T>(ga);
                           each_line(p.outer, p.n, p.inner, [&](std::int64_t q, std::int64_t i) {
                             const std::int64_t b = q * p.n * p.inner + i;
                             T pre = 1;
                             for (std::int64_t k = 0; k < p.n; ++k) { // o holds the prefix products
                               o[b + k * p.inner] = pre;
                               pre *= av[b + k * p.inner];
                             }
                             T suf = 1;
                             const T g = gv[q * p.inner + i];
                             for (std::int64_t k = p.n; k-- > 0;) {
                               o[b + k * p.inner] *= suf * g;
                               suf *= av[b + k * p.inner];
                             }
                           });
                         });
                         x.grad(0, std::move(ga));
                       },
                       // Prefix and suffix products cannot be written with recorded ops, and dividing r by a_k is wrong
                       // at zeros. So each element's "product of the others" is a prod over its own copy of the slice
                       // with that element replaced by 1: a [..., n, n] tensor, O(n^2) time and memory per slice of n
                       // (and O(n^3) at the next order, whose rule sees that n x n tensor). Exact with zeros at every
                       // order, since prod's rule is used again for the higher derivatives.
                       [](BackwardCtx& x) {
                         const Tensor& a = x.saved(0);
                         const Shape& in = a.shape();
                         const bool flat = !x.has_ints() || in.rank() == 0;
                         Tensor t = flat ? as_shape(a, Shape{in.numel()}) : a; // the reduced dim is moved last
                         const int d = flat ? 0 : static_cast<int>(x.ints()[0]), last = t.dim() - 1;
                         if (d != last) t = transpose(t, d, last);
                         const std::int64_t n = t.shape()[last];
                         Tensor others = prod(where(eye(n, a.dtype()), scalar_like(a, 1), unsqueeze(t, -2)), -1);
                         if (d != last) others = transpose(others, d, last);
                         x.grad(0, as_shape(others, in) * as_shape(x.g, keep_shape(x)));
                       }};

Tensor prod_impl(const Tensor& a, const int* dimp, bool keepdim) {
  check_float("prod", a);
  const Reduced r = reduced("prod", a.shape(), dimp, keepdim);
  const Split p = r.p;
  Tensor out = Access::make(r.shape, a.dtype());
  dispatch_float("prod", a.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* av = ptr<T>(a);
    T* o = ptr<T>(out);
    each_line(p.outer, p.n, p.inner, [&](std::int64_t q, std::int64_t i) {
      T acc = 1;
      for (std::int64_t k = 0; k < p.n; ++k)
        acc *= av[(q * p.n + k) * p.inner + i];
      o[q * p.inner + i] = acc;
    });
  });
  if (any_requires_grad({&a})) record(prod_info, out, {.inputs = {&a}, .saved = {&a}, .ints = r.ints()});
  return out;
}

// ---- logsumexp and norm -------------------------------------------------------------------------
// The backward of a reduction (over everything, or over the dim saved in ints) whose derivative at
// element e needs only a[e], the result r[j] of e's slice and the slice's incoming gradient g[j]:
// ga[e] = local(a[e], r[j], g[j]). saved(0) is the input, saved(1) the result.
template <class Local> void slice_backward(BackwardCtx& x, std::string_view name, Local local) {
  const Tensor& a = x.saved(0);
  const Tensor& r = x.saved(1);
  const Split p = reduced_split(x, a.shape());
  Tensor ga = Access::make(a.shape(), a.dtype());
  dispatch_float(name, a.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* av = ptr<T>(a);
    const T* rv = ptr<T>(r);
    const T* gv = ptr<T>(x.g);
    T* o = ptr<T>(ga);
    if (p.inner == 1) // lines along the last dim in lanes (libmvec's expf for float32 logsumexp)
      return each_line(p.outer, p.n, 1, [&](std::int64_t q, std::int64_t) {
        const T* al = av + q * p.n;
        T* ol = o + q * p.n;
        const T rj = rv[q], gj = gv[q];
        run_range(0, p.n, [=](std::int64_t k) { ol[k] = local(al[k], rj, gj); });
      });
    each_line(p.outer, p.n, p.inner, [&](std::int64_t q, std::int64_t i) {
      const std::int64_t j = q * p.inner + i;
      for (std::int64_t k = 0; k < p.n; ++k) {
        const std::int64_t e = (q * p.n + k) * p.inner + i;
        o[e] = local(av[e], rv[j], gv[j]);
      }
    });
  });
  x.grad(0, std::move(ga));
}

// d lse / d a_k = exp(a_k - lse): softmax, from the saved result, stable for any magnitude. At
// infinite input it is NaN (inf - inf), so the graph rule follows Note [Zero adjoints] as the kernel.
const OpInfo logsumexp_info{"logsumexp",
                            [](BackwardCtx& x) {
                              slice_backward(x, "logsumexp", [](auto a, auto r, auto g) {
                                return g == decltype(g)(0) ? decltype(g)(0) : g * std::exp(a - r);
                              });
                            },
                            [](BackwardCtx& x) {
                              const Shape ks = keep_shape(x);
                              const Tensor g = as_shape(x.g, ks);
                              x.grad(0, zero_adjoint(g, g * exp(x.saved(0) - as_shape(x.saved(1), ks))));
                            }};
// d |a| / d a = a / |a|, and 0 at a = 0 (a subgradient), rather than 0/0.
// The graph rule divides by where(r == 0, 1, r), not by r: where passes no gradient to its untaken
// side, but 0 * inf from a 1/r^2 there would still be NaN, at the next order if not this one. The
// outer where makes the second derivative at 0 zero (a subgradient, as the first).
const OpInfo norm_info{"norm",
                       [](BackwardCtx& x) {
                         slice_backward(x, "norm", [](auto a, auto r, auto g) {
                           return r == decltype(r)(0) ? decltype(r)(0) : g * a / r;
                         });
                       },
                       [](BackwardCtx& x) {
                         const Shape ks = keep_shape(x);
                         const Tensor r = as_shape(x.saved(1), ks);
                         const Tensor at0 = eq(r, 0.0);
                         const Tensor one = scalar_like(r, 1), zero = scalar_like(r, 0);
                         x.grad(0, where(at0, zero, as_shape(x.g, ks) * x.saved(0) / where(at0, one, r)));
                       }};

// ---- lines along an inner dim, in lanes across the columns -----------------------------------------
// softmax, log_softmax and logsumexp along an inner dim (inner > 1) read each line with a stride. So
// they go a row at a time instead: slice q's n rows, columns [i0, i1), each pass a loop across the
// columns (vector lanes), with one running value per column kept in the order the one-line loop
// used (the max, then the sum of the exps in double, in row order): the same arithmetic, line by
// line, as that loop, which the scalar fallback would be. Large ones split their columns
// (split_columns).
template <class T> struct ColumnScratch {
  std::vector<T> m, e;
  std::vector<double> acc;
  explicit ColumnScratch(std::int64_t len)
      : m(static_cast<std::size_t>(len)), e(static_cast<std::size_t>(len)), acc(static_cast<std::size_t>(len)) {}
};
// The max of each column of rows [0, n) at base (NaN skipped, as std::max skips it) into m.
template <class T> void column_max(const T* base, std::int64_t n, std::int64_t inner, std::int64_t len, T* m) {
  std::fill(m, m + len, -std::numeric_limits<T>::infinity());
  for (std::int64_t k = 0; k < n; ++k) {
    const T* row = base + k * inner;
    run_range(0, len, [=](std::int64_t i) { m[i] = row[i] > m[i] ? row[i] : m[i]; });
  }
}
// acc[i] = the sum over the rows of exp(row[i] - m[i]), in double, in row order. Each row's exps
// (libmvec's for float32) are first written out: into row k of `out` when it is given (softmax keeps
// them), else into the scratch row e.
template <class T> void column_exp_sums(const T* base, std::int64_t n, std::int64_t inner, std::int64_t len, const T* m,
                                        double* acc, T* e, T* out) {
  std::fill(acc, acc + len, 0.0);
  for (std::int64_t k = 0; k < n; ++k) {
    const T* row = base + k * inner;
    T* ek = out != nullptr ? out + k * inner : e;
    run_range(0, len, [=](std::int64_t i) { ek[i] = std::exp(row[i] - m[i]); });
    run_range(0, len, [=](std::int64_t i) { acc[i] += static_cast<double>(ek[i]); });
  }
}

// logsumexp of a line whose max (NaN skipped) m is infinite: m (all -inf, or empty: -inf; a +inf:
// +inf), unless the line has a NaN, which makes it NaN as everywhere else (PyTorch's too).
template <class T, class At> T infinite_lse(T m, std::int64_t n, const At& at) {
  for (std::int64_t k = 0; k < n; ++k)
    if (std::isnan(at(k))) return at(k);
  return m;
}
// A line of logsumexp: the max in lanes (a NaN skipped, as std::max skips it; the sum then makes
// the result NaN), exp(a - max) summed in run_sum's fixed blocks (float32's exps in lanes, libmvec,
// a block at a time), so the bits do not depend on the vector width or the thread count.
template <class T> T lse_line(const T* a, std::int64_t n) {
  const T m = row_max(a, n);
  if (!std::isfinite(m)) return infinite_lse(m, n, [a](std::int64_t k) { return a[k]; });
  double s = 0;
  if constexpr (std::is_same_v<T, float>)
    s = run_sum_of_values(n, [=](std::int64_t k) { return std::exp(a[k] - m); });
  else
    s = run_sum_of(n, [=](std::int64_t k) { return std::exp(a[k] - m); });
  return static_cast<T>(m + std::log(s));
}
// A line of the 2-norm: the squares in double, summed in run_sum's fixed blocks.
template <class T> T norm_line(const T* a, std::int64_t n) {
  return static_cast<T>(std::sqrt(run_sum_of(n, [=](std::int64_t k) {
    const double v = a[k];
    return v * v;
  })));
}

template <bool IsLse> Tensor lse_norm(const Tensor& a, const int* dimp, bool keepdim) {
  const OpInfo& op = IsLse ? logsumexp_info : norm_info;
  check_float(op.name, a);
  const Reduced r = reduced(op.name, a.shape(), dimp, keepdim);
  const Split p = r.p;
  Tensor out = Access::make(r.shape, a.dtype());
  dispatch_float(op.name, a.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* av = ptr<T>(a);
    T* o = ptr<T>(out);
    if (p.inner == 1) // lines along the last dim (and everything: one line) in lanes
      return each_line(p.outer, p.n, 1, [&](std::int64_t q, std::int64_t) {
        o[q] = IsLse ? lse_line(av + q * p.n, p.n) : norm_line(av + q * p.n, p.n);
      });
    if constexpr (!IsLse)
      return column_sums(
          av, o, p, [](T v) { return static_cast<double>(v) * static_cast<double>(v); },
          [](double acc) { return std::sqrt(acc); });
    split_columns<T>(p, [&](std::int64_t i0, std::int64_t i1) {
      const std::int64_t len = i1 - i0;
      ColumnScratch<T> w(len);
      for (std::int64_t q = 0; q < p.outer; ++q) {
        const T* base = av + q * p.n * p.inner + i0;
        column_max(base, p.n, p.inner, len, w.m.data());
        column_exp_sums(base, p.n, p.inner, len, w.m.data(), w.acc.data(), w.e.data(), static_cast<T*>(nullptr));
        for (std::int64_t i = 0; i < len; ++i) {
          const T m = w.m[static_cast<std::size_t>(i)];
          o[q * p.inner + i0 + i] =
              std::isfinite(m) ? static_cast<T>(m + std::log(w.acc[static_cast<std::size_t>(i)]))
                               : infinite_lse(m, p.n, [base, &p, i](std::int64_t k) { return base[k * p.inner + i]; });
        }
      }
    });
  });
  if (any_requires_grad({&a})) record(op, out, {.inputs = {&a}, .saved = {&a, &out}, .ints = r.ints()});
  return out;
}

// ---- softmax and log_softmax --------------------------------------------------------------------
// Rows along the last dim (inner = 1, the common case) run in vector lanes (Note [Vectorised
// kernels]): the row's max in 16 lanes, exp into the output (libmvec's expf for float32), the sum
// in run_sum's fixed blocks, then the normalisation. The max rounds nothing, so lanes give the same
// value as one pass (a row with a NaN is all NaN whatever the max); the sum's order, a function of
// the row's length alone, differs from one running sum by rounding in double.
template <bool IsLog, class T> void softmax_row(const T* a, T* o, std::int64_t n) {
  T m = row_max(a, n);
  if (!std::isfinite(m)) m = 0; // all -inf (or a +inf): let the arithmetic give nan/0 as PyTorch
  run_range(0, n, [=](std::int64_t k) { o[k] = std::exp(a[k] - m); });
  const double s = run_sum(o, n);
  const T ls = static_cast<T>(std::log(s));
  const T inv = static_cast<T>(1.0 / s);
  if constexpr (IsLog)
    run_range(0, n, [=](std::int64_t k) { o[k] = a[k] - m - ls; });
  else
    run_range(0, n, [=](std::int64_t k) { o[k] = o[k] * inv; });
}
template <bool IsLog, class T> void softmax_row_backward(const T* r, const T* g, T* o, std::int64_t n) {
  if constexpr (IsLog) {
    const T s = static_cast<T>(run_sum(g, n));
    run_range(0, n, [=](std::int64_t k) { o[k] = g[k] - std::exp(r[k]) * s; });
  } else {
    const T s = static_cast<T>(run_sum_of(n, [=](std::int64_t k) { return g[k] * r[k]; }));
    run_range(0, n, [=](std::int64_t k) { o[k] = r[k] * (g[k] - s); });
  }
}

// Both from the saved result r: log_softmax' g = g - softmax * sum(g); softmax' g = r (g - sum(g r)).
template <bool IsLog> void softmax_backward(BackwardCtx& x) {
  const Tensor& r = x.saved(0);
  const Split p = split_at(r.shape(), static_cast<int>(x.ints()[0]));
  Tensor ga = Access::make(r.shape(), r.dtype());
  dispatch_float(x.name(), r.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* rv = ptr<T>(r);
    const T* gv = ptr<T>(x.g);
    T* o = ptr<T>(ga);
    if (p.inner == 1)
      return each_line(p.outer, p.n, 1, [&](std::int64_t q, std::int64_t) {
        softmax_row_backward<IsLog>(rv + q * p.n, gv + q * p.n, o + q * p.n, p.n);
      });
    split_columns<T>(p, [&](std::int64_t i0, std::int64_t i1) {
      const std::int64_t len = i1 - i0;
      ColumnScratch<T> w(len);
      double* acc = w.acc.data();
      T* st = w.m.data();
      for (std::int64_t q = 0; q < p.outer; ++q) {
        const std::int64_t b = q * p.n * p.inner + i0;
        std::fill(acc, acc + len, 0.0);
        for (std::int64_t k = 0; k < p.n; ++k) { // sum(g) or sum(g r) per column, in row order
          const T* g = gv + b + k * p.inner;
          const T* rr = rv + b + k * p.inner;
          run_range(0, len, [=](std::int64_t i) { acc[i] += static_cast<double>(IsLog ? g[i] : g[i] * rr[i]); });
        }
        for (std::int64_t i = 0; i < len; ++i)
          st[i] = static_cast<T>(acc[i]);
        for (std::int64_t k = 0; k < p.n; ++k) {
          const T* g = gv + b + k * p.inner;
          const T* rr = rv + b + k * p.inner;
          T* og = o + b + k * p.inner;
          if constexpr (IsLog)
            run_range(0, len, [=](std::int64_t i) { og[i] = g[i] - std::exp(rr[i]) * st[i]; });
          else
            run_range(0, len, [=](std::int64_t i) { og[i] = rr[i] * (g[i] - st[i]); });
        }
      }
    });
  });
  x.grad(0, std::move(ga));
}
template <bool IsLog> void softmax_backward_graph(BackwardCtx& x) {
  const Tensor& r = x.saved(0);
  const int dim = static_cast<int>(x.ints()[0]);
  if constexpr (IsLog)
    x.grad(0, x.g - exp(r) * sum(x.g, dim, true));
  else
    x.grad(0, r * (x.g - sum(x.g * r, dim, true)));
}
const OpInfo softmax_info{"softmax", softmax_backward<false>, softmax_backward_graph<false>};
const OpInfo log_softmax_info{"log_softmax", softmax_backward<true>, softmax_backward_graph<true>};

template <bool IsLog> Tensor softmax_impl(const Tensor& a, int dim_) {
  const OpInfo& op = IsLog ? log_softmax_info : softmax_info;
  check_float(op.name, a);
  const int dim = normalize_dim(op.name, dim_, a.dim());
  const Split p = split_at(a.shape(), dim);
  Tensor out = Access::make(a.shape(), a.dtype());
  dispatch_float(op.name, a.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* av = ptr<T>(a);
    T* o = ptr<T>(out);
    if (p.inner == 1)
      return each_line(p.outer, p.n, 1,
                       [&](std::int64_t q, std::int64_t) { softmax_row<IsLog>(av + q * p.n, o + q * p.n, p.n); });
    split_columns<T>(p, [&](std::int64_t i0, std::int64_t i1) {
      const std::int64_t len = i1 - i0;
      ColumnScratch<T> w(len);
      T* m = w.m.data();
      T* ls = w.e.data(); // after the sums: log s (log_softmax) or 1 / s (softmax) per column
      for (std::int64_t q = 0; q < p.outer; ++q) {
        const T* base = av + q * p.n * p.inner + i0;
        T* ob = o + q * p.n * p.inner + i0;
        column_max(base, p.n, p.inner, len, m);
        // all -inf (or a +inf): let the arithmetic give nan/0 as PyTorch
        run_range(0, len, [=](std::int64_t i) { m[i] = std::isfinite(m[i]) ? m[i] : T(0); });
        column_exp_sums(base, p.n, p.inner, len, m, w.acc.data(), ls, ob); // the exps into the output
        for (std::int64_t i = 0; i < len; ++i) {
          const double sum = w.acc[static_cast<std::size_t>(i)];
          ls[i] = IsLog ? static_cast<T>(std::log(sum)) : static_cast<T>(1.0 / sum);
        }
        for (std::int64_t k = 0; k < p.n; ++k) {
          const T* row = base + k * p.inner;
          T* orow = ob + k * p.inner;
          if constexpr (IsLog)
            run_range(0, len, [=](std::int64_t i) { orow[i] = row[i] - m[i] - ls[i]; });
          else
            run_range(0, len, [=](std::int64_t i) { orow[i] = orow[i] * ls[i]; });
        }
      }
    });
  });
  if (any_requires_grad({&a})) {
    const std::int64_t v[1] = {dim};
    record(op, out, {.inputs = {&a}, .saved = {&out}, .ints = v});
  }
  return out;
}

} // namespace
} // namespace detail

using detail::Access;
using detail::ptr;

Tensor sum(const Tensor& a) { return detail::sum_impl(detail::sum_info, a, nullptr, false, false); }
Tensor sum(const Tensor& a, int dim, bool keepdim) {
  return detail::sum_impl(detail::sum_info, a, &dim, keepdim, false);
}
Tensor mean(const Tensor& a) { return detail::sum_impl(detail::mean_info, a, nullptr, false, true); }
Tensor mean(const Tensor& a, int dim, bool keepdim) {
  return detail::sum_impl(detail::mean_info, a, &dim, keepdim, true);
}
Tensor max(const Tensor& a) { return detail::extremum_op<true>(a, nullptr, false); }
Tensor max(const Tensor& a, int dim, bool keepdim) { return detail::extremum_op<true>(a, &dim, keepdim); }
Tensor min(const Tensor& a) { return detail::extremum_op<false>(a, nullptr, false); }
Tensor min(const Tensor& a, int dim, bool keepdim) { return detail::extremum_op<false>(a, &dim, keepdim); }
Tensor argmax(const Tensor& a) { return detail::extremum<true>("argmax", a, nullptr, false).second; }
Tensor argmax(const Tensor& a, int dim, bool keepdim) {
  return detail::extremum<true>("argmax", a, &dim, keepdim).second;
}
Tensor argmin(const Tensor& a) { return detail::extremum<false>("argmin", a, nullptr, false).second; }
Tensor argmin(const Tensor& a, int dim, bool keepdim) {
  return detail::extremum<false>("argmin", a, &dim, keepdim).second;
}
Tensor prod(const Tensor& a) { return detail::prod_impl(a, nullptr, false); }
Tensor prod(const Tensor& a, int dim, bool keepdim) { return detail::prod_impl(a, &dim, keepdim); }
Tensor logsumexp(const Tensor& a) { return detail::lse_norm<true>(a, nullptr, false); }
Tensor logsumexp(const Tensor& a, int dim, bool keepdim) { return detail::lse_norm<true>(a, &dim, keepdim); }
Tensor norm(const Tensor& a) { return detail::lse_norm<false>(a, nullptr, false); }
// Other p than 2 are compositions of recorded ops: 1 and infinity exactly (sum and max of |a|),
// the rest as pow(sum(pow(|a|, p)), 1/p).
static Tensor p_norm(const Tensor& a, double p, const int* dimp, bool keepdim) {
  detail::check_float("norm", a);
  if (!(p > 0)) detail::fail("norm: p must be > 0 or infinity, got {} (the second argument is p, as in PyTorch)", p);
  if (p == 2) return detail::lse_norm<false>(a, dimp, keepdim);
  const Tensor m = abs(a);
  if (std::isinf(p)) return dimp ? max(m, *dimp, keepdim) : max(m);
  if (p == 1) return dimp ? sum(m, *dimp, keepdim) : sum(m);
  const Tensor s = dimp ? sum(pow(m, p), *dimp, keepdim) : sum(pow(m, p));
  // A slice of zeros: s^(1/p) has an infinite derivative there, and inf * 0 would be NaN. Its norm
  // is the constant 0 instead (gradient 0, as PyTorch's), and pow never sees s = 0.
  const Tensor zero = eq(s, 0.0);
  return where(zero, full({}, 0.0, a.dtype()), pow(where(zero, full({}, 1.0, a.dtype()), s), 1.0 / p));
}
Tensor norm(const Tensor& a, double p) { return p_norm(a, p, nullptr, false); }
Tensor norm(const Tensor& a, double p, int dim, bool keepdim) { return p_norm(a, p, &dim, keepdim); }

// var and std are compositions of recorded ops: their gradients need no rule of their own.
Tensor var(const Tensor& a, int dim, bool keepdim, Correction c) {
  const std::int64_t correction = c.value;
  detail::check_float("var", a);
  const int d = detail::normalize_dim("var", dim, a.dim());
  const std::int64_t n = a.dim() == 0 ? 1 : a.size(d);
  const Tensor centered = a - mean(a, d, true);
  // PyTorch's divisor max(0, n - correction): an empty or too short slice gives 0/0 = NaN, never a
  // negative divisor (the variance of nothing was -0).
  return sum(square(centered), d, keepdim) / static_cast<double>(std::max<std::int64_t>(0, n - correction));
}
Tensor var(const Tensor& a, Correction correction) {
  detail::check_float("var", a);
  return var(reshape(a, {a.numel()}), 0, false, correction);
}
Tensor stddev(const Tensor& a, int dim, bool keepdim, Correction correction) {
  return sqrt(var(a, dim, keepdim, correction));
}
Tensor stddev(const Tensor& a, Correction correction) { return sqrt(var(a, correction)); }

Tensor softmax(const Tensor& a, int dim) { return detail::softmax_impl<false>(a, dim); }
Tensor log_softmax(const Tensor& a, int dim) { return detail::softmax_impl<true>(a, dim); }

} // namespace autodiff

void autodiff::detail::touch_reduce() {}
