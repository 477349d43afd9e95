// Matrix products through CBLAS: matmul and linear. Each op is one block: its rules (the fast
// `backward` with BLAS, the recorded `backward_graph`), then its forward function.

#include "internal.hpp"
#include "kernels.hpp"

#include <cblas.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <climits>
#include <utility>

namespace autodiff {

using detail::Access;
using detail::fail;
using detail::ptr;

namespace detail {
namespace {
int blas_int(std::int64_t v) {
  if (v > INT_MAX) fail("matmul: dimension {} is too large for BLAS", v);
  return static_cast<int>(v);
}

// C[M,N] = op(A) op(B) + beta C, row-major with leading dimensions lda, ldb, ldc; op transposes when
// the flag is set. The transposes of matmul's backward go through these flags: no transposed copy is
// ever made. The leading dimensions let linear work on a block of columns (Note [Owned rows]).
template <class T> void gemm_ld(bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, const T* a,
                                std::int64_t lda, const T* b, std::int64_t ldb, T* c, std::int64_t ldc, T beta) {
  if (m == 0 || n == 0) return;
  if (k == 0) {
    if (beta == T(0))
      for (std::int64_t i = 0; i < m; ++i)
        std::fill(c + i * ldc, c + i * ldc + n, T(0));
    return;
  }
  const auto opa = ta ? CblasTrans : CblasNoTrans;
  const auto opb = tb ? CblasTrans : CblasNoTrans;
  const int la = blas_int(std::max<std::int64_t>(1, lda)), lb = blas_int(std::max<std::int64_t>(1, ldb)),
            lc = blas_int(std::max<std::int64_t>(1, ldc));
  if constexpr (std::is_same_v<T, float>)
    cblas_sgemm(CblasRowMajor, opa, opb, blas_int(m), blas_int(n), blas_int(k), 1.0f, a, la, b, lb, beta, c, lc);
  else
    cblas_dgemm(CblasRowMajor, opa, opb, blas_int(m), blas_int(n), blas_int(k), 1.0, a, la, b, lb, beta, c, lc);
}
// The same on whole (contiguous) matrices.
template <class T>
void gemm(bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, const T* a, const T* b, T* c, T beta) {
  gemm_ld<T>(ta, tb, m, n, k, a, ta ? m : k, b, tb ? k : n, c, n, beta);
}

// matmul as a batched product: a [ba, m, k] times b [bb, k, n], batches 1 or equal.
struct MatmulDims {
  std::int64_t ba, m, k, bb, n;
  // The batch of 1 broadcasts: an empty batch (0) against 1 is 0, not max(0, 1).
  std::int64_t batch() const { return ba == 1 ? bb : ba; }
};
} // namespace
} // namespace detail

// ---- matmul ---------------------------------------------------------------------------------------
namespace detail {
namespace {
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
} // namespace
} // namespace detail

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
  std::int64_t dims[3]; // [m, 0] x [0, n] has m n elements: checked. An array: no heap per op
  std::size_t r = 0;
  if (ra == 3 || rb == 3) dims[r++] = d.batch();
  if (ra != 1) dims[r++] = d.m;
  if (rb != 1) dims[r++] = d.n;
  const Shape s = detail::make_shape("matmul", std::span<const std::int64_t>(dims, r));
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
    const std::int64_t v[5] = {d.ba, d.m, d.k, d.bb, d.n};
    detail::record(detail::matmul_info, out, {.inputs = {&a, &b}, .saved = {&a, &b}, .ints = v});
  }
  return out;
}

// ---- linear ---------------------------------------------------------------------------------------
namespace detail {
namespace {
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

// Large products are split across the pool by rows of w (output features), so that each thread
// touches only its own rows of w and of its gradient, in the forward, the backward and the
// optimizer's update: Note [Owned rows]. A range does at least linear_grain_macs multiply-adds (a
// pool round trip is 1-4 us, a million multiply-adds some 12 us on one core), and there are at most
// linear_max_ranges of them (the partial products of dx are kept until summed).
constexpr std::int64_t linear_grain_macs = std::int64_t{1} << 20;
constexpr std::int64_t linear_max_ranges = 8;
// The rows of w per range when the product splits, or 0 when it runs as one call on this thread: too
// small for two ranges whatever the shape (tested first, in double: no overflow, no integer
// division, so a tiny step's layers pay one multiplication), or too few rows. An empty w (out_f = 0)
// always runs whole, where dx is filled with zeros.
std::int64_t linear_split_grain(std::int64_t m, std::int64_t in_f, std::int64_t out_f) {
  if (static_cast<double>(m) * static_cast<double>(in_f) * static_cast<double>(out_f) <
      2.0 * static_cast<double>(linear_grain_macs))
    return 0;
  const std::int64_t per_row = std::max<std::int64_t>(1, m * in_f);
  const std::int64_t grain = std::max({std::int64_t{1}, (linear_grain_macs + per_row - 1) / per_row,
                                       (out_f + linear_max_ranges - 1) / linear_max_ranges});
  return out_f < 2 * grain ? 0 : grain;
}
// fn(r0, r1) over the rows of w: split when large, else one call on this thread (no call into the pool
// for the small layers that make up a tiny step).
template <class F> void linear_split(std::int64_t m, std::int64_t in_f, std::int64_t out_f, const F& fn) {
  const std::int64_t grain = linear_split_grain(m, in_f, out_f);
  if (grain == 0)
    fn(std::int64_t{0}, out_f);
  else
    parallel_for(out_f, grain, fn);
}

void linear_backward(BackwardCtx& x) {
  const Tensor& in = x.saved(0);
  const Tensor& w = x.saved(1);
  const std::int64_t out_f = w.size(0), in_f = w.size(1), m = linear_rows(in.shape());
  dispatch_float("linear", in.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* gv = ptr<T>(x.g);
    const T* wv = ptr<T>(w);
    const T* iv = ptr<T>(in);
    Tensor gx, gw;
    if (x.needs(0)) gx = Access::make(in.shape(), in.dtype());
    if (x.needs(1)) gw = Access::make(w.shape(), w.dtype());
    // Rows r0:r1 of w: dw[r0:r1] = g[:, r0:r1]^T x, and their share of dx = g w,
    // g[:, r0:r1] w[r0:r1], into dx_part.
    const auto rows = [&](std::int64_t r0, std::int64_t r1, T* dx_part) {
      if (gw.defined())
        gemm_ld<T>(true, false, r1 - r0, in_f, m, gv + r0, out_f, iv, in_f, ptr<T>(gw) + r0 * in_f, in_f, T(0));
      if (dx_part != nullptr)
        gemm_ld<T>(false, false, m, in_f, r1 - r0, gv + r0, out_f, wv + r0 * in_f, in_f, dx_part, in_f, T(0));
    };
    if (const std::int64_t grain = linear_split_grain(m, in_f, out_f); grain == 0) {
      rows(0, out_f, gx.defined() ? ptr<T>(gx) : nullptr);
    } else {
      // dx is a sum over all rows of w: the range starting at row 0 writes gx, the others partial
      // products, added to gx afterwards in row order (so its last bits depend on the number of
      // ranges, as with any split of a sum; dw's do not).
      std::array<std::pair<std::int64_t, Tensor>, linear_max_ranges> partial;
      std::atomic<int> partials{0};
      parallel_for(out_f, grain, [&](std::int64_t r0, std::int64_t r1) {
        if (!gx.defined() || r0 == 0) return rows(r0, r1, gx.defined() ? ptr<T>(gx) : nullptr);
        Tensor part = Access::make(in.shape(), in.dtype());
        rows(r0, r1, ptr<T>(part));
        partial[static_cast<std::size_t>(partials.fetch_add(1))] = {r0, std::move(part)};
      });
      if (gx.defined()) {
        const int np = partials.load();
        T* o = ptr<T>(gx);
        for (std::int64_t last = 0, p = 0; p < np; ++p) { // the partial starting next after `last`
          std::size_t next = 0;
          for (std::size_t q = 0; q < static_cast<std::size_t>(np); ++q)
            if (partial[q].first > last && (partial[next].first <= last || partial[q].first < partial[next].first))
              next = q;
          last = partial[next].first;
          const T* pv = ptr<T>(partial[next].second);
          split(gx.numel(), [=](std::int64_t i) { o[i] += pv[i]; });
        }
      }
    }
    if (gx.defined()) x.grad(0, std::move(gx));
    if (gw.defined()) x.grad(1, std::move(gw));
  });
  if (x.nin() == 3 && x.needs(2)) x.grad(2, x.g);
}
void linear_backward_graph(BackwardCtx& x) {
  const Tensor& in = x.saved(0);
  const Tensor& w = x.saved(1);
  const std::int64_t out_f = w.size(0), in_f = w.size(1), m = linear_rows(in.shape());
  const Tensor g2 = reshape(x.g, {m, out_f});
  if (x.needs(0)) x.grad(0, reshape(matmul(g2, w), in.shape()));
  if (x.needs(1)) x.grad(1, matmul(transpose(g2), reshape(in, {m, in_f})));
  if (x.nin() == 3 && x.needs(2)) x.grad(2, x.g);
}
const OpInfo linear_info{"linear", linear_backward, linear_backward_graph};
} // namespace
} // namespace detail

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
  // [m, 0] and [out, 0] give m out elements: checked. An array: no heap per op
  std::array<std::int64_t, Shape::max_rank> dims{};
  std::copy(x.shape().begin(), x.shape().end(), dims.begin());
  dims[static_cast<std::size_t>(x.dim() - 1)] = out_f;
  const Shape s =
      detail::make_shape("linear", std::span<const std::int64_t>(dims.data(), static_cast<std::size_t>(x.dim())));
  Tensor out = Access::make(s, x.dtype());
  detail::dispatch_float("linear", x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    T* o = ptr<T>(out);
    const T* xv = ptr<T>(x);
    const T* wv = ptr<T>(w);
    const T* bv = b.defined() ? ptr<T>(b) : nullptr;
    // Output columns r0:r1 (rows of w), Note [Owned rows]. The bias is copied into every row and the
    // product added to it (beta = 1), as PyTorch's addmm does: no second pass over the output to add
    // the bias. (Where BLAS splits a long k, the bias now joins the first partial sum instead of the
    // total: a last-bit difference.)
    detail::linear_split(m, in_f, out_f, [&](std::int64_t r0, std::int64_t r1) {
      const std::int64_t nf = r1 - r0;
      T* oc = o + r0;
      if (bv != nullptr) {
        const T* bc = bv + r0;
        // Rows in the widest vectors (kernels.hpp): a memmove call per short row, or this loop in
        // baseline SSE, cost more than the rest of a tiny layer's forward.
        detail::run_range(0, m, [=](std::int64_t i) {
          for (std::int64_t j = 0; j < nf; ++j)
            oc[i * out_f + j] = bc[j];
        });
      }
      detail::gemm_ld<T>(false, true, m, nf, in_f, xv, in_f, wv + r0 * in_f, in_f, oc, out_f,
                         bv != nullptr ? T(1) : T(0));
    });
  });
  if (b.defined() ? detail::any_requires_grad({&x, &w, &b}) : detail::any_requires_grad({&x, &w})) {
    const Tensor* in[3] = {&x, &w, &b};
    detail::record(detail::linear_info, out,
                   {.inputs = detail::TensorRefs(in, b.defined() ? 3 : 2), .saved = {&x, &w}});
  }
  return out;
}
} // namespace autodiff

void autodiff::detail::touch_matmul() {}
