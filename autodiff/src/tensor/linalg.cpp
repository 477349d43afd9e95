// matmul through CBLAS, and the shape ops (reshape is a view; the others copy in this version).

#include "internal.hpp"

#include <cblas.h>

#include <algorithm>
#include <climits>
#include <numeric>

namespace autodiff {

namespace detail {
namespace {

int blas_int(std::int64_t v) {
  if (v > INT_MAX) fail("matmul: dimension {} is too large for BLAS", v);
  return static_cast<int>(v);
}

// C[M,N] = op(A) op(B) + beta C, row-major; op transposes when the flag is set. The transposes of
// matmul's backward go through these flags: no transposed copy is ever made.
template <class T>
void gemm(bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, const T* a, const T* b, T* c, T beta) {
  if (m == 0 || n == 0) return;
  if (k == 0) {
    if (beta == T(0)) std::fill(c, c + m * n, T(0));
    return;
  }
  const int lda = blas_int(std::max<std::int64_t>(1, ta ? m : k));
  const int ldb = blas_int(std::max<std::int64_t>(1, tb ? k : n));
  const int ldc = blas_int(std::max<std::int64_t>(1, n));
  const auto opa = ta ? CblasTrans : CblasNoTrans;
  const auto opb = tb ? CblasTrans : CblasNoTrans;
  if constexpr (std::is_same_v<T, float>)
    cblas_sgemm(CblasRowMajor, opa, opb, blas_int(m), blas_int(n), blas_int(k), 1.0f, a, lda, b, ldb, beta, c, ldc);
  else
    cblas_dgemm(CblasRowMajor, opa, opb, blas_int(m), blas_int(n), blas_int(k), 1.0, a, lda, b, ldb, beta, c, ldc);
}

// matmul as a batched product: a [ba, m, k] times b [bb, k, n], batches 1 or equal.
struct MatmulDims {
  std::int64_t ba, m, k, bb, n;
  // The batch of 1 broadcasts: an empty batch (0) against 1 is 0, not max(0, 1).
  std::int64_t batch() const { return ba == 1 ? bb : ba; }
};

// dA = g B^T, dB = A^T g through the BLAS transpose flags; a batch of a (or b) of 1 sums the
// products over the batch.
void matmul_backward(BackwardCtx& x) {
  const Tensor& a = x.saved(0);
  const Tensor& b = x.saved(1);
  const auto v = x.ints();
  const MatmulDims d{v[0], v[1], v[2], v[3], v[4]};
  const std::int64_t B = d.batch();
  dispatch_float("matmul", a.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* av = ptr<T>(a);
    const T* bv = ptr<T>(b);
    const T* gv = ptr<T>(x.g);
    if (x.needs(0)) { // dA = g B^T
      Tensor ga = Access::make(a.shape(), a.dtype());
      T* o = ptr<T>(ga);
      if (d.bb == 1)
        gemm<T>(false, true, d.ba * d.m, d.k, d.n, gv, bv, o, T(0));
      else if (B == 0) // a broadcast over an empty batch: a sum of nothing
        std::fill(o, o + ga.numel(), T(0));
      else
        for (std::int64_t i = 0; i < B; ++i) // ba == 1 sums over the batch
          gemm<T>(false, true, d.m, d.k, d.n, gv + i * d.m * d.n, bv + i * d.k * d.n,
                  o + (d.ba == 1 ? 0 : i * d.m * d.k), T(d.ba == 1 && i > 0 ? 1 : 0));
      x.grad(0, std::move(ga));
    }
    if (x.needs(1)) { // dB = A^T g
      Tensor gb = Access::make(b.shape(), b.dtype());
      T* o = ptr<T>(gb);
      if (d.bb == 1)
        gemm<T>(true, false, d.k, d.n, d.ba * d.m, av, gv, o, T(0));
      else
        for (std::int64_t i = 0; i < B; ++i)
          gemm<T>(true, false, d.k, d.n, d.m, av + (d.ba == 1 ? 0 : i * d.m * d.k), gv + i * d.m * d.n,
                  o + i * d.k * d.n, T(0));
      x.grad(1, std::move(gb));
    }
  });
}
// The same products as recorded matmuls on [ba, m, k], [bb, k, n] and [B, m, n] views. The
// transposes are copies here (there is no recorded transposed product), which only create_graph pays.
void matmul_backward_graph(BackwardCtx& x) {
  const Tensor& a = x.saved(0);
  const Tensor& b = x.saved(1);
  const auto v = x.ints();
  const MatmulDims d{v[0], v[1], v[2], v[3], v[4]};
  const std::int64_t B = d.batch();
  if (d.bb == 1) { // one matrix b: a's batch folds into its rows, and nothing is summed over batches
    const Tensor g2 = reshape(x.g, {d.ba * d.m, d.n});
    if (x.needs(0)) x.grad(0, reshape(matmul(g2, transpose(reshape(b, {d.k, d.n}))), a.shape()));
    if (x.needs(1)) x.grad(1, reshape(matmul(transpose(reshape(a, {d.ba * d.m, d.k})), g2), b.shape()));
    return;
  }
  const Tensor g3 = reshape(x.g, {B, d.m, d.n});
  if (x.needs(0)) {
    Tensor ga = matmul(g3, transpose(reshape(b, {d.bb, d.k, d.n}), 1, 2));
    if (d.ba == 1) ga = sum(ga, 0); // a was broadcast over b's batch
    x.grad(0, reshape(ga, a.shape()));
  }
  if (x.needs(1)) x.grad(1, reshape(matmul(transpose(reshape(a, {d.ba, d.m, d.k}), 1, 2), g3), b.shape()));
}
const OpInfo matmul_info{"matmul", matmul_backward, matmul_backward_graph};

// linear: y = x w^T (+ b), x viewed as [M, in], w [out, in]. The bias gradient is g itself,
// summed over the rows by the engine.
// M is the product of x's leading dims, never numel / in: with in = 0 that quotient is 0 and the
// output (bias included) would be left unwritten.
std::int64_t linear_rows(const Shape& x) {
  std::int64_t m = 1;
  for (int i = 0; i + 1 < x.rank(); ++i)
    m *= x[i];
  return m;
}
void linear_backward(BackwardCtx& x) {
  const Tensor& in = x.saved(0);
  const Tensor& w = x.saved(1);
  const std::int64_t out_f = w.size(0), in_f = w.size(1), m = linear_rows(in.shape());
  dispatch_float("linear", in.dtype(), [&](auto tag) {
    using T = decltype(tag);
    if (x.needs(0)) { // dx = g w
      Tensor gx = Access::make(in.shape(), in.dtype());
      gemm<T>(false, false, m, in_f, out_f, ptr<T>(x.g), ptr<T>(w), ptr<T>(gx), T(0));
      x.grad(0, std::move(gx));
    }
    if (x.needs(1)) { // dw = g^T x
      Tensor gw = Access::make(w.shape(), w.dtype());
      gemm<T>(true, false, out_f, in_f, m, ptr<T>(x.g), ptr<T>(in), ptr<T>(gw), T(0));
      x.grad(1, std::move(gw));
    }
  });
  if (x.node.nin == 3 && x.needs(2)) x.grad(2, x.g);
}
void linear_backward_graph(BackwardCtx& x) {
  const Tensor& in = x.saved(0);
  const Tensor& w = x.saved(1);
  const std::int64_t out_f = w.size(0), in_f = w.size(1), m = linear_rows(in.shape());
  const Tensor g2 = reshape(x.g, {m, out_f});
  if (x.needs(0)) x.grad(0, reshape(matmul(g2, w), in.shape()));
  if (x.needs(1)) x.grad(1, matmul(transpose(g2), reshape(in, {m, in_f})));
  if (x.node.nin == 3 && x.needs(2)) x.grad(2, x.g);
}
const OpInfo linear_info{"linear", linear_backward, linear_backward_graph};

// ---- shape ops ---------------------------------------------------------------------------------
const OpInfo reshape_info{"reshape", [](BackwardCtx& x) { x.grad(0, Access::view(x.g, x.in_shape(0))); },
                          [](BackwardCtx& x) { x.grad(0, reshape(x.g, x.in_shape(0))); }};
// expand's gradient is the output's, summed back over the expanded dimensions by the engine (with
// recorded sums in a create_graph sweep), so one rule serves both sweeps.
void expand_backward(BackwardCtx& x) { x.grad(0, x.g); }
const OpInfo expand_info{"expand", expand_backward, expand_backward};

std::array<std::int64_t, Shape::max_rank> strides_of(const Shape& s) {
  std::array<std::int64_t, Shape::max_rank> st{};
  std::int64_t acc = 1;
  for (int i = s.rank() - 1; i >= 0; --i) {
    st[static_cast<std::size_t>(i)] = acc;
    acc *= s[i];
  }
  return st;
}

Tensor permute_copy(const Tensor& a, std::span<const std::int64_t> perm) {
  Shape s;
  const auto in = strides_of(a.shape());
  std::array<std::int64_t, Shape::max_rank> st{};
  for (std::size_t d = 0; d < perm.size(); ++d) {
    s.push_back(a.shape()[static_cast<int>(perm[d])]);
    st[d] = in[static_cast<std::size_t>(perm[d])];
  }
  Tensor out = Access::make(s, a.dtype());
  dispatch_all(a.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* av = ptr<T>(a);
    T* o = ptr<T>(out);
    for_rows<1>(s, {st}, [&](std::int64_t oo, auto off, std::int64_t n, auto inner) {
      for (std::int64_t j = 0; j < n; ++j)
        o[oo + j] = av[off[0] + j * inner[0]];
    });
  });
  return out;
}
std::vector<std::int64_t> inverse_permutation(std::span<const std::int64_t> p) {
  std::vector<std::int64_t> inv(p.size());
  for (std::size_t d = 0; d < p.size(); ++d)
    inv[static_cast<std::size_t>(p[d])] = static_cast<std::int64_t>(d);
  return inv;
}
const OpInfo permute_info{"permute",
                          [](BackwardCtx& x) { x.grad(0, permute_copy(x.g, inverse_permutation(x.ints()))); },
                          [](BackwardCtx& x) {
                            const auto inv = inverse_permutation(x.ints());
                            x.grad(0, permute(x.g, std::vector<int>(inv.begin(), inv.end())));
                          }};

// ---- selections and their adjoints ---------------------------------------------------------------
// slice, index_select and gather read parts of a tensor; slice_scatter, index_add and scatter_add
// write (or add) parts back. They come in adjoint pairs sharing two kernels: the forward of one op
// is the fast backward of the other, and each op's graph rule calls the other op, so both are
// differentiable to any order.

// A contiguous copy of `base`, or zeros of shape s when base is undefined (a backward starting from
// nothing).
Tensor copy_or_zeros(const Tensor& base, const Shape& s, DType d) {
  return base.defined() ? convert(base, d) : zeros(s, d);
}

// Python-style slice bounds along a dimension of size n: start clamped into [0, n], and the number of
// elements taken.
struct SliceRange {
  std::int64_t start, len;
};
SliceRange slice_range(std::int64_t n, std::int64_t start, std::int64_t end, std::int64_t step) {
  auto clampi = [&](std::int64_t v) { return std::clamp(v < 0 ? v + n : v, std::int64_t{0}, n); };
  start = clampi(start);
  end = clampi(end);
  // ceil((end - start) / step) without end - start + step - 1, which overflows for a huge step.
  return {start, end > start ? (end - start - 1) / step + 1 : 0};
}
// An end bound that selects exactly len elements from start (for the graph rules, which call the
// public ops with bounds again).
std::int64_t slice_end(std::int64_t start, std::int64_t len, std::int64_t step) {
  return len == 0 ? start : start + (len - 1) * step + 1;
}

// Row j of block q of the selection (len rows a block) is row start + j step of the tensor split
// as `big`; f(offset in the tensor, offset in the selection) for each, rows being big.inner long.
template <class F> void strided_rows(const Split& big, std::int64_t len, std::int64_t start, std::int64_t step, F f) {
  for (std::int64_t q = 0; q < big.outer; ++q)
    for (std::int64_t j = 0; j < len; ++j)
      f((q * big.n + start + j * step) * big.inner, (q * len + j) * big.inner);
}
// The selection as a contiguous tensor: slice, and the backward of slice_scatter and concat.
Tensor take_slice(const Tensor& a, int dim, std::int64_t start, std::int64_t len, std::int64_t step) {
  Shape s = a.shape();
  s[dim] = len;
  Tensor out = Access::make(s, a.dtype());
  const Split big = split_at(a.shape(), dim);
  dispatch_all(a.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* av = ptr<T>(a);
    T* o = ptr<T>(out);
    strided_rows(big, len, start, step,
                 [&](std::int64_t at, std::int64_t sel) { std::copy_n(av + at, big.inner, o + sel); });
  });
  return out;
}
// A copy of `base` (zeros of shape s if undefined) with the selection overwritten by src (by zeros
// if undefined): slice_scatter, slice's backward and slice_scatter's own backward.
Tensor put_slice(const Tensor& base, const Shape& s, DType d, const Tensor& src, int dim, std::int64_t start,
                 std::int64_t len, std::int64_t step) {
  Tensor out = copy_or_zeros(base, s, d);
  const Split big = split_at(s, dim);
  dispatch_all(d, [&](auto tag) {
    using T = decltype(tag);
    T* o = ptr<T>(out);
    const T* sv = src.defined() ? ptr<T>(src) : nullptr;
    strided_rows(big, len, start, step, [&](std::int64_t at, std::int64_t sel) {
      if (sv != nullptr)
        std::copy_n(sv + sel, big.inner, o + at);
      else
        std::fill_n(o + at, big.inner, T(0));
    });
  });
  return out;
}

// ints: dim, start (normalized), step. The slice's length is the gradient's size along dim.
const OpInfo slice_info{"slice",
                        [](BackwardCtx& x) {
                          const auto v = x.ints();
                          const int dim = static_cast<int>(v[0]);
                          x.grad(0,
                                 put_slice(Tensor(), x.in_shape(0), x.g.dtype(), x.g, dim, v[1], x.g.size(dim), v[2]));
                        },
                        [](BackwardCtx& x) {
                          const auto v = x.ints();
                          const int dim = static_cast<int>(v[0]);
                          x.grad(0, slice_scatter(zeros(x.in_shape(0), x.g.dtype()), x.g, dim, v[1],
                                                  slice_end(v[1], x.g.size(dim), v[2]), v[2]));
                        }};
// ints: dim, start (normalized), step, length of the slice. The src part of g is the slice; a gets the
// rest, since src overwrote the slice.
const OpInfo slice_scatter_info{"slice_scatter",
                                [](BackwardCtx& x) {
                                  const auto v = x.ints();
                                  const int dim = static_cast<int>(v[0]);
                                  if (x.needs(0))
                                    x.grad(0,
                                           put_slice(x.g, x.g.shape(), x.g.dtype(), Tensor(), dim, v[1], v[3], v[2]));
                                  if (x.needs(1)) x.grad(1, take_slice(x.g, dim, v[1], v[3], v[2]));
                                },
                                [](BackwardCtx& x) {
                                  const auto v = x.ints();
                                  const int dim = static_cast<int>(v[0]);
                                  const std::int64_t end = slice_end(v[1], v[3], v[2]);
                                  if (x.needs(0)) {
                                    Shape s = x.g.shape();
                                    s[dim] = v[3];
                                    x.grad(0, slice_scatter(x.g, zeros(s, x.g.dtype()), dim, v[1], end, v[2]));
                                  }
                                  if (x.needs(1)) x.grad(1, slice(x.g, dim, v[1], end, v[2]));
                                }};

// Rows index[j] along dim: index_select, and index_add's backward.
Tensor take_index(const Tensor& a, int dim, const Tensor& index) {
  const Split p = split_at(a.shape(), dim);
  const std::int64_t len = index.numel();
  const std::int64_t* iv = ptr<std::int64_t>(index);
  Shape s = a.shape();
  s[dim] = len;
  Tensor out = Access::make(s, a.dtype());
  dispatch_all(a.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* av = ptr<T>(a);
    T* o = ptr<T>(out);
    for (std::int64_t q = 0; q < p.outer; ++q)
      for (std::int64_t j = 0; j < len; ++j)
        std::copy_n(av + (q * p.n + iv[j]) * p.inner, p.inner, o + (q * len + j) * p.inner);
  });
  return out;
}
// A copy of `base` (zeros of shape s if undefined) with row j of src added at row index[j] along dim
// (repeats add up): index_add, and index_select's backward.
Tensor add_index(const Tensor& base, const Shape& s, DType d, int dim, const Tensor& index, const Tensor& src) {
  Tensor out = copy_or_zeros(base, s, d);
  const Split p = split_at(s, dim);
  const std::int64_t len = index.numel();
  const std::int64_t* iv = ptr<std::int64_t>(index);
  dispatch_all(d, [&](auto tag) {
    using T = decltype(tag);
    const T* sv = ptr<T>(src);
    T* o = ptr<T>(out);
    for (std::int64_t q = 0; q < p.outer; ++q)
      for (std::int64_t j = 0; j < len; ++j)
        for (std::int64_t i = 0; i < p.inner; ++i)
          o[(q * p.n + iv[j]) * p.inner + i] += sv[(q * len + j) * p.inner + i];
  });
  return out;
}

// saved: the index; ints: dim.
const OpInfo index_select_info{
    "index_select",
    [](BackwardCtx& x) {
      x.grad(0, add_index(Tensor(), x.in_shape(0), x.g.dtype(), static_cast<int>(x.ints()[0]), x.saved(0), x.g));
    },
    [](BackwardCtx& x) {
      x.grad(0, index_add(zeros(x.in_shape(0), x.g.dtype()), static_cast<int>(x.ints()[0]), x.saved(0), x.g));
    }};
const OpInfo index_add_info{"index_add",
                            [](BackwardCtx& x) {
                              if (x.needs(0)) x.grad(0, x.g);
                              if (x.needs(1)) x.grad(1, take_index(x.g, static_cast<int>(x.ints()[0]), x.saved(0)));
                            },
                            [](BackwardCtx& x) {
                              if (x.needs(0)) x.grad(0, x.g);
                              if (x.needs(1)) x.grad(1, index_select(x.g, static_cast<int>(x.ints()[0]), x.saved(0)));
                            }};

// Visits every element of index (shape s) with the offset into a tensor of shape `src` it selects
// along `dim`: f(position in index, offset in src).
template <class F> void gather_walk(const Shape& s, const Shape& src, int dim, const std::int64_t* iv, F f) {
  const auto st = strides_of(src);
  const std::int64_t total = s.numel();
  std::array<std::int64_t, Shape::max_rank> idx{};
  for (std::int64_t p = 0; p < total; ++p) {
    std::int64_t off = 0;
    for (int d = 0; d < s.rank(); ++d)
      off += (d == dim ? iv[p] : idx[static_cast<std::size_t>(d)]) * st[static_cast<std::size_t>(d)];
    f(p, off);
    for (int d = s.rank() - 1; d >= 0; --d) {
      if (++idx[static_cast<std::size_t>(d)] < s[d]) break;
      idx[static_cast<std::size_t>(d)] = 0;
    }
  }
}
// The elements index selects: gather, and scatter_add's backward.
Tensor take_gather(const Tensor& a, int dim, const Tensor& index) {
  Tensor out = Access::make(index.shape(), a.dtype());
  dispatch_all(a.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* av = ptr<T>(a);
    T* o = ptr<T>(out);
    gather_walk(index.shape(), a.shape(), dim, ptr<std::int64_t>(index),
                [&](std::int64_t p, std::int64_t off) { o[p] = av[off]; });
  });
  return out;
}
// A copy of `base` (zeros of shape s if undefined) with src (index's shape) added where index points
// (repeats add up): scatter_add, and gather's backward.
Tensor add_scatter(const Tensor& base, const Shape& s, DType d, int dim, const Tensor& index, const Tensor& src) {
  Tensor out = copy_or_zeros(base, s, d);
  dispatch_all(d, [&](auto tag) {
    using T = decltype(tag);
    const T* sv = ptr<T>(src);
    T* o = ptr<T>(out);
    gather_walk(index.shape(), s, dim, ptr<std::int64_t>(index),
                [&](std::int64_t p, std::int64_t off) { o[off] += sv[p]; });
  });
  return out;
}

// saved: the index; ints: dim.
const OpInfo gather_info{
    "gather",
    [](BackwardCtx& x) {
      x.grad(0, add_scatter(Tensor(), x.in_shape(0), x.g.dtype(), static_cast<int>(x.ints()[0]), x.saved(0), x.g));
    },
    [](BackwardCtx& x) {
      x.grad(0, scatter_add(zeros(x.in_shape(0), x.g.dtype()), static_cast<int>(x.ints()[0]), x.saved(0), x.g));
    }};
const OpInfo scatter_add_info{"scatter_add",
                              [](BackwardCtx& x) {
                                if (x.needs(0)) x.grad(0, x.g);
                                if (x.needs(1)) x.grad(1, take_gather(x.g, static_cast<int>(x.ints()[0]), x.saved(0)));
                              },
                              [](BackwardCtx& x) {
                                if (x.needs(0)) x.grad(0, x.g);
                                if (x.needs(1)) x.grad(1, gather(x.g, static_cast<int>(x.ints()[0]), x.saved(0)));
                              }};

// ints: dim, then each input's size along dim. Input k's gradient is its part of g.
const OpInfo concat_info{"concat",
                         [](BackwardCtx& x) {
                           const int dim = static_cast<int>(x.ints()[0]);
                           std::int64_t start = 0;
                           for (int k = 0; k < x.node.nin; ++k) {
                             const std::int64_t len = x.ints()[static_cast<std::size_t>(k) + 1];
                             if (x.needs(k)) x.grad(k, take_slice(x.g, dim, start, len, 1));
                             start += len;
                           }
                         },
                         [](BackwardCtx& x) {
                           const int dim = static_cast<int>(x.ints()[0]);
                           std::int64_t start = 0;
                           for (int k = 0; k < x.node.nin; ++k) {
                             const std::int64_t len = x.ints()[static_cast<std::size_t>(k) + 1];
                             if (x.needs(k)) x.grad(k, slice(x.g, dim, start, start + len));
                             start += len;
                           }
                         }};

} // namespace
} // namespace detail

using detail::Access;
using detail::fail;
using detail::ptr;

Tensor matmul(const Tensor& a, const Tensor& b) {
  detail::check_float("matmul", a);
  detail::check_same_dtype("matmul", a, b);
  const int ra = a.dim(), rb = b.dim();
  if (ra < 1 || ra > 3 || rb < 1 || rb > 3 || (ra == 3 && rb == 1) || (ra == 1 && rb == 3))
    fail("matmul: shapes {} and {} are not supported (1-D, 2-D, 3-D x 2-D, 2-D x 3-D and 3-D x 3-D are)", a.shape(),
         b.shape());
  detail::MatmulDims d{};
  d.ba = ra == 3 ? a.size(0) : 1;
  d.m = ra == 1 ? 1 : a.size(-2);
  d.k = a.size(-1);
  d.bb = rb == 3 ? b.size(0) : 1;
  const std::int64_t kb = rb == 1 ? b.size(0) : b.size(-2);
  d.n = rb == 1 ? 1 : b.size(-1);
  if (d.k != kb) fail("matmul: shapes {} and {} cannot be multiplied", a.shape(), b.shape());
  if (d.ba != d.bb && d.ba != 1 && d.bb != 1)
    fail("matmul: batch sizes of shapes {} and {} differ", a.shape(), b.shape());
  std::vector<std::int64_t> dims; // [m, 0] x [0, n] has m n elements: checked
  if (ra == 3 || rb == 3) dims.push_back(d.batch());
  if (ra != 1) dims.push_back(d.m);
  if (rb != 1) dims.push_back(d.n);
  const Shape s = detail::make_shape("matmul", dims);
  Tensor out = Access::make(s, a.dtype());
  detail::dispatch_float("matmul", a.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* av = ptr<T>(a);
    const T* bv = ptr<T>(b);
    T* o = ptr<T>(out);
    if (d.bb == 1)
      detail::gemm<T>(false, false, d.ba * d.m, d.n, d.k, av, bv, o, T(0));
    else
      for (std::int64_t i = 0; i < d.batch(); ++i)
        detail::gemm<T>(false, false, d.m, d.n, d.k, av + (d.ba == 1 ? 0 : i * d.m * d.k), bv + i * d.k * d.n,
                        o + i * d.m * d.n, T(0));
  });
  if (detail::any_requires_grad({&a, &b})) {
    detail::Node& n = detail::record(detail::matmul_info, out, {&a, &b});
    detail::save(n, a);
    detail::save(n, b);
    const std::int64_t v[5] = {d.ba, d.m, d.k, d.bb, d.n};
    detail::save_ints(n, v);
  }
  return out;
}

Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b) {
  detail::check_float("linear", x);
  detail::check_same_dtype("linear", x, w);
  if (x.dim() < 1 || w.dim() != 2 || x.size(-1) != w.size(1))
    fail("linear: input of shape {} and weight of shape {} do not fit (weight must be [out, {}])", x.shape(), w.shape(),
         x.dim() < 1 ? 0 : x.size(-1));
  const std::int64_t out_f = w.size(0), in_f = w.size(1), m = detail::linear_rows(x.shape());
  if (b.defined()) {
    detail::check_same_dtype("linear", x, b);
    if (b.dim() != 1 || b.size(0) != out_f)
      fail("linear: bias of shape {} does not fit weight of shape {} (it must be [{}])", b.shape(), w.shape(), out_f);
  }
  std::vector<std::int64_t> dims = x.shape().vec(); // [m, 0] and [out, 0] give m out elements: checked
  dims.back() = out_f;
  const Shape s = detail::make_shape("linear", dims);
  Tensor out = Access::make(s, x.dtype());
  detail::dispatch_float("linear", x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    T* o = ptr<T>(out);
    detail::gemm<T>(false, true, m, out_f, in_f, ptr<T>(x), ptr<T>(w), o, T(0));
    if (b.defined()) {
      const T* bv = ptr<T>(b);
      for (std::int64_t i = 0; i < m; ++i)
        for (std::int64_t j = 0; j < out_f; ++j)
          o[i * out_f + j] += bv[j];
    }
  });
  if (b.defined() ? detail::any_requires_grad({&x, &w, &b}) : detail::any_requires_grad({&x, &w})) {
    detail::Node& n = b.defined() ? detail::record(detail::linear_info, out, {&x, &w, &b})
                                  : detail::record(detail::linear_info, out, {&x, &w});
    detail::save(n, x);
    detail::save(n, w);
  }
  return out;
}

Tensor reshape(const Tensor& a, const Shape& s_in) {
  detail::check_defined("reshape", a);
  Shape s = s_in;
  int infer = -1;
  std::int64_t known = 1;
  for (int i = 0; i < s.rank(); ++i) {
    if (s[i] == -1) {
      if (infer >= 0) fail("reshape: shape {} has more than one -1", s_in);
      infer = i;
    } else {
      known *= s[i];
    }
  }
  if (infer >= 0) {
    if (known == 0 || a.numel() % known != 0)
      fail("reshape: cannot reshape tensor of shape {} ({} elements) into {}", a.shape(), a.numel(), s_in);
    s[infer] = a.numel() / known;
  }
  if (s.numel() != a.numel())
    fail("reshape: cannot reshape tensor of shape {} ({} elements) into {}", a.shape(), a.numel(), s_in);
  Tensor out = Access::view(a, s);
  if (detail::any_requires_grad({&a})) detail::record(detail::reshape_info, out, {&a});
  return out;
}

Tensor flatten(const Tensor& a, int start_dim, int end_dim) {
  detail::check_defined("flatten", a);
  if (a.dim() == 0) return reshape(a, {1});
  const int s0 = detail::normalize_dim("flatten", start_dim, a.dim());
  const int s1 = detail::normalize_dim("flatten", end_dim, a.dim());
  if (s0 > s1) fail("flatten: start_dim {} comes after end_dim {}", start_dim, end_dim);
  Shape s;
  for (int i = 0; i < s0; ++i)
    s.push_back(a.shape()[i]);
  std::int64_t m = 1;
  for (int i = s0; i <= s1; ++i)
    m *= a.shape()[i];
  s.push_back(m);
  for (int i = s1 + 1; i < a.dim(); ++i)
    s.push_back(a.shape()[i]);
  return reshape(a, s);
}

Tensor squeeze(const Tensor& a, int dim) {
  detail::check_defined("squeeze", a);
  if (a.dim() == 0) return a;
  const int d = detail::normalize_dim("squeeze", dim, a.dim());
  if (a.shape()[d] != 1) return a; // as PyTorch: squeezing a dimension that is not 1 does nothing
  return reshape(a, detail::reduced_shape(a.shape(), d, false));
}

Tensor unsqueeze(const Tensor& a, int dim) {
  detail::check_defined("unsqueeze", a);
  const int d = detail::normalize_dim("unsqueeze", dim, a.dim() + 1);
  Shape s;
  for (int i = 0; i <= a.dim(); ++i) {
    if (i == d) s.push_back(1);
    if (i < a.dim()) s.push_back(a.shape()[i]);
  }
  return reshape(a, s);
}

Tensor permute(const Tensor& a, const std::vector<int>& dims) {
  detail::check_defined("permute", a);
  if (static_cast<int>(dims.size()) != a.dim())
    fail("permute: {} dims given for a tensor of shape {}", dims.size(), a.shape());
  std::vector<std::int64_t> p;
  std::vector<char> seen(dims.size(), 0);
  for (int d : dims) {
    const int k = detail::normalize_dim("permute", d, a.dim());
    if (seen[static_cast<std::size_t>(k)]++) fail("permute: dim {} appears twice in [{}]", k, fmt::join(dims, ","));
    p.push_back(k);
  }
  Tensor out = detail::permute_copy(a, p);
  if (detail::any_requires_grad({&a})) {
    detail::Node& n = detail::record(detail::permute_info, out, {&a});
    detail::save_ints(n, p);
  }
  return out;
}

Tensor transpose(const Tensor& a) {
  detail::check_defined("transpose", a);
  if (a.dim() != 2) fail("transpose: needs a 2-D tensor, got shape {}; use transpose(a, d0, d1)", a.shape());
  return permute(a, {1, 0});
}

Tensor transpose(const Tensor& a, int d0, int d1) {
  detail::check_defined("transpose", a);
  std::vector<int> p(static_cast<std::size_t>(a.dim()));
  std::iota(p.begin(), p.end(), 0);
  std::swap(p[static_cast<std::size_t>(detail::normalize_dim("transpose", d0, a.dim()))],
            p[static_cast<std::size_t>(detail::normalize_dim("transpose", d1, a.dim()))]);
  return permute(a, p);
}

Tensor expand(const Tensor& a, const Shape& s) {
  detail::check_defined("expand", a);
  if (!detail::broadcastable_to(a.shape(), s)) fail("expand: shape {} cannot be expanded to {}", a.shape(), s);
  Tensor out = a.shape() == s ? detail::convert(a, a.dtype()) : detail::expand_copy(a, s);
  if (detail::any_requires_grad({&a})) detail::record(detail::expand_info, out, {&a});
  return out;
}

Tensor slice(const Tensor& a, int dim, std::int64_t start, std::int64_t end, std::int64_t step) {
  detail::check_defined("slice", a);
  if (a.dim() == 0) fail("slice: cannot slice a 0-D tensor");
  const int d = detail::normalize_dim("slice", dim, a.dim());
  if (step <= 0) fail("slice: step must be positive, got {}", step);
  const detail::SliceRange r = detail::slice_range(a.shape()[d], start, end, step);
  Tensor out = detail::take_slice(a, d, r.start, r.len, step);
  if (detail::any_requires_grad({&a})) {
    detail::Node& nd = detail::record(detail::slice_info, out, {&a});
    const std::int64_t v[3] = {d, r.start, step};
    detail::save_ints(nd, v);
  }
  return out;
}

Tensor slice_scatter(const Tensor& a, const Tensor& src, int dim, std::int64_t start, std::int64_t end,
                     std::int64_t step) {
  detail::check_same_dtype("slice_scatter", a, src);
  if (a.dim() == 0) fail("slice_scatter: cannot slice a 0-D tensor");
  const int d = detail::normalize_dim("slice_scatter", dim, a.dim());
  if (step <= 0) fail("slice_scatter: step must be positive, got {}", step);
  const detail::SliceRange r = detail::slice_range(a.shape()[d], start, end, step);
  Shape s = a.shape();
  s[d] = r.len;
  if (!(src.shape() == s))
    fail("slice_scatter: src has shape {}, but the slice {}:{}:{} of dim {} of shape {} has shape {}", src.shape(),
         start, end, step, d, a.shape(), s);
  Tensor out = detail::put_slice(a, a.shape(), a.dtype(), src, d, r.start, r.len, step);
  if (detail::any_requires_grad({&a, &src})) {
    detail::Node& nd = detail::record(detail::slice_scatter_info, out, {&a, &src});
    const std::int64_t v[4] = {d, r.start, step, r.len};
    detail::save_ints(nd, v);
  }
  return out;
}

namespace detail {
namespace {
// index_select and index_add: a 1-D int64 index whose values are in range along dim d of shape a.
void check_index_1d(std::string_view op, const Tensor& index, const Shape& a, int d) {
  if (index.dtype() != DType::int64 || index.dim() != 1)
    fail("{}: index must be a 1-D int64 tensor, got {} of shape {}", op, index.dtype(), index.shape());
  const std::int64_t* iv = ptr<std::int64_t>(index);
  for (std::int64_t j = 0; j < index.numel(); ++j)
    if (iv[j] < 0 || iv[j] >= a[d]) fail("{}: index {} is out of range for dim {} of shape {}", op, iv[j], d, a);
}
// gather and scatter_add: an int64 index of a's rank, no larger than a outside dim d, its values in
// range along d.
void check_index_nd(std::string_view op, const Tensor& index, const Shape& a, int d) {
  if (index.dtype() != DType::int64 || index.dim() != a.rank())
    fail("{}: index must be an int64 tensor of {} dimensions, got {} of shape {}", op, a.rank(), index.dtype(),
         index.shape());
  for (int i = 0; i < a.rank(); ++i)
    if (i != d && index.shape()[i] > a[i])
      fail("{}: index shape {} exceeds input shape {} in dim {}", op, index.shape(), a, i);
  const std::int64_t* iv = ptr<std::int64_t>(index);
  for (std::int64_t j = 0; j < index.numel(); ++j)
    if (iv[j] < 0 || iv[j] >= a[d]) fail("{}: index {} is out of range for dim {} of shape {}", op, iv[j], d, a);
}
} // namespace
} // namespace detail

Tensor index_select(const Tensor& a, int dim, const Tensor& index) {
  detail::check_defined("index_select", a);
  detail::check_defined("index_select", index);
  if (a.dim() == 0) fail("index_select: needs a tensor of at least 1 dimension");
  const int d = detail::normalize_dim("index_select", dim, a.dim());
  detail::check_index_1d("index_select", index, a.shape(), d);
  std::vector<std::int64_t> dims = a.shape().vec(); // a longer index than dim d means more elements
  dims[static_cast<std::size_t>(d)] = index.numel();
  detail::make_shape("index_select", dims);
  Tensor out = detail::take_index(a, d, index);
  if (detail::any_requires_grad({&a})) {
    detail::Node& nd = detail::record(detail::index_select_info, out, {&a});
    detail::save(nd, index);
    const std::int64_t v[1] = {d};
    detail::save_ints(nd, v);
  }
  return out;
}

Tensor index_add(const Tensor& a, int dim, const Tensor& index, const Tensor& src) {
  detail::check_same_dtype("index_add", a, src);
  detail::check_defined("index_add", index);
  if (a.dim() == 0) fail("index_add: needs a tensor of at least 1 dimension");
  const int d = detail::normalize_dim("index_add", dim, a.dim());
  detail::check_index_1d("index_add", index, a.shape(), d);
  Shape s = a.shape();
  s[d] = index.numel();
  if (!(src.shape() == s))
    fail("index_add: src has shape {}, but adding it along dim {} of shape {} at {} indices needs shape {}",
         src.shape(), d, a.shape(), index.numel(), s);
  Tensor out = detail::add_index(a, a.shape(), a.dtype(), d, index, src);
  if (detail::any_requires_grad({&a, &src})) {
    detail::Node& nd = detail::record(detail::index_add_info, out, {&a, &src});
    detail::save(nd, index);
    const std::int64_t v[1] = {d};
    detail::save_ints(nd, v);
  }
  return out;
}

Tensor gather(const Tensor& a, int dim, const Tensor& index) {
  detail::check_defined("gather", a);
  detail::check_defined("gather", index);
  const int d = detail::normalize_dim("gather", dim, a.dim());
  detail::check_index_nd("gather", index, a.shape(), d);
  Tensor out = detail::take_gather(a, d, index);
  if (detail::any_requires_grad({&a})) {
    detail::Node& nd = detail::record(detail::gather_info, out, {&a});
    detail::save(nd, index);
    const std::int64_t v[1] = {d};
    detail::save_ints(nd, v);
  }
  return out;
}

Tensor scatter_add(const Tensor& a, int dim, const Tensor& index, const Tensor& src) {
  detail::check_same_dtype("scatter_add", a, src);
  detail::check_defined("scatter_add", index);
  if (a.dim() == 0) fail("scatter_add: needs a tensor of at least 1 dimension");
  const int d = detail::normalize_dim("scatter_add", dim, a.dim());
  // PyTorch also allows an index smaller than src; requiring equal shapes keeps src's gradient,
  // gather(g, dim, index), the same shape as src.
  detail::check_index_nd("scatter_add", index, a.shape(), d);
  if (!(index.shape() == src.shape()))
    fail("scatter_add: index has shape {} but src has shape {}; they must be equal", index.shape(), src.shape());
  Tensor out = detail::add_scatter(a, a.shape(), a.dtype(), d, index, src);
  if (detail::any_requires_grad({&a, &src})) {
    detail::Node& nd = detail::record(detail::scatter_add_info, out, {&a, &src});
    detail::save(nd, index);
    const std::int64_t v[1] = {d};
    detail::save_ints(nd, v);
  }
  return out;
}

Tensor concat(const std::vector<Tensor>& ts, int dim) {
  if (ts.empty()) fail("concat: needs at least one tensor");
  for (const Tensor& t : ts)
    detail::check_same_dtype("concat", ts[0], t);
  if (ts[0].dim() == 0) fail("concat: cannot concatenate 0-D tensors; use stack");
  const int d = detail::normalize_dim("concat", dim, ts[0].dim());
  std::vector<std::int64_t> dims = ts[0].shape().vec();
  dims[static_cast<std::size_t>(d)] = 0;
  std::vector<std::int64_t> v{d};
  for (const Tensor& t : ts) {
    bool ok = t.dim() == ts[0].dim();
    for (int i = 0; ok && i < t.dim(); ++i)
      ok = i == d || t.shape()[i] == ts[0].shape()[i];
    if (!ok) fail("concat: shapes {} and {} differ outside dim {}", ts[0].shape(), t.shape(), d);
    const auto len = checked_add(dims[static_cast<std::size_t>(d)], t.shape()[d]);
    if (!len) fail("concat: the lengths along dim {} of {} tensors of shape {} overflow", d, ts.size(), ts[0].shape());
    dims[static_cast<std::size_t>(d)] = *len;
    v.push_back(t.shape()[d]);
  }
  const Shape s = detail::make_shape("concat", dims);
  Tensor out = Access::make(s, ts[0].dtype());
  const detail::Split p = detail::split_at(s, d);
  detail::dispatch_all(out.dtype(), [&](auto tag) {
    using T = decltype(tag);
    std::int64_t start = 0;
    for (const Tensor& t : ts) {
      const std::int64_t len = t.shape()[d];
      for (std::int64_t q = 0; q < p.outer; ++q)
        std::copy_n(ptr<T>(t) + q * len * p.inner, len * p.inner, ptr<T>(out) + (q * p.n + start) * p.inner);
      start += len;
    }
  });
  if (detail::any_requires_grad(std::span<const Tensor>(ts))) {
    std::vector<const Tensor*> in;
    for (const Tensor& t : ts)
      in.push_back(&t);
    detail::Node& nd = detail::record(detail::concat_info, out, in);
    detail::save_ints(nd, v);
  }
  return out;
}

Tensor stack(const std::vector<Tensor>& ts, int dim) {
  if (ts.empty()) fail("stack: needs at least one tensor");
  const int d = detail::normalize_dim("stack", dim, ts[0].dim() + 1);
  if (ts[0].dim() == Shape::max_rank) fail("stack: shape {} has {} dimensions already", ts[0].shape(), Shape::max_rank);
  std::vector<std::int64_t> dims = ts[0].shape().vec();
  dims.insert(dims.begin() + d, static_cast<std::int64_t>(ts.size()));
  detail::make_shape("stack", dims); // checked before any copy is made
  std::vector<Tensor> u;
  for (const Tensor& t : ts) {
    if (!(t.shape() == ts[0].shape())) fail("stack: shapes {} and {} differ", ts[0].shape(), t.shape());
    u.push_back(unsqueeze(t, d));
  }
  return concat(u, d);
}

} // namespace autodiff

// Referenced by tensor_op_names() so that a static link keeps this file's rules registered.
void autodiff::detail::touch_linalg() {}
