// Tensor storage (a caching allocator), shapes, factories, random numbers, conversions, printing,
// and the shape helpers the kernels share.

#include "internal.hpp"

#include <algorithm>
#include <bit>
#include <limits>
#include <mutex>
#include <new>
#include <numbers>
#include <random>
#include <sstream>

namespace autodiff {

std::string_view dtype_name(DType d) {
  switch (d) {
  case DType::float32:
    return "float32";
  case DType::float64:
    return "float64";
  case DType::int64:
    return "int64";
  }
  return "unknown";
}

std::optional<std::int64_t> checked_numel(std::span<const std::int64_t> dims) {
  std::int64_t nonzero = 1;
  bool empty = false;
  for (const std::int64_t d : dims) {
    if (d < 0) return std::nullopt;
    if (d == 0)
      empty = true;
    else if (__builtin_mul_overflow(nonzero, d, &nonzero) || nonzero > max_numel)
      return std::nullopt;
  }
  return empty ? 0 : nonzero;
}

namespace {
// Whether dims keep the rule of max_numel (-1 skipped when infer is allowed). The test every shape
// made by an op passes, so it builds no message: shape_problem says why, once it has failed.
bool shape_fits(std::span<const std::int64_t> dims, bool allow_infer) {
  std::int64_t nonzero = 1;
  for (const std::int64_t d : dims) {
    if (d > 0) {
      if (__builtin_mul_overflow(nonzero, d, &nonzero) || nonzero > max_numel) return false;
    } else if (d < 0 && !(d == -1 && allow_infer)) {
      return false;
    }
  }
  return true;
}
// Why dims break the rule of max_numel ("" if they do not); -1 is skipped when infer is allowed.
std::string shape_problem(std::span<const std::int64_t> dims, bool allow_infer) {
  std::array<std::int64_t, Shape::max_rank> known{};
  std::size_t n = 0;
  for (std::size_t i = 0; i < dims.size(); ++i) {
    if (dims[i] == -1 && allow_infer) continue;
    if (dims[i] < 0) return fmt::format("dimension {} is {}; sizes must be >= 0", i, dims[i]);
    known[n++] = dims[i];
  }
  if (!checked_numel(std::span<const std::int64_t>(known.data(), n)))
    return fmt::format("the product of its non-zero dimensions exceeds 2^60 elements");
  return "";
}
} // namespace

Shape::Shape(std::span<const std::int64_t> dims) {
  if (dims.size() > static_cast<std::size_t>(max_rank))
    detail::fail("shape: {} dimensions given, at most {} are supported", dims.size(), max_rank);
  if (!shape_fits(dims, true)) detail::fail("shape: [{}]: {}", fmt::join(dims, ","), shape_problem(dims, true));
  std::copy(dims.begin(), dims.end(), d_.begin());
  rank_ = static_cast<std::uint8_t>(dims.size());
}

void Shape::push_back(std::int64_t d) {
  if (rank_ == max_rank) detail::fail("shape: more than {} dimensions", max_rank);
  d_[rank_] = d;
  if (const std::string why = shape_problem({d_.data(), rank_ + 1u}, true); !why.empty())
    detail::fail("shape: [{}]: {}", fmt::join(d_.begin(), d_.begin() + rank_ + 1, ","), why);
  ++rank_;
}

void Shape::numel_error() const {
  detail::fail("shape: {} has no element count: {}", *this, shape_problem({d_.data(), rank_}, false));
}

namespace detail {

// ---- the caching allocator ------------------------------------------------------------------------
// Freed buffers go to free lists per size class, kept for reuse; they survive Tape::reset(), so a
// training loop reuses the same buffers every step and allocates nothing after the first. Size
// classes are four per power of two, so rounding wastes at most 25%.
//
// Small buffers (under 64 KiB) are cached by the thread that frees them, with no lock: most ops
// make and drop them on one thread, and a lock would cost more than the rest of a tiny op. Large
// ones go to one cache shared by all threads, under a mutex (some 20 ns, against the microseconds
// of filling 64 KiB): a buffer made on one thread and freed on another (a gradient that a worker's
// shard accumulated into a parameter, freed by zero_grad on the main thread; nn::parallel_backward)
// then comes back to whichever thread needs one. Per-thread caches of large buffers made every
// sharded step of the demo take fresh memory from the system (page faults, 1.6x slower at 2
// threads). Small buffers that change threads are bounded instead: a thread caches at most 64 MiB of
// them and frees the rest.
namespace {
constexpr std::size_t header = 64; // keeps the data 64-byte aligned
constexpr std::size_t num_classes = 240;
constexpr std::size_t shared_from = std::size_t{64} << 10; // class sizes from here on are shared
constexpr std::size_t max_thread_bytes = std::size_t{64} << 20;
constexpr std::size_t max_shared_bytes = std::size_t{1} << 30;

std::size_t class_of(std::size_t bytes, std::uint32_t& cls) {
  if (bytes <= 64) {
    cls = 0;
    return 64;
  }
  const int p = std::bit_width(bytes - 1); // 2^p >= bytes > 2^(p-1), p >= 7
  const std::size_t step = std::size_t{1} << (p - 3);
  const std::size_t q = (bytes + step - 1) / step; // 5..8
  cls = static_cast<std::uint32_t>(1 + (p - 7) * 4 + static_cast<int>(q - 5));
  return q * step;
}

void free_buffer(Buffer* b) {
  b->~Buffer();
  ::operator delete (static_cast<void*>(b), std::align_val_t{64});
}

// Each size class is a list threaded through the cached buffers' own headers (Buffer::next), which
// taking or keeping a buffer touches anyway: a vector of pointers per class cost a second cache
// line per allocation and per release, and a tiny op makes and frees several buffers.
struct FreeLists {
  Buffer* heads[num_classes] = {};
  std::size_t bytes = 0;
  Buffer* take(std::uint32_t cls, std::size_t size) {
    Buffer* b = heads[cls];
    if (b == nullptr) return nullptr;
    heads[cls] = b->next;
    bytes -= size;
    return b;
  }
  bool keep(Buffer* b, std::size_t size, std::size_t max_bytes) {
    if (bytes + size > max_bytes) return false;
    b->next = heads[b->size_class];
    heads[b->size_class] = b;
    bytes += size;
    return true;
  }
  void free_all() {
    for (Buffer*& h : heads)
      while (h != nullptr) {
        Buffer* next = h->next;
        free_buffer(h);
        h = next;
      }
  }
};

// This thread's cache, reached through a plain pointer (one thread-local load, no guard test on
// every call): null before the first use and again once the thread's cache is destroyed, when
// buffers still being released at thread exit go back to the heap. Both flags are trivially
// destructible, so they stay readable during thread exit.
struct Cache;
thread_local Cache* live_cache = nullptr;
thread_local bool cache_gone = false;

struct Cache : FreeLists {
  std::size_t heap_allocations = 0;
  ~Cache() {
    live_cache = nullptr;
    cache_gone = true;
    free_all();
  }
};
Cache* cache() {
  if (live_cache != nullptr) [[likely]]
    return live_cache;
  if (cache_gone) return nullptr;
  thread_local Cache c;
  live_cache = &c;
  return &c;
}

struct SharedCache : FreeLists {
  std::mutex m;
};
// Never destroyed: a tensor in a static object may release its buffer after this file's statics
// are gone; the operating system takes back what it holds at exit.
SharedCache& shared_cache() {
  static auto* c = new SharedCache;
  return *c;
}
} // namespace

namespace {
// The paths that take a lock, touch the heap or set up this thread's cache: out of line, so that the
// common case (a small buffer from or to this thread's free list) saves no registers.
[[gnu::noinline]] Buffer* allocate_slow(std::size_t bytes, std::uint32_t cls, std::size_t size) {
  if (cls >= num_classes) fail("tensor: cannot allocate {} bytes", bytes);
  Buffer* b = nullptr;
  if (size >= shared_from) {
    SharedCache& c = shared_cache();
    const std::lock_guard lock(c.m);
    b = c.take(cls, size);
  } else if (Cache* c = cache()) {
    b = c->take(cls, size);
  }
  if (b != nullptr) {
    b->refs.store(1, std::memory_order_relaxed);
    b->bytes = bytes;
    return b;
  }
  if (Cache* c = cache()) ++c->heap_allocations;
  void* mem = ::operator new (header + size, std::align_val_t{64});
  b = new (mem) Buffer;
  b->size_class = cls;
  b->bytes = bytes;
  b->data = static_cast<char*>(mem) + header;
  return b;
}
[[gnu::noinline]] void release_slow(Buffer* b, std::size_t size) {
  if (size >= shared_from) {
    SharedCache& c = shared_cache();
    const std::lock_guard lock(c.m);
    if (c.keep(b, size, max_shared_bytes)) return;
  } else if (Cache* c = cache(); c != nullptr && c->keep(b, size, max_thread_bytes)) {
    return;
  }
  free_buffer(b);
}
} // namespace

Buffer* allocate(std::size_t bytes) {
  std::uint32_t cls = 0;
  const std::size_t size = class_of(bytes, cls);
  if (size < shared_from && live_cache != nullptr) [[likely]]
    if (Buffer* b = live_cache->take(cls, size)) {
      b->refs.store(1, std::memory_order_relaxed);
      b->bytes = bytes;
      return b;
    }
  return allocate_slow(bytes, cls, size);
}

void release(Buffer* b) {
  std::uint32_t cls = 0;
  const std::size_t size = class_of(b->bytes, cls);
  if (size < shared_from && live_cache != nullptr && live_cache->keep(b, size, max_thread_bytes)) [[likely]]
    return;
  release_slow(b, size);
}

void retain(GradSlot* s) { s->refs.fetch_add(1, std::memory_order_relaxed); }
void release(GradSlot* s) { // the last owner skips the read-modify-write, as Tensor::drop
  if (s->refs.load(std::memory_order_acquire) == 1 || s->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) delete s;
}

void check_shape(std::string_view op, const Shape& s) {
  if (shape_fits({s.begin(), static_cast<std::size_t>(s.rank())}, false)) return;
  if (const std::string why = shape_problem({s.begin(), static_cast<std::size_t>(s.rank())}, false); !why.empty())
    fail("{}: shape {}: {}", op, s, why);
}
Shape make_shape(std::string_view op, std::span<const std::int64_t> dims) {
  if (dims.size() > static_cast<std::size_t>(Shape::max_rank))
    fail("{}: {} dimensions, at most {} are supported", op, dims.size(), Shape::max_rank);
  if (!shape_fits(dims, false)) fail("{}: shape [{}]: {}", op, fmt::join(dims, ","), shape_problem(dims, false));
  return Shape(dims);
}

Tensor Access::make(const Shape& s, DType d) {
  // numel() checks the shape (an Error naming it if it breaks max_numel); numel <= 2^60 and an
  // element has at most 8 bytes, so the byte count fits in a size_t.
  const auto bytes = static_cast<std::size_t>(s.numel()) * dtype_size(d);
  Buffer* b = nullptr;
  try {
    b = allocate(bytes);
  } catch (const std::bad_alloc&) {
    fail("tensor: cannot allocate {} bytes for shape {} of {}", bytes, s, d);
  }
  return Tensor(b, s, d);
}

// ---- checks and shape helpers -----------------------------------------------------------------
void undefined_error(std::string_view op) { fail("{}: the tensor is undefined (default-constructed)", op); }
void int64_error(std::string_view op, const Tensor& t) {
  fail("{}: needs a float32 or float64 tensor, got int64 of shape {}; convert with .to(DType::float32)", op, t.shape());
}
void dtype_mismatch_error(std::string_view op, const Tensor& a, const Tensor& b) {
  fail("{}: dtypes {} (shape {}) and {} (shape {}) differ; convert one with .to()", op, a.dtype(), a.shape(), b.dtype(),
       b.shape());
}
int normalize_dim(std::string_view op, int dim, int rank) {
  const int r = rank == 0 ? 1 : rank;
  if (dim < -r || dim >= r) fail("{}: dim {} is out of range for a tensor of {} dimensions", op, dim, rank);
  return dim < 0 ? dim + r : dim;
}
Shape broadcast_shapes_slow(std::string_view op, const Shape& a, const Shape& b) {
  const int r = std::max(a.rank(), b.rank());
  std::array<std::int64_t, Shape::max_rank> d{};
  for (int i = 0; i < r; ++i) {
    const int ia = a.rank() - r + i, ib = b.rank() - r + i;
    const std::int64_t da = ia >= 0 ? a[ia] : 1, db = ib >= 0 ? b[ib] : 1;
    if (da != db && da != 1 && db != 1) fail("{}: shapes {} and {} cannot be broadcast together", op, a, b);
    d[static_cast<std::size_t>(i)] = da == 1 ? db : da;
  }
  // [n, 1] and [1, n] broadcast to n^2 elements: checked, under the op's name.
  return make_shape(op, std::span<const std::int64_t>(d.data(), static_cast<std::size_t>(r)));
}
bool broadcastable_to(const Shape& from, const Shape& to) {
  if (from.rank() > to.rank()) return false;
  for (int i = 0; i < from.rank(); ++i) {
    const std::int64_t f = from[i], t = to[to.rank() - from.rank() + i];
    if (f != t && f != 1) return false;
  }
  return true;
}
std::array<std::int64_t, Shape::max_rank> broadcast_strides(const Shape& s, const Shape& out) {
  std::array<std::int64_t, Shape::max_rank> st{};
  std::int64_t stride = 1;
  for (int i = s.rank() - 1; i >= 0; --i) {
    const int o = out.rank() - s.rank() + i;
    st[static_cast<std::size_t>(o)] = (s[i] == 1 && out[o] != 1) ? 0 : stride;
    stride *= s[i];
  }
  return st;
}
Tensor expand_copy(const Tensor& t, const Shape& s) {
  if (t.shape() == s) return t;
  Tensor out = Access::make(s, t.dtype());
  dispatch_all(t.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* a = ptr<T>(t);
    T* o = ptr<T>(out);
    for_rows<1>(s, {broadcast_strides(t.shape(), s)}, [&](std::int64_t oo, auto off, std::int64_t n, auto st) {
      for (std::int64_t j = 0; j < n; ++j)
        o[oo + j] = a[off[0] + j * st[0]];
    });
  });
  return out;
}
namespace {
// Whether g is whole copies of s one after another (s broadcast along leading dims only, as a bias
// is): s without its leading 1s is a suffix of g's shape.
bool repeats_along_leading_dims(const Shape& g, const Shape& s) {
  const int r = s.rank(), off = g.rank() - r;
  if (off < 0) return false;
  int d = 0;
  while (d < r && s[d] == 1)
    ++d;
  for (; d < r; ++d)
    if (s[d] != g[off + d]) return false;
  return true;
}
} // namespace

Tensor sum_to(const Tensor& g, const Shape& s) {
  if (g.shape() == s) return g;
  Tensor out = Access::make(s, g.dtype());
  dispatch_float("sum_to", g.dtype(), [&](auto tag) {
    using T = decltype(tag);
    T* o = ptr<T>(out);
    const T* a = ptr<T>(g);
    const std::int64_t count = s.numel(), total = g.numel();
    if (count > 0 && total > 0 && repeats_along_leading_dims(g.shape(), s)) {
      // A bias's gradient: column sums of `rows` rows of `count`. Blocks of 16 columns are summed in
      // registers; adding each row into `o` made every row wait for the last one's store (a
      // load-add-store chain, 1 us for the 100 x 16 bias of a tiny MLP). Each column still adds its
      // rows in order from 0, as the general loop below does, so the bits are the same.
      const std::int64_t rows = total / count;
      constexpr std::int64_t block = 16;
      std::int64_t j = 0;
      for (; j + block <= count; j += block) {
        T acc[block] = {};
        for (std::int64_t i = 0; i < rows; ++i)
          for (std::int64_t k = 0; k < block; ++k)
            acc[k] += a[i * count + j + k];
        std::copy_n(acc, block, o + j);
      }
      for (; j < count; ++j) {
        T acc = 0;
        for (std::int64_t i = 0; i < rows; ++i)
          acc += a[i * count + j];
        o[j] = acc;
      }
      return;
    }
    std::fill(o, o + count, T(0));
    for_rows<1>(g.shape(), {broadcast_strides(s, g.shape())}, [&](std::int64_t ai, auto off, std::int64_t n, auto st) {
      if (st[0] == 0) {
        T acc = 0;
        for (std::int64_t j = 0; j < n; ++j)
          acc += a[ai + j];
        o[off[0]] += acc;
      } else {
        for (std::int64_t j = 0; j < n; ++j)
          o[off[0] + j] += a[ai + j];
      }
    });
  });
  return out;
}
Tensor sum_to_recorded(const Tensor& g, const Shape& s) {
  Tensor t = g;
  for (int d = s.rank(); d < g.dim(); ++d) // the leading dimensions broadcasting added
    t = sum(t, 0);
  for (int d = 0; d < s.rank(); ++d)
    if (s[d] == 1 && t.size(d) != 1) t = sum(t, d, true);
  return t;
}
void accumulate(Tensor& a, const Tensor& b) {
  if (Access::unique(a)) { // in place, with no handle moved (a Tensor is 112 bytes)
    dispatch_float("accumulate", a.dtype(), [&](auto tag) {
      using T = decltype(tag);
      const T* y = ptr<T>(b);
      T* o = ptr<T>(a);
      const std::int64_t n = a.numel();
      for (std::int64_t i = 0; i < n; ++i) // one pointer, so no overlap test (o == x would fail one: scalar code)
        o[i] += y[i];
    });
    return;
  }
  Tensor out = Access::make(a.shape(), a.dtype());
  dispatch_float("accumulate", out.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T *x = ptr<T>(a), *y = ptr<T>(b);
    T* o = ptr<T>(out);
    const std::int64_t n = out.numel();
    for (std::int64_t i = 0; i < n; ++i)
      o[i] = x[i] + y[i];
  });
  a = std::move(out);
}
Tensor convert(const Tensor& t, DType d) {
  Tensor out = Access::make(t.shape(), d);
  dispatch_all(t.dtype(), [&](auto from) {
    dispatch_all(d, [&](auto to) {
      using F = decltype(from);
      using T = decltype(to);
      const F* a = ptr<F>(t);
      T* o = ptr<T>(out);
      const std::int64_t n = t.numel();
      for (std::int64_t i = 0; i < n; ++i)
        o[i] = static_cast<T>(a[i]);
    });
  });
  return out;
}
Shape reduced_shape(const Shape& s, int dim, bool keepdim) {
  Shape r;
  for (int i = 0; i < s.rank(); ++i) {
    if (i != dim)
      r.push_back(s[i]);
    else if (keepdim)
      r.push_back(1);
  }
  return r;
}
Split split_at(const Shape& s, int dim) {
  Split p{1, s.rank() == 0 ? 1 : s[dim], 1};
  for (int i = 0; i < dim; ++i)
    p.outer *= s[i];
  for (int i = dim + 1; i < s.rank(); ++i)
    p.inner *= s[i];
  return p;
}

} // namespace detail

TensorMemoryStats tensor_memory_stats() {
  const detail::Cache* c = detail::cache();
  if (c == nullptr) return {};
  detail::SharedCache& shared = detail::shared_cache();
  const std::lock_guard lock(shared.m);
  return {c->heap_allocations, c->bytes + shared.bytes};
}

using detail::Access;
using detail::fail;
using detail::ptr;

// ---- Tensor members ------------------------------------------------------------------------------
std::int64_t Tensor::size(int d) const {
  const int k = detail::normalize_dim("size", d, dim());
  return dim() == 0 ? 1 : shape_[k];
}

Tensor Tensor::detach() const {
  Tensor t;
  t.buf_ = buf_;
  if (buf_) buf_->refs.fetch_add(1, std::memory_order_relaxed);
  t.offset_ = offset_;
  t.shape_ = shape_;
  t.dtype_ = dtype_;
  return t;
}

double Tensor::item() const {
  detail::check_defined("item", *this);
  if (numel() != 1) fail("item: the tensor has shape {} ({} elements); item() needs exactly one", shape_, numel());
  return detail::dispatch_all(dtype_, [&](auto tag) { return static_cast<double>(*ptr<decltype(tag)>(*this)); });
}

double Tensor::value_at(std::span<const std::int64_t> index) const {
  detail::check_defined("at", *this);
  if (static_cast<int>(index.size()) != dim())
    fail("at: {} indices given for a tensor of shape {}", index.size(), shape_);
  std::int64_t flat = 0;
  for (int i = 0; i < dim(); ++i) {
    const std::int64_t k = index[static_cast<std::size_t>(i)];
    if (k < 0 || k >= shape_[i]) fail("at: index {} is out of range for dimension {} of shape {}", k, i, shape_);
    flat = flat * shape_[i] + k;
  }
  return detail::dispatch_all(dtype_, [&](auto tag) { return static_cast<double>(ptr<decltype(tag)>(*this)[flat]); });
}

template <class T> static DType dtype_of() {
  if constexpr (std::is_same_v<T, float>)
    return DType::float32;
  else if constexpr (std::is_same_v<T, double>)
    return DType::float64;
  else
    return DType::int64;
}

template <class T> std::span<const T> Tensor::data() const {
  detail::check_defined("data", *this);
  if (dtype_of<T>() != dtype_) fail("data: the tensor is {}, not {}", dtype_, dtype_of<T>());
  return {ptr<T>(*this), static_cast<std::size_t>(numel())};
}
template <class T> std::span<T> Tensor::mutable_data() {
  detail::check_defined("mutable_data", *this);
  if (dtype_of<T>() != dtype_) fail("mutable_data: the tensor is {}, not {}", dtype_, dtype_of<T>());
  return {ptr<T>(*this), static_cast<std::size_t>(numel())};
}
template std::span<const float> Tensor::data<float>() const;
template std::span<const double> Tensor::data<double>() const;
template std::span<const std::int64_t> Tensor::data<std::int64_t>() const;
template std::span<float> Tensor::mutable_data<float>();
template std::span<double> Tensor::mutable_data<double>();
template std::span<std::int64_t> Tensor::mutable_data<std::int64_t>();

std::vector<double> Tensor::to_vector() const {
  detail::check_defined("to_vector", *this);
  std::vector<double> v(static_cast<std::size_t>(numel()));
  detail::dispatch_all(dtype_, [&](auto tag) {
    const auto* p = ptr<decltype(tag)>(*this);
    for (std::size_t i = 0; i < v.size(); ++i)
      v[i] = static_cast<double>(p[i]);
  });
  return v;
}

Tensor Tensor::reshape(const Shape& s) const { return autodiff::reshape(*this, s); }
Tensor Tensor::t() const { return autodiff::transpose(*this); }

// ---- grad mode -------------------------------------------------------------------------------
constinit thread_local bool detail::grad_mode = true;
NoGradGuard::NoGradGuard() : previous_(detail::grad_mode) { detail::grad_mode = false; }
NoGradGuard::~NoGradGuard() { detail::grad_mode = previous_; }
EnableGradGuard::EnableGradGuard() : previous_(detail::grad_mode) { detail::grad_mode = true; }
EnableGradGuard::~EnableGradGuard() { detail::grad_mode = previous_; }

// ---- factories -------------------------------------------------------------------------------
// Each factory checks its shape under its own name first (a -1 left in it, say), before allocating.
namespace {
Tensor full_impl(std::string_view op, const Shape& s, double value, DType d) {
  detail::check_shape(op, s);
  Tensor t = Access::make(s, d);
  detail::dispatch_all(d, [&](auto tag) {
    using T = decltype(tag);
    std::fill_n(ptr<T>(t), s.numel(), static_cast<T>(value));
  });
  return t;
}
} // namespace
Tensor full(const Shape& s, double value, DType d) { return full_impl("full", s, value, d); }
Tensor zeros(const Shape& s, DType d) { return full_impl("zeros", s, 0.0, d); }
Tensor ones(const Shape& s, DType d) { return full_impl("ones", s, 1.0, d); }
Tensor zeros_like(const Tensor& t) { return zeros(t.shape(), t.dtype()); }
Tensor ones_like(const Tensor& t) { return ones(t.shape(), t.dtype()); }
Tensor empty(const Shape& s, DType d) {
  detail::check_shape("empty", s);
  return Access::make(s, d);
}

Tensor arange(double end, DType d) { return arange(0, end, 1, d); }
Tensor arange(double start, double end, double step, DType d) {
  if (step == 0 || !std::isfinite(start) || !std::isfinite(end) || !std::isfinite(step))
    fail("arange: needs finite start, end and a non-zero step (got {}, {}, {})", start, end, step);
  // Checked before the conversion: a count beyond int64 (1e19 elements) is undefined behaviour.
  const double count = std::max(0.0, std::ceil((end - start) / step));
  if (!(count <= static_cast<double>(max_numel)))
    fail("arange: [{}, {}) with step {} has {} elements, more than the 2^60 a tensor can hold", start, end, step,
         count);
  const auto n = static_cast<std::int64_t>(count);
  Tensor t = Access::make({n}, d);
  detail::dispatch_all(d, [&](auto tag) {
    using T = decltype(tag);
    T* p = ptr<T>(t);
    for (std::int64_t i = 0; i < n; ++i)
      p[i] = static_cast<T>(start + static_cast<double>(i) * step);
  });
  return t;
}
Tensor linspace(double start, double end, std::int64_t steps, DType d) {
  if (steps < 0 || steps > max_numel) fail("linspace: steps is {}; it must be in [0, 2^60]", steps);
  Tensor t = Access::make({steps}, d);
  detail::dispatch_all(d, [&](auto tag) {
    using T = decltype(tag);
    T* p = ptr<T>(t);
    const double h = steps > 1 ? (end - start) / static_cast<double>(steps - 1) : 0.0;
    for (std::int64_t i = 0; i < steps; ++i)
      p[i] = static_cast<T>(i == steps - 1 && steps > 1 ? end : start + static_cast<double>(i) * h);
  });
  return t;
}
Tensor eye(std::int64_t n, DType d) { return eye(n, n, d); }
Tensor eye(std::int64_t n, std::int64_t m, DType d) {
  if (n < 0 || m < 0) fail("eye: sizes {} and {} must be >= 0", n, m);
  const std::int64_t dims[2] = {n, m};
  detail::make_shape("eye", dims);
  Tensor t = zeros({n, m}, d);
  detail::dispatch_all(d, [&](auto tag) {
    using T = decltype(tag);
    T* p = ptr<T>(t);
    for (std::int64_t i = 0; i < std::min(n, m); ++i)
      p[i * m + i] = T(1);
  });
  return t;
}

namespace {
std::mt19937_64& generator() {
  thread_local std::mt19937_64 g(0x7a9e9ad);
  return g;
}
double uniform01() { return static_cast<double>(generator()() >> 11) * 0x1.0p-53; }
} // namespace
void manual_seed(std::uint64_t seed) { generator().seed(seed); }

namespace {
// The generators set aside by the live ForkRng scopes of this thread, innermost last.
std::vector<std::mt19937_64>& forked() {
  thread_local std::vector<std::mt19937_64> v;
  return v;
}
} // namespace
ForkRng::ForkRng(std::uint64_t seed) {
  forked().push_back(generator());
  generator().seed(seed);
}
ForkRng::~ForkRng() {
  generator() = forked().back();
  forked().pop_back();
}

namespace {
// The generator's words through its text form, the one portable access to its state: n words, and
// in libstdc++ one more, the position in the state.
std::vector<std::uint64_t> rng_words(const std::mt19937_64& g) {
  std::ostringstream out;
  out << g;
  std::istringstream in(out.str());
  std::vector<std::uint64_t> words;
  for (std::uint64_t w = 0; in >> w;)
    words.push_back(w);
  return words;
}
} // namespace

Tensor get_rng_state() {
  const std::vector<std::uint64_t> words = rng_words(generator());
  std::vector<std::int64_t> bits(words.size());
  std::transform(words.begin(), words.end(), bits.begin(),
                 [](std::uint64_t w) { return std::bit_cast<std::int64_t>(w); });
  return from_vector(bits, Shape{static_cast<std::int64_t>(bits.size())});
}

void set_rng_state(const Tensor& state) {
  constexpr std::size_t n = std::mt19937_64::state_size;
  const std::size_t want = rng_words(generator()).size();
  if (!state.defined() || state.dtype() != DType::int64 || state.dim() != 1 ||
      static_cast<std::size_t>(state.numel()) != want)
    detail::fail("set_rng_state: expected a 1-D int64 tensor of {} elements, got {} {}", want,
                 state.defined() ? fmt::format("{}", state.dtype()) : std::string("undefined"), state.shape());
  const auto bits = state.data<std::int64_t>();
  std::vector<std::uint64_t> words(bits.size());
  std::transform(bits.begin(), bits.end(), words.begin(),
                 [](std::int64_t b) { return std::bit_cast<std::uint64_t>(b); });
  // The stream operator trusts its input: a position past the state would read out of bounds, and
  // all-zero words make a generator that returns 0 forever.
  if (want > n && words[n] > n) detail::fail("set_rng_state: position {} is past the state of {} words", words[n], n);
  if (std::all_of(words.begin(), words.begin() + static_cast<std::ptrdiff_t>(n),
                  [](std::uint64_t w) { return w == 0; }))
    detail::fail("set_rng_state: the state words are all zero");
  std::ostringstream text;
  for (std::uint64_t w : words)
    text << w << ' ';
  std::istringstream in(text.str());
  std::mt19937_64 g;
  in >> g;
  if (in.fail()) detail::fail("set_rng_state: the generator refused the state");
  generator() = g;
}

Tensor rand(const Shape& s, DType d) {
  detail::check_shape("rand", s);
  Tensor t = Access::make(s, d);
  detail::dispatch_float("rand", d, [&](auto tag) {
    using T = decltype(tag);
    T* p = ptr<T>(t);
    for (std::int64_t i = 0; i < s.numel(); ++i)
      p[i] = static_cast<T>(uniform01());
  });
  return t;
}
Tensor randn(const Shape& s, DType d) {
  detail::check_shape("randn", s);
  Tensor t = Access::make(s, d);
  detail::dispatch_float("randn", d, [&](auto tag) {
    using T = decltype(tag);
    T* p = ptr<T>(t);
    const std::int64_t n = s.numel();
    for (std::int64_t i = 0; i < n; i += 2) { // Box-Muller: two normals from two uniforms
      const double u1 = 1.0 - uniform01(), u2 = uniform01();
      const double r = std::sqrt(-2.0 * std::log(u1));
      p[i] = static_cast<T>(r * std::cos(2 * std::numbers::pi * u2));
      if (i + 1 < n) p[i + 1] = static_cast<T>(r * std::sin(2 * std::numbers::pi * u2));
    }
  });
  return t;
}

Tensor from_vector(const std::vector<double>& v, const Shape& s, DType d) {
  detail::check_shape("from_vector", s);
  if (static_cast<std::int64_t>(v.size()) != s.numel())
    fail("from_vector: {} values given for shape {} ({} elements)", v.size(), s, s.numel());
  Tensor t = Access::make(s, d);
  detail::dispatch_all(d, [&](auto tag) {
    using T = decltype(tag);
    T* p = ptr<T>(t);
    for (std::size_t i = 0; i < v.size(); ++i)
      p[i] = static_cast<T>(v[i]);
  });
  return t;
}
Tensor from_vector(const std::vector<float>& v, const Shape& s) {
  detail::check_shape("from_vector", s);
  if (static_cast<std::int64_t>(v.size()) != s.numel())
    fail("from_vector: {} values given for shape {} ({} elements)", v.size(), s, s.numel());
  Tensor t = Access::make(s, DType::float32);
  std::copy(v.begin(), v.end(), ptr<float>(t));
  return t;
}
Tensor from_vector(const std::vector<std::int64_t>& v, const Shape& s) {
  detail::check_shape("from_vector", s);
  if (static_cast<std::int64_t>(v.size()) != s.numel())
    fail("from_vector: {} values given for shape {} ({} elements)", v.size(), s, s.numel());
  Tensor t = Access::make(s, DType::int64);
  std::copy(v.begin(), v.end(), ptr<std::int64_t>(t));
  return t;
}
Tensor tensor(std::initializer_list<double> v, DType d) {
  return from_vector(std::vector<double>(v), {static_cast<std::int64_t>(v.size())}, d);
}
Tensor tensor(std::initializer_list<std::initializer_list<double>> v, DType d) {
  std::vector<double> flat;
  const std::size_t cols = v.size() ? v.begin()->size() : 0;
  for (const auto& row : v) {
    if (row.size() != cols)
      fail("tensor: rows have {} and {} elements; nested lists must be rectangular", cols, row.size());
    flat.insert(flat.end(), row.begin(), row.end());
  }
  return from_vector(flat, {static_cast<std::int64_t>(v.size()), static_cast<std::int64_t>(cols)}, d);
}
Tensor tensor(std::initializer_list<std::initializer_list<std::initializer_list<double>>> v, DType d) {
  std::vector<double> flat;
  const std::size_t rows = v.size() ? v.begin()->size() : 0;
  const std::size_t cols = rows ? v.begin()->begin()->size() : 0;
  for (const auto& m : v) {
    if (m.size() != rows) fail("tensor: nested lists must be rectangular ({} and {} rows)", rows, m.size());
    for (const auto& row : m) {
      if (row.size() != cols) fail("tensor: nested lists must be rectangular ({} and {} columns)", cols, row.size());
      flat.insert(flat.end(), row.begin(), row.end());
    }
  }
  return from_vector(
      flat, {static_cast<std::int64_t>(v.size()), static_cast<std::int64_t>(rows), static_cast<std::int64_t>(cols)}, d);
}

} // namespace autodiff

// ---- printing --------------------------------------------------------------------------------
namespace {
constexpr std::int64_t elide_above = 1000; // elements; larger tensors show 3 + ... + 3 per dimension
constexpr std::int64_t edge = 3;

void print_dim(std::string& out, const std::vector<double>& v, const autodiff::Shape& s, int d, std::int64_t base,
               bool elide, const char* spec, bool integral) {
  if (s.rank() == 0) {
    out += integral ? fmt::format("{}", static_cast<std::int64_t>(v[0])) : fmt::format(fmt::runtime(spec), v[0]);
    return;
  }
  std::int64_t stride = 1;
  for (int i = d + 1; i < s.rank(); ++i)
    stride *= s[i];
  out += '[';
  const std::int64_t n = s[d];
  for (std::int64_t i = 0; i < n; ++i) {
    if (elide && n > 2 * edge && i == edge) {
      out += "..., ";
      i = n - edge - 1;
      continue;
    }
    if (d + 1 == s.rank()) {
      const double x = v[static_cast<std::size_t>(base + i)];
      out += integral ? fmt::format("{}", static_cast<std::int64_t>(x)) : fmt::format(fmt::runtime(spec), x);
    } else {
      print_dim(out, v, s, d + 1, base + i * stride, elide, spec, integral);
    }
    if (i + 1 < n) out += ", ";
  }
  out += ']';
}
} // namespace

fmt::format_context::iterator fmt::formatter<autodiff::Tensor>::format(const autodiff::Tensor& t,
                                                                       format_context& ctx) const {
  if (!t.defined()) return fmt::format_to(ctx.out(), "tensor(undefined)");
  std::string body;
  print_dim(body, t.to_vector(), t.shape(), 0, 0, t.numel() > elide_above, spec, t.dtype() == autodiff::DType::int64);
  return fmt::format_to(ctx.out(), "tensor({}, shape={}, dtype={}{})", body, t.shape(), t.dtype(),
                        t.requires_grad() ? ", requires_grad" : "");
}
fmt::format_context::iterator fmt::formatter<autodiff::Shape>::format(const autodiff::Shape& s,
                                                                      format_context& ctx) const {
  return fmt::format_to(ctx.out(), "[{}]", fmt::join(s.begin(), s.end(), ","));
}
fmt::format_context::iterator fmt::formatter<autodiff::DType>::format(autodiff::DType d, format_context& ctx) const {
  return fmt::format_to(ctx.out(), "{}", autodiff::dtype_name(d));
}
