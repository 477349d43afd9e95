#pragma once
// autodiff::Var: a double whose operations are recorded on the thread's active tape.

#include <autodiff/tape.hpp>

#include <compare>
#include <concepts>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

namespace autodiff {

class Var {
public:
  // An independent variable (a leaf of the active tape) with value 0 or v.
  Var() : Var(0.0) {}
  Var(double v) { // NOLINT(google-explicit-constructor): `Var x = 1.5;` is the intended spelling
    Tape& t = Tape::active();
    v_ = v;
    i_ = t.push_node(OpCode::Leaf, v);
    gen_ = t.gen_;
  }

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

  Var& operator+=(const Var& o);
  Var& operator-=(const Var& o);
  Var& operator*=(const Var& o);
  Var& operator/=(const Var& o);
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

// ---- arithmetic (defined below, after the recording primitives) -----------------------------------
// Always inlined, as are the functions below and the recording primitives they call: a call would
// keep the operands and the tape's fields in memory across it (docs/design.md, "Note [Recording fast
// path]"), and GCC declines some of these wrappers once the primitive is inlined into them.
[[gnu::always_inline]] inline Var operator+(const Var& a, const Var& b);
[[gnu::always_inline]] inline Var operator-(const Var& a, const Var& b);
[[gnu::always_inline]] inline Var operator*(const Var& a, const Var& b);
[[gnu::always_inline]] inline Var operator/(const Var& a, const Var& b);
[[gnu::always_inline]] inline Var operator-(const Var& a);
[[gnu::always_inline]] inline Var operator+(const Var& a);
[[gnu::always_inline]] inline Var operator+(const Var& a, double c);
[[gnu::always_inline]] inline Var operator+(double c, const Var& a);
[[gnu::always_inline]] inline Var operator-(const Var& a, double c);
[[gnu::always_inline]] inline Var operator-(double c, const Var& a);
[[gnu::always_inline]] inline Var operator*(const Var& a, double c);
[[gnu::always_inline]] inline Var operator*(double c, const Var& a);
[[gnu::always_inline]] inline Var operator/(const Var& a, double c);
[[gnu::always_inline]] inline Var operator/(double c, const Var& a);

// Comparisons look at values only and record nothing.
inline bool operator==(const Var& a, const Var& b) { return a.value() == b.value(); }
inline bool operator==(const Var& a, double b) { return a.value() == b; }
inline std::partial_ordering operator<=>(const Var& a, const Var& b) { return a.value() <=> b.value(); }
inline std::partial_ordering operator<=>(const Var& a, double b) { return a.value() <=> b; }

// ---- functions (defined below) ---------------------------------------------------------------------
// The functions are templates constrained to Var so that a double argument never converts to a new
// leaf: inside namespace autodiff `exp(1.0)` then fails to compile instead of recording silently,
// and in user code with `using namespace autodiff;` it still finds ::exp.
template <class V>
concept IsVar = std::same_as<V, Var>;

// The unary functions of a Var and their rules (rules.hpp): declared here, defined below.
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
#define TAPEGRAD_UNARY(fn, Rule) template <IsVar V> [[gnu::always_inline]] inline Var fn(const V& a);
TAPEGRAD_VAR_UNARY_FUNCTIONS(TAPEGRAD_UNARY)
#undef TAPEGRAD_UNARY

template <IsVar V> [[gnu::always_inline]] inline Var pow(const V& a, const V& b);
template <IsVar V> [[gnu::always_inline]] inline Var pow(const V& a, double c);
template <IsVar V> [[gnu::always_inline]] inline Var pow(double c, const V& a);
template <IsVar V> [[gnu::always_inline]] inline Var atan2(const V& a, const V& b);
template <IsVar V> [[gnu::always_inline]] inline Var hypot(const V& a, const V& b);
template <IsVar V> [[gnu::always_inline]] inline Var max(const V& a, const V& b);
template <IsVar V> [[gnu::always_inline]] inline Var min(const V& a, const V& b);
template <IsVar V> [[gnu::always_inline]] inline Var max(const V& a, double c);
template <IsVar V> [[gnu::always_inline]] inline Var max(double c, const V& a);
template <IsVar V> [[gnu::always_inline]] inline Var min(const V& a, double c);
template <IsVar V> [[gnu::always_inline]] inline Var min(double c, const V& a);
template <IsVar V> [[gnu::always_inline]] inline Var atan2(const V& a, double b);
template <IsVar V> [[gnu::always_inline]] inline Var atan2(double a, const V& b);
template <IsVar V> [[gnu::always_inline]] inline Var hypot(const V& a, double b);
template <IsVar V> [[gnu::always_inline]] inline Var hypot(double a, const V& b);

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
// What follows records: TapeAccess, which can make a Var for any node of a tape, and the bodies of
// the operators and functions declared above.

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

  // The recording fast path (docs/design.md, "Note [Recording fast path]"): one thread-local load,
  // one generation test per operation (two operands share a branch), one capacity test. The result
  // carries the operand's generation: after the test it equals the tape's, and reading it from the
  // Var avoids reloading the tape after the stores.
  template <class R> [[gnu::always_inline]] static Var unary(const Var& a, double r) {
    Tape& t = *Tape::tl_active_;
    if (a.gen_ != t.gen_) [[unlikely]]
      foreign(R::name, a.i_, a.gen_, t);
    return Var(Var::Node{}, r, t.push_node(detail::code_of<R>, r, a.i_), a.gen_);
  }
  template <class R> [[gnu::always_inline]] static Var unary_const(const Var& a, double c, double r) {
    Tape& t = *Tape::tl_active_;
    if (a.gen_ != t.gen_) [[unlikely]]
      foreign(R::name, a.i_, a.gen_, t);
    return Var(Var::Node{}, r, t.push_node(detail::code_of<R>, r, a.i_, c), a.gen_);
  }
  template <class R> [[gnu::always_inline]] static Var binary(const Var& a, const Var& b, double r) {
    Tape& t = *Tape::tl_active_;
    const std::uint64_t g = t.gen_;
    if (((a.gen_ ^ g) | (b.gen_ ^ g)) != 0) [[unlikely]]
      foreign(R::name, a.i_, a.gen_, b.i_, b.gen_, t);
    return Var(Var::Node{}, r, t.push_node(detail::code_of<R>, r, a.i_, b.i_), a.gen_);
  }
};

// ---- arithmetic, defined -------------------------------------------------------------------------
inline Var operator+(const Var& a, const Var& b) { return TapeAccess::binary<rules::Add>(a, b, a.value() + b.value()); }
inline Var operator-(const Var& a, const Var& b) { return TapeAccess::binary<rules::Sub>(a, b, a.value() - b.value()); }
inline Var operator*(const Var& a, const Var& b) { return TapeAccess::binary<rules::Mul>(a, b, a.value() * b.value()); }
inline Var operator/(const Var& a, const Var& b) { return TapeAccess::binary<rules::Div>(a, b, a.value() / b.value()); }
inline Var operator-(const Var& a) { return TapeAccess::unary<rules::Neg>(a, -a.value()); }
inline Var operator+(const Var& a) { return a; }

inline Var operator+(const Var& a, double c) { return TapeAccess::unary<rules::AddC>(a, a.value() + c); }
inline Var operator+(double c, const Var& a) { return TapeAccess::unary<rules::AddC>(a, c + a.value()); }
inline Var operator-(const Var& a, double c) { return TapeAccess::unary<rules::AddC>(a, a.value() - c); }
inline Var operator-(double c, const Var& a) { return TapeAccess::unary<rules::RSubC>(a, c - a.value()); }
inline Var operator*(const Var& a, double c) { return TapeAccess::unary_const<rules::MulC>(a, c, a.value() * c); }
inline Var operator*(double c, const Var& a) { return TapeAccess::unary_const<rules::MulC>(a, c, c * a.value()); }
inline Var operator/(const Var& a, double c) { return TapeAccess::unary_const<rules::DivC>(a, c, a.value() / c); }
inline Var operator/(double c, const Var& a) { return TapeAccess::unary<rules::RDivC>(a, c / a.value()); }

inline Var& Var::operator+=(const Var& o) { return *this = *this + o; }
inline Var& Var::operator-=(const Var& o) { return *this = *this - o; }
inline Var& Var::operator*=(const Var& o) { return *this = *this * o; }
inline Var& Var::operator/=(const Var& o) { return *this = *this / o; }
inline Var& Var::operator+=(double c) { return *this = *this + c; }
inline Var& Var::operator-=(double c) { return *this = *this - c; }
inline Var& Var::operator*=(double c) { return *this = *this * c; }
inline Var& Var::operator/=(double c) { return *this = *this / c; }

// ---- functions, defined --------------------------------------------------------------------------

#define TAPEGRAD_UNARY(fn, Rule)                                                                                       \
  template <IsVar V> Var fn(const V& a) { return TapeAccess::unary<rules::Rule>(a, rules::Rule::f(a.value())); }
TAPEGRAD_VAR_UNARY_FUNCTIONS(TAPEGRAD_UNARY)
#undef TAPEGRAD_UNARY
#undef TAPEGRAD_VAR_UNARY_FUNCTIONS

template <IsVar V> Var pow(const V& a, const V& b) {
  return TapeAccess::binary<rules::Pow>(a, b, rules::Pow::f(a.value(), b.value()));
}
template <IsVar V> Var pow(const V& a, double c) {
  return TapeAccess::unary_const<rules::PowC>(a, c, std::pow(a.value(), c));
}
template <IsVar V> Var pow(double c, const V& a) {
  return TapeAccess::unary_const<rules::RPowC>(a, c, std::pow(c, a.value()));
}
template <IsVar V> Var atan2(const V& a, const V& b) {
  return TapeAccess::binary<rules::Atan2>(a, b, rules::Atan2::f(a.value(), b.value()));
}
template <IsVar V> Var hypot(const V& a, const V& b) {
  return TapeAccess::binary<rules::Hypot>(a, b, rules::Hypot::f(a.value(), b.value()));
}
template <IsVar V> Var max(const V& a, const V& b) {
  return TapeAccess::binary<rules::Max>(a, b, rules::Max::f(a.value(), b.value()));
}
template <IsVar V> Var min(const V& a, const V& b) {
  return TapeAccess::binary<rules::Min>(a, b, rules::Min::f(a.value(), b.value()));
}
// The constant keeps its place: the value is the double overload's for the operands in the same
// order (at a tie of -0 and +0 that is the first).
template <IsVar V> Var max(const V& a, double c) {
  return TapeAccess::unary_const<rules::MaxC>(a, c, rules::max_value(a.value(), c));
}
template <IsVar V> Var max(double c, const V& a) {
  return TapeAccess::unary_const<rules::MaxC>(a, c, rules::max_value(c, a.value()));
}
template <IsVar V> Var min(const V& a, double c) {
  return TapeAccess::unary_const<rules::MinC>(a, c, rules::min_value(a.value(), c));
}
template <IsVar V> Var min(double c, const V& a) {
  return TapeAccess::unary_const<rules::MinC>(a, c, rules::min_value(c, a.value()));
}
// The rarely mixed binary functions take a double as a constant leaf.
template <IsVar V> Var atan2(const V& a, double b) { return atan2(a, Var(b)); }
template <IsVar V> Var atan2(double a, const V& b) { return atan2(Var(a), b); }
template <IsVar V> Var hypot(const V& a, double b) { return hypot(a, Var(b)); }
template <IsVar V> Var hypot(double a, const V& b) { return hypot(Var(a), b); }

} // namespace autodiff
