// Selections and their adjoints: slice, index_select and gather read parts of a tensor;
// slice_scatter, index_add and scatter_add write (or add) parts back. They come in adjoint pairs
// sharing two kernels: the forward of one op is the fast backward of the other, and each op's graph
// rule calls the other op, so both are differentiable to any order. Each op is one block: its
// rules, then its forward function.

#include "internal.hpp"

#include <algorithm>

namespace autodiff {

using detail::Access;
using detail::fail;
using detail::ptr;

namespace detail {
namespace {
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
} // namespace
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
namespace {
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

// ---- slice ----------------------------------------------------------------------------------------
namespace detail {
namespace {
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
} // namespace
} // namespace detail

Tensor slice(const Tensor& a, int dim, std::int64_t start, std::int64_t end, std::int64_t step) {
  detail::check_defined("slice", a);
  if (a.dim() == 0) fail("slice: cannot slice a 0-D tensor");
  const int d = detail::normalize_dim("slice", dim, a.dim());
  if (step <= 0) fail("slice: step must be positive, got {}", step);
  const detail::SliceRange r = detail::slice_range(a.shape()[d], start, end, step);
  Tensor out = detail::take_slice(a, d, r.start, r.len, step);
  if (detail::any_requires_grad({&a})) {
    const std::int64_t v[3] = {d, r.start, step};
    detail::record(detail::slice_info, out, {.inputs = {&a}, .ints = v});
  }
  return out;
}

// ---- slice_scatter --------------------------------------------------------------------------------
namespace detail {
namespace {
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
} // namespace
} // namespace detail

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
    const std::int64_t v[4] = {d, r.start, step, r.len};
    detail::record(detail::slice_scatter_info, out, {.inputs = {&a, &src}, .ints = v});
  }
  return out;
}

// ---- index_select and index_add: the two kernels -------------------------------------------------
namespace detail {
namespace {
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
} // namespace
} // namespace detail

// ---- index_select -------------------------------------------------------------------------------
namespace detail {
namespace {
// saved: the index; ints: dim.
const OpInfo index_select_info{
    "index_select",
    [](BackwardCtx& x) {
      x.grad(0, add_index(Tensor(), x.in_shape(0), x.g.dtype(), static_cast<int>(x.ints()[0]), x.saved(0), x.g));
    },
    [](BackwardCtx& x) {
      x.grad(0, index_add(zeros(x.in_shape(0), x.g.dtype()), static_cast<int>(x.ints()[0]), x.saved(0), x.g));
    }};
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
    const std::int64_t v[1] = {d};
    detail::record(detail::index_select_info, out, {.inputs = {&a}, .saved = {&index}, .ints = v});
  }
  return out;
}

// ---- index_add ----------------------------------------------------------------------------------
namespace detail {
namespace {
// saved: the index; ints: dim.
const OpInfo index_add_info{"index_add",
                            [](BackwardCtx& x) {
                              if (x.needs(0)) x.grad(0, x.g);
                              if (x.needs(1)) x.grad(1, take_index(x.g, static_cast<int>(x.ints()[0]), x.saved(0)));
                            },
                            [](BackwardCtx& x) {
                              if (x.needs(0)) x.grad(0, x.g);
                              if (x.needs(1)) x.grad(1, index_select(x.g, static_cast<int>(x.ints()[0]), x.saved(0)));
                            }};
} // namespace
} // namespace detail

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
    const std::int64_t v[1] = {d};
    detail::record(detail::index_add_info, out, {.inputs = {&a, &src}, .saved = {&index}, .ints = v});
  }
  return out;
}

// ---- gather and scatter_add: the two kernels -----------------------------------------------------
namespace detail {
namespace {
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
} // namespace
} // namespace detail

// ---- gather -------------------------------------------------------------------------------------
namespace detail {
namespace {
// saved: the index; ints: dim.
const OpInfo gather_info{
    "gather",
    [](BackwardCtx& x) {
      x.grad(0, add_scatter(Tensor(), x.in_shape(0), x.g.dtype(), static_cast<int>(x.ints()[0]), x.saved(0), x.g));
    },
    [](BackwardCtx& x) {
      x.grad(0, scatter_add(zeros(x.in_shape(0), x.g.dtype()), static_cast<int>(x.ints()[0]), x.saved(0), x.g));
    }};
} // namespace
} // namespace detail

Tensor gather(const Tensor& a, int dim, const Tensor& index) {
  detail::check_defined("gather", a);
  detail::check_defined("gather", index);
  const int d = detail::normalize_dim("gather", dim, a.dim());
  detail::check_index_nd("gather", index, a.shape(), d);
  Tensor out = detail::take_gather(a, d, index);
  if (detail::any_requires_grad({&a})) {
    const std::int64_t v[1] = {d};
    detail::record(detail::gather_info, out, {.inputs = {&a}, .saved = {&index}, .ints = v});
  }
  return out;
}

// ---- scatter_add --------------------------------------------------------------------------------
namespace detail {
namespace {
// saved: the index; ints: dim.
const OpInfo scatter_add_info{"scatter_add",
                              [](BackwardCtx& x) {
                                if (x.needs(0)) x.grad(0, x.g);
                                if (x.needs(1)) x.grad(1, take_gather(x.g, static_cast<int>(x.ints()[0]), x.saved(0)));
                              },
                              [](BackwardCtx& x) {
                                if (x.needs(0)) x.grad(0, x.g);
                                if (x.needs(1)) x.grad(1, gather(x.g, static_cast<int>(x.ints()[0]), x.saved(0)));
                              }};
} // namespace
} // namespace detail

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
    const std::int64_t v[1] = {d};
    detail::record(detail::scatter_add_info, out, {.inputs = {&a, &src}, .saved = {&index}, .ints = v});
  }
  return out;
}
} // namespace autodiff

void autodiff::detail::touch_index() {}
