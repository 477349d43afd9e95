#pragma once
// The tape: the record of every scalar operation, in the order it ran. See docs/design.md.

#include <autodiff/error.hpp>
#include <autodiff/rules.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

namespace autodiff {

class Var;

// Op codes, generated from the rules table.
enum class OpCode : std::uint8_t {
#define TAPEGRAD_X(Name) Name,
  TAPEGRAD_SCALAR_OPS(TAPEGRAD_X)
#undef TAPEGRAD_X
};

namespace detail {
template <class Rule> inline constexpr OpCode code_of = OpCode::Leaf;
#define TAPEGRAD_X(Name) template <> inline constexpr OpCode code_of<rules::Name> = OpCode::Name;
TAPEGRAD_SCALAR_OPS(TAPEGRAD_X)
#undef TAPEGRAD_X

// Ops whose every contribution is exactly +g or -g (to any operand). At g = 0 they add zeros, so a
// sweep needs no zero-adjoint test for them (Note [Zero adjoints]), and on a first-order tape their
// operands' adjoints within a statement are non-zero when theirs is. A new op is tested unless
// listed here.
template <class R> inline constexpr bool passes_adjoint = false;
template <> inline constexpr bool passes_adjoint<rules::Leaf> = true;
template <> inline constexpr bool passes_adjoint<rules::Add> = true;
template <> inline constexpr bool passes_adjoint<rules::Sub> = true;
template <> inline constexpr bool passes_adjoint<rules::AddC> = true;
template <> inline constexpr bool passes_adjoint<rules::RSubC> = true;
template <> inline constexpr bool passes_adjoint<rules::Neg> = true;

// Ops that pass their adjoint unchanged (+g) to operand a, or b: on a first-order tape a Var reached
// from a statement's root through these alone has a partial of 1, known from the expression's type,
// and is stored without it (Note [First-order tapes]). var.hpp checks each against its rule.
template <class R> inline constexpr bool unit_a = false;
template <class R> inline constexpr bool unit_b = false;
template <> inline constexpr bool unit_a<rules::Add> = true;
template <> inline constexpr bool unit_b<rules::Add> = true;
template <> inline constexpr bool unit_a<rules::Sub> = true;
template <> inline constexpr bool unit_a<rules::AddC> = true;

// A first-order tape's entry header (Note [First-order tapes]): (unit pairs << 4) | other pairs for
// a statement of at most 15 Vars, wide_entry for a longer one. Not a char type, which may alias
// anything: storing one would make the compiler reload the tape's cursors after it, in every statement.
enum class PairCount : std::uint8_t {};
inline constexpr std::size_t narrow_leaves = 15;
inline constexpr PairCount wide_entry{0xFF}; // not a narrow header: that needs 15 + 15 pairs
// Statements with 2 to this many pairs with partials merge the pairs of a Var read more than once
// (Note [First-order tapes], "Merged pairs"): up to 28 index compares while recording.
inline constexpr std::size_t merge_slots = 8;

// A growable array that never shrinks: reset() keeps its memory, so re-recording allocates nothing.
template <class T> struct Stream {
  std::unique_ptr<T[]> data;
  std::size_t size = 0;
  std::size_t capacity = 0;
  void grow(std::size_t at_least);
};
} // namespace detail

// Options of grad() for Var and Tensor.
struct GradOptions {
  // Record the backward pass so the returned gradients can be differentiated again (to any order).
  bool create_graph = false;
  // Tensors only: keep the tensor record after grad() returns. Unset, it is kept only with
  // create_graph, as in PyTorch; otherwise grad() frees it (docs/design.md, "Note [Tape lifetime]").
  std::optional<bool> retain_graph = std::nullopt;
};

// The name of an op code ("exp", "mul_scalar", ...).
std::string_view op_name(OpCode op);

// One recorded node, for inspection and drawing (see autodiff::to_dot); not used on hot paths.
struct NodeInfo {
  std::uint32_t index;
  OpCode op;
  double value;
  std::uint32_t operands[2];
  int operand_count;
  std::optional<double> constant;
  std::optional<double> adjoint; // set after backward() for nodes it reached
};

// How a Tape records (docs/design.md, "Note [First-order tapes]").
struct TapeOptions {
  // true: every elementary op is a node (op code, value, operands), so gradients can be differentiated
  // again: grad(..., {.create_graph = true}), nodes(), to_dot. false: a first-order tape, which stores
  // each statement's partial derivatives instead (a Jacobian tape, as CoDiPack's and Adept's): less
  // memory and a sweep that is one multiply-add loop, but create_graph, nodes() and to_dot throw on it.
  bool higher_order = true;
};

// Something recorded alongside the scalar nodes (the tensor record): it lives as long as the tape
// and is reset with it, so both share one scope and one reset.
class TapeExtension {
public:
  virtual ~TapeExtension() = default;
  virtual void reset() = 0;
};

// A tape records scalar operations of this thread while it is active. Constructing a Tape makes it
// the thread's active tape; destroying it re-activates the one below it. Tapes of a thread form a
// stack, but may be destroyed in any order: a tape destroyed out of order just leaves the stack.
// A Tape belongs to the thread that made it and must be destroyed there (see docs/design.md,
// "Note [Threads]"). Each thread also has a default tape, active when no Tape object is alive on it.
class Tape {
public:
  Tape() : Tape(TapeOptions{}) {}
  explicit Tape(TapeOptions options);
  ~Tape();
  Tape(const Tape&) = delete;
  Tape& operator=(const Tape&) = delete;

  // Forgets every recorded value but keeps the memory: Vars recorded before become invalid, and
  // using one throws autodiff::Error.
  void reset();

  std::size_t size() const { return n_; } // recorded nodes (on a first-order tape: leaves and statements)
  std::size_t operation_count() const;    // nodes that are not leaves (first-order: statements)
  bool higher_order() const { return !first_order_; }
  std::size_t bytes_used() const;     // bytes of record (values, codes, operands)
  std::size_t bytes_reserved() const; // bytes allocated for the record
  // Unique across every tape and reset of the process, and 64 bits wide so that it never wraps: a
  // value recorded before a reset, or on another tape, never matches (docs/design.md, "Note [Generations]").
  std::uint64_t generation() const { return gen_; }
  std::vector<NodeInfo> nodes() const; // throws on a first-order tape, which keeps no ops

  // The tensor record of this tape (null until first set); owned and reset by the tape.
  TapeExtension* extension() const { return extension_.get(); }
  void set_extension(std::unique_ptr<TapeExtension> e) { extension_ = std::move(e); }

  // The tape that records on this thread now.
  static Tape& active() {
    Tape* t = tl_active_;
    if (t != &none_) [[likely]]
      return *t;
    return default_tape();
  }

private:
  friend class Var;
  friend struct TapeAccess;
  friend class ScratchTape;
  friend struct HvpSweep; // autodiff/src/hvp.cpp: reads the record (Note [Forward over reverse])
  struct DefaultTag {};
  explicit Tape(DefaultTag);
  struct NoneTag {};
  constexpr explicit Tape(NoneTag) noexcept; // tape.cpp, where Var is complete
  static Tape& default_tape();
  // The thread's stack of active tapes: tl_active_ is its top; below_/above_ link it. On a thread
  // with no tape yet it points to none_, an empty tape of generation 0 that no Var carries, so that
  // a recording operation needs no null test: its generation test fails, as it must (no Var of
  // this thread exists before its default tape is active), and the error path names the default
  // tape. Leaves go through active(), which activates it (docs/design.md, "Note [Recording fast
  // path]").
  static thread_local constinit Tape* tl_active_;
  static Tape none_;
  void push();
  void unlink();

  // Recording. A leaf is one node (op code + value); every other op is recorded by a statement
  // (TapeAccess::record, Note [Statements]), which tests the capacity once for all its nodes and
  // calls reserve() when they do not fit. grow_nodes keeps room for two operands per node, so the
  // node capacity covers the operands too. The full-tape path is out of line, so the straight line
  // of the fast path holds no call.
  std::uint32_t push_leaf(double value) {
    if (first_order_) return push_statement_header(detail::PairCount{0});
    return push_node(OpCode::Leaf, value);
  }
  std::uint32_t push_node(OpCode op, double value) {
    const std::size_t i = n_;
    if (i == cap_) [[unlikely]]
      return push_node_grown(op, value);
    double* values = values_.get();
    OpCode* ops = ops_.get();
    n_ = i + 1;
    values[i] = value;
    ops[i] = op;
    return static_cast<std::uint32_t>(i);
  }
  // A first-order tape's entry with no pairs: a leaf.
  std::uint32_t push_statement_header(detail::PairCount count) {
    const std::size_t i = n_;
    if (i == cap_) [[unlikely]]
      grow_nodes();
    counts_[i] = count;
    n_ = i + 1;
    return static_cast<std::uint32_t>(i);
  }
  void grow_nodes();
  std::uint32_t push_node_grown(OpCode op, double value); // tape.cpp: grow, then push_node
  void reserve(std::size_t nodes, std::size_t consts);    // room for a statement (tape.cpp)
  void reserve_partials(std::size_t pairs);               // room for a first-order statement (tape.cpp)

  // Reverse sweeps (backward.cpp).
  void sweep(std::uint32_t output) {
    const double one = 1.0;
    sweep(std::span<const std::uint32_t>(&output, 1), std::span<const double>(&one, 1));
  }
  void sweep(std::span<const std::uint32_t> outputs, std::span<const double> seeds);
  void sweep_partials(); // the first-order tape's sweep, on adj_ seeded by sweep()
  std::vector<Var> sweep_recording(const Var& output, const std::vector<Var>& inputs);
  double adjoint(const Var& v) const;

  // Higher-order tapes (the default) fill values_, ops_, args_ (operands) and consts_; first-order
  // tapes fill counts_, args_ and partials_ in step from the bottom, and the operands of unit
  // partials (and wide entries' pair counts) in args_ down from units_ (Note [First-order tapes]).
  std::unique_ptr<double[]> values_;
  std::unique_ptr<OpCode[]> ops_;
  std::unique_ptr<detail::PairCount[]> counts_;
  std::unique_ptr<double[]> partials_; // capacity args_.capacity
  // size_t, not uint32_t: a store of an operand index (uint32_t) then cannot alias the node count,
  // which the compiler can keep in a register across the operations of an expression.
  std::size_t n_ = 0;
  std::size_t cap_ = 0;
  detail::Stream<std::uint32_t> args_;
  std::size_t units_ = 0; // first-order: args_[units_, args_.capacity) holds the unit pairs' operands
  detail::Stream<double> consts_;
  std::uint64_t gen_;
  std::vector<double> adj_; // adjoints of the last sweep, one per node that existed then
  bool swept_ = false;
  // adj_.size() after a sweep, 0 before the first one: Var::grad() tests this one field inline.
  std::size_t readable_adjoints_ = 0;
  std::vector<Var> recording_adj_; // scratch of sweep_recording, reused
  std::vector<char> recording_has_;
  std::unique_ptr<TapeExtension> extension_;
  Tape* below_ = nullptr;
  Tape* above_ = nullptr;
  const void* owner_ = nullptr; // the thread whose stack holds this tape (null while on none)
  bool is_default_ = false;
  bool first_order_ = false;
};

namespace detail {
// A fresh generation: unique across the process, never wrapping (64 bits drawn one at a time).
std::uint64_t new_generation();
void set_next_generation_for_testing(std::uint64_t g);
} // namespace detail

// A private tape for the length of one call (hessian, hvp, jacobian, vjp, gradcheck), active
// while this object lives. It is the thread's scratch tape, reset on entry, so calling such a
// function in a loop reuses its memory instead of growing a new tape each time; a nested use on
// the same thread gets a fresh Tape instead.
class ScratchTape {
public:
  ScratchTape();
  ~ScratchTape();
  ScratchTape(const ScratchTape&) = delete;
  ScratchTape& operator=(const ScratchTape&) = delete;
  Tape& tape() { return *tape_; }

private:
  std::unique_ptr<Tape> own_; // only when nested
  Tape* tape_;
};

} // namespace autodiff
