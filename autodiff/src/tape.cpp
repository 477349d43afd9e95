// Tape storage, scopes and generations. The reverse sweeps live in backward.cpp.

#include <autodiff/var.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>

namespace autodiff {

namespace {
// See docs/design.md, "Note [Generations]".
std::atomic<std::uint64_t> next_generation{1};

constexpr std::uint32_t max_nodes = std::numeric_limits<std::uint32_t>::max() - 1;

template <class T> void grow_array(std::unique_ptr<T[]>& data, std::size_t size, std::size_t new_capacity) {
  auto bigger = std::make_unique_for_overwrite<T[]>(new_capacity);
  if (size != 0) std::memcpy(bigger.get(), data.get(), size * sizeof(T));
  data = std::move(bigger);
}
} // namespace

std::uint64_t detail::new_generation() { return next_generation.fetch_add(1, std::memory_order_relaxed); }
// For the test that a value survives 2^32 resets without being accepted again; nothing else calls it.
void detail::set_next_generation_for_testing(std::uint64_t g) { next_generation.store(g); }

template <class T> void detail::Stream<T>::grow(std::size_t at_least) {
  const std::size_t new_capacity = std::max({at_least, capacity * 2, std::size_t{1024}});
  grow_array(data, size, new_capacity);
  capacity = new_capacity;
}
template struct detail::Stream<std::uint32_t>;
template struct detail::Stream<double>;

constexpr Tape::Tape(NoneTag) noexcept : gen_(0) {}
constinit Tape Tape::none_{Tape::NoneTag{}};
thread_local constinit Tape* Tape::tl_active_ = &Tape::none_;

namespace {
// One per thread; its address names the thread that owns a tape stack.
thread_local constinit char tl_thread_tag = 0;
} // namespace

// The thread's tapes form a stack whose top is the active tape. Each tape links to its neighbours,
// so one destroyed out of order (a vector of tapes cleared front to back, say) unlinks itself and
// the rest stay valid: no dangling "previous" pointer is ever followed.
void Tape::push() {
  below_ = tl_active_ == &none_ ? nullptr : tl_active_;
  above_ = nullptr;
  if (below_ != nullptr) below_->above_ = this;
  tl_active_ = this;
  owner_ = &tl_thread_tag;
}

void Tape::unlink() {
  if (owner_ == nullptr) return;
  if (owner_ != &tl_thread_tag) {
    // Another thread's stack cannot be edited safely from here, and leaving it would leave a
    // dangling pointer in it: stop loudly, as std::thread's destructor does for a joinable thread.
    std::fputs("autodiff: a Tape was destroyed on a thread other than the one that created it; a Tape belongs "
               "to its thread (docs/design.md, Note [Threads])\n",
               stderr);
    std::abort();
  }
  if (above_ != nullptr)
    above_->below_ = below_;
  else
    tl_active_ = below_ != nullptr ? below_ : &none_;
  if (below_ != nullptr) below_->above_ = above_;
  below_ = above_ = nullptr;
  owner_ = nullptr;
}

Tape::Tape(TapeOptions options) : gen_(detail::new_generation()), first_order_(!options.higher_order) { push(); }

Tape::Tape(DefaultTag) : gen_(detail::new_generation()), is_default_(true) {}

Tape::~Tape() { unlink(); }

Tape& Tape::default_tape() {
  thread_local Tape tape{DefaultTag{}};
  // The bottom of the stack, so that later lookups skip this function.
  if (tape.owner_ == nullptr && tl_active_ == &none_) tape.push();
  return tape;
}

namespace {
thread_local bool scratch_in_use = false;
} // namespace

ScratchTape::ScratchTape() {
  if (scratch_in_use) {
    own_ = std::make_unique<Tape>(); // activates itself, and leaves the stack when destroyed
    tape_ = own_.get();
    return;
  }
  thread_local Tape scratch{Tape::DefaultTag{}};
  scratch_in_use = true;
  scratch.reset();
  scratch.push();
  tape_ = &scratch;
}

ScratchTape::~ScratchTape() {
  if (own_) return;
  tape_->unlink();
  scratch_in_use = false;
}

void Tape::reset() {
  n_ = 0;
  args_.size = 0;
  units_ = args_.capacity;
  consts_.size = 0;
  adj_.clear();
  swept_ = false;
  readable_adjoints_ = 0;
  gen_ = detail::new_generation();
  if (extension_) extension_->reset();
}

void Tape::grow_nodes() {
  if (cap_ >= max_nodes)
    throw Error(fmt::format("autodiff: tape is full ({} nodes); reset it or use a new Tape", cap_));
  const std::uint32_t new_cap =
      static_cast<std::uint32_t>(std::min<std::size_t>(max_nodes, std::max<std::size_t>(std::size_t{cap_} * 2, 1024)));
  if (first_order_) {
    grow_array(counts_, n_, new_cap);
  } else {
    grow_array(values_, n_, new_cap);
    grow_array(ops_, n_, new_cap);
    if (args_.capacity < 2 * std::size_t{new_cap}) args_.grow(2 * std::size_t{new_cap});
  }
  cap_ = new_cap;
}

std::uint32_t Tape::push_node_grown(OpCode op, double value) {
  grow_nodes();
  return push_node(op, value);
}
void Tape::reserve(std::size_t nodes, std::size_t consts) {
  while (cap_ - n_ < nodes)
    grow_nodes();
  if (consts_.capacity - consts_.size < consts) consts_.grow(consts_.size + consts);
}

// The unit pairs' operands sit at the top of args_ (Note [First-order tapes]), so growing moves
// them to the top of the new array.
void Tape::reserve_partials(std::size_t pairs) {
  if (cap_ == n_) grow_nodes();
  if (units_ - args_.size < pairs) {
    const std::size_t size = args_.size, units = args_.capacity - units_;
    const std::size_t capacity = std::max({size + units + pairs, args_.capacity * 2, std::size_t{1024}});
    auto bigger = std::make_unique_for_overwrite<std::uint32_t[]>(capacity);
    if (size != 0) std::memcpy(bigger.get(), args_.data.get(), size * sizeof(std::uint32_t));
    if (units != 0)
      std::memcpy(bigger.get() + capacity - units, args_.data.get() + units_, units * sizeof(std::uint32_t));
    args_.data = std::move(bigger);
    args_.capacity = capacity;
    units_ = capacity - units;
    grow_array(partials_, size, capacity);
  }
}

std::size_t Tape::operation_count() const {
  if (first_order_)
    return static_cast<std::size_t>(n_ - std::count(counts_.get(), counts_.get() + n_, detail::PairCount{0}));
  return static_cast<std::size_t>(n_ - std::count(ops_.get(), ops_.get() + n_, OpCode::Leaf));
}

std::size_t Tape::bytes_used() const {
  if (first_order_)
    return n_ * sizeof(detail::PairCount) + args_.size * (sizeof(std::uint32_t) + sizeof(double)) +
           (args_.capacity - units_) * sizeof(std::uint32_t);
  return n_ * (sizeof(double) + sizeof(OpCode)) + args_.size * sizeof(std::uint32_t) + consts_.size * sizeof(double);
}

std::size_t Tape::bytes_reserved() const {
  const std::size_t adjoints = adj_.capacity() * sizeof(double);
  if (first_order_)
    return cap_ * sizeof(detail::PairCount) + args_.capacity * (sizeof(std::uint32_t) + sizeof(double)) + adjoints;
  return cap_ * (sizeof(double) + sizeof(OpCode)) + args_.capacity * sizeof(std::uint32_t) +
         consts_.capacity * sizeof(double) + adjoints;
}

std::string_view op_name(OpCode op) {
  switch (op) {
#define TAPEGRAD_X(Name)                                                                                               \
  case OpCode::Name:                                                                                                   \
    return rules::Name::name;
    TAPEGRAD_SCALAR_OPS(TAPEGRAD_X)
#undef TAPEGRAD_X
  }
  return "unknown";
}

namespace {
constexpr rules::Form form_of(OpCode op) {
  switch (op) {
#define TAPEGRAD_X(Name)                                                                                               \
  case OpCode::Name:                                                                                                   \
    return rules::Name::form;
    TAPEGRAD_SCALAR_OPS(TAPEGRAD_X)
#undef TAPEGRAD_X
  }
  return rules::Form::leaf;
}
} // namespace

std::vector<NodeInfo> Tape::nodes() const {
  if (first_order_)
    throw Error("autodiff: nodes: a first-order tape (TapeOptions{.higher_order = false}) keeps each statement's "
                "partial derivatives, not its ops; record on a default Tape to inspect or draw the nodes");
  std::vector<NodeInfo> out;
  out.reserve(n_);
  std::size_t ap = 0, cp = 0;
  for (std::uint32_t i = 0; i < n_; ++i) {
    NodeInfo node{i, ops_[i], values_[i], {0, 0}, 0, std::nullopt, std::nullopt};
    switch (form_of(ops_[i])) {
    case rules::Form::leaf:
      break;
    case rules::Form::unary:
      node.operands[0] = args_.data[ap++], node.operand_count = 1;
      break;
    case rules::Form::binary:
      node.operands[0] = args_.data[ap++];
      node.operands[1] = args_.data[ap++];
      node.operand_count = 2;
      break;
    case rules::Form::unary_const:
      node.operands[0] = args_.data[ap++];
      node.operand_count = 1;
      node.constant = consts_.data[cp++];
      break;
    }
    if (swept_ && i < adj_.size()) node.adjoint = adj_[i];
    out.push_back(node);
  }
  return out;
}

void TapeAccess::foreign(std::string_view op, const Var& v, const Tape& t) {
  foreign(op, v.index(), v.generation(), t);
}

void TapeAccess::foreign(std::string_view op, std::uint32_t a_index, std::uint64_t a_generation, std::uint32_t b_index,
                         std::uint64_t b_generation, const Tape& t) {
  if (a_generation != t.generation()) foreign(op, a_index, a_generation, t);
  foreign(op, b_index, b_generation, t);
}

void TapeAccess::foreign(std::string_view op, std::uint32_t index, std::uint64_t generation, const Tape& tape) {
  // On a thread with no tape yet the fast path saw Tape::none_; the message names the tape that
  // Tape::active() gives, as it always has.
  const Tape& t = &tape == &Tape::none_ ? Tape::active() : tape;
  throw Error(
      fmt::format("autodiff: {}: operand (node {}, tape generation {}) is not on the active tape (generation {}): "
                  "it was recorded before the tape was reset, or on another tape or thread",
                  op, index, generation, t.generation()));
}

} // namespace autodiff
