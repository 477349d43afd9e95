#pragma once
// Internal: a dual number (value, tangent) for the forward-over-reverse Hessian-vector product
// (autodiff/src/hvp.cpp, docs/design.md "Note [Forward over reverse]"). The reverse sweep runs the
// ops' own vjp rules with Dual operands and adjoints, so Dual has the arithmetic and every math
// function those rules call (found by argument-dependent lookup, as for Var).
//
// No derivative is written here: each operation takes its value from the op's f (or the same
// expression) and its partial derivatives from the op's vjp rule, run with doubles and g = 1 in a
// context that collects them (Partials). A Dual's derivatives are therefore the tape's, kinks and
// conventions included (pow in b where a <= 0, hypot at the origin, max at a tie).

#include <autodiff/rules.hpp>

#include <cmath>

namespace autodiff::detail {

struct Dual {
  double v = 0; // value
  double t = 0; // tangent: the derivative along the direction of the product
};

// A partial derivative times a tangent, with an exact 0 for a zero factor whatever the other one
// is (inf, NaN): the forward form of Note [Zero adjoints]. A direction that does not move an operand
// (t = 0) then adds nothing through an infinite partial, so v = 0 gives H v = 0 exactly, as the
// create_graph path's zero-adjoint sweep does; likewise a zero partial (an adjoint of value 0)
// adds nothing of an infinite tangent.
constexpr double tangent_term(double partial, double tangent) { return tangent == 0 ? 0.0 : partial * tangent; }

// The context that collects an op's partial derivatives: its rule run with g = 1 and double
// operands; da/db/da_neg/db_neg add to d/da and d/db.
struct Partials {
  double a_ = 0, b_ = 0, r_ = 0, c_ = 0;
  double pa = 0, pb = 0;
  static constexpr double g() { return 1.0; }
  constexpr double a() const { return a_; }
  constexpr double b() const { return b_; }
  constexpr double r() const { return r_; }
  constexpr double c() const { return c_; }
  constexpr void da(double p) { pa += p; }
  constexpr void db(double p) { pb += p; }
  constexpr void da_neg(double p) { pa -= p; }
  constexpr void db_neg(double p) { pb -= p; }
};

// One op of the rules table applied to duals: its value r (computed by the caller, as the op
// computes it) and the tangent from the rule's partials.
template <class R> inline Dual dual_unary(Dual a, double r, double c = 0) {
  Partials p{a.v, 0, r, c};
  R::vjp(p);
  return {r, tangent_term(p.pa, a.t)};
}
template <class R> inline Dual dual_binary(Dual a, Dual b, double r) {
  Partials p{a.v, b.v, r, 0};
  R::vjp(p);
  return {r, tangent_term(p.pa, a.t) + tangent_term(p.pb, b.t)};
}

// Arithmetic, as Var records it: a constant operand is the op's constant (mul_scalar, rsub_scalar, ...).
inline Dual operator-(Dual a) { return dual_unary<rules::Neg>(a, -a.v); }
inline Dual operator+(Dual a, Dual b) { return dual_binary<rules::Add>(a, b, a.v + b.v); }
inline Dual operator-(Dual a, Dual b) { return dual_binary<rules::Sub>(a, b, a.v - b.v); }
inline Dual operator*(Dual a, Dual b) { return dual_binary<rules::Mul>(a, b, a.v * b.v); }
inline Dual operator/(Dual a, Dual b) { return dual_binary<rules::Div>(a, b, a.v / b.v); }
inline Dual operator+(Dual a, double c) { return dual_unary<rules::AddC>(a, a.v + c); }
inline Dual operator+(double c, Dual a) { return dual_unary<rules::AddC>(a, c + a.v); }
inline Dual operator-(Dual a, double c) { return dual_unary<rules::AddC>(a, a.v - c); }
inline Dual operator-(double c, Dual a) { return dual_unary<rules::RSubC>(a, c - a.v); }
inline Dual operator*(Dual a, double c) { return dual_unary<rules::MulC>(a, a.v * c, c); }
inline Dual operator*(double c, Dual a) { return dual_unary<rules::MulC>(a, c * a.v, c); }
inline Dual operator/(Dual a, double c) { return dual_unary<rules::DivC>(a, a.v / c, c); }
inline Dual operator/(double c, Dual a) { return dual_unary<rules::RDivC>(a, c / a.v); }
inline Dual& operator+=(Dual& a, Dual b) { return a = a + b; }
inline Dual& operator-=(Dual& a, Dual b) { return a = a - b; }

// Comparisons look at values only (the rules' `when` conditions).
inline bool operator==(Dual a, Dual b) { return a.v == b.v; }
inline bool operator==(Dual a, double b) { return a.v == b; }
inline bool operator<(Dual a, Dual b) { return a.v < b.v; }
inline bool operator<(Dual a, double b) { return a.v < b; }
inline bool operator>(Dual a, Dual b) { return a.v > b.v; }
inline bool operator>(Dual a, double b) { return a.v > b; }
inline bool operator<=(Dual a, double b) { return a.v <= b; }
inline bool operator>=(Dual a, double b) { return a.v >= b; }

// The math functions the rules call (rules.hpp: unqualified, after `using std::f;`).
inline Dual exp(Dual a) { return dual_unary<rules::Exp>(a, rules::Exp::f(a.v)); }
inline Dual log(Dual a) { return dual_unary<rules::Log>(a, rules::Log::f(a.v)); }
inline Dual sqrt(Dual a) { return dual_unary<rules::Sqrt>(a, rules::Sqrt::f(a.v)); }
inline Dual sin(Dual a) { return dual_unary<rules::Sin>(a, rules::Sin::f(a.v)); }
inline Dual cos(Dual a) { return dual_unary<rules::Cos>(a, rules::Cos::f(a.v)); }
inline Dual sinh(Dual a) { return dual_unary<rules::Sinh>(a, rules::Sinh::f(a.v)); }
inline Dual cosh(Dual a) { return dual_unary<rules::Cosh>(a, rules::Cosh::f(a.v)); }
inline Dual sigmoid(Dual a) { return dual_unary<rules::Sigmoid>(a, rules::Sigmoid::f(a.v)); }
inline Dual pow(Dual a, Dual b) { return dual_binary<rules::Pow>(a, b, rules::Pow::f(a.v, b.v)); }
inline Dual pow(Dual a, double c) { return dual_unary<rules::PowC>(a, rules::PowC::f(a.v, c), c); }
inline Dual hypot(Dual a, Dual b) { return dual_binary<rules::Hypot>(a, b, rules::Hypot::f(a.v, b.v)); }
inline Dual hypot(Dual a, double c) { return hypot(a, Dual{c, 0}); }

} // namespace autodiff::detail
