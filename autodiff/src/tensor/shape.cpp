// Shape ops: reshape (a view) and the compositions of it (flatten, squeeze, unsqueeze), expand,
// permute and transpose, concat and stack (the others copy in this version). Each op is one block:
// its rules, then its forward function.

#include "internal.hpp"

#include <algorithm>
#include <numeric>

namespace autodiff {

using detail::Access;
using detail::fail;
using detail::ptr;

namespace detail {
std::array<std::int64_t, Shape::max_rank> strides_of(const Shape& s) {
  std::array<std::int64_t, Shape::max_rank> st{};
  std::int64_t acc = 1;
  for (int i = s.rank() - 1; i >= 0; --i) {
    st[static_cast<std::size_t>(i)] = acc;
    acc *= s[i];
  }
  return st;
}
} // namespace detail

// ---- reshape --------------------------------------------------------------------------------------
namespace detail {
namespace {
const OpInfo reshape_info{"reshape", [](BackwardCtx& x) { x.grad(0, Access::view(x.g, x.in_shape(0))); },
                          [](BackwardCtx& x) { x.grad(0, reshape(x.g, x.in_shape(0))); }};
} // namespace
} // namespace detail

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
  if (detail::any_requires_grad({&a})) detail::record(detail::reshape_info, out, {.inputs = {&a}});
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

// ---- expand ---------------------------------------------------------------------------------------
namespace detail {
namespace {
// expand's gradient is the output's, summed back over the expanded dimensions by the engine (with
// recorded sums in a create_graph sweep), so one rule serves both sweeps.
void expand_backward(BackwardCtx& x) { x.grad(0, x.g); }
const OpInfo expand_info{"expand", expand_backward, expand_backward};
} // namespace
} // namespace detail

Tensor expand(const Tensor& a, const Shape& s) {
  detail::check_defined("expand", a);
  if (!detail::broadcastable_to(a.shape(), s)) fail("expand: shape {} cannot be expanded to {}", a.shape(), s);
  Tensor out = a.shape() == s ? detail::convert(a, a.dtype()) : detail::expand_copy(a, s);
  if (detail::any_requires_grad({&a})) detail::record(detail::expand_info, out, {.inputs = {&a}});
  return out;
}

// ---- permute and transpose ------------------------------------------------------------------------
namespace detail {
namespace {
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
} // namespace
} // namespace detail

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
    detail::record(detail::permute_info, out, {.inputs = {&a}, .ints = p});
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

// ---- concat and stack -----------------------------------------------------------------------------
namespace detail {
namespace {
// ints: dim, then each input's size along dim. Input k's gradient is its part of g.
const OpInfo concat_info{"concat",
                         [](BackwardCtx& x) {
                           const int dim = static_cast<int>(x.ints()[0]);
                           std::int64_t start = 0;
                           for (int k = 0; k < x.nin(); ++k) {
                             const std::int64_t len = x.ints()[static_cast<std::size_t>(k) + 1];
                             if (x.needs(k)) x.grad(k, take_slice(x.g, dim, start, len, 1));
                             start += len;
                           }
                         },
                         [](BackwardCtx& x) {
                           const int dim = static_cast<int>(x.ints()[0]);
                           std::int64_t start = 0;
                           for (int k = 0; k < x.nin(); ++k) {
                             const std::int64_t len = x.ints()[static_cast<std::size_t>(k) + 1];
                             if (x.needs(k)) x.grad(k, slice(x.g, dim, start, start + len));
                             start += len;
                           }
                         }};
} // namespace
} // namespace detail

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
    detail::record(detail::concat_info, out, {.inputs = in, .ints = v});
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

void autodiff::detail::touch_shape() {}
