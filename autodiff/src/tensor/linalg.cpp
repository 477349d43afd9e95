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
  std::int64_t batch() const { return std::max(ba, bb); }
};

const OpInfo matmul_info{"matmul", [](BackwardCtx& x) {
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
                                   gemm<T>(true, false, d.k, d.n, d.m, av + (d.ba == 1 ? 0 : i * d.m * d.k),
                                           gv + i * d.m * d.n, o + i * d.k * d.n, T(0));
                               x.grad(1, std::move(gb));
                             }
                           });
                         }};

// linear: y = x w^T (+ b), x viewed as [M, in], w [out, in]. The bias gradient is g itself,
// summed over the rows by the engine.
const OpInfo linear_info{"linear", [](BackwardCtx& x) {
                           const Tensor& in = x.saved(0);
                           const Tensor& w = x.saved(1);
                           const std::int64_t out_f = w.size(0), in_f = w.size(1),
                                              m = in.numel() / std::max<std::int64_t>(in_f, 1);
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
                         }};

// ---- shape ops ---------------------------------------------------------------------------------
const OpInfo reshape_info{"reshape", [](BackwardCtx& x) { x.grad(0, Access::view(x.g, x.in_shape(0))); }};
// expand's gradient is the output's, summed back over the expanded dimensions by the engine.
const OpInfo expand_info{"expand", [](BackwardCtx& x) { x.grad(0, x.g); }};

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
const OpInfo permute_info{"permute", [](BackwardCtx& x) {
                            const auto p = x.ints();
                            std::vector<std::int64_t> inv(p.size());
                            for (std::size_t d = 0; d < p.size(); ++d)
                              inv[static_cast<std::size_t>(p[d])] = static_cast<std::int64_t>(d);
                            x.grad(0, permute_copy(x.g, inv));
                          }};

// Copies between a tensor and a strided selection along one dimension: out[q, j, i] = a[q, start +
// j step, i] (or the reverse, accumulating, for the backward).
template <class T, bool Scatter>
void strided_copy(T* dst, const T* src, const Split& big, std::int64_t len, std::int64_t start, std::int64_t step) {
  for (std::int64_t q = 0; q < big.outer; ++q)
    for (std::int64_t j = 0; j < len; ++j) {
      const T* s = Scatter ? src + (q * len + j) * big.inner : src + (q * big.n + start + j * step) * big.inner;
      T* d = Scatter ? dst + (q * big.n + start + j * step) * big.inner : dst + (q * len + j) * big.inner;
      for (std::int64_t i = 0; i < big.inner; ++i)
        d[i] = Scatter ? d[i] + s[i] : s[i];
    }
}
const OpInfo slice_info{"slice", [](BackwardCtx& x) {
                          const auto v = x.ints();
                          const Shape& in = x.in_shape(0);
                          Tensor ga = zeros(in, x.g.dtype());
                          dispatch_float("slice", ga.dtype(), [&](auto tag) {
                            using T = decltype(tag);
                            strided_copy<T, true>(ptr<T>(ga), ptr<T>(x.g), split_at(in, static_cast<int>(v[0])),
                                                  x.g.shape()[static_cast<int>(v[0])], v[1], v[2]);
                          });
                          x.grad(0, std::move(ga));
                        }};

const OpInfo index_select_info{"index_select", [](BackwardCtx& x) {
                                 const Tensor& idx = x.saved(0);
                                 const int dim = static_cast<int>(x.ints()[0]);
                                 const Shape& in = x.in_shape(0);
                                 const Split p = split_at(in, dim);
                                 const std::int64_t len = idx.numel();
                                 const std::int64_t* iv = ptr<std::int64_t>(idx);
                                 Tensor ga = zeros(in, x.g.dtype());
                                 dispatch_float("index_select", ga.dtype(), [&](auto tag) {
                                   using T = decltype(tag);
                                   const T* gv = ptr<T>(x.g);
                                   T* o = ptr<T>(ga);
                                   for (std::int64_t q = 0; q < p.outer; ++q)
                                     for (std::int64_t j = 0; j < len; ++j)
                                       for (std::int64_t i = 0; i < p.inner; ++i)
                                         o[(q * p.n + iv[j]) * p.inner + i] += gv[(q * len + j) * p.inner + i];
                                 });
                                 x.grad(0, std::move(ga));
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
const OpInfo gather_info{"gather", [](BackwardCtx& x) {
                           const Tensor& idx = x.saved(0);
                           const Shape& in = x.in_shape(0);
                           Tensor ga = zeros(in, x.g.dtype());
                           dispatch_float("gather", ga.dtype(), [&](auto tag) {
                             using T = decltype(tag);
                             const T* gv = ptr<T>(x.g);
                             T* o = ptr<T>(ga);
                             gather_walk(idx.shape(), in, static_cast<int>(x.ints()[0]), ptr<std::int64_t>(idx),
                                         [&](std::int64_t p, std::int64_t off) { o[off] += gv[p]; });
                           });
                           x.grad(0, std::move(ga));
                         }};

const OpInfo concat_info{"concat", [](BackwardCtx& x) {
                           const int dim = static_cast<int>(x.ints()[0]);
                           const Split p = split_at(x.g.shape(), dim);
                           std::int64_t start = 0;
                           for (int k = 0; k < x.node.nin; ++k) {
                             const std::int64_t len = x.ints()[static_cast<std::size_t>(k) + 1];
                             if (x.needs(k)) {
                               Shape s = x.g.shape();
                               s[dim] = len;
                               Tensor gk = Access::make(s, x.g.dtype());
                               dispatch_float("concat", gk.dtype(), [&](auto tag) {
                                 using T = decltype(tag);
                                 strided_copy<T, false>(ptr<T>(gk), ptr<T>(x.g), p, len, start, 1);
                               });
                               x.grad(k, std::move(gk));
                             }
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
  Shape s;
  if (ra == 3 || rb == 3) s.push_back(d.batch());
  if (ra != 1) s.push_back(d.m);
  if (rb != 1) s.push_back(d.n);
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
  const std::int64_t out_f = w.size(0), in_f = w.size(1), m = x.numel() / std::max<std::int64_t>(in_f, 1);
  if (b.defined()) {
    detail::check_same_dtype("linear", x, b);
    if (b.dim() != 1 || b.size(0) != out_f)
      fail("linear: bias of shape {} does not fit weight of shape {} (it must be [{}])", b.shape(), w.shape(), out_f);
  }
  Shape s = x.shape();
  s[s.rank() - 1] = out_f;
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
  const std::int64_t n = a.shape()[d];
  auto clampi = [&](std::int64_t v) { return std::clamp(v < 0 ? v + n : v, std::int64_t{0}, n); };
  start = clampi(start);
  end = clampi(end);
  const std::int64_t len = end > start ? (end - start + step - 1) / step : 0;
  Shape s = a.shape();
  s[d] = len;
  Tensor out = Access::make(s, a.dtype());
  detail::dispatch_all(a.dtype(), [&](auto tag) {
    using T = decltype(tag);
    detail::strided_copy<T, false>(ptr<T>(out), ptr<T>(a), detail::split_at(a.shape(), d), len, start, step);
  });
  if (detail::any_requires_grad({&a})) {
    detail::Node& nd = detail::record(detail::slice_info, out, {&a});
    const std::int64_t v[3] = {d, start, step};
    detail::save_ints(nd, v);
  }
  return out;
}

Tensor index_select(const Tensor& a, int dim, const Tensor& index) {
  detail::check_defined("index_select", a);
  detail::check_defined("index_select", index);
  if (a.dim() == 0) fail("index_select: needs a tensor of at least 1 dimension");
  const int d = detail::normalize_dim("index_select", dim, a.dim());
  if (index.dtype() != DType::int64 || index.dim() != 1)
    fail("index_select: index must be a 1-D int64 tensor, got {} of shape {}", index.dtype(), index.shape());
  const std::int64_t* iv = ptr<std::int64_t>(index);
  const std::int64_t n = a.shape()[d], len = index.numel();
  for (std::int64_t j = 0; j < len; ++j)
    if (iv[j] < 0 || iv[j] >= n)
      fail("index_select: index {} is out of range for dim {} of shape {}", iv[j], d, a.shape());
  Shape s = a.shape();
  s[d] = len;
  Tensor out = Access::make(s, a.dtype());
  const detail::Split p = detail::split_at(a.shape(), d);
  detail::dispatch_all(a.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* av = ptr<T>(a);
    T* o = ptr<T>(out);
    for (std::int64_t q = 0; q < p.outer; ++q)
      for (std::int64_t j = 0; j < len; ++j)
        std::copy_n(av + (q * n + iv[j]) * p.inner, p.inner, o + (q * len + j) * p.inner);
  });
  if (detail::any_requires_grad({&a})) {
    detail::Node& nd = detail::record(detail::index_select_info, out, {&a});
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
  if (index.dtype() != DType::int64 || index.dim() != a.dim())
    fail("gather: index must be an int64 tensor of {} dimensions, got {} of shape {}", a.dim(), index.dtype(),
         index.shape());
  for (int i = 0; i < a.dim(); ++i)
    if (i != d && index.shape()[i] > a.shape()[i])
      fail("gather: index shape {} exceeds input shape {} in dim {}", index.shape(), a.shape(), i);
  const std::int64_t* iv = ptr<std::int64_t>(index);
  for (std::int64_t j = 0; j < index.numel(); ++j)
    if (iv[j] < 0 || iv[j] >= a.shape()[d])
      fail("gather: index {} is out of range for dim {} of shape {}", iv[j], d, a.shape());
  Tensor out = Access::make(index.shape(), a.dtype());
  detail::dispatch_all(a.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* av = ptr<T>(a);
    T* o = ptr<T>(out);
    detail::gather_walk(index.shape(), a.shape(), d, iv, [&](std::int64_t p, std::int64_t off) { o[p] = av[off]; });
  });
  if (detail::any_requires_grad({&a})) {
    detail::Node& nd = detail::record(detail::gather_info, out, {&a});
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
  Shape s = ts[0].shape();
  s[d] = 0;
  std::vector<std::int64_t> v{d};
  for (const Tensor& t : ts) {
    bool ok = t.dim() == s.rank();
    for (int i = 0; ok && i < s.rank(); ++i)
      ok = i == d || t.shape()[i] == s[i];
    if (!ok) fail("concat: shapes {} and {} differ outside dim {}", ts[0].shape(), t.shape(), d);
    s[d] += t.shape()[d];
    v.push_back(t.shape()[d]);
  }
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
