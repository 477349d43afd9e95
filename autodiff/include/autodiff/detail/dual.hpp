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

// K tangents at once (vector mode: a Hessian takes K columns per sweep); hvp uses K = 1.
template <int K> struct DualN {
  double v = 0;     // value
  double t[K] = {}; // tangents: derivatives along K directions
};
using Dual = DualN<1>;

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
// computes it) and the tangents from the rule's partials.
template <class R, int K> inline DualN<K> dual_unary(const DualN<K>& a, double r, double c = 0) {
  Partials p{a.v, 0, r, c};
  R::vjp(p);
  DualN<K> out;
  out.v = r;
  for (int k = 0; k < K; ++k)
    out.t[k] = tangent_term(p.pa, a.t[k]);
  return out;
}
template <class R, int K> inline DualN<K> dual_binary(const DualN<K>& a, const DualN<K>& b, double r) {
  Partials p{a.v, b.v, r, 0};
  R::vjp(p);
  DualN<K> out;
  out.v = r;
  for (int k = 0; k < K; ++k)
    out.t[k] = tangent_term(p.pa, a.t[k]) + tangent_term(p.pb, b.t[k]);
  return out;
}

// Arithmetic, as Var records it: a constant operand is the op's constant (mul_scalar, rsub_scalar, ...).
template <int K> DualN<K> operator-(const DualN<K>& a) { return dual_unary<rules::Neg>(a, -a.v); }
template <int K> DualN<K> operator+(const DualN<K>& a, const DualN<K>& b) {
  return dual_binary<rules::Add>(a, b, a.v + b.v);
}
template <int K> DualN<K> operator-(const DualN<K>& a, const DualN<K>& b) {
  return dual_binary<rules::Sub>(a, b, a.v - b.v);
}
template <int K> DualN<K> operator*(const DualN<K>& a, const DualN<K>& b) {
  return dual_binary<rules::Mul>(a, b, a.v * b.v);
}
template <int K> DualN<K> operator/(const DualN<K>& a, const DualN<K>& b) {
  return dual_binary<rules::Div>(a, b, a.v / b.v);
}
template <int K> DualN<K> operator+(const DualN<K>& a, double c) { return dual_unary<rules::AddC>(a, a.v + c); }
template <int K> DualN<K> operator+(double c, const DualN<K>& a) { return dual_unary<rules::AddC>(a, c + a.v); }
template <int K> DualN<K> operator-(const DualN<K>& a, double c) { return dual_unary<rules::AddC>(a, a.v - c); }
template <int K> DualN<K> operator-(double c, const DualN<K>& a) { return dual_unary<rules::RSubC>(a, c - a.v); }
template <int K> DualN<K> operator*(const DualN<K>& a, double c) { return dual_unary<rules::MulC>(a, a.v * c, c); }
template <int K> DualN<K> operator*(double c, const DualN<K>& a) { return dual_unary<rules::MulC>(a, c * a.v, c); }
template <int K> DualN<K> operator/(const DualN<K>& a, double c) { return dual_unary<rules::DivC>(a, a.v / c, c); }
template <int K> DualN<K> operator/(double c, const DualN<K>& a) { return dual_unary<rules::RDivC>(a, c / a.v); }

// Comparisons look at values only (the rules' `when` conditions).
template <int K> bool operator==(const DualN<K>& a, const DualN<K>& b) { return a.v == b.v; }
template <int K> bool operator==(const DualN<K>& a, double b) { return a.v == b; }
template <int K> bool operator<(const DualN<K>& a, const DualN<K>& b) { return a.v < b.v; }
template <int K> bool operator<(const DualN<K>& a, double b) { return a.v < b; }
template <int K> bool operator>(const DualN<K>& a, const DualN<K>& b) { return a.v > b.v; }
template <int K> bool operator>(const DualN<K>& a, double b) { return a.v > b; }
template <int K> bool operator<=(const DualN<K>& a, double b) { return a.v <= b; }
template <int K> bool operator>=(const DualN<K>& a, double b) { return a.v >= b; }

// The math functions the rules call (rules.hpp: unqualified, after `using std::f;`).
template <int K> DualN<K> exp(const DualN<K>& a) { return dual_unary<rules::Exp>(a, rules::Exp::f(a.v)); }
template <int K> DualN<K> log(const DualN<K>& a) { return dual_unary<rules::Log>(a, rules::Log::f(a.v)); }
template <int K> DualN<K> sqrt(const DualN<K>& a) { return dual_unary<rules::Sqrt>(a, rules::Sqrt::f(a.v)); }
template <int K> DualN<K> sin(const DualN<K>& a) { return dual_unary<rules::Sin>(a, rules::Sin::f(a.v)); }
template <int K> DualN<K> cos(const DualN<K>& a) { return dual_unary<rules::Cos>(a, rules::Cos::f(a.v)); }
template <int K> DualN<K> sinh(const DualN<K>& a) { return dual_unary<rules::Sinh>(a, rules::Sinh::f(a.v)); }
template <int K> DualN<K> cosh(const DualN<K>& a) { return dual_unary<rules::Cosh>(a, rules::Cosh::f(a.v)); }
template <int K> DualN<K> sigmoid(const DualN<K>& a) { return dual_unary<rules::Sigmoid>(a, rules::Sigmoid::f(a.v)); }
template <int K> DualN<K> pow(const DualN<K>& a, const DualN<K>& b) {
  return dual_binary<rules::Pow>(a, b, rules::Pow::f(a.v, b.v));
}
template <int K> DualN<K> pow(const DualN<K>& a, double c) {
  return dual_unary<rules::PowC>(a, rules::PowC::f(a.v, c), c);
}
template <int K> DualN<K> hypot(const DualN<K>& a, const DualN<K>& b) {
  return dual_binary<rules::Hypot>(a, b, rules::Hypot::f(a.v, b.v));
}
template <int K> DualN<K> hypot(const DualN<K>& a, double c) {
  DualN<K> b;
  b.v = c;
  return hypot(a, b);
}

} // namespace autodiff::detail
