#pragma once
// Internals of the tensor engine shared by its source files: the record kept in the tape's
// extension slot, the rule interface, and the kernels' building blocks. See docs/tensor_ops.md.

#include <autodiff/tensor.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <span>
#include <string_view>
#include <thread>
#include <type_traits>
#include <typeinfo>
#include <utility>
#include <vector>

namespace autodiff::detail {

// A gradient slot's lock (BasicLockable, for std::lock_guard). Why not std::mutex: uncontended, this
// is one atomic exchange and one plain store, where a pthread mutex is a call, a locked
// compare-exchange and a locked decrement; a tiny training step takes 18 slot locks (backward's
// accumulation, the optimizer's grad(), zero_grad(), for 6 parameters), and with std::mutex they
// were 0.33 us of its 5.3 us (perf, tiny_mlp_compare). Contended, it spins briefly and then yields the
// core: it is held for a handle swap, or at most for adding one gradient into another (shards of a
// data-parallel step adding into a shared leaf, microseconds), so a waiter never sleeps long.
class SlotLock {
public:
  void lock() noexcept {
    while (locked_.exchange(true, std::memory_order_acquire))
      for (int spins = 0; locked_.load(std::memory_order_relaxed); ++spins)
        if (spins < 64)
          pause();
        else
          std::this_thread::yield();
  }
  void unlock() noexcept { locked_.store(false, std::memory_order_release); }

private:
  static void pause() noexcept {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
  }
  std::atomic<bool> locked_{false};
};

// Shared by every handle of one leaf (or of a tensor that asked for retain_grad()). It holds nothing
// about any tape: a leaf may be used on many tapes and threads at once, and each tensor record maps
// the slot to its own node (Record::leaf_nodes). `grad` is guarded by `mutex`, so threads may
// accumulate into one shared gradient (docs/design.md, "Note [Threads]").
struct GradSlot {
  std::atomic<std::int32_t> refs{1};
  std::atomic<bool> requires_grad{true}; // the leaf's flag (Tensor::requires_grad(bool))
  bool leaf = true;
  SlotLock mutex;
  Tensor grad;
};

// Slot -> node of the leaves used on one tensor record: open addressing on the pointer, so a lookup
// allocates nothing and the table keeps its memory across resets.
class LeafNodes {
public:
  std::uint32_t* find(const GradSlot* s);
  void insert(const GradSlot* s, std::uint32_t node);
  void clear();

private:
  struct Entry {
    const GradSlot* slot = nullptr;
    std::uint32_t node = 0;
  };
  std::vector<Entry> table_;
  std::size_t count_ = 0;
};

struct BackwardCtx;

// One entry of the rules table: the op's name (for errors) and its vector-Jacobian product, twice:
// `backward` computes it with raw kernels (the fast first-order sweep); `backward_graph` computes
// the same numbers with recorded tensor ops, for a create_graph sweep, so that the gradient can be
// differentiated again. Each op's forward function and both rules form one block in one file.
struct OpInfo {
  std::string_view name;
  void (*backward)(BackwardCtx&);
  void (*backward_graph)(BackwardCtx&);
  // Every entry registers itself, so that tensor_op_names() (and the op-table test) sees them all.
  OpInfo(std::string_view n, void (*b)(BackwardCtx&), void (*bg)(BackwardCtx&));
};
extern const OpInfo leaf_op;
// The elementwise parts of mse_loss and binary_cross_entropy_with_logits (elementwise.cpp): recorded
// under the losses' names, before loss.cpp reduces them.
Tensor squared_error(const Tensor& a, const Tensor& b);
Tensor logit_bce(const Tensor& logits, const Tensor& targets);
// Referenced by tensor_op_names() so that a static link keeps each file's rules registered.
void touch_elementwise();
void touch_reduce();
void touch_matmul();
void touch_shape();
void touch_index();
void touch_loss();

// Append-only storage whose elements never move until clear(): a node's saved tensors and integer
// parameters are read by reference while its create_graph rule records more nodes (Note [Stable
// records], docs/design.md). Chunks grow geometrically and are kept across clear(), so a record
// that is reset and filled again allocates nothing. Elements are constructed in place on append
// and destroyed on clear(), as a vector's would be: no default-constructed slots to assign over.
template <class T> class StableStore {
public:
  StableStore() = default;
  StableStore(const StableStore&) = delete;
  StableStore& operator=(const StableStore&) = delete;
  ~StableStore() {
    clear();
    for (Chunk& c : chunks_)
      std::allocator<T>().deallocate(c.data, c.cap);
  }
  // Copies of get(0), ..., get(n - 1), contiguous (a run never straddles two chunks); null for n = 0.
  template <class Get> T* append(std::size_t n, Get&& get) {
    if (n == 0) return nullptr;
    if (chunk_ >= chunks_.size() || chunks_[chunk_].cap - chunks_[chunk_].used < n) [[unlikely]]
      next_chunk(n);
    Chunk& c = chunks_[chunk_];
    T* p = c.data + c.used;
    for (std::size_t k = 0; k < n; ++k)
      std::construct_at(p + k, get(k));
    c.used += n;
    return p;
  }
  // Destroys every element (releasing the tensors); the chunks stay for the next fill.
  void clear() {
    for (std::size_t k = 0; k < chunks_.size() && k <= chunk_; ++k) {
      if constexpr (!std::is_trivially_destructible_v<T>) std::destroy_n(chunks_[k].data, chunks_[k].used);
      chunks_[k].used = 0;
    }
    chunk_ = 0;
  }

private:
  struct Chunk {
    T* data;
    std::size_t cap, used;
  };
  // Moves on to the first chunk with room for n (the tails skipped stay unused), allocating one if
  // none has: twice the last one's size, or n if larger.
  void next_chunk(std::size_t n) {
    while (chunk_ < chunks_.size() && chunks_[chunk_].cap - chunks_[chunk_].used < n)
      ++chunk_;
    if (chunk_ < chunks_.size()) return;
    const std::size_t cap = std::max<std::size_t>(n, chunks_.empty() ? 256 : 2 * chunks_.back().cap);
    chunks_.push_back({std::allocator<T>().allocate(cap), cap, 0});
    chunk_ = chunks_.size() - 1;
  }
  std::vector<Chunk> chunks_;
  std::size_t chunk_ = 0; // the chunk being filled; those after it are empty
};

// One recorded tensor operation. Inputs that do not require grad are stored as npos, and their
// values (if the rule needs them) are among the saved tensors. Typed parameters live in typed
// fields: dims, counts, dtypes and indices in `ints`, real constants (x + c, clamp's bounds) in `c`.
// Built in place in Record::nodes by its constructor: a node assembled on the stack and copied in
// was read back in wide moves right after narrow stores (a store-forwarding stall per field, a
// fifth of recording a small op).
struct Node {
  Node(const OpInfo* o, const Shape& s, DType d) : op(o), shape(s), dtype(d) {}
  Node(const OpInfo* o, const Shape& s, DType d, std::uint8_t in, std::uint8_t ns, std::uint16_t ni, std::uint32_t a,
       const Tensor* sv, const std::int64_t* is, double c0, double c1)
      : op(o), shape(s), dtype(d), nin(in), nsaved(ns), nints(ni), args(a), saved(sv), ints(is), c{c0, c1} {}
  const OpInfo* op;
  Shape shape;
  DType dtype;
  std::uint8_t nin = 0;
  std::uint8_t nsaved = 0;
  std::uint16_t nints = 0;
  std::uint32_t args = 0;             // first input index in Record::args
  const Tensor* saved = nullptr;      // the saved tensors, in Record::saved (they never move)
  const std::int64_t* ints = nullptr; // the integer parameters, in Record::ints (they never move)
  double c[2] = {0, 0};
  GradSlot* slot = nullptr; // leaf gradient slot, or a retained gradient (owns a reference)
};

struct Record final : TapeExtension {
  // This record's generation: tensors recorded on it carry it. Drawn anew whenever the record is
  // cleared (a reset of its tape, or backward() freeing the graph), so older tensors never match.
  std::uint64_t gen = new_generation();
  std::uint64_t freed_gen = 0; // the generation a backward() freed last, to say so in errors
  LeafNodes leaf_nodes;
  std::vector<Node> nodes; // may move when a node is recorded: rules read it by index
  std::vector<std::uint32_t> args;
  StableStore<Tensor> saved;
  StableStore<std::int64_t> ints;
  std::deque<CustomFunction> customs; // a deque: references stay valid as it grows
  std::vector<Tensor> adj;            // adjoints of a sweep; emptied after it, capacity kept
  std::vector<char> keep;             // nodes whose adjoint a functional grad() returns
  bool sweeping = false;
  ~Record() override { reset(); }
  void reset() override;
  void free_graph(); // reset() by backward(): later errors say the graph was freed
};

// The record of the tape, created on first use. Inline: every recorded op asks. typeid of a final
// class is one pointer compare: no dynamic_cast on the hot path.
Record& record_of_slow(Tape& t);
inline Record& record_of(Tape& t) {
  TapeExtension* e = t.extension();
  if (e != nullptr && typeid(*e) == typeid(Record)) [[likely]]
    return *static_cast<Record*>(e);
  return record_of_slow(t);
}

struct Access {
  static Tensor make(const Shape& s, DType d); // uninitialized storage
  static void* raw(const Tensor& t) { return t.raw(); }
  static Buffer* buffer(const Tensor& t) { return t.buf_; }
  static GradSlot* slot(const Tensor& t) { return t.slot_; }
  static void clear(Tensor& t) { t.reset_storage(); } // undefined again, without zeroing the handle
  static void set_node(Tensor& t, std::uint32_t node, std::uint64_t gen) {
    t.node_ = node;
    t.gen_ = gen;
  }
  static Tensor view(const Tensor& t, const Shape& s) { // same storage, another shape, not recorded
    Tensor v = t.detach();
    v.shape_ = s;
    return v;
  }
  static bool unique(const Tensor& t) { return t.buf_ && t.buf_->refs.load(std::memory_order_acquire) == 1; }
};

template <class T> T* ptr(const Tensor& t) { return static_cast<T*>(Access::raw(t)); }

// ---- recording --------------------------------------------------------------------------------
// Whether an op with these inputs records a node (grad mode on and some input requires grad).
inline bool any_requires_grad(std::initializer_list<const Tensor*> ts) {
  if (!grad_enabled()) return false;
  for (const Tensor* t : ts)
    if (t->requires_grad()) return true;
  return false;
}
bool any_requires_grad(std::span<const Tensor> ts);

// A list of tensors for record(): a braced list `{&a, &b}` or a span. It only points at them, so it
// lives no longer than the call it is passed to.
class TensorRefs {
public:
  TensorRefs() = default;
  // The list's array lives to the end of the full-expression that calls record(): long enough.
  TensorRefs(std::initializer_list<const Tensor*> l) {
    p_ = l.begin();
    n_ = l.size();
  }
  TensorRefs(const Tensor* const* p, std::size_t n) : p_(p), n_(n) {}
  TensorRefs(const std::vector<const Tensor*>& v) : p_(v.data()), n_(v.size()) {}
  const Tensor* const* begin() const { return p_; }
  const Tensor* const* end() const { return p_ + n_; }
  std::size_t size() const { return n_; }
  const Tensor& operator[](std::size_t k) const { return *p_[k]; }

private:
  const Tensor* const* p_ = nullptr;
  std::size_t n_ = 0;
};

// Everything a node keeps besides its op and output: the inputs, the tensors its rules read, and
// its parameters, each in a field of its type.
struct NodeSpec {
  TensorRefs inputs;
  TensorRefs saved = {};
  std::span<const std::int64_t> ints = {}; // dims, counts, dtypes, indices
  double c0 = 0, c1 = 0;                   // real constants only
};

// Appends a node for `op` and returns its index; `out` becomes the node's tensor. One call, so the
// node is complete when it returns and nothing refers into the record afterwards. Throws if an
// input was recorded on another tape or generation, or a count exceeds a node's narrow fields.
std::uint32_t record(const OpInfo& op, Tensor& out, const NodeSpec& spec);

void accumulate(Tensor& a, const Tensor& b); // below, with the other kernels

// What a rule sees during the reverse sweep: the node by index and the record it is on.
//
// In a create_graph sweep (`create_graph` true) the rule called is `backward_graph`: recording is on,
// `g` may itself require grad, and the saved tensors are the op's inputs and output as recorded, so
// the rule must compute with tensor ops (add, mul, matmul, where, ...), never with raw kernels
// writing into new storage. Such a rule records nodes, so Record::nodes may move while it runs: the
// accessors below read the node afresh by index, and saved() and ints() point into stores whose
// elements never move (Note [Stable records]). Nothing is copied for the rule.
struct BackwardCtx {
  Record& rec;
  std::uint32_t i; // the node
  const Tensor& g; // the adjoint of the node's output
  bool create_graph = false;
  // g itself when the sweep drops it after the rule (first order, not kept by a functional grad()):
  // a rule may then take g's storage for an input's gradient of the same shape, when no other handle
  // shares it (Access::unique), instead of allocating one. g is undefined afterwards.
  Tensor* owned = nullptr;
  const Node& node() const { return rec.nodes[i]; } // valid only until the rule records
  int nin() const { return node().nin; }
  bool has_ints() const { return node().nints != 0; }
  std::uint32_t input(int k) const { return rec.args[node().args + static_cast<std::uint32_t>(k)]; }
  bool needs(int k) const { return input(k) != Tensor::npos; }
  const Tensor& saved(int k) const { return node().saved[k]; }
  Shape in_shape(int k) const { return rec.nodes[input(k)].shape; }
  DType in_dtype(int k) const { return rec.nodes[input(k)].dtype; }
  std::span<const std::int64_t> ints() const { return {node().ints, node().nints}; }
  double c(int k) const { return node().c[k]; }
  std::string_view name() const { return node().op->name; }
  // Adds gk to input k's adjoint. gk may have the broadcast (output) shape: the engine sums it back
  // to the input's shape, and reports a gradient of any other shape as an error naming the op. In a
  // create_graph sweep the reduction and the accumulation are recorded ops too.
  void grad(int k, Tensor&& gk);
  // The adjoint passed on as it is (add, sub's a, reshape). Added straight into an input's adjoint
  // that exists and fits (a leaf used by many ops: the common case); otherwise a copy of the handle
  // becomes the input's adjoint. Skipping the copy skips two atomic count updates and 112 bytes.
  void grad(int k, const Tensor& gk) {
    const std::uint32_t j = input(k);
    if (j == Tensor::npos || !gk.defined()) return;
    if (Tensor& a = rec.adj[j];
        a.defined() && !create_graph && gk.dtype() == rec.nodes[j].dtype && gk.shape() == rec.nodes[j].shape) [[likely]]
      accumulate(a, gk);
    else
      grad(k, Tensor(gk));
  }

private:
  void fit(int k, std::uint32_t j, Tensor& gk) const;
};

// ---- errors and checks --------------------------------------------------------------------------
// Every tensor error passes here: "autodiff: " + "op: ...", the prefix error.hpp describes.
template <class... A> [[noreturn]] void fail(fmt::format_string<A...> f, A&&... a) {
  throw Error("autodiff: " + fmt::format(f, std::forward<A>(a)...));
}
// Inline tests with the messages out of line: every op runs them.
[[noreturn]] void undefined_error(std::string_view op);
[[noreturn]] void int64_error(std::string_view op, const Tensor& t);
[[noreturn]] void dtype_mismatch_error(std::string_view op, const Tensor& a, const Tensor& b);
inline void check_defined(std::string_view op, const Tensor& t) {
  if (!t.defined()) [[unlikely]]
    undefined_error(op);
}
inline void check_float(std::string_view op, const Tensor& t) { // float32 or float64
  check_defined(op, t);
  if (t.dtype() == DType::int64) [[unlikely]]
    int64_error(op, t);
}
inline void check_same_dtype(std::string_view op, const Tensor& a, const Tensor& b) {
  check_defined(op, a);
  check_defined(op, b);
  if (a.dtype() != b.dtype()) [[unlikely]]
    dtype_mismatch_error(op, a, b);
}
int normalize_dim(std::string_view op, int dim, int rank); // negative dims from the end
// An Error "op: shape [...]: why" unless s follows Shape's rule (no -1 either): for shapes an op
// computes, changed through operator[], before anything is allocated for them.
void check_shape(std::string_view op, const Shape& s);
// A Shape of these dims, checked as above: the ops that compute output dims build them with it.
Shape make_shape(std::string_view op, std::span<const std::int64_t> dims);
Shape broadcast_shapes_slow(std::string_view op, const Shape& a, const Shape& b);
inline Shape broadcast_shapes(std::string_view op, const Shape& a, const Shape& b) {
  return a == b ? a : broadcast_shapes_slow(op, a, b); // most binary ops: the shapes are equal
}
bool broadcastable_to(const Shape& from, const Shape& to);

// Calls f(T{}) with T = float or double according to d; int64 is an error naming the op.
template <class F> decltype(auto) dispatch_float(std::string_view op, DType d, F&& f) {
  if (d == DType::float32) return f(float{});
  if (d == DType::float64) return f(double{});
  fail("{}: int64 tensors are not supported here; convert with .to(DType::float32)", op);
}
template <class F> decltype(auto) dispatch_all(DType d, F&& f) {
  if (d == DType::float32) return f(float{});
  if (d == DType::float64) return f(double{});
  return f(std::int64_t{});
}

// ---- kernels' building blocks ---------------------------------------------------------------------
// Strides (in elements) of a contiguous tensor of shape `s` read as the broadcast shape `out`:
// 0 along broadcast dimensions. Right-aligned, so result[i] belongs to out dim i.
std::array<std::int64_t, Shape::max_rank> broadcast_strides(const Shape& s, const Shape& out);

// Walks `out` (contiguous) row by row, the innermost dimension being a row, calling
// row(out_offset, offsets of each operand, row length, inner strides of each operand).
template <std::size_t K, class Row>
void for_rows(const Shape& out, const std::array<std::array<std::int64_t, Shape::max_rank>, K>& st, Row&& row) {
  const int r = out.rank();
  const std::int64_t total = out.numel();
  if (total == 0) return;
  if (r == 0) {
    std::array<std::int64_t, K> off{}, inner{};
    row(std::int64_t{0}, off, std::int64_t{1}, inner);
    return;
  }
  const std::int64_t n = out[r - 1];
  std::array<std::int64_t, K> inner;
  for (std::size_t k = 0; k < K; ++k)
    inner[k] = st[k][static_cast<std::size_t>(r - 1)];
  std::array<std::int64_t, Shape::max_rank> idx{};
  std::array<std::int64_t, K> off{};
  for (std::int64_t o = 0; o < total; o += n) {
    row(o, off, n, inner);
    for (int d = r - 2; d >= 0; --d) { // odometer over the outer dimensions
      const auto du = static_cast<std::size_t>(d);
      ++idx[du];
      for (std::size_t k = 0; k < K; ++k)
        off[k] += st[k][du];
      if (idx[du] < out[d]) break;
      for (std::size_t k = 0; k < K; ++k)
        off[k] -= st[k][du] * idx[du];
      idx[du] = 0;
    }
  }
}

// A contiguous copy of `t` broadcast to `s` (t must be broadcastable to s).
Tensor expand_copy(const Tensor& t, const Shape& s);
// Sums `g` over the dimensions broadcasting added, giving shape `s` (s broadcastable to g's shape).
Tensor sum_to(const Tensor& g, const Shape& s);
// The same with recorded ops (sum over dims and reshape), for create_graph rules.
Tensor sum_to_recorded(const Tensor& g, const Shape& s);
// a += b for same-shape, same-dtype float tensors: in a's storage when no other handle shares it,
// otherwise into new storage that a then holds.
void accumulate(Tensor& a, const Tensor& b);
// A contiguous copy of `t` converted to dtype d (not recorded).
Tensor convert(const Tensor& t, DType d);
// A 0-D tensor holding c in a's dtype: a constant that broadcasts against a (comparisons with a
// number, the 0 and 1 of the create_graph rules' where()).
inline Tensor scalar_like(const Tensor& a, double c) { return full({}, c, a.dtype()); }
// Note [Zero adjoints] (docs/design.md) for a create_graph rule whose fast kernel skips elements
// with a zero adjoint: `contribution` (recorded, in g's shape or one g broadcasts to), but 0 where
// g is 0 and it is not finite. The mask is a constant. An undefined contribution passes through.
Tensor zero_adjoint(const Tensor& g, const Tensor& contribution);
// Row-major strides (in elements) of a contiguous tensor of shape s.
std::array<std::int64_t, Shape::max_rank> strides_of(const Shape& s);
// Elements start, start + step, ... (len of them) along dim, as a contiguous tensor: slice, and the
// fast backward of slice_scatter and concat (index.cpp).
Tensor take_slice(const Tensor& a, int dim, std::int64_t start, std::int64_t len, std::int64_t step);
// Shape with dimension `dim` set to 1 (keepdim) or removed.
Shape reduced_shape(const Shape& s, int dim, bool keepdim);
// outer x n x inner decomposition of a shape around `dim`.
struct Split {
  std::int64_t outer, n, inner;
};
Split split_at(const Shape& s, int dim);

} // namespace autodiff::detail
