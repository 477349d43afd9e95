#pragma once
// autodiff::Var: a double whose operations are recorded on the thread's active tape.

#include <autodiff/tape.hpp>

#include <compare>
#include <concepts>
#include <cstdint>
#include <span>
#include <string_view>
#include <utility>
#include <vector>

namespace autodiff {

class Var;
namespace detail {
// The base of the expression types below (docs/design.md, "Note [Statements]").
struct StatementTag {
  using tapegrad_operand = void; // see detail::operand_only
};
} // namespace detail
// An unevaluated arithmetic expression of Vars: what Var's operators and functions return.
template <class E>
concept VarExpression = std::derived_from<E, detail::StatementTag>;
// What Var's operators and functions take: a Var or an expression of Vars (never a double, which
// would convert to a new leaf: see the functions below).
template <class E>
concept Operand = std::same_as<E, Var> || VarExpression<E>;

class Var {
public:
  using tapegrad_operand = void; // see detail::operand_only
  // An independent variable (a leaf of the active tape) with value 0 or v.
  Var() : Var(0.0) {}
  Var(double v) { // NOLINT(google-explicit-constructor): `Var x = 1.5;` is the intended spelling
    Tape& t = Tape::active();
    v_ = v;
    i_ = t.push_leaf(v);
    gen_ = t.gen_;
  }

  // An expression converted to a Var records as one statement: all its nodes at once (Note
  // [Statements]). Implicit, as the result of an operator always was a Var.
  template <VarExpression E> [[gnu::always_inline]] Var(const E& e); // NOLINT(google-explicit-constructor)

  double value() const { return v_; }
  explicit operator double() const { return v_; }

  // Reverse sweep from this value: afterwards x.grad() is d(this)/dx for every x recorded before
  // it. Each call recomputes every adjoint from scratch (it does not accumulate), so calling it
  // twice gives the same gradients; call it on a sum to get the gradient of a sum.
  void backward() const;

  // The adjoint left by the last backward() on this tape; leaves and intermediate values alike.
  double grad() const {
    const Tape* t = Tape::tl_active_;
    if (gen_ == t->gen_ && i_ < t->readable_adjoints_) [[likely]]
      return t->adj_[i_];
    return grad_checked();
  }

  std::uint32_t index() const { return i_; }
  std::uint64_t generation() const { return gen_; }

  // One statement each: `s += a * b` records the product and the sum together.
  template <Operand E> Var& operator+=(const E& o);
  template <Operand E> Var& operator-=(const E& o);
  template <Operand E> Var& operator*=(const E& o);
  template <Operand E> Var& operator/=(const E& o);
  Var& operator+=(double c);
  Var& operator-=(double c);
  Var& operator*=(double c);
  Var& operator/=(double c);

private:
  friend class Tape;
  friend struct TapeAccess;
  struct Node {};
  Var(Node, double v, std::uint32_t i, std::uint64_t generation) : v_(v), gen_(generation), i_(i) {}
  double grad_checked() const; // grad() when the fast test fails: the errors

  double v_;
  std::uint64_t gen_; // 64 bits, so it never wraps: see docs/design.md, "Note [Generations]"
  std::uint32_t i_;
};
static_assert(sizeof(Var) == 24);

namespace detail {
// A second, defaulted template parameter of every operator template: substituting it fails for a
// non-class type, so a candidate such as operator==(double, double) is dropped before clang 14
// checks that an operator takes a class (it does that before the Operand constraint).
template <class A> using operand_only = typename A::tapegrad_operand;
} // namespace detail

// Comparisons look at values only and record nothing.
template <Operand A, Operand B, class = detail::operand_only<A>> bool operator==(const A& a, const B& b) {
  return a.value() == b.value();
}
template <Operand A, class = detail::operand_only<A>> bool operator==(const A& a, double b) { return a.value() == b; }
template <Operand A, Operand B, class = detail::operand_only<A>>
std::partial_ordering operator<=>(const A& a, const B& b) {
  return a.value() <=> b.value();
}
template <Operand A, class = detail::operand_only<A>> std::partial_ordering operator<=>(const A& a, double b) {
  return a.value() <=> b;
}

// Kept for code that constrains on it; the functions below take any Operand.
template <class V>
concept IsVar = std::same_as<V, Var>;

// The unary functions of a Var and their rules (rules.hpp), defined below from this one list.
#define TAPEGRAD_VAR_UNARY_FUNCTIONS(X)                                                                                \
  X(exp, Exp)                                                                                                          \
  X(log, Log)                                                                                                          \
  X(log1p, Log1p)                                                                                                      \
  X(expm1, Expm1)                                                                                                      \
  X(sqrt, Sqrt)                                                                                                        \
  X(cbrt, Cbrt)                                                                                                        \
  X(square, Square)                                                                                                    \
  X(sin, Sin)                                                                                                          \
  X(cos, Cos)                                                                                                          \
  X(tan, Tan)                                                                                                          \
  X(asin, Asin)                                                                                                        \
  X(acos, Acos)                                                                                                        \
  X(atan, Atan)                                                                                                        \
  X(sinh, Sinh)                                                                                                        \
  X(cosh, Cosh)                                                                                                        \
  X(tanh, Tanh)                                                                                                        \
  X(asinh, Asinh)                                                                                                      \
  X(acosh, Acosh)                                                                                                      \
  X(atanh, Atanh)                                                                                                      \
  X(sigmoid, Sigmoid)                                                                                                  \
  X(relu, Relu)                                                                                                        \
  X(softplus, Softplus)                                                                                                \
  X(abs, Abs)                                                                                                          \
  X(fabs, Abs)                                                                                                         \
  X(erf, Erf)                                                                                                          \
  X(erfc, Erfc)
// Double versions of the functions <cmath> lacks, so that generic code (`template <class T>`) can
// call them unqualified with T = double after `using namespace autodiff;`.
// Each is its rule's value (rules.hpp), so a double and a Var give the same bits.
inline double square(double a) { return rules::Square::f(a); }
inline double sigmoid(double a) { return rules::Sigmoid::f(a); }
inline double relu(double a) { return rules::Relu::f(a); }
inline double softplus(double a) { return rules::Softplus::f(a); }
inline double max(double a, double b) { return rules::max_value(a, b); }
// Without this, abs(double) in generic code can silently pick the C library's abs(int). A
// template, so that it neither clashes with std::abs after `using std::abs;` nor loses to abs(int).
template <std::floating_point F> F abs(F a) { return std::fabs(a); }
inline double min(double a, double b) { return rules::min_value(a, b); }

// ---- gradients ------------------------------------------------------------------------------
// d y / d x for each x, by one reverse sweep.
std::vector<double> gradient(const Var& y, std::span<const Var> xs);
inline std::vector<double> gradient(const Var& y, std::initializer_list<Var> xs) {
  return gradient(y, std::span<const Var>(xs.begin(), xs.size()));
}
// sum_k u_k d ys[k] / d x for each x (u^T J, a vector-Jacobian product), by one reverse sweep
// seeded with u: cheaper than the gradient of sum_k u_k ys[k], which records 2 nodes per output.
std::vector<double> gradient(std::span<const Var> ys, std::span<const double> u, std::span<const Var> xs);

// d y / d x as Vars. With create_graph they are functions of the inputs recorded on the tape;
// without, they are new leaves holding the values.
std::vector<Var> grad(const Var& y, std::span<const Var> xs, GradOptions options = {});
inline std::vector<Var> grad(const Var& y, std::initializer_list<Var> xs, GradOptions options = {}) {
  return grad(y, std::span<const Var>(xs.begin(), xs.size()), options);
}

// ==== implementation ================================================================================
// What follows records: TapeAccess, which can make a Var for any node of a tape, the expression
// types, and the bodies of the operators and functions.

// Recording primitives, one per Form of the rules table. Public so that rules tables elsewhere
// (the expression parser, user extensions) can record through them.
struct TapeAccess {
  [[noreturn]] static void foreign(std::string_view op, const Var& v, const Tape& t);
  static std::vector<double> gradient(const Var& y, std::span<const Var> xs);
  static std::vector<double> gradient(std::span<const Var> ys, std::span<const double> u, std::span<const Var> xs);
  static std::vector<Var> grad_recording(const Var& y, std::span<const Var> xs);

  // The slow paths take operands by value (index, generation): passing a Var by reference would
  // pin it, and every temporary of an expression, to the stack.
  [[noreturn]] static void foreign(std::string_view op, std::uint32_t index, std::uint64_t generation, const Tape& t);
  [[noreturn]] static void foreign(std::string_view op, std::uint32_t a_index, std::uint64_t a_generation,
                                   std::uint32_t b_index, std::uint64_t b_generation, const Tape& t);
  static Tape& checked(std::string_view op, const Var& a) {
    Tape& t = *Tape::tl_active_;
    if (a.gen_ != t.gen_) [[unlikely]]
      foreign(op, a.i_, a.gen_, t);
    return t;
  }
  static Var make(const Tape& t, double v, std::uint32_t i) { return Var(Var::Node{}, v, i, t.gen_); }

  // ---- statements (Note [Statements]) ----
  // Where a statement's nodes go: the tape's cursors and arrays, in registers for the whole
  // statement and written back once at its end.
  struct Cursor {
    double* values;
    OpCode* ops;
    std::uint32_t* args;
    double* consts;
    std::size_t n, ap, cp;
  };
  // The bits in which the generations of an operand's Vars differ from g: 0 when all are on the tape.
  [[gnu::always_inline]] static std::uint64_t mismatch(const Var& v, std::uint64_t g) { return v.gen_ ^ g; }
  template <VarExpression E> [[gnu::always_inline]] static std::uint64_t mismatch(const E& e, std::uint64_t g) {
    return e.mismatch(g);
  }
  // The error for the first Var (left to right) of the statement that is not on the tape, named by
  // the op that takes it, as when each op checked its operands.
  template <class R> static void check(const Var& v, const Tape& t) {
    if (v.gen_ != t.gen_) foreign(R::name, v.i_, v.gen_, t);
  }
  template <class R, VarExpression E> static void check(const E& e, const Tape& t) { e.check(t); }
  // e by value: its address then never escapes the inlined hot path, so the compiler keeps the
  // expression in registers (scalar replacement) and copies it to memory only on this cold path.
  template <VarExpression E> [[noreturn, gnu::noinline]] static void report(E e, const Tape& t) {
    e.check(t);
    foreign("statement", 0, 0, t); // not reached: mismatch() found an operand that check() names
  }
  // Building an expression checks its Var operands at once, so that a foreign operand throws where
  // the op is written (and names it), recorded or not. Its loads of the active tape and generation
  // are shared by the ops of a statement: nothing is stored to a tape between them. record() tests
  // again, since another tape may be active by the time an expression kept with `auto` records.
  template <class R, class A> [[gnu::always_inline]] static void enter(const A& a) {
    if constexpr (std::same_as<A, Var>) {
      const Tape& t = *Tape::tl_active_;
      if (a.gen_ != t.gen_) [[unlikely]]
        foreign(R::name, a.i_, a.gen_, t);
    }
  }
  template <class R, class A, class B> [[gnu::always_inline]] static void enter(const A& a, const B& b) {
    if constexpr (std::same_as<A, Var> && std::same_as<B, Var>) {
      const Tape& t = *Tape::tl_active_;
      const std::uint64_t g = t.gen_;
      if (((a.gen_ ^ g) | (b.gen_ ^ g)) != 0) [[unlikely]]
        foreign(R::name, a.i_, a.gen_, b.i_, b.gen_, t);
    } else {
      enter<R>(a);
      enter<R>(b);
    }
  }
  [[gnu::always_inline]] static std::uint32_t emit(const Var& v, Cursor&) { return v.i_; }
  template <VarExpression E> [[gnu::always_inline]] static std::uint32_t emit(const E& e, Cursor& c) {
    return e.emit(c);
  }
  [[gnu::always_inline]] static std::uint32_t node(Cursor& c, OpCode op, double v) {
    c.values[c.n] = v;
    c.ops[c.n] = op;
    return static_cast<std::uint32_t>(c.n++);
  }
  // Records e: one thread-local load, one generation test and one capacity test for all its nodes.
  template <VarExpression E> [[gnu::always_inline]] static Var record(const E& e) {
    Tape& t = *Tape::tl_active_;
    const std::uint64_t g = t.gen_;
    if (e.mismatch(g) != 0) [[unlikely]]
      report(e, t);
    if (t.first_order_) return record_partials(t, e, g);
    if (t.cap_ - t.n_ < E::nodes || (E::consts != 0 && t.consts_.capacity - t.consts_.size < E::consts)) [[unlikely]]
      t.reserve(E::nodes, E::consts);
    Cursor c{t.values_.get(), t.ops_.get(),  t.args_.data.get(), t.consts_.data.get(), t.n_,
             t.args_.size,    t.consts_.size};
    const std::uint32_t i = e.emit(c);
    t.n_ = c.n;
    t.args_.size = c.ap;
    if constexpr (E::consts != 0) t.consts_.size = c.cp;
    return Var(Var::Node{}, e.value(), i, g);
  }

  // ---- first-order tapes (Note [First-order tapes]) ----
  // Where a statement's (operand, partial) pairs go: the other pairs up from p, the operands of unit
  // partials down from u. Wide statements (more than detail::narrow_leaves Vars) keep no unit pairs.
  template <bool Wide> struct PartialsCursor {
    std::uint32_t* args;
    double* partials;
    std::size_t p, u;
  };
  // ... or, for a statement of 2 to detail::merge_slots Vars with partials (not unit pairs), one slot
  // per such Var, numbered at compile time, so that the slots live in registers: the operands are
  // read first (indices()), the partials fill d (0 where a zero adjoint stopped the pass), and
  // store_merged() adds the partials of a Var read more than once before storing (Note [First-order
  // tapes], "Merged pairs").
  template <std::size_t G> struct MergeCursor {
    std::uint32_t* args;
    std::size_t u;
    std::uint32_t idx[G];
    double d[G] = {};
  };
  // The local reverse pass reaches a Var: d statement / d v is g (in a statement of more than
  // detail::merge_slots such Vars, a Var read twice gets two pairs; below, see MergeCursor).
  // A zero partial is not stored: the sweep then adds nothing for it, as the default tape's rule
  // adds nothing, even where the statement's adjoint is infinite (inf * 0 would be NaN). A branch,
  // predicted, and not `p += (g != 0)`: that would make every later store's address wait for this
  // partial, a chain through the statement's divisions (Toon's recording was 7% slower with it).
  // Unit: g is 1 by the expression's type (every op above passes its adjoint unchanged: a sum's
  // operand, detail::unit_a/unit_b); only the operand is stored. A test of g == 1 at run time
  // instead made Toon's recording 12% slower, and would make the tape's layout depend on values.
  template <bool NonZero = false, bool Unit = false, std::size_t Slot = 0, bool Wide>
  [[gnu::always_inline]] static void pass(const Var& v, double g, PartialsCursor<Wide>& c) {
    if constexpr (Unit && !Wide) {
      c.args[--c.u] = v.i_;
    } else if (NonZero || Unit || g != 0) [[likely]] {
      c.args[c.p] = v.i_;
      c.partials[c.p] = g;
      ++c.p;
    }
  }
  // ... or a subexpression. A zero adjoint stops there (Note [Zero adjoints]): its Vars get no pair,
  // not the NaN that 0 times an infinite partial below would give.
  // Under an op that passes its adjoint (detail::passes_adjoint) g is the parent's, never 0.
  template <bool NonZero = false, bool Unit = false, std::size_t Slot = 0, VarExpression E, class Cursor>
  [[gnu::always_inline]] static void pass(const E& e, double g, Cursor& c) {
    if (NonZero || Unit || g != 0) [[likely]]
      e.template partials<Unit, Slot>(g, c);
  }
  // A Var in a merged statement: its partial goes to its slot; a unit pair is stored at once.
  template <bool NonZero = false, bool Unit = false, std::size_t Slot = 0, std::size_t G>
  [[gnu::always_inline]] static void pass(const Var& v, double g, MergeCursor<G>& c) {
    if constexpr (Unit)
      c.args[--c.u] = v.i_;
    else
      c.d[Slot] = g;
  }
  template <bool Unit, std::size_t Slot, std::size_t G>
  [[gnu::always_inline]] static void index(const Var& v, MergeCursor<G>& c) {
    if constexpr (!Unit) c.idx[Slot] = v.i_;
  }
  template <bool Unit, std::size_t Slot, VarExpression E, std::size_t G>
  [[gnu::always_inline]] static void index(const E& e, MergeCursor<G>& c) {
    e.template indices<Unit, Slot>(c);
  }
  // Slot J's partial goes to the first earlier slot of the same Var, if any (which is then the
  // Var's first slot: an earlier one would have matched first). Unrolled at compile time, so every
  // index is a constant and the slots stay in registers; reads of one Var object compare equal at
  // compile time, and only the operands that may differ cost a compare.
  template <std::size_t J, std::size_t K = 0, std::size_t G>
  [[gnu::always_inline]] static void merge_slot(MergeCursor<G>& c, bool (&merged)[G]) {
    if constexpr (K < J) {
      if (c.idx[K] == c.idx[J]) [[unlikely]] {
        c.d[K] += c.d[J];
        merged[J] = true;
      } else {
        merge_slot<J, K + 1>(c, merged);
      }
    }
  }
  // Then each Var's pair, unless its partial is 0 (as pass() above: the zero-partial rule applies
  // to the sum).
  template <std::size_t G> [[gnu::always_inline]] static std::size_t
  store_merged(MergeCursor<G>& c, std::uint32_t* args, double* partials, std::size_t p) {
    bool merged[G] = {};
    [&]<std::size_t... J>(std::index_sequence<J...>) {
      (merge_slot<J>(c, merged), ...);
      (store_slot(merged[J], c.idx[J], c.d[J], args, partials, p), ...);
    }
    (std::make_index_sequence<G>{});
    return p;
  }
  [[gnu::always_inline]] static void store_slot(bool merged, std::uint32_t index, double d, std::uint32_t* args,
                                                double* partials, std::size_t& p) {
    if (!merged && d != 0) [[likely]] {
      args[p] = index;
      partials[p] = d;
      ++p;
    }
  }
  // Records e on a first-order tape: its partial derivatives by a reverse pass over the expression,
  // with the rules of rules.hpp run on doubles, then one entry and its pairs. One test for the room
  // of both kinds of pairs: they grow towards each other in args_.
  template <VarExpression E> [[gnu::always_inline]] static Var record_partials(Tape& t, const E& e, std::uint64_t g) {
    constexpr bool wide = E::leaves > detail::narrow_leaves;
    if (t.cap_ == t.n_ || t.units_ - t.args_.size < E::leaves + wide) [[unlikely]]
      t.reserve_partials(E::leaves + wide);
    const std::size_t first = t.args_.size, top = t.units_;
    const std::size_t i = t.n_;
    constexpr std::size_t merged = E::template general<true>;
    if constexpr (!wide && merged >= 2 && merged <= detail::merge_slots) {
      MergeCursor<merged> c{t.args_.data.get(), top, {}, {}};
      e.template indices<true, 0>(c);
      e.template partials<true, 0>(1.0, c);
      const std::size_t p = store_merged(c, t.args_.data.get(), t.partials_.get(), first);
      t.counts_[i] = static_cast<detail::PairCount>((top - c.u) << 4 | (p - first));
      t.args_.size = p;
      t.units_ = c.u;
    } else {
      PartialsCursor<wide> c{t.args_.data.get(), t.partials_.get(), first, top};
      e.template partials<true, 0>(1.0, c);
      if constexpr (wide) {
        c.args[--c.u] = static_cast<std::uint32_t>(c.p - first);
        t.counts_[i] = detail::wide_entry;
      } else {
        t.counts_[i] = static_cast<detail::PairCount>((top - c.u) << 4 | (c.p - first));
      }
      t.args_.size = c.p;
      t.units_ = c.u;
    }
    t.n_ = i + 1;
    return Var(Var::Node{}, e.value(), static_cast<std::uint32_t>(i), g);
  }
};

namespace detail {
// The rule context of a statement's local reverse pass (first-order tapes): the operands' values
// come from the expression, and the contributions to each operand add up in ga and gb. They start
// at -0, not +0: -0 + v is v for every v (+0 + -0 is +0), so the compiler drops the addition when a
// rule contributes once, as most do.
struct StatementContext {
  double a_, b_, r_, c_, g_;
  double ga = -0.0, gb = -0.0;
  constexpr double g() const { return g_; }
  constexpr double a() const { return a_; }
  constexpr double b() const { return b_; }
  constexpr double r() const { return r_; }
  constexpr double c() const { return c_; }
  constexpr void da(double v) { ga += v; }
  constexpr void db(double v) { gb += v; }
  constexpr void da_neg(double v) { ga -= v; }
  constexpr void db_neg(double v) { gb -= v; }
};
// The rule's contributions for g = 1 at values that make no other rule give exactly 1: the ops
// listed in unit_a/unit_b (tape.hpp) must pass their adjoint unchanged to that operand.
template <class R> constexpr StatementContext unit_probe() {
  StatementContext x{3.0, 5.0, 7.0, 11.0, 1.0};
  R::vjp(x);
  return x;
}
template <class R> constexpr bool passes_unit_a = !unit_a<R> || unit_probe<R>().ga == 1.0;
template <class R> constexpr bool passes_unit_b = !unit_b<R> || unit_probe<R>().gb == 1.0;
static_assert(passes_unit_a<rules::Add> && passes_unit_b<rules::Add> && passes_unit_a<rules::Sub> &&
              passes_unit_a<rules::AddC>);
} // namespace detail

// ---- expression types (Note [Statements]) ---------------------------------------------------------
// Operands are held by value (a Var is 24 bytes and trivially copyable), so an expression kept with
// `auto` never dangles: converting it to a Var later records it then, and converting it twice
// records it twice. Each node's value is computed when the expression is built, so value() is free.
namespace detail {
template <class A> inline constexpr std::size_t nodes_of = 0; // a Var: already on the tape
template <VarExpression A> inline constexpr std::size_t nodes_of<A> = A::nodes;
template <class A> inline constexpr std::size_t consts_of = 0;
template <VarExpression A> inline constexpr std::size_t consts_of<A> = A::consts;
template <class A> inline constexpr std::size_t leaves_of = 1; // a Var: one (operand, partial) pair
template <VarExpression A> inline constexpr std::size_t leaves_of<A> = A::leaves;
// The Vars of A not reached through unit ops alone (given Unit: A is so reached): its pairs with a
// partial, each a slot of a merged statement.
template <class A, bool Unit> inline constexpr std::size_t general_of = Unit ? 0 : 1;
template <VarExpression A, bool Unit> inline constexpr std::size_t general_of<A, Unit> = A::template general<Unit>;
} // namespace detail

// R applied to a (Form::unary).
template <class R, Operand A> struct UnaryExpr : detail::StatementTag {
  static constexpr std::size_t nodes = detail::nodes_of<A> + 1;
  static constexpr std::size_t consts = detail::consts_of<A>;
  static constexpr std::size_t leaves = detail::leaves_of<A>;
  A a;
  double v;
  [[gnu::always_inline]] UnaryExpr(const A& a_, double v_) : a(a_), v(v_) { TapeAccess::enter<R>(a); }
  double value() const { return v; }
  explicit operator double() const { return v; }
  [[gnu::always_inline]] std::uint64_t mismatch(std::uint64_t g) const { return TapeAccess::mismatch(a, g); }
  void check(const Tape& t) const { TapeAccess::check<R>(a, t); }
  [[gnu::always_inline]] std::uint32_t emit(TapeAccess::Cursor& c) const {
    const std::uint32_t ia = TapeAccess::emit(a, c);
    c.args[c.ap++] = ia;
    return TapeAccess::node(c, detail::code_of<R>, v);
  }
  template <bool Unit> static constexpr std::size_t general = detail::general_of<A, Unit && detail::unit_a<R>>;
  template <bool Unit, std::size_t Slot, class Cursor> [[gnu::always_inline]] void indices(Cursor& c) const {
    TapeAccess::index<Unit && detail::unit_a<R>, Slot>(a, c);
  }
  template <bool Unit, std::size_t Slot, class Cursor> [[gnu::always_inline]] void partials(double g, Cursor& c) const {
    detail::StatementContext x{a.value(), 0, v, 0, g};
    R::vjp(x);
    TapeAccess::pass<detail::passes_adjoint<R>, Unit && detail::unit_a<R>, Slot>(a, x.ga, c);
  }
};
// R applied to a and a constant it stores (Form::unary_const).
template <class R, Operand A> struct UnaryConstExpr : detail::StatementTag {
  static constexpr std::size_t nodes = detail::nodes_of<A> + 1;
  static constexpr std::size_t consts = detail::consts_of<A> + 1;
  static constexpr std::size_t leaves = detail::leaves_of<A>;
  A a;
  double k, v;
  [[gnu::always_inline]] UnaryConstExpr(const A& a_, double k_, double v_) : a(a_), k(k_), v(v_) {
    TapeAccess::enter<R>(a);
  }
  double value() const { return v; }
  explicit operator double() const { return v; }
  [[gnu::always_inline]] std::uint64_t mismatch(std::uint64_t g) const { return TapeAccess::mismatch(a, g); }
  void check(const Tape& t) const { TapeAccess::check<R>(a, t); }
  [[gnu::always_inline]] std::uint32_t emit(TapeAccess::Cursor& c) const {
    const std::uint32_t ia = TapeAccess::emit(a, c);
    c.args[c.ap++] = ia;
    c.consts[c.cp++] = k;
    return TapeAccess::node(c, detail::code_of<R>, v);
  }
  template <bool Unit> static constexpr std::size_t general = detail::general_of<A, Unit && detail::unit_a<R>>;
  template <bool Unit, std::size_t Slot, class Cursor> [[gnu::always_inline]] void indices(Cursor& c) const {
    TapeAccess::index<Unit && detail::unit_a<R>, Slot>(a, c);
  }
  template <bool Unit, std::size_t Slot, class Cursor> [[gnu::always_inline]] void partials(double g, Cursor& c) const {
    detail::StatementContext x{a.value(), 0, v, k, g};
    R::vjp(x);
    TapeAccess::pass<detail::passes_adjoint<R>, Unit && detail::unit_a<R>, Slot>(a, x.ga, c);
  }
};
// R applied to a and b (Form::binary). Nodes go in the order C++ code reads: a's, b's, then R.
template <class R, Operand A, Operand B> struct BinaryExpr : detail::StatementTag {
  static constexpr std::size_t nodes = detail::nodes_of<A> + detail::nodes_of<B> + 1;
  static constexpr std::size_t consts = detail::consts_of<A> + detail::consts_of<B>;
  static constexpr std::size_t leaves = detail::leaves_of<A> + detail::leaves_of<B>;
  A a;
  B b;
  double v;
  [[gnu::always_inline]] BinaryExpr(const A& a_, const B& b_, double v_) : a(a_), b(b_), v(v_) {
    TapeAccess::enter<R>(a, b);
  }
  double value() const { return v; }
  explicit operator double() const { return v; }
  [[gnu::always_inline]] std::uint64_t mismatch(std::uint64_t g) const {
    return TapeAccess::mismatch(a, g) | TapeAccess::mismatch(b, g);
  }
  void check(const Tape& t) const {
    TapeAccess::check<R>(a, t);
    TapeAccess::check<R>(b, t);
  }
  [[gnu::always_inline]] std::uint32_t emit(TapeAccess::Cursor& c) const {
    const std::uint32_t ia = TapeAccess::emit(a, c);
    const std::uint32_t ib = TapeAccess::emit(b, c);
    c.args[c.ap] = ia;
    c.args[c.ap + 1] = ib;
    c.ap += 2;
    return TapeAccess::node(c, detail::code_of<R>, v);
  }
  template <bool Unit> static constexpr std::size_t general_a = detail::general_of<A, Unit && detail::unit_a<R>>;
  template <bool Unit> static constexpr std::size_t general =
      general_a<Unit> + detail::general_of<B, Unit && detail::unit_b<R>>;
  template <bool Unit, std::size_t Slot, class Cursor> [[gnu::always_inline]] void indices(Cursor& c) const {
    TapeAccess::index<Unit && detail::unit_a<R>, Slot>(a, c);
    TapeAccess::index<Unit && detail::unit_b<R>, Slot + general_a<Unit>>(b, c);
  }
  template <bool Unit, std::size_t Slot, class Cursor> [[gnu::always_inline]] void partials(double g, Cursor& c) const {
    detail::StatementContext x{a.value(), b.value(), v, 0, g};
    R::vjp(x);
    TapeAccess::pass<detail::passes_adjoint<R>, Unit && detail::unit_a<R>, Slot>(a, x.ga, c);
    TapeAccess::pass<detail::passes_adjoint<R>, Unit && detail::unit_b<R>, Slot + general_a<Unit>>(b, x.gb, c);
  }
};

template <VarExpression E> inline Var::Var(const E& e) : Var(TapeAccess::record(e)) {}

// rules::once for an expression: record it, so that a rule's value used twice is one node (rules.hpp).
template <VarExpression E> Var once(const E& e) { return Var(e); }

// ---- arithmetic ----------------------------------------------------------------------------------
// Always inlined, as are the functions below: a call would keep the operands in memory across it
// (docs/design.md, "Note [Recording fast path]").
template <Operand A, Operand B, class = detail::operand_only<A>>
[[gnu::always_inline]] inline auto operator+(const A& a, const B& b) {
  return BinaryExpr<rules::Add, A, B>(a, b, a.value() + b.value());
}
template <Operand A, Operand B, class = detail::operand_only<A>>
[[gnu::always_inline]] inline auto operator-(const A& a, const B& b) {
  return BinaryExpr<rules::Sub, A, B>(a, b, a.value() - b.value());
}
template <Operand A, Operand B, class = detail::operand_only<A>>
[[gnu::always_inline]] inline auto operator*(const A& a, const B& b) {
  return BinaryExpr<rules::Mul, A, B>(a, b, a.value() * b.value());
}
template <Operand A, Operand B, class = detail::operand_only<A>>
[[gnu::always_inline]] inline auto operator/(const A& a, const B& b) {
  return BinaryExpr<rules::Div, A, B>(a, b, a.value() / b.value());
}
template <Operand A, class = detail::operand_only<A>> [[gnu::always_inline]] inline auto operator-(const A& a) {
  return UnaryExpr<rules::Neg, A>(a, -a.value());
}
template <Operand A, class = detail::operand_only<A>> [[gnu::always_inline]] inline A operator+(const A& a) {
  return a;
}

template <Operand A, class = detail::operand_only<A>>
[[gnu::always_inline]] inline auto operator+(const A& a, double c) {
  return UnaryExpr<rules::AddC, A>(a, a.value() + c);
}
template <Operand A, class = detail::operand_only<A>>
[[gnu::always_inline]] inline auto operator+(double c, const A& a) {
  return UnaryExpr<rules::AddC, A>(a, c + a.value());
}
template <Operand A, class = detail::operand_only<A>>
[[gnu::always_inline]] inline auto operator-(const A& a, double c) {
  return UnaryExpr<rules::AddC, A>(a, a.value() - c);
}
template <Operand A, class = detail::operand_only<A>>
[[gnu::always_inline]] inline auto operator-(double c, const A& a) {
  return UnaryExpr<rules::RSubC, A>(a, c - a.value());
}
template <Operand A, class = detail::operand_only<A>>
[[gnu::always_inline]] inline auto operator*(const A& a, double c) {
  return UnaryConstExpr<rules::MulC, A>(a, c, a.value() * c);
}
template <Operand A, class = detail::operand_only<A>>
[[gnu::always_inline]] inline auto operator*(double c, const A& a) {
  return UnaryConstExpr<rules::MulC, A>(a, c, c * a.value());
}
template <Operand A, class = detail::operand_only<A>>
[[gnu::always_inline]] inline auto operator/(const A& a, double c) {
  return UnaryConstExpr<rules::DivC, A>(a, c, a.value() / c);
}
template <Operand A, class = detail::operand_only<A>>
[[gnu::always_inline]] inline auto operator/(double c, const A& a) {
  return UnaryExpr<rules::RDivC, A>(a, c / a.value());
}

template <Operand E> Var& Var::operator+=(const E& o) { return *this = *this + o; }
template <Operand E> Var& Var::operator-=(const E& o) { return *this = *this - o; }
template <Operand E> Var& Var::operator*=(const E& o) { return *this = *this * o; }
template <Operand E> Var& Var::operator/=(const E& o) { return *this = *this / o; }
inline Var& Var::operator+=(double c) { return *this = *this + c; }
inline Var& Var::operator-=(double c) { return *this = *this - c; }
inline Var& Var::operator*=(double c) { return *this = *this * c; }
inline Var& Var::operator/=(double c) { return *this = *this / c; }

// ---- functions -------------------------------------------------------------------------------------
// Templates constrained to Operand, so that a double argument never converts to a new leaf: inside
// namespace autodiff `exp(1.0)` then fails to compile instead of recording silently, and in user
// code with `using namespace autodiff;` it still finds ::exp.
#define TAPEGRAD_UNARY(fn, Rule)                                                                                       \
  template <Operand V> [[gnu::always_inline]] inline auto fn(const V& a) {                                             \
    return UnaryExpr<rules::Rule, V>(a, rules::Rule::f(a.value()));                                                    \
  }
TAPEGRAD_VAR_UNARY_FUNCTIONS(TAPEGRAD_UNARY)
#undef TAPEGRAD_UNARY
#undef TAPEGRAD_VAR_UNARY_FUNCTIONS

// The functions of two operands, written once as the unary ones above.
#define TAPEGRAD_BINARY(fn, Rule)                                                                                      \
  template <Operand A, Operand B> [[gnu::always_inline]] inline auto fn(const A& a, const B& b) {                      \
    return BinaryExpr<rules::Rule, A, B>(a, b, rules::Rule::f(a.value(), b.value()));                                  \
  }
TAPEGRAD_BINARY(pow, Pow)
TAPEGRAD_BINARY(atan2, Atan2)
TAPEGRAD_BINARY(hypot, Hypot)
TAPEGRAD_BINARY(max, Max)
TAPEGRAD_BINARY(min, Min)
#undef TAPEGRAD_BINARY

template <Operand A> [[gnu::always_inline]] inline auto pow(const A& a, double c) {
  return UnaryConstExpr<rules::PowC, A>(a, c, std::pow(a.value(), c));
}
template <Operand A> [[gnu::always_inline]] inline auto pow(double c, const A& a) {
  return UnaryConstExpr<rules::RPowC, A>(a, c, std::pow(c, a.value()));
}
// The constant keeps its place: the value is the double overload's for the operands in the same
// order (at a tie of -0 and +0 that is the first).
#define TAPEGRAD_EXTREMUM_CONST(fn, Rule, pick)                                                                        \
  template <Operand A> [[gnu::always_inline]] inline auto fn(const A& a, double c) {                                   \
    return UnaryConstExpr<rules::Rule, A>(a, c, rules::pick(a.value(), c));                                            \
  }                                                                                                                    \
  template <Operand A> [[gnu::always_inline]] inline auto fn(double c, const A& a) {                                   \
    return UnaryConstExpr<rules::Rule, A>(a, c, rules::pick(c, a.value()));                                            \
  }
TAPEGRAD_EXTREMUM_CONST(max, MaxC, max_value)
TAPEGRAD_EXTREMUM_CONST(min, MinC, min_value)
#undef TAPEGRAD_EXTREMUM_CONST
// The rarely mixed binary functions take a double as a constant leaf.
template <Operand A> auto atan2(const A& a, double b) { return atan2(a, Var(b)); }
template <Operand A> auto atan2(double a, const A& b) { return atan2(Var(a), b); }
template <Operand A> auto hypot(const A& a, double b) { return hypot(a, Var(b)); }
template <Operand A> auto hypot(double a, const A& b) { return hypot(Var(a), b); }

} // namespace autodiff
