#pragma once
// autodiff::Tensor: n-dimensional arrays whose operations are recorded on the thread's active Tape,
// next to the scalar nodes (see docs/design.md and docs/tensor_ops.md).

#include <autodiff/detail/tensor.hpp> // internals: storage, gradient slots, overload constraints
#include <autodiff/error.hpp>
#include <autodiff/tape.hpp>

#include <fmt/format.h>

#include <array>
#include <atomic>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace autodiff {

enum class DType : std::uint8_t { float32, float64, int64 };
std::string_view dtype_name(DType d);
inline std::size_t dtype_size(DType d) { return d == DType::float32 ? 4 : 8; }

// Element counts. Every dimension is >= 0 and the product of the NON-ZERO dimensions is at most
// 2^60, so that every partial product (a stride, numel(), numel() * dtype_size() bytes) fits in an
// int64. A zero dimension makes a shape legitimately empty whatever the others are, as in PyTorch:
// [0, 2^40] is a tensor of 0 elements, but [0, 2^40, 2^40] is rejected, since its strides overflow.
inline constexpr std::int64_t max_numel = std::int64_t{1} << 60;
// The element count of dims under that rule, or nullopt (a negative dim, or too many elements).
// The one place sizes are overflow-checked: Shape, the ops and the file readers (nn) all use it.
std::optional<std::int64_t> checked_numel(std::span<const std::int64_t> dims);
// a + b and a * b for sizes, or nullopt on int64 overflow.
inline std::optional<std::int64_t> checked_add(std::int64_t a, std::int64_t b) {
  std::int64_t r = 0;
  if (__builtin_add_overflow(a, b, &r)) return std::nullopt;
  return r;
}
inline std::optional<std::int64_t> checked_mul(std::int64_t a, std::int64_t b) {
  std::int64_t r = 0;
  if (__builtin_mul_overflow(a, b, &r)) return std::nullopt;
  return r;
}

// A shape of up to 8 dimensions, stored inline so that shapes never touch the heap. Constructing
// one checks the rule above (an Error "shape: ..." naming the dims); -1 is also accepted, as the
// dimension reshape() infers, and counts as no dimension until then.
class Shape {
public:
  static constexpr int max_rank = 8;
  Shape() = default;
  Shape(std::initializer_list<std::int64_t> dims) : Shape(std::span<const std::int64_t>(dims.begin(), dims.size())) {}
  explicit Shape(std::span<const std::int64_t> dims);
  explicit Shape(const std::vector<std::int64_t>& dims) : Shape(std::span<const std::int64_t>(dims)) {}

  int rank() const { return rank_; }
  std::int64_t operator[](int i) const { return d_[static_cast<std::size_t>(i)]; }
  std::int64_t& operator[](int i) { return d_[static_cast<std::size_t>(i)]; }
  // Checked too, for shapes changed through operator[]: an Error, never a wrapped count.
  std::int64_t numel() const {
    std::int64_t n = 1;
    for (int i = 0; i < rank_; ++i) {
      const std::int64_t d = d_[static_cast<std::size_t>(i)];
      if (d < 0 || __builtin_mul_overflow(n, d, &n) || n > max_numel) numel_error();
    }
    return n;
  }
  const std::int64_t* begin() const { return d_.data(); }
  const std::int64_t* end() const { return d_.data() + rank_; }
  std::vector<std::int64_t> vec() const { return {begin(), end()}; }
  void push_back(std::int64_t d);
  friend bool operator==(const Shape& a, const Shape& b) {
    if (a.rank_ != b.rank_) return false;
    for (int i = 0; i < a.rank_; ++i)
      if (a.d_[static_cast<std::size_t>(i)] != b.d_[static_cast<std::size_t>(i)]) return false;
    return true;
  }

private:
  [[noreturn]] void numel_error() const;
  std::array<std::int64_t, max_rank> d_{};
  std::uint8_t rank_ = 0;
};

// Options of Tensor::backward().
struct BackwardOptions {
  // Keep the tensor record after the sweep, to sweep it again or use its tensors in new ops.
  bool retain_graph = false;
};

class Tensor {
public:
  Tensor() = default; // undefined: no storage; defined() is false
  Tensor(const Tensor& o)
      : buf_(o.buf_), slot_(o.slot_), offset_(o.offset_), shape_(o.shape_), gen_(o.gen_), node_(o.node_),
        dtype_(o.dtype_) {
    if (buf_) buf_->refs.fetch_add(1, std::memory_order_relaxed);
    if (slot_) detail::retain(slot_);
  }
  Tensor(Tensor&& o) noexcept
      : buf_(o.buf_), slot_(o.slot_), offset_(o.offset_), shape_(o.shape_), gen_(o.gen_), node_(o.node_),
        dtype_(o.dtype_) {
    o.buf_ = nullptr;
    o.slot_ = nullptr;
  }
  Tensor& operator=(const Tensor& o) {
    if (this != &o) *this = Tensor(o);
    return *this;
  }
  Tensor& operator=(Tensor&& o) noexcept {
    if (this != &o) {
      drop();
      buf_ = o.buf_, slot_ = o.slot_, offset_ = o.offset_, shape_ = o.shape_, node_ = o.node_, gen_ = o.gen_;
      dtype_ = o.dtype_;
      o.buf_ = nullptr, o.slot_ = nullptr;
    }
    return *this;
  }
  ~Tensor() { drop(); }

  bool defined() const { return buf_ != nullptr; }
  // Identifies the storage: equal for every handle (copy, view) of the same tensor, null when
  // undefined. Lets an optimizer refuse the same parameter twice.
  const void* storage_id() const { return buf_; }
  const Shape& shape() const { return shape_; }
  int dim() const { return shape_.rank(); }
  // Negative d counts from the end. A dim is an integer: size(1.5) and size(true) do not compile.
  std::int64_t size(int d) const;
  template <class D> std::int64_t size(D) const requires(detail::not_a_dim<D>) = delete;
  std::int64_t numel() const { return shape_.numel(); }
  DType dtype() const { return dtype_; }

  // ---- autograd --------------------------------------------------------------------------------
  // Whether operations on this tensor are recorded: true for the result of a recorded op, and for a
  // leaf whose requires_grad flag is on. The flag belongs to the tensor, not to this handle: every
  // copy (the one parameters() returned, the module's own) sees requires_grad(false) at once.
  bool requires_grad() const { return node_ != npos || (slot_ != nullptr && detail::leaf_requires_grad(slot_)); }
  // Sets the flag of a leaf: on, backward() accumulates its gradient; off, it is a constant (frozen;
  // optimizers skip it, and its grad() is kept). Only on tensors no recorded op produced, and never
  // on int64 tensors. Handles copied before the first requires_grad(true) do not share the flag.
  Tensor& requires_grad(bool on);
  bool is_leaf() const { return node_ == npos; }
  // The gradient accumulated so far (undefined before the first backward that reaches it). For a
  // non-leaf tensor only after retain_grad().
  Tensor grad() const;
  void zero_grad();   // forgets the accumulated gradient
  void retain_grad(); // makes backward() keep this non-leaf tensor's gradient
  // Reverse sweep from this tensor, which must have one element (or pass a seed of its shape).
  // Gradients ACCUMULATE into the leaves' grad() across calls, as in PyTorch (the scalar Var API
  // recomputes instead); zero_grad() resets them. Afterwards the tape's tensor record is freed, as
  // PyTorch frees the graph, so a training loop runs in flat memory without tape calls; pass
  // {.retain_graph = true} to sweep it again (docs/design.md, "Note [Tape lifetime]").
  void backward(BackwardOptions options = {}) const;
  void backward(const Tensor& seed, BackwardOptions options = {}) const;
  Tensor detach() const; // the same storage, not recorded, requires_grad false

  // ---- values --------------------------------------------------------------------------------
  double item() const; // the value of a one-element tensor
  template <class T> T at(std::initializer_list<std::int64_t> index) const {
    return static_cast<T>(value_at(std::span<const std::int64_t>(index.begin(), index.size())));
  }
  double value_at(std::span<const std::int64_t> index) const;
  // The elements in row-major order; T must match dtype() (float, double or std::int64_t).
  template <class T> std::span<const T> data() const;
  template <class T> std::span<T> mutable_data(); // writes bypass autograd: only for building inputs
  std::vector<double> to_vector() const;          // any dtype, converted to double
  Tensor to(DType d) const;                       // differentiable between float dtypes
  Tensor clone() const;                           // a copy of the storage (differentiable)

  Tensor reshape(const Shape& s) const;
  Tensor t() const; // 2-D transpose

  // Tape bookkeeping, for tests and tools.
  std::uint32_t node() const { return node_; }
  std::uint64_t generation() const { return gen_; }
  static constexpr std::uint32_t npos = 0xffffffffu;

private:
  friend struct detail::Access;
  // A count of 1 means this handle is the only one, and no other thread can be copying it, so the
  // last owner skips the atomic read-modify-write (about 20 cycles even uncontended): most tensors
  // an op makes die with their only handle. The acquire load pairs with other owners' decrements.
  void drop() {
    if (buf_ &&
        (buf_->refs.load(std::memory_order_acquire) == 1 || buf_->refs.fetch_sub(1, std::memory_order_acq_rel) == 1))
      detail::release(buf_);
    if (slot_) detail::release(slot_);
  }
  // Drops the storage and the gradient slot, leaving the handle undefined; cheaper than assigning
  // Tensor(), which zeroes the whole handle first.
  void reset_storage() {
    drop();
    buf_ = nullptr;
    slot_ = nullptr;
    node_ = npos;
  }
  // Storage of shape s, for Access::make: no zeroed handle to overwrite.
  Tensor(detail::Buffer* b, const Shape& s, DType d) : buf_(b), shape_(s), dtype_(d) {}
  void* raw() const { return static_cast<char*>(buf_->data) + offset_ * static_cast<std::int64_t>(dtype_size(dtype_)); }

  detail::Buffer* buf_ = nullptr;
  detail::GradSlot* slot_ = nullptr;
  std::int64_t offset_ = 0; // in elements
  Shape shape_;
  std::uint64_t gen_ = 0;     // generation of the tensor record the node belongs to
  std::uint32_t node_ = npos; // node in the tape's tensor record, npos for leaves and constants
  DType dtype_ = DType::float32;
};

// Disables recording on this thread while alive (RAII; nests).
class NoGradGuard {
public:
  NoGradGuard();
  ~NoGradGuard();
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

private:
  bool previous_;
};
namespace detail {
// This thread's grad mode. constinit: read inline with one thread-local load, no initialisation
// check (every op asks whether to record).
extern constinit thread_local bool grad_mode;
} // namespace detail
inline bool grad_enabled() { return detail::grad_mode; }
// Enables recording on this thread while alive, even inside a NoGradGuard (RAII; nests).
class EnableGradGuard {
public:
  EnableGradGuard();
  ~EnableGradGuard();
  EnableGradGuard(const EnableGradGuard&) = delete;
  EnableGradGuard& operator=(const EnableGradGuard&) = delete;

private:
  bool previous_;
};

// ---- overloads that must not be misread ------------------------------------------------------
// A number where a dim (or an index, a size) is expected never converts silently: `max(x, 0.0)`
// would reduce over dim 0 and `sum(x, true)` over dim 1. Each op taking a dim has deleted
// overloads that catch such calls at compile time: the dim may not be a floating-point number or a
// bool, and no later argument may be floating-point. (PyTorch rejects these calls as well.) The
// constraints, and the TAPEGRAD_DIM_IS_AN_INTEGER macro that declares such overloads, are in
// detail/tensor.hpp.

// ---- factories ------------------------------------------------------------------------------
Tensor zeros(const Shape& s, DType d = DType::float32);
Tensor ones(const Shape& s, DType d = DType::float32);
Tensor full(const Shape& s, double value, DType d = DType::float32);
Tensor zeros_like(const Tensor& t);
Tensor ones_like(const Tensor& t);
// Storage of shape s left as the allocator hands it over (torch::empty): for a tensor that is then
// written in full through mutable_data(), without the pass zeros() would spend filling it first.
// Reading an element before writing it gives whatever the memory last held.
Tensor empty(const Shape& s, DType d = DType::float32);
Tensor arange(double end, DType d = DType::float32);
Tensor arange(double start, double end, double step = 1, DType d = DType::float32);
Tensor linspace(double start, double end, std::int64_t steps, DType d = DType::float32);
template <class S, class... R>
Tensor linspace(double, double, S&&, R&&...) requires(detail::not_a_dim<S>) = delete; // steps is a count
Tensor eye(std::int64_t n, DType d = DType::float32);
Tensor eye(std::int64_t n, std::int64_t m, DType d = DType::float32);
// n and m are counts:
template <class... A> Tensor eye(A&&...) requires(detail::any_floating<A...>) = delete;
Tensor rand(const Shape& s, DType d = DType::float32);  // uniform in [0, 1)
Tensor randn(const Shape& s, DType d = DType::float32); // standard normal
void manual_seed(std::uint64_t seed);                   // seeds this thread's generator
// The state of this thread's generator (used by rand, randn and so nn::Dropout and the layers'
// initialisation), as a 1-D int64 tensor of the std::mt19937_64 state words (the bits of the
// uint64 words, in the order of the standard library's text form). Saving it with the model and
// setting it back makes a resumed run draw the same numbers. set_rng_state checks the length and
// the words (not all zero, position in range) and leaves the generator as it was on error.
Tensor get_rng_state();
void set_rng_state(const Tensor& state);
// PyTorch's `with torch.random.fork_rng(): torch.manual_seed(seed)` as a scope: while it lives, this
// thread draws from a generator seeded with `seed`, and its own generator, set aside untouched,
// comes back when the scope ends. Scopes nest; each must end on the thread that began it, in
// reverse order (as automatic objects do). Cheap enough per step (a copy of the generator, no text
// form): nn::parallel_backward gives each shard one.
class ForkRng {
public:
  explicit ForkRng(std::uint64_t seed);
  ~ForkRng();
  ForkRng(const ForkRng&) = delete;
  ForkRng& operator=(const ForkRng&) = delete;
};

// The caching allocator: how often this thread went to the system heap, and the bytes cached for
// reuse (this thread's small buffers and the large ones all threads share). After the first step
// of a training loop (reset, record, backward), heap_allocations stays put.
struct TensorMemoryStats {
  std::size_t heap_allocations = 0;
  std::size_t cached_bytes = 0;
};
TensorMemoryStats tensor_memory_stats();
Tensor from_vector(const std::vector<double>& v, const Shape& s, DType d = DType::float32);
Tensor from_vector(const std::vector<float>& v, const Shape& s);
Tensor from_vector(const std::vector<std::int64_t>& v, const Shape& s);
Tensor tensor(std::initializer_list<double> v, DType d = DType::float32);
Tensor tensor(std::initializer_list<std::initializer_list<double>> v, DType d = DType::float32);
Tensor tensor(std::initializer_list<std::initializer_list<std::initializer_list<double>>> v, DType d = DType::float32);

// ---- elementwise (numpy broadcasting) ---------------------------------------------------------
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor pow(const Tensor& a, const Tensor& b);
Tensor maximum(const Tensor& a, const Tensor& b);
Tensor minimum(const Tensor& a, const Tensor& b);
Tensor add(const Tensor& a, double c);
Tensor sub(const Tensor& a, double c);
Tensor rsub(const Tensor& a, double c); // c - a
Tensor mul(const Tensor& a, double c);
Tensor div(const Tensor& a, double c);
Tensor rdiv(const Tensor& a, double c); // c / a
Tensor pow(const Tensor& a, double c);
Tensor maximum(const Tensor& a, double c);
Tensor minimum(const Tensor& a, double c);

inline Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
inline Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
inline Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
inline Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
inline Tensor operator+(const Tensor& a, double c) { return add(a, c); }
inline Tensor operator+(double c, const Tensor& a) { return add(a, c); }
inline Tensor operator-(const Tensor& a, double c) { return sub(a, c); }
inline Tensor operator-(double c, const Tensor& a) { return rsub(a, c); }
inline Tensor operator*(const Tensor& a, double c) { return mul(a, c); }
inline Tensor operator*(double c, const Tensor& a) { return mul(a, c); }
inline Tensor operator/(const Tensor& a, double c) { return div(a, c); }
inline Tensor operator/(double c, const Tensor& a) { return rdiv(a, c); }
Tensor neg(const Tensor& a);
inline Tensor operator-(const Tensor& a) { return neg(a); }

Tensor exp(const Tensor& a);
Tensor log(const Tensor& a);
Tensor log1p(const Tensor& a);
Tensor expm1(const Tensor& a);
Tensor sqrt(const Tensor& a);
Tensor rsqrt(const Tensor& a);
Tensor square(const Tensor& a);
Tensor abs(const Tensor& a);
Tensor sign(const Tensor& a); // gradient 0
Tensor sin(const Tensor& a);
Tensor cos(const Tensor& a);
Tensor tan(const Tensor& a);
Tensor tanh(const Tensor& a);
Tensor sigmoid(const Tensor& a);
Tensor relu(const Tensor& a);
Tensor leaky_relu(const Tensor& a, double negative_slope = 0.01);
Tensor elu(const Tensor& a, double alpha = 1.0);
Tensor erf(const Tensor& a);
Tensor gelu(const Tensor& a); // the exact (erf) form
Tensor softplus(const Tensor& a);
Tensor clamp(const Tensor& a, double lo, double hi);

// Comparisons give a mask of the operands' dtype holding 0 and 1; masks are never differentiable.
Tensor gt(const Tensor& a, const Tensor& b);
Tensor lt(const Tensor& a, const Tensor& b);
Tensor ge(const Tensor& a, const Tensor& b);
Tensor le(const Tensor& a, const Tensor& b);
Tensor eq(const Tensor& a, const Tensor& b);
Tensor ne(const Tensor& a, const Tensor& b);
Tensor gt(const Tensor& a, double c);
Tensor lt(const Tensor& a, double c);
Tensor ge(const Tensor& a, double c);
Tensor le(const Tensor& a, double c);
Tensor eq(const Tensor& a, double c);
Tensor ne(const Tensor& a, double c);
inline Tensor operator>(const Tensor& a, const Tensor& b) { return gt(a, b); }
inline Tensor operator<(const Tensor& a, const Tensor& b) { return lt(a, b); }
inline Tensor operator>=(const Tensor& a, const Tensor& b) { return ge(a, b); }
inline Tensor operator<=(const Tensor& a, const Tensor& b) { return le(a, b); }
inline Tensor operator>(const Tensor& a, double c) { return gt(a, c); }
inline Tensor operator<(const Tensor& a, double c) { return lt(a, c); }
inline Tensor operator>=(const Tensor& a, double c) { return ge(a, c); }
inline Tensor operator<=(const Tensor& a, double c) { return le(a, c); }
// mask ? a : b, broadcast over all three. The branch not taken gets an exactly zero gradient, and
// rules skip zero adjoints, so a NaN or Inf derivative there never leaks into the result.
Tensor where(const Tensor& mask, const Tensor& a, const Tensor& b);

// ---- reductions -----------------------------------------------------------------------------
// `dim` may be negative (counted from the end). The second positional argument is always a dim, as
// in PyTorch: `sum(x, 1)`, `var(x, 1)`, `max(x, 1)` all reduce dim 1. A number there does not compile
// (see TAPEGRAD_DIM_IS_AN_INTEGER); `max(a, b)` of two tensors is the elementwise maximum.
Tensor sum(const Tensor& a);
Tensor sum(const Tensor& a, int dim, bool keepdim = false);
Tensor mean(const Tensor& a);
Tensor mean(const Tensor& a, int dim, bool keepdim = false);
Tensor max(const Tensor& a); // ties: the first maximum gets the gradient
Tensor max(const Tensor& a, int dim, bool keepdim = false);
inline Tensor max(const Tensor& a, const Tensor& b) { return maximum(a, b); } // PyTorch's torch.max(a, b)
Tensor min(const Tensor& a);
Tensor min(const Tensor& a, int dim, bool keepdim = false);
inline Tensor min(const Tensor& a, const Tensor& b) { return minimum(a, b); }
Tensor argmax(const Tensor& a); // int64 index into the flattened tensor
Tensor argmax(const Tensor& a, int dim, bool keepdim = false);
Tensor argmin(const Tensor& a);
Tensor argmin(const Tensor& a, int dim, bool keepdim = false);
Tensor prod(const Tensor& a);
Tensor prod(const Tensor& a, int dim, bool keepdim = false);
// The divisor of var and stddev is max(0, n - correction) (PyTorch's `correction=` keyword): a type
// of its own, so that a correction is never taken for a dim nor a dim for a correction.
struct Correction {
  constexpr explicit Correction(int c) : value(c) {}
  int value;
};
Tensor var(const Tensor& a, Correction correction = Correction{1});
Tensor var(const Tensor& a, int dim, bool keepdim = false, Correction correction = Correction{1});
Tensor stddev(const Tensor& a, Correction correction = Correction{1});
Tensor stddev(const Tensor& a, int dim, bool keepdim = false, Correction correction = Correction{1});
Tensor logsumexp(const Tensor& a);
Tensor logsumexp(const Tensor& a, int dim, bool keepdim = false);
// The p-norm (sum |a|^p)^(1/p), p > 0 or infinity (max |a|); the second positional argument is p, as
// in PyTorch's torch.norm(a, p, dim, keepdim). p = 2 is one fused op with subgradient 0 at 0.
Tensor norm(const Tensor& a);
Tensor norm(const Tensor& a, double p);
Tensor norm(const Tensor& a, double p, int dim, bool keepdim = false);
template <class P, class D, class... R>
Tensor norm(const Tensor&, P&&, D&&, R&&...) requires(detail::not_a_dim<D> || detail::any_floating<R...>) = delete;
TAPEGRAD_DIM_IS_AN_INTEGER(sum)
TAPEGRAD_DIM_IS_AN_INTEGER(mean)
TAPEGRAD_DIM_IS_AN_INTEGER(max)
TAPEGRAD_DIM_IS_AN_INTEGER(min)
TAPEGRAD_DIM_IS_AN_INTEGER(argmax)
TAPEGRAD_DIM_IS_AN_INTEGER(argmin)
TAPEGRAD_DIM_IS_AN_INTEGER(prod)
TAPEGRAD_DIM_IS_AN_INTEGER(var)
TAPEGRAD_DIM_IS_AN_INTEGER(stddev)
TAPEGRAD_DIM_IS_AN_INTEGER(logsumexp)

// ---- linear algebra and shapes --------------------------------------------------------------
// 1-D and 2-D operands as numpy; 3-D x 2-D and 3-D x 3-D (same batch) as batched products.
Tensor matmul(const Tensor& a, const Tensor& b);
// x w^T + b as one node, the layout of PyTorch's Linear: x [..., in], w [out, in], b [out] or
// undefined. Both products of its backward use BLAS transpose flags; nothing is transposed by copy.
Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b = Tensor());
Tensor reshape(const Tensor& a, const Shape& s); // a view (no copy); one dim may be -1
Tensor flatten(const Tensor& a, int start_dim = 0, int end_dim = -1);
Tensor squeeze(const Tensor& a, int dim);
Tensor unsqueeze(const Tensor& a, int dim);
Tensor transpose(const Tensor& a); // 2-D; copies (matmul uses BLAS transpose flags instead)
Tensor transpose(const Tensor& a, int d0, int d1);
Tensor permute(const Tensor& a, const std::vector<int>& dims); // copies
Tensor expand(const Tensor& a, const Shape& s);                // copies
Tensor slice(const Tensor& a, int dim, std::int64_t start, std::int64_t end, std::int64_t step = 1);
Tensor index_select(const Tensor& a, int dim, const Tensor& index); // index: 1-D int64
Tensor gather(const Tensor& a, int dim, const Tensor& index);       // index: int64, a's rank
// The adjoints of slice, index_select and gather, as differentiable ops (PyTorch's names): a copy of
// `a` with `src` written into the slice, or added at the indices (repeated indices add up).
Tensor slice_scatter(const Tensor& a, const Tensor& src, int dim, std::int64_t start, std::int64_t end,
                     std::int64_t step = 1);
Tensor index_add(const Tensor& a, int dim, const Tensor& index, const Tensor& src);   // index: 1-D int64
Tensor scatter_add(const Tensor& a, int dim, const Tensor& index, const Tensor& src); // index: src's shape
Tensor concat(const std::vector<Tensor>& ts, int dim = 0);
Tensor stack(const std::vector<Tensor>& ts, int dim = 0);
TAPEGRAD_DIM_IS_AN_INTEGER(flatten)
TAPEGRAD_DIM_IS_AN_INTEGER(squeeze)
TAPEGRAD_DIM_IS_AN_INTEGER(unsqueeze)
TAPEGRAD_DIM_IS_AN_INTEGER(transpose)
TAPEGRAD_DIM_IS_AN_INTEGER(slice)
TAPEGRAD_DIM_IS_AN_INTEGER(index_select)
TAPEGRAD_DIM_IS_AN_INTEGER(gather)
TAPEGRAD_DIM_IS_AN_INTEGER(index_add)
TAPEGRAD_DIM_IS_AN_INTEGER(scatter_add)
template <class... A>
Tensor slice_scatter(const Tensor&, const Tensor&, A&&...) requires(detail::any_floating<A...>) = delete;
template <class D> Tensor concat(const std::vector<Tensor>&, D&&) requires(detail::not_a_dim<D>) = delete;
template <class D> Tensor stack(const std::vector<Tensor>&, D&&) requires(detail::not_a_dim<D>) = delete;

// ---- softmax and losses ---------------------------------------------------------------------
enum class Reduction : std::uint8_t { mean, sum, none };
Tensor softmax(const Tensor& a, int dim = -1);
Tensor log_softmax(const Tensor& a, int dim = -1);
TAPEGRAD_DIM_IS_AN_INTEGER(softmax)
TAPEGRAD_DIM_IS_AN_INTEGER(log_softmax)
#undef TAPEGRAD_DIM_IS_AN_INTEGER
// logits [N, C], targets int64 [N] with values in [0, C). Fused and stable for any logit size.
Tensor cross_entropy(const Tensor& logits, const Tensor& targets, Reduction r = Reduction::mean);
// With label smoothing e in [0, 1] the target distribution is (1 - e) one_hot + e / C, as PyTorch's.
Tensor cross_entropy(const Tensor& logits, const Tensor& targets, Reduction r, double label_smoothing);
Tensor nll_loss(const Tensor& log_probs, const Tensor& targets, Reduction r = Reduction::mean);
Tensor mse_loss(const Tensor& a, const Tensor& b, Reduction r = Reduction::mean);
Tensor l1_loss(const Tensor& a, const Tensor& b, Reduction r = Reduction::mean);
// 0.5 d^2 where |d| < delta, else delta (|d| - 0.5 delta), d = a - b.
Tensor huber_loss(const Tensor& a, const Tensor& b, Reduction r = Reduction::mean, double delta = 1.0);
Tensor binary_cross_entropy_with_logits(const Tensor& logits, const Tensor& targets, Reduction r = Reduction::mean);

// ---- gradients ------------------------------------------------------------------------------
// d(sum of outputs weighted by seeds)/d inputs without touching any grad(): inputs may be leaves
// or recorded tensors; an input the outputs do not depend on gets zeros. Seeds may be omitted for
// one-element outputs.
// With {.create_graph = true} the backward pass is recorded: the gradients are tensors of the tape that
// can be differentiated again (to any order), and the seeds may themselves require grad.
std::vector<Tensor> grad(const std::vector<Tensor>& outputs, const std::vector<Tensor>& inputs,
                         const std::vector<Tensor>& seeds, GradOptions options);
// A template only so that grad(ys, xs, {.create_graph = true}) picks the GradOptions overload below
// (GCC treats the braced designators as a candidate vector too; the non-template wins the tie).
template <class = void> std::vector<Tensor> grad(const std::vector<Tensor>& outputs, const std::vector<Tensor>& inputs,
                                                 const std::vector<Tensor>& seeds = {}) {
  return grad(outputs, inputs, seeds, GradOptions{});
}
inline std::vector<Tensor> grad(const std::vector<Tensor>& outputs, const std::vector<Tensor>& inputs,
                                GradOptions options) {
  return grad(outputs, inputs, {}, options);
}
inline std::vector<Tensor> grad(const Tensor& output, const std::vector<Tensor>& inputs, GradOptions options = {}) {
  return grad(std::vector<Tensor>{output}, inputs, {}, options);
}

// ---- custom differentiable functions ------------------------------------------------------------
// forward runs with recording off on detached inputs; backward gets the output's gradient, the
// inputs and the output, and returns one gradient per input (an undefined Tensor means zero). The
// engine sums broadcast gradients back to each input's shape and checks it. A backward normally
// runs with recording off. Under grad(..., {.create_graph = true}) it runs with recording on, so a
// backward written with tensor ops can be differentiated again; that needs `differentiable_backward`
// set, since a backward that writes values directly would silently give a constant (a wrong second
// derivative). Unset, a create_graph sweep through the function is an error naming it.
struct CustomFunction {
  std::string name;
  std::function<Tensor(const std::vector<Tensor>& inputs)> forward;
  std::function<std::vector<Tensor>(const Tensor& grad_output, const std::vector<Tensor>& inputs, const Tensor& output)>
      backward;
  bool differentiable_backward = false; // the backward is written with (recorded) tensor ops
};
Tensor apply(const CustomFunction& f, const std::vector<Tensor>& inputs);

// The names of every op in the rules table ("add", "matmul", ...), sorted; for tests and tools.
std::vector<std::string> tensor_op_names();
// The op of each node recorded on the active tape's tensor record, in recording order ("leaf",
// "mul", ...); for tests and tools (the op-table test checks that every op is recorded by a row).
std::vector<std::string> recorded_tensor_ops();

} // namespace autodiff

// Prints values (eliding the middle of dimensions longer than 6 once a tensor has more than 1000
// elements), then shape and dtype: `tensor([[1, 2], [3, 4]], shape=[2, 2], dtype=float32)`.
// A float format spec applies to each element: `{:.3f}`.
template <> struct fmt::formatter<autodiff::Tensor> {
  char spec[32] = "{:.4g}"; // the element format, "{:" + the user's spec + "}"
  constexpr auto parse(format_parse_context& ctx) {
    auto it = ctx.begin();
    auto end = it;
    while (end != ctx.end() && *end != '}')
      ++end;
    if (end != it) {
      if (end - it > 28) throw format_error("tensor format spec too long");
      std::size_t n = 0;
      spec[n++] = '{', spec[n++] = ':';
      for (auto p = it; p != end; ++p)
        spec[n++] = *p;
      spec[n++] = '}', spec[n] = 0;
    }
    return end;
  }
  format_context::iterator format(const autodiff::Tensor& t, format_context& ctx) const;
};
template <> struct fmt::formatter<autodiff::Shape> {
  constexpr auto parse(format_parse_context& ctx) { return ctx.begin(); }
  format_context::iterator format(const autodiff::Shape& s, format_context& ctx) const;
};
template <> struct fmt::formatter<autodiff::DType> {
  constexpr auto parse(format_parse_context& ctx) { return ctx.begin(); }
  format_context::iterator format(autodiff::DType d, format_context& ctx) const;
};
