#pragma once
// The scalar primitives: each op's forward value and its derivative rule, side by side. The
// elementwise tensor ops run the same rules (docs/design.md, "Adding a scalar op" and "Adding a
// tensor op" say what else an op needs).
//
// A rule is a vector-Jacobian product written once as a template over a context `x`:
//   x.g()            the adjoint of the result
//   x.a(), x.b()     the operands, x.r() the result, x.c() the recorded constant
//   x.da(v), x.db(v) add v to the operands' adjoints (not calling one means "contributes nothing")
//   x.da_neg(v), x.db_neg(v) subtract v: the same numbers, but a create_graph sweep records one
//                    subtraction instead of a negation and an addition
// The reverse sweep runs it with doubles; a create_graph sweep runs the same rule with Var, which
// records the backward pass so it can be differentiated again. In the Var case x.a() and x.r() are
// the recorded nodes themselves, so reusing the result (d exp = g * r) stays exact to any order.
//
// An op that C++ code calls (a function or an operator, not a constant form) also has
//   f(a[, b])        its value with doubles
//   call(a[, b])     the call as C++ code writes it, for Var operands or a Var and a double:
//                    unqualified, so autodiff's public function is found by argument-dependent
//                    lookup; `x * 2` then records mul_scalar, as in C++. Parsed expressions
//                    (expression.cpp) evaluate through f and call, so an op with both is a function
//                    of the expression language under its `name` (operators aside).
//
// Inside rules, math functions are called unqualified after `using std::f;` so that doubles get
// the standard function and Var finds autodiff::f by argument-dependent lookup.
//
// The tensor engine runs the rules too (elementwise.cpp): per element with float or double (its fast
// rule), with recorded tensors (its create_graph rule), and once at compile time with a probe that
// finds which saved values (a, b, r) a rule reads. Hence three conventions:
// - A branch on operand values is written `when(x, cond, [&] { ... })` (or `when_else`), never
//   `if`: with numbers it is that `if`, with tensors cond is a mask applied to what the body adds.
//   Branches on the constant x.c() may stay `if`s, but each branch must read the same values.
// - `vjp` and `f` are templates (f over float and double), and `vjp` is constexpr.
// - Without a branch the per-element loop stays free of branches, so it can be vectorised.

#include <cmath>
#include <concepts>
#include <cstdint>
#include <numbers>
#include <string_view>

namespace autodiff::rules {

// How an op sits on the tape: how many tape operands it reads and whether it stores a constant.
enum class Form : std::uint8_t { leaf, unary, binary, unary_const };

inline constexpr double two_over_sqrt_pi = 2.0 / 1.7724538509055160273; // 2/sqrt(pi)

// Numerically stable forms shared by the double overloads, the rules and the tensor ops. The
// sigmoid has no branch (e^-|a| is in (0, 1], so neither form overflows), so loops vectorise.
template <std::floating_point T> T sigmoid_value(T a) {
  const T e = std::exp(-std::abs(a));
  return (a >= 0 ? T(1) : e) / (T(1) + e);
}
template <std::floating_point T> T softplus_value(T a) {
  return (a > 0 ? a : T(0)) + std::log1p(std::exp(-std::abs(a)));
}
// For the rules: sigmoid(v) of a number; Var and Tensor find their own by argument-dependent lookup.
template <std::floating_point T> T sigmoid(T a) { return sigmoid_value(a); }
// max and min propagate NaN, as PyTorch's maximum/minimum (std::fmax drops it, `a >= b ? a : b`
// depends on the operand order); at a tie, +0 and -0 included, they return the first operand.
// Every form (double, Var, Var and a constant on either side, tensors) computes its value here.
template <std::floating_point T> T max_value(T a, T b) { return a >= b || std::isnan(a) ? a : b; }
template <std::floating_point T> T min_value(T a, T b) { return a <= b || std::isnan(a) ? a : b; }

// `if (cond) then();` for rules, in a form the tensor contexts can run elementwise: a context with a
// `when` member (cond is then a mask) applies cond to every contribution then() makes.
template <class X, class C, class F> constexpr void when(X& x, const C& cond, F&& then) {
  if constexpr (requires { x.when(cond, then); })
    x.when(cond, then);
  else if (cond)
    then();
}
// `if (cond) then(); else otherwise();`, likewise (NaN compares false: otherwise() runs).
template <class X, class C, class F, class G> constexpr void when_else(X& x, const C& cond, F&& then, G&& otherwise) {
  if constexpr (requires { x.when_else(cond, then, otherwise); })
    x.when_else(cond, then, otherwise);
  else if (cond)
    then();
  else
    otherwise();
}

// A value a rule uses more than once, evaluated once. With numbers and tensors it is the value
// itself; a Var expression (var.hpp) becomes a Var here, which records it, since the expression
// would otherwise record its nodes at each use (docs/design.md, "Note [Statements]").
template <class T> constexpr T once(const T& v) { return v; }

struct Leaf {
  static constexpr std::string_view name = "leaf";
  static constexpr Form form = Form::leaf;
  template <class X> static constexpr void vjp(X&) {}
};

// ---- binary: both operands on the tape -------------------------------------------------------
struct Add {
  static constexpr std::string_view name = "add";
  static constexpr Form form = Form::binary;
  template <class T> static T f(T a, T b) { return a + b; }
  template <class A, class B> static auto call(const A& a, const B& b) { return a + b; }
  template <class X> static constexpr void vjp(X& x) {
    x.da(x.g());
    x.db(x.g());
  }
};
struct Sub {
  static constexpr std::string_view name = "sub";
  static constexpr Form form = Form::binary;
  template <class T> static T f(T a, T b) { return a - b; }
  template <class A, class B> static auto call(const A& a, const B& b) { return a - b; }
  template <class X> static constexpr void vjp(X& x) {
    x.da(x.g());
    x.db_neg(x.g());
  }
};
struct Mul {
  static constexpr std::string_view name = "mul";
  static constexpr Form form = Form::binary;
  template <class T> static T f(T a, T b) { return a * b; }
  template <class A, class B> static auto call(const A& a, const B& b) { return a * b; }
  template <class X> static constexpr void vjp(X& x) {
    x.da(x.g() * x.b());
    x.db(x.g() * x.a());
  }
};
struct Div {
  static constexpr std::string_view name = "div";
  static constexpr Form form = Form::binary;
  template <class T> static T f(T a, T b) { return a / b; }
  template <class A, class B> static auto call(const A& a, const B& b) { return a / b; }
  template <class X> static constexpr void vjp(X& x) {
    const auto ga = once(x.g() / x.b());
    x.da(ga);
    x.db_neg(ga * x.r());
  }
};
struct Pow {
  static constexpr std::string_view name = "pow";
  static constexpr Form form = Form::binary;
  template <class T> static T f(T a, T b) { return std::pow(a, b); }
  template <class A, class B> static auto call(const A& a, const B& b) { return pow(a, b); }
  template <class X> static constexpr void vjp(X& x) {
    using std::log;
    using std::pow;
    // d/da = b a^(b-1). At b == 0 it is 0, and is computed as such (0 times a finite power) wherever
    // it can be: dropped at b == 0 alone, the recorded derivative lost its dependence on b, and a
    // create_graph Hessian had d2/da db = 0 against d2/db da = 1/a. Only at a == 0 (0 * inf) and at
    // a NaN (pow(NaN, 0) is 1 whatever a is) is it dropped, as PyTorch drops it at every b == 0.
    const auto add_da = [&] { x.da(x.g() * x.b() * pow(x.a(), x.b() - 1.0)); };
    when_else(x, x.b() != 0, add_da, [&] { when(x, x.a() != 0, [&] { when(x, x.a() == x.a(), add_da); }); });
    // d/db = r log a; where a <= 0 the real power is only defined on integers (or is 0), so the
    // derivative in b is taken as 0 there, as PyTorch does, instead of NaN from log.
    when(x, x.a() > 0, [&] { x.db(x.g() * x.r() * log(x.a())); });
  }
};
struct Atan2 { // atan2(a, b): the angle of the point (b, a)
  static constexpr std::string_view name = "atan2";
  static constexpr Form form = Form::binary;
  static double f(double a, double b) { return std::atan2(a, b); }
  template <class A, class B> static auto call(const A& a, const B& b) { return atan2(a, b); }
  template <class X> static constexpr void vjp(X& x) {
    const auto s = once(x.g() / (x.a() * x.a() + x.b() * x.b()));
    x.da(s * x.b());
    x.db_neg(s * x.a());
  }
};
struct Hypot {
  static constexpr std::string_view name = "hypot";
  static constexpr Form form = Form::binary;
  static double f(double a, double b) { return std::hypot(a, b); }
  template <class A, class B> static auto call(const A& a, const B& b) { return hypot(a, b); }
  template <class X> static constexpr void vjp(X& x) {
    when(x, x.r() != 0, [&] { // subgradient 0 at the origin
      const auto s = once(x.g() / x.r());
      x.da(s * x.a());
      x.db(s * x.b());
    });
  }
};
// At a tie the gradient is split evenly, as PyTorch's maximum/minimum do; with a NaN operand
// neither side wins or ties, so nothing flows (as the constant forms and PyTorch).
struct Max {
  static constexpr std::string_view name = "max";
  static constexpr Form form = Form::binary;
  template <class T> static T f(T a, T b) { return max_value(a, b); }
  template <class A, class B> static auto call(const A& a, const B& b) { return max(a, b); }
  template <class X> static constexpr void vjp(X& x) {
    when_else(
        x, x.a() > x.b(), [&] { x.da(x.g()); },
        [&] {
          when_else(
              x, x.b() > x.a(), [&] { x.db(x.g()); },
              [&] {
                when(x, x.a() == x.b(), [&] {
                  x.da(0.5 * x.g());
                  x.db(0.5 * x.g());
                });
              });
        });
  }
};
struct Min {
  static constexpr std::string_view name = "min";
  static constexpr Form form = Form::binary;
  template <class T> static T f(T a, T b) { return min_value(a, b); }
  template <class A, class B> static auto call(const A& a, const B& b) { return min(a, b); }
  template <class X> static constexpr void vjp(X& x) {
    when_else(
        x, x.a() < x.b(), [&] { x.da(x.g()); },
        [&] {
          when_else(
              x, x.b() < x.a(), [&] { x.db(x.g()); },
              [&] {
                when(x, x.a() == x.b(), [&] {
                  x.da(0.5 * x.g());
                  x.db(0.5 * x.g());
                });
              });
        });
  }
};

// ---- one tape operand and a plain double constant ---------------------------------------------
// Constants whose value the rule does not need (a + c, c - a) are not stored: the tape stays small.
struct AddC {
  static constexpr std::string_view name = "add_scalar";
  static constexpr Form form = Form::unary;
  template <class T> static T f(T a, T c) { return a + c; }
  template <class X> static constexpr void vjp(X& x) { x.da(x.g()); }
};
struct RSubC { // c - a
  static constexpr std::string_view name = "rsub_scalar";
  static constexpr Form form = Form::unary;
  template <class T> static T f(T a, T c) { return c - a; }
  template <class X> static constexpr void vjp(X& x) { x.da_neg(x.g()); }
};
struct MulC {
  static constexpr std::string_view name = "mul_scalar";
  static constexpr Form form = Form::unary_const;
  template <class T> static T f(T a, T c) { return a * c; }
  template <class X> static constexpr void vjp(X& x) { x.da(x.g() * x.c()); }
};
struct DivC { // a / c
  static constexpr std::string_view name = "div_scalar";
  static constexpr Form form = Form::unary_const;
  template <class T> static T f(T a, T c) { return a / c; }
  template <class X> static constexpr void vjp(X& x) { x.da(x.g() / x.c()); }
};
struct RDivC { // c / a: d/da = -c/a^2 = -r/a, so c need not be stored
  static constexpr std::string_view name = "rdiv_scalar";
  static constexpr Form form = Form::unary;
  template <class T> static T f(T a, T c) { return c / a; }
  template <class X> static constexpr void vjp(X& x) { x.da_neg(x.g() * x.r() / x.a()); }
};
struct PowC { // a^c
  static constexpr std::string_view name = "pow_scalar";
  static constexpr Form form = Form::unary_const;
  template <class T> static T f(T a, T c) { return std::pow(a, c); }
  template <class X> static constexpr void vjp(X& x) {
    using std::pow;
    if (x.c() == 0) return;
    if (x.c() == 2)
      x.da(2.0 * x.g() * x.a()); // exact, and keeps the second-order graph small
    else
      x.da(x.g() * x.c() * pow(x.a(), x.c() - 1.0));
  }
};
struct RPowC { // c^a
  static constexpr std::string_view name = "rpow_scalar";
  static constexpr Form form = Form::unary_const;
  template <class X> static constexpr void vjp(X& x) {
    if (x.c() > 0) x.da(x.g() * x.r() * std::log(x.c()));
  }
};
struct MaxC {
  static constexpr std::string_view name = "max_scalar";
  static constexpr Form form = Form::unary_const;
  template <class T> static T f(T a, T c) { return max_value(a, c); }
  template <class X> static constexpr void vjp(X& x) {
    when_else(
        x, x.a() > x.c(), [&] { x.da(x.g()); }, [&] { when(x, x.a() == x.c(), [&] { x.da(0.5 * x.g()); }); });
  }
};
struct MinC {
  static constexpr std::string_view name = "min_scalar";
  static constexpr Form form = Form::unary_const;
  template <class T> static T f(T a, T c) { return min_value(a, c); }
  template <class X> static constexpr void vjp(X& x) {
    when_else(
        x, x.a() < x.c(), [&] { x.da(x.g()); }, [&] { when(x, x.a() == x.c(), [&] { x.da(0.5 * x.g()); }); });
  }
};

// ---- unary functions -----------------------------------------------------------------------
struct Neg {
  static constexpr std::string_view name = "neg";
  static constexpr Form form = Form::unary;
  template <class T> static T f(T a) { return -a; }
  template <class A> static auto call(const A& a) { return -a; }
  template <class X> static constexpr void vjp(X& x) { x.da_neg(x.g()); }
};
struct Exp {
  static constexpr std::string_view name = "exp";
  static constexpr Form form = Form::unary;
  template <class T> static T f(T a) { return std::exp(a); }
  template <class A> static auto call(const A& a) { return exp(a); }
  template <class X> static constexpr void vjp(X& x) { x.da(x.g() * x.r()); }
};
struct Log {
  static constexpr std::string_view name = "log";
  static constexpr Form form = Form::unary;
  template <class T> static T f(T a) { return std::log(a); }
  template <class A> static auto call(const A& a) { return log(a); }
  template <class X> static constexpr void vjp(X& x) { x.da(x.g() / x.a()); }
};
struct Log1p {
  static constexpr std::string_view name = "log1p";
  static constexpr Form form = Form::unary;
  template <class T> static T f(T a) { return std::log1p(a); }
  template <class A> static auto call(const A& a) { return log1p(a); }
  template <class X> static constexpr void vjp(X& x) { x.da(x.g() / (x.a() + 1.0)); }
};
struct Expm1 {
  static constexpr std::string_view name = "expm1";
  static constexpr Form form = Form::unary;
  template <class T> static T f(T a) { return std::expm1(a); }
  template <class A> static auto call(const A& a) { return expm1(a); }
  template <class X> static constexpr void vjp(X& x) { x.da(x.g() * (x.r() + 1.0)); }
};
struct Sqrt {
  static constexpr std::string_view name = "sqrt";
  static constexpr Form form = Form::unary;
  template <class T> static T f(T a) { return std::sqrt(a); }
  template <class A> static auto call(const A& a) { return sqrt(a); }
  template <class X> static constexpr void vjp(X& x) { x.da(0.5 * x.g() / x.r()); }
};
struct Cbrt {
  static constexpr std::string_view name = "cbrt";
  static constexpr Form form = Form::unary;
  static double f(double a) { return std::cbrt(a); }
  template <class A> static auto call(const A& a) { return cbrt(a); }
  template <class X> static constexpr void vjp(X& x) { x.da(x.g() / (3.0 * x.r() * x.r())); }
};
struct Square {
  static constexpr std::string_view name = "square";
  static constexpr Form form = Form::unary;
  template <class T> static T f(T a) { return a * a; }
  template <class A> static auto call(const A& a) { return square(a); }
  template <class X> static constexpr void vjp(X& x) { x.da(2.0 * x.g() * x.a()); }
};
struct Sin {
  static constexpr std::string_view name = "sin";
  static constexpr Form form = Form::unary;
  template <class T> static T f(T a) { return std::sin(a); }
  template <class A> static auto call(const A& a) { return sin(a); }
  template <class X> static constexpr void vjp(X& x) {
    using std::cos;
    x.da(x.g() * cos(x.a()));
  }
};
struct Cos {
  static constexpr std::string_view name = "cos";
  static constexpr Form form = Form::unary;
  template <class T> static T f(T a) { return std::cos(a); }
  template <class A> static auto call(const A& a) { return cos(a); }
  template <class X> static constexpr void vjp(X& x) {
    using std::sin;
    x.da_neg(x.g() * sin(x.a()));
  }
};
struct Tan {
  static constexpr std::string_view name = "tan";
  static constexpr Form form = Form::unary;
  template <class T> static T f(T a) { return std::tan(a); }
  template <class A> static auto call(const A& a) { return tan(a); }
  template <class X> static constexpr void vjp(X& x) { x.da(x.g() * (x.r() * x.r() + 1.0)); }
};
struct Asin {
  static constexpr std::string_view name = "asin";
  static constexpr Form form = Form::unary;
  static double f(double a) { return std::asin(a); }
  template <class A> static auto call(const A& a) { return asin(a); }
  template <class X> static constexpr void vjp(X& x) {
    using std::sqrt;
    x.da(x.g() / sqrt((1.0 - x.a()) * (x.a() + 1.0))); // (1-a)(1+a) is exact near |a| = 1
  }
};
struct Acos {
  static constexpr std::string_view name = "acos";
  static constexpr Form form = Form::unary;
  static double f(double a) { return std::acos(a); }
  template <class A> static auto call(const A& a) { return acos(a); }
  template <class X> static constexpr void vjp(X& x) {
    using std::sqrt;
    x.da_neg(x.g() / sqrt((1.0 - x.a()) * (x.a() + 1.0)));
  }
};
struct Atan {
  static constexpr std::string_view name = "atan";
  static constexpr Form form = Form::unary;
  static double f(double a) { return std::atan(a); }
  template <class A> static auto call(const A& a) { return atan(a); }
  template <class X> static constexpr void vjp(X& x) { x.da(x.g() / (x.a() * x.a() + 1.0)); }
};
struct Sinh {
  static constexpr std::string_view name = "sinh";
  static constexpr Form form = Form::unary;
  static double f(double a) { return std::sinh(a); }
  template <class A> static auto call(const A& a) { return sinh(a); }
  template <class X> static constexpr void vjp(X& x) {
    using std::cosh;
    x.da(x.g() * cosh(x.a()));
  }
};
struct Cosh {
  static constexpr std::string_view name = "cosh";
  static constexpr Form form = Form::unary;
  static double f(double a) { return std::cosh(a); }
  template <class A> static auto call(const A& a) { return cosh(a); }
  template <class X> static constexpr void vjp(X& x) {
    using std::sinh;
    x.da(x.g() * sinh(x.a()));
  }
};
struct Tanh {
  static constexpr std::string_view name = "tanh";
  static constexpr Form form = Form::unary;
  template <class T> static T f(T a) { return std::tanh(a); }
  template <class A> static auto call(const A& a) { return tanh(a); }
  template <class X> static constexpr void vjp(X& x) { x.da(x.g() * (1.0 - x.r() * x.r())); }
};
struct Asinh {
  static constexpr std::string_view name = "asinh";
  static constexpr Form form = Form::unary;
  static double f(double a) { return std::asinh(a); }
  template <class A> static auto call(const A& a) { return asinh(a); }
  template <class X> static constexpr void vjp(X& x) {
    using std::hypot;
    x.da(x.g() / hypot(x.a(), 1.0)); // sqrt(a^2 + 1) without overflow for |a| > 1e154
  }
};
struct Acosh {
  static constexpr std::string_view name = "acosh";
  static constexpr Form form = Form::unary;
  static double f(double a) { return std::acosh(a); }
  template <class A> static auto call(const A& a) { return acosh(a); }
  template <class X> static constexpr void vjp(X& x) {
    using std::sqrt;
    x.da(x.g() / sqrt((x.a() - 1.0) * (x.a() + 1.0)));
  }
};
struct Atanh {
  static constexpr std::string_view name = "atanh";
  static constexpr Form form = Form::unary;
  static double f(double a) { return std::atanh(a); }
  template <class A> static auto call(const A& a) { return atanh(a); }
  template <class X> static constexpr void vjp(X& x) { x.da(x.g() / ((1.0 - x.a()) * (x.a() + 1.0))); }
};
struct Sigmoid {
  static constexpr std::string_view name = "sigmoid";
  static constexpr Form form = Form::unary;
  template <class T> static T f(T a) { return sigmoid_value(a); }
  template <class A> static auto call(const A& a) { return sigmoid(a); }
  template <class X> static constexpr void vjp(X& x) {
    // s' = s (1 - s), and 1 - s = s(-a) exactly: 1 - s itself cancels catastrophically for a > 0.
    // No branch (sigmoid_value has none), and differentiable again.
    x.da(x.g() * x.r() * sigmoid(-x.a()));
  }
};
struct Relu {
  static constexpr std::string_view name = "relu";
  static constexpr Form form = Form::unary;
  // NaN stays NaN, as PyTorch's relu: `a > 0 ? a : 0` would turn it into 0, silently.
  template <class T> static T f(T a) { return a <= 0 ? T(0) : a; }
  template <class A> static auto call(const A& a) { return relu(a); }
  template <class X> static constexpr void vjp(X& x) {
    when(x, x.a() > 0, [&] { x.da(x.g()); }); // 0 at the kink, as PyTorch
  }
};
struct Softplus {
  static constexpr std::string_view name = "softplus";
  static constexpr Form form = Form::unary;
  template <class T> static T f(T a) { return softplus_value(a); }
  template <class A> static auto call(const A& a) { return softplus(a); }
  template <class X> static constexpr void vjp(X& x) {
    // softplus' = sigmoid(a), in its stable form: exp(a - r) would be exp(inf - inf), NaN, at +inf.
    x.da(x.g() * sigmoid(x.a()));
  }
};
struct Abs {
  static constexpr std::string_view name = "abs";
  static constexpr Form form = Form::unary;
  template <class T> static T f(T a) { return std::abs(a); }
  template <class A> static auto call(const A& a) { return abs(a); }
  template <class X> static constexpr void vjp(X& x) {
    // 0 at the kink, as PyTorch's sign(0) = 0
    when_else(
        x, x.a() > 0, [&] { x.da(x.g()); }, [&] { when(x, x.a() < 0, [&] { x.da_neg(x.g()); }); });
  }
};
struct Erf {
  static constexpr std::string_view name = "erf";
  static constexpr Form form = Form::unary;
  template <class T> static T f(T a) { return std::erf(a); }
  template <class A> static auto call(const A& a) { return erf(a); }
  template <class X> static constexpr void vjp(X& x) {
    using std::exp;
    x.da(two_over_sqrt_pi * x.g() * exp(-(x.a() * x.a())));
  }
};
struct Erfc {
  static constexpr std::string_view name = "erfc";
  static constexpr Form form = Form::unary;
  static double f(double a) { return std::erfc(a); }
  template <class A> static auto call(const A& a) { return erfc(a); }
  template <class X> static constexpr void vjp(X& x) {
    using std::exp;
    x.da_neg(two_over_sqrt_pi * x.g() * exp(-(x.a() * x.a())));
  }
};

} // namespace autodiff::rules

// Every scalar op, in op-code order. The engine's switch, the op codes and the op names are all
// generated from this list; a new op is one struct above and one line here.
// clang-format off
#define TAPEGRAD_SCALAR_OPS(X)                                                                    \
  X(Leaf)                                                                                         \
  X(Add) X(Sub) X(Mul) X(Div) X(Pow) X(Atan2) X(Hypot) X(Max) X(Min)                              \
  X(AddC) X(RSubC) X(MulC) X(DivC) X(RDivC) X(PowC) X(RPowC) X(MaxC) X(MinC)                      \
  X(Neg) X(Exp) X(Log) X(Log1p) X(Expm1) X(Sqrt) X(Cbrt) X(Square) X(Sin) X(Cos) X(Tan) X(Asin)   \
  X(Acos) X(Atan) X(Sinh) X(Cosh) X(Tanh) X(Asinh) X(Acosh) X(Atanh) X(Sigmoid) X(Relu)          \
  X(Softplus) X(Abs) X(Erf) X(Erfc)
// clang-format on
