// Elementwise ops. Each op is one struct of the rules table below: its value `f` and its partial
// derivatives times the adjoint (`df`, or `da`/`db` for two operands), written once and used by the
// forward kernel and by the reverse sweep. Broadcasting is not the rules' business: the binary
// kernels produce gradients in the broadcast shape and the engine sums them back (record.cpp).
//
// A zero adjoint never reaches `df`: the kernels write 0 there (Note [Zero adjoints], docs/design.md).

#include "internal.hpp"

#include <algorithm>
#include <limits>
#include <numbers>
#include <type_traits>

namespace autodiff {

namespace detail {

Tensor zero_adjoint(const Tensor& g, const Tensor& contribution) {
  if (!contribution.defined()) return contribution;
  const Tensor mask = ne(g.detach(), 0.0) + lt(abs(contribution.detach()), std::numeric_limits<double>::infinity());
  return where(mask, contribution, scalar_like(contribution, 0));
}

namespace {

struct P { // the constants of an op (x + c, pow(x, c), clamp(x, lo, hi), ...)
  double c0, c1;
};

template <class T> T sigmoid_of(T a) {
  if (a >= 0) return T(1) / (T(1) + std::exp(-a));
  const T e = std::exp(a);
  return e / (T(1) + e);
}
// NaN propagates and a tie returns the first operand, as the scalar max/min (docs/design.md, Rules).
template <class T> T max_of(T a, T b) { return a >= b || std::isnan(a) ? a : b; }
template <class T> T min_of(T a, T b) { return a <= b || std::isnan(a) ? a : b; }
template <class T> T softplus_of(T a) { return std::max(a, T(0)) + std::log1p(std::exp(-std::abs(a))); }

// ---- the unary rules table ---------------------------------------------------------------------
// f(a, p) is the value; df(a, r, g, p) is g * f'(a) (r is the result, reused where that is exact);
// dg is the same product with recorded tensor ops, for create_graph sweeps (an undefined Tensor
// means zero). dg reads only what df reads (the uses_a / uses_r lists below say what is saved).
// unary_backward_graph applies Note [Zero adjoints] to what dg returns, as the kernels skip a zero
// g. At kinks (relu, abs, clamp, maximum) the masks are constants, so the second derivative there
// is 0, as in PyTorch.
#define TAPEGRAD_UNARY_RULE(Name, str, F, DF, DG)                                                                      \
  struct Name {                                                                                                        \
    static constexpr std::string_view name = str;                                                                      \
    template <class T> static T f([[maybe_unused]] T a, [[maybe_unused]] const P& p) { return F; }                     \
    template <class T>                                                                                                 \
    static T df([[maybe_unused]] T a, [[maybe_unused]] T r, [[maybe_unused]] T g, [[maybe_unused]] const P& p) {       \
      return DF;                                                                                                       \
    }                                                                                                                  \
    static Tensor dg([[maybe_unused]] const Tensor& a, [[maybe_unused]] const Tensor& r,                               \
                     [[maybe_unused]] const Tensor& g, [[maybe_unused]] const P& p) {                                  \
      return DG;                                                                                                       \
    }                                                                                                                  \
  };
inline constexpr double sqrt1_2 = std::numbers::sqrt2 / 2;
inline constexpr double inv_sqrt2pi = 0.5 * std::numbers::inv_sqrtpi * std::numbers::sqrt2;
inline constexpr double two_inv_sqrtpi = 2 * std::numbers::inv_sqrtpi;
// log a where a > 0, else 0 (not NaN): for rules whose untaken branch would take log of a <= 0.
Tensor log_positive(const Tensor& a) {
  const Tensor pos = gt(a, 0.0);
  return where(pos, log(where(pos, a, scalar_like(a, 1))), scalar_like(a, 0));
}
// Masks select with where(), never multiply: the kernels give 0 outside the mask whatever g is,
// and g * 0 would be NaN where g is NaN (an all-NaN input reaching abs through a norm, say).
// 1 where a wins, 1/2 at a tie, 0 where it loses: a constant.
Tensor win_mask(const Tensor& wins, const Tensor& ties) { return wins + ties * 0.5; }
// g * m where the constant mask m is not 0, else 0 (not NaN * 0).
Tensor masked(const Tensor& g, const Tensor& m) { return where(m, g * m, scalar_like(g, 0)); }
// clang-format off
TAPEGRAD_UNARY_RULE(Neg,       "neg",        -a,                                   -g,                  -g)
TAPEGRAD_UNARY_RULE(Exp,       "exp",        std::exp(a),                          g * r,               g * r)
TAPEGRAD_UNARY_RULE(Log,       "log",        std::log(a),                          g / a,               g * (1.0 / a))
TAPEGRAD_UNARY_RULE(Log1p,     "log1p",      std::log1p(a),                        g / (a + T(1)),      g * (1.0 / (a + 1.0)))
TAPEGRAD_UNARY_RULE(Expm1,     "expm1",      std::expm1(a),                        g * (r + T(1)),      g * (r + 1.0))
TAPEGRAD_UNARY_RULE(Sqrt,      "sqrt",       std::sqrt(a),                         T(0.5) * g / r,      g * (0.5 / r))
TAPEGRAD_UNARY_RULE(Rsqrt,     "rsqrt",      T(1) / std::sqrt(a),                  T(-0.5) * g * r * r * r, g * (r * square(r) * -0.5))
TAPEGRAD_UNARY_RULE(Square,    "square",     a * a,                                T(2) * g * a,        g * a * 2.0)
TAPEGRAD_UNARY_RULE(Abs,       "abs",        std::abs(a),                          a > 0 ? g : a < 0 ? -g : T(0), where(gt(a, 0.0), g, where(lt(a, 0.0), -g, scalar_like(g, 0))))
TAPEGRAD_UNARY_RULE(Sign,      "sign",       T(a > 0) - T(a < 0),                  T(0),                Tensor())
TAPEGRAD_UNARY_RULE(Sin,       "sin",        std::sin(a),                          g * std::cos(a),     g * cos(a))
TAPEGRAD_UNARY_RULE(Cos,       "cos",        std::cos(a),                          -g * std::sin(a),    -(g * sin(a)))
TAPEGRAD_UNARY_RULE(Tan,       "tan",        std::tan(a),                          g * (T(1) + r * r),  g * (square(r) + 1.0))
TAPEGRAD_UNARY_RULE(Tanh,      "tanh",       std::tanh(a),                         g * (T(1) - r * r),  g * (1.0 - square(r)))
// s' = s (1 - s); for a > 0, 1 - s cancels, and s e^-a is the exact form. 1 - s = s(-a) is exact
// everywhere, and differentiable again.
TAPEGRAD_UNARY_RULE(Sigmoid,   "sigmoid",    sigmoid_of(a),                        a <= 0 ? g * r * (T(1) - r) : g * r * r * std::exp(-a), g * r * sigmoid(-a))
TAPEGRAD_UNARY_RULE(Relu,      "relu",       a > 0 ? a : T(0),                     a > 0 ? g : T(0),    where(gt(a, 0.0), g, scalar_like(g, 0)))
TAPEGRAD_UNARY_RULE(LeakyRelu, "leaky_relu", a > 0 ? a : T(p.c0) * a,              a > 0 ? g : g * T(p.c0), g * (gt(a, 0.0) * (1.0 - p.c0) + p.c0))
TAPEGRAD_UNARY_RULE(Elu,       "elu",        a > 0 ? a : T(p.c0) * std::expm1(a), a > 0 ? g : g * (r + T(p.c0)), where(gt(a, 0.0), g, g * (r + p.c0)))
TAPEGRAD_UNARY_RULE(Erf,       "erf",        std::erf(a),                          g * T(two_inv_sqrtpi) * std::exp(-a * a), g * exp(-square(a)) * two_inv_sqrtpi)
TAPEGRAD_UNARY_RULE(Gelu,      "gelu",       T(0.5) * a * (T(1) + std::erf(a * T(sqrt1_2))),
                    g * (T(0.5) * (T(1) + std::erf(a * T(sqrt1_2))) + a * std::exp(T(-0.5) * a * a) * T(inv_sqrt2pi)),
                    g * ((erf(a * sqrt1_2) + 1.0) * 0.5 + a * exp(square(a) * -0.5) * inv_sqrt2pi))
// softplus' = sigmoid(a) in its stable form, right at +inf too (exp(a - r) is exp(inf - inf) there).
TAPEGRAD_UNARY_RULE(Softplus,  "softplus",   softplus_of(a),                       g * sigmoid_of(a),   g * sigmoid(a))
TAPEGRAD_UNARY_RULE(Clamp,     "clamp",      std::min(std::max(a, T(p.c0)), T(p.c1)), a >= T(p.c0) && a <= T(p.c1) ? g : T(0), where(ge(a, p.c0) * le(a, p.c1), g, scalar_like(g, 0)))
TAPEGRAD_UNARY_RULE(AddC,      "add_scalar", a + T(p.c0),                          g,                   g)
TAPEGRAD_UNARY_RULE(RSubC,     "rsub_scalar", T(p.c0) - a,                         -g,                  -g)
TAPEGRAD_UNARY_RULE(MulC,      "mul_scalar", a * T(p.c0),                          g * T(p.c0),         g * p.c0)
TAPEGRAD_UNARY_RULE(DivC,      "div_scalar", a / T(p.c0),                          g / T(p.c0),         g / p.c0)
TAPEGRAD_UNARY_RULE(RDivC,     "rdiv_scalar", T(p.c0) / a,                         -g * r / a,          g * -(r / a))
// d/da a^c is 0 for c == 0 (a^0 == 1 everywhere), not 0 * inf at a == 0.
TAPEGRAD_UNARY_RULE(PowC,      "pow_scalar", std::pow(a, T(p.c0)),                 p.c0 == 0 ? T(0) : p.c0 == 2 ? T(2) * g * a : g * T(p.c0) * std::pow(a, T(p.c0 - 1)),
                    p.c0 == 0 ? Tensor() : p.c0 == 2 ? g * a * 2.0 : g * (pow(a, p.c0 - 1) * p.c0))
// Ties send half the gradient each way, as the scalar rules and PyTorch's maximum/minimum do.
TAPEGRAD_UNARY_RULE(MaxC,      "maximum_scalar", max_of(a, T(p.c0)),               a > T(p.c0) ? g : a == T(p.c0) ? T(0.5) * g : T(0), masked(g, win_mask(gt(a, p.c0), eq(a, p.c0))))
TAPEGRAD_UNARY_RULE(MinC,      "minimum_scalar", min_of(a, T(p.c0)),               a < T(p.c0) ? g : a == T(p.c0) ? T(0.5) * g : T(0), masked(g, win_mask(lt(a, p.c0), eq(a, p.c0))))
// clang-format on
#undef TAPEGRAD_UNARY_RULE

// Which saved values a rule reads (default both): rules that need neither record no tensors.
template <class F> inline constexpr bool uses_a = true;
template <class F> inline constexpr bool uses_r = true;
#define TAPEGRAD_NO_A(F) template <> inline constexpr bool uses_a<F> = false;
#define TAPEGRAD_NO_R(F) template <> inline constexpr bool uses_r<F> = false;
TAPEGRAD_NO_A(Neg)
TAPEGRAD_NO_R(Neg)
TAPEGRAD_NO_A(AddC)
TAPEGRAD_NO_R(AddC)
TAPEGRAD_NO_A(RSubC)
// clang-format off
TAPEGRAD_NO_R(RSubC)
TAPEGRAD_NO_A(MulC)
TAPEGRAD_NO_R(MulC)
TAPEGRAD_NO_A(DivC)
TAPEGRAD_NO_R(DivC)
TAPEGRAD_NO_A(Sign)
TAPEGRAD_NO_R(Sign)
TAPEGRAD_NO_A(Exp)
TAPEGRAD_NO_A(Expm1)
TAPEGRAD_NO_A(Sqrt)
TAPEGRAD_NO_A(Rsqrt)
TAPEGRAD_NO_A(Tan)
TAPEGRAD_NO_A(Tanh)
TAPEGRAD_NO_R(Log)
TAPEGRAD_NO_R(Log1p)
TAPEGRAD_NO_R(Square)
TAPEGRAD_NO_R(Abs)
TAPEGRAD_NO_R(Sin)
TAPEGRAD_NO_R(Cos)
TAPEGRAD_NO_R(Relu)
TAPEGRAD_NO_R(LeakyRelu)
TAPEGRAD_NO_R(Gelu)
TAPEGRAD_NO_R(Erf)
TAPEGRAD_NO_R(Softplus)
TAPEGRAD_NO_R(Clamp)
TAPEGRAD_NO_R(PowC)
TAPEGRAD_NO_R(MaxC)
TAPEGRAD_NO_R(MinC)
// clang-format on
#undef TAPEGRAD_NO_A
#undef TAPEGRAD_NO_R

template <class F> void unary_backward(BackwardCtx& x) {
  const Tensor* a = uses_a<F> ? &x.saved(0) : nullptr;
  const Tensor* r = uses_r<F> ? &x.saved(uses_a<F> ? 1 : 0) : nullptr;
  Tensor ga = Access::make(x.g.shape(), x.g.dtype());
  dispatch_float(F::name, x.g.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* av = a ? ptr<T>(*a) : nullptr;
    const T* rv = r ? ptr<T>(*r) : nullptr;
    const T* gv = ptr<T>(x.g);
    T* o = ptr<T>(ga);
    const P p{x.c(0), x.c(1)};
    const std::int64_t n = x.g.numel();
    for (std::int64_t i = 0; i < n; ++i) {
      T ai = 0, ri = 0;
      if constexpr (uses_a<F>) ai = av[i];
      if constexpr (uses_r<F>) ri = rv[i];
      o[i] = gv[i] == T(0) ? T(0) : F::template df<T>(ai, ri, gv[i], p);
    }
  });
  x.grad(0, std::move(ga));
}
template <class F> void unary_backward_graph(BackwardCtx& x) {
  const Tensor none;
  const Tensor& a = uses_a<F> ? x.saved(0) : none;
  const Tensor& r = uses_r<F> ? x.saved(uses_a<F> ? 1 : 0) : none;
  x.grad(0, zero_adjoint(x.g, F::dg(a, r, x.g, P{x.c(0), x.c(1)})));
}
template <class F> const OpInfo unary_info{F::name, &unary_backward<F>, &unary_backward_graph<F>};

template <class F> Tensor unary(const Tensor& a, double c0 = 0, double c1 = 0) {
  check_float(F::name, a);
  Tensor out = Access::make(a.shape(), a.dtype());
  dispatch_float(F::name, a.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* av = ptr<T>(a);
    T* o = ptr<T>(out);
    const P p{c0, c1};
    const std::int64_t n = a.numel();
    for (std::int64_t i = 0; i < n; ++i)
      o[i] = F::template f<T>(av[i], p);
  });
  if (any_requires_grad({&a})) {
    const Tensor* saved[2];
    std::size_t ns = 0;
    if constexpr (uses_a<F>) saved[ns++] = &a;
    if constexpr (uses_r<F>) saved[ns++] = &out;
    record(unary_info<F>, out, {.inputs = {&a}, .saved = TensorRefs(saved, ns), .c0 = c0, .c1 = c1});
  }
  return out;
}

// ---- the binary rules table --------------------------------------------------------------------
// da/db are g * the partial derivative in a/b; `g_passes` marks rules whose da is g itself, whose
// gradient then needs no kernel at all.
struct Add {
  static constexpr std::string_view name = "add";
  static constexpr bool g_passes = true;
  template <class T> static T f(T a, T b) { return a + b; }
  template <class T> static T da(T, T, T, T g) { return g; }
  template <class T> static T db(T, T, T, T g) { return g; }
  static Tensor dga(const Tensor&, const Tensor&, const Tensor&, const Tensor& g) { return g; }
  static Tensor dgb(const Tensor&, const Tensor&, const Tensor&, const Tensor& g) { return g; }
};
struct Sub {
  static constexpr std::string_view name = "sub";
  static constexpr bool g_passes = true;
  template <class T> static T f(T a, T b) { return a - b; }
  template <class T> static T da(T, T, T, T g) { return g; }
  template <class T> static T db(T, T, T, T g) { return -g; }
  static Tensor dga(const Tensor&, const Tensor&, const Tensor&, const Tensor& g) { return g; }
  static Tensor dgb(const Tensor&, const Tensor&, const Tensor&, const Tensor& g) { return -g; }
};
struct Mul {
  static constexpr std::string_view name = "mul";
  static constexpr bool g_passes = false;
  template <class T> static T f(T a, T b) { return a * b; }
  template <class T> static T da(T, T b, T, T g) { return g * b; }
  template <class T> static T db(T a, T, T, T g) { return g * a; }
  static Tensor dga(const Tensor&, const Tensor& b, const Tensor&, const Tensor& g) { return g * b; }
  static Tensor dgb(const Tensor& a, const Tensor&, const Tensor&, const Tensor& g) { return g * a; }
};
struct Div {
  static constexpr std::string_view name = "div";
  static constexpr bool g_passes = false;
  template <class T> static T f(T a, T b) { return a / b; }
  template <class T> static T da(T, T b, T, T g) { return g / b; }
  template <class T> static T db(T, T b, T r, T g) { return -g * r / b; }
  static Tensor dga(const Tensor&, const Tensor& b, const Tensor&, const Tensor& g) { return g * (1.0 / b); }
  static Tensor dgb(const Tensor&, const Tensor& b, const Tensor& r, const Tensor& g) { return g * -(r / b); }
};
struct Pow {
  static constexpr std::string_view name = "pow";
  static constexpr bool g_passes = false;
  template <class T> static T f(T a, T b) { return std::pow(a, b); }
  template <class T> static T da(T a, T b, T, T g) { return b == 0 ? T(0) : g * b * std::pow(a, b - T(1)); }
  // r log a; for a <= 0 the real power is only defined at integers, where PyTorch also uses 0.
  template <class T> static T db(T a, T, T r, T g) { return a > 0 ? g * r * std::log(a) : T(0); }
  static Tensor dga(const Tensor& a, const Tensor& b, const Tensor&, const Tensor& g) {
    return g * where(ne(b, 0.0), b * pow(a, b - 1.0), scalar_like(g, 0));
  }
  static Tensor dgb(const Tensor& a, const Tensor&, const Tensor& r, const Tensor& g) {
    // r log a only where a > 0, as db: r is infinite at a == 0 for b < 0, and inf * 0 is NaN.
    return g * where(gt(a, 0.0), r * log_positive(a), scalar_like(g, 0));
  }
};
struct Maximum {
  static constexpr std::string_view name = "maximum";
  static constexpr bool g_passes = false;
  template <class T> static T f(T a, T b) { return max_of(a, b); }
  template <class T> static T da(T a, T b, T, T g) { return a > b ? g : a == b ? T(0.5) * g : T(0); }
  template <class T> static T db(T a, T b, T, T g) { return b > a ? g : a == b ? T(0.5) * g : T(0); }
  static Tensor dga(const Tensor& a, const Tensor& b, const Tensor&, const Tensor& g) {
    return masked(g, win_mask(gt(a, b), eq(a, b)));
  }
  static Tensor dgb(const Tensor& a, const Tensor& b, const Tensor&, const Tensor& g) {
    return masked(g, win_mask(gt(b, a), eq(a, b)));
  }
};
struct Minimum {
  static constexpr std::string_view name = "minimum";
  static constexpr bool g_passes = false;
  template <class T> static T f(T a, T b) { return min_of(a, b); }
  template <class T> static T da(T a, T b, T, T g) { return a < b ? g : a == b ? T(0.5) * g : T(0); }
  template <class T> static T db(T a, T b, T, T g) { return b < a ? g : a == b ? T(0.5) * g : T(0); }
  static Tensor dga(const Tensor& a, const Tensor& b, const Tensor&, const Tensor& g) {
    return g * win_mask(lt(a, b), eq(a, b));
  }
  static Tensor dgb(const Tensor& a, const Tensor& b, const Tensor&, const Tensor& g) {
    return g * win_mask(lt(b, a), eq(a, b));
  }
};
// out[i] = fn(a at i, b at i, i) over the broadcast shape of out.
template <class T, class U, class Fn> void bmap(const Tensor& a, const Tensor& b, U* o, const Shape& s, Fn fn) {
  const T* x = ptr<T>(a);
  const T* y = ptr<T>(b);
  const std::int64_t n = s.numel();
  if (a.shape() == s && b.shape() == s) {
    for (std::int64_t i = 0; i < n; ++i)
      o[i] = fn(x[i], y[i], i);
  } else if (a.shape() == s && b.numel() == 1) {
    const T yv = y[0];
    for (std::int64_t i = 0; i < n; ++i)
      o[i] = fn(x[i], yv, i);
  } else if (b.shape() == s && a.numel() == 1) {
    const T xv = x[0];
    for (std::int64_t i = 0; i < n; ++i)
      o[i] = fn(xv, y[i], i);
  } else {
    for_rows<2>(s, {broadcast_strides(a.shape(), s), broadcast_strides(b.shape(), s)},
                [&](std::int64_t oo, auto off, std::int64_t len, auto st) {
                  const T* xr = x + off[0];
                  const T* yr = y + off[1];
                  U* orow = o + oo;
                  if (st[0] == 1 && st[1] == 1) { // the common row layouts get loops without strides
                    for (std::int64_t j = 0; j < len; ++j)
                      orow[j] = fn(xr[j], yr[j], oo + j);
                  } else if (st[0] == 1 && st[1] == 0) {
                    for (std::int64_t j = 0; j < len; ++j)
                      orow[j] = fn(xr[j], yr[0], oo + j);
                  } else if (st[0] == 0 && st[1] == 1) {
                    for (std::int64_t j = 0; j < len; ++j)
                      orow[j] = fn(xr[0], yr[j], oo + j);
                  } else {
                    for (std::int64_t j = 0; j < len; ++j)
                      orow[j] = fn(xr[j * st[0]], yr[j * st[1]], oo + j);
                  }
                });
  }
}

template <class F> void binary_backward(BackwardCtx& x) {
  if constexpr (F::g_passes) { // add and sub: no values needed; the engine reduces broadcasting
    if (x.needs(0)) x.grad(0, x.g);
    if (x.needs(1)) {
      if (std::is_same_v<F, Add>) {
        x.grad(1, x.g);
      } else {
        Tensor gb = Access::make(x.g.shape(), x.g.dtype());
        dispatch_float(F::name, x.g.dtype(), [&](auto tag) {
          using T = decltype(tag);
          const T* gv = ptr<T>(x.g);
          T* o = ptr<T>(gb);
          for (std::int64_t i = 0; i < x.g.numel(); ++i)
            o[i] = F::template db<T>(T(0), T(0), T(0), gv[i]);
        });
        x.grad(1, std::move(gb));
      }
    }
    return;
  }
  const Tensor& a = x.saved(0);
  const Tensor& b = x.saved(1);
  const Tensor& r = x.saved(2);
  const Shape& s = r.shape();
  for (int k = 0; k < 2; ++k) {
    if (!x.needs(k)) continue;
    Tensor gk = Access::make(s, r.dtype());
    dispatch_float(F::name, r.dtype(), [&](auto tag) {
      using T = decltype(tag);
      const T* gv = ptr<T>(x.g);
      const T* rv = ptr<T>(r);
      if (k == 0)
        bmap<T>(a, b, ptr<T>(gk), s, [&](T av, T bv, std::int64_t i) {
          return gv[i] == T(0) ? T(0) : F::template da<T>(av, bv, rv[i], gv[i]);
        });
      else
        bmap<T>(a, b, ptr<T>(gk), s, [&](T av, T bv, std::int64_t i) {
          return gv[i] == T(0) ? T(0) : F::template db<T>(av, bv, rv[i], gv[i]);
        });
    });
    x.grad(k, std::move(gk));
  }
}
// dga/dgb: the same products with recorded ops, for create_graph sweeps (add and sub save nothing,
// and read only g), under Note [Zero adjoints] as the kernels above skip a zero g.
template <class F> void binary_backward_graph(BackwardCtx& x) {
  const Tensor none;
  const bool saved = !F::g_passes;
  const Tensor& a = saved ? x.saved(0) : none;
  const Tensor& b = saved ? x.saved(1) : none;
  const Tensor& r = saved ? x.saved(2) : none;
  // add and sub pass g on: nothing to drop
  auto policy = [&](Tensor v) { return F::g_passes ? v : zero_adjoint(x.g, v); };
  if (x.needs(0)) x.grad(0, policy(F::dga(a, b, r, x.g)));
  if (x.needs(1)) x.grad(1, policy(F::dgb(a, b, r, x.g)));
}
template <class F> const OpInfo binary_info{F::name, &binary_backward<F>, &binary_backward_graph<F>};

template <class F> Tensor binary(const Tensor& a, const Tensor& b) {
  check_float(F::name, a);
  check_same_dtype(F::name, a, b);
  const Shape s = broadcast_shapes(F::name, a.shape(), b.shape());
  Tensor out = Access::make(s, a.dtype());
  dispatch_float(F::name, a.dtype(), [&](auto tag) {
    using T = decltype(tag);
    bmap<T>(a, b, ptr<T>(out), s, [](T x, T y, std::int64_t) { return F::template f<T>(x, y); });
  });
  if (any_requires_grad({&a, &b})) {
    if constexpr (F::g_passes)
      record(binary_info<F>, out, {.inputs = {&a, &b}});
    else
      record(binary_info<F>, out, {.inputs = {&a, &b}, .saved = {&a, &b, &out}});
  }
  return out;
}

template <class Cmp> Tensor compare(std::string_view name, const Tensor& a, const Tensor& b, Cmp cmp) {
  check_same_dtype(name, a, b);
  const Shape s = broadcast_shapes(name, a.shape(), b.shape());
  Tensor out = Access::make(s, a.dtype());
  dispatch_all(a.dtype(), [&](auto tag) {
    using T = decltype(tag);
    bmap<T>(a, b, ptr<T>(out), s, [&](T x, T y, std::int64_t) { return cmp(x, y) ? T(1) : T(0); });
  });
  return out;
}

const OpInfo where_info{"where",
                        [](BackwardCtx& x) {
                          const Tensor& m = x.saved(0);
                          for (int k = 0; k < 2; ++k) {
                            if (!x.needs(k)) continue;
                            Tensor gk = Access::make(m.shape(), m.dtype());
                            dispatch_float("where", m.dtype(), [&](auto tag) {
                              using T = decltype(tag);
                              const T* mv = ptr<T>(m);
                              const T* gv = ptr<T>(x.g);
                              T* o = ptr<T>(gk);
                              const bool taken = k == 0;
                              for (std::int64_t i = 0; i < m.numel(); ++i)
                                o[i] = ((mv[i] != T(0)) == taken) ? gv[i] : T(0);
                            });
                            x.grad(k, std::move(gk));
                          }
                        },
                        [](BackwardCtx& x) {
                          const Tensor& m = x.saved(0);
                          if (x.needs(0)) x.grad(0, where(m, x.g, scalar_like(x.g, 0)));
                          if (x.needs(1)) x.grad(1, where(m, scalar_like(x.g, 0), x.g));
                        }};

// ints: the input's dtype.
const OpInfo to_info{"to", [](BackwardCtx& x) { x.grad(0, convert(x.g, static_cast<DType>(x.ints()[0]))); },
                     [](BackwardCtx& x) { x.grad(0, x.g.to(static_cast<DType>(x.ints()[0]))); }};
const OpInfo clone_info{"clone", [](BackwardCtx& x) { x.grad(0, x.g); }, [](BackwardCtx& x) { x.grad(0, x.g); }};

} // namespace
} // namespace detail

using detail::Access;
using detail::binary;
using detail::unary;
namespace r = detail;

Tensor add(const Tensor& a, const Tensor& b) { return binary<r::Add>(a, b); }
Tensor sub(const Tensor& a, const Tensor& b) { return binary<r::Sub>(a, b); }
Tensor mul(const Tensor& a, const Tensor& b) { return binary<r::Mul>(a, b); }
Tensor div(const Tensor& a, const Tensor& b) { return binary<r::Div>(a, b); }
Tensor pow(const Tensor& a, const Tensor& b) { return binary<r::Pow>(a, b); }
Tensor maximum(const Tensor& a, const Tensor& b) { return binary<r::Maximum>(a, b); }
Tensor minimum(const Tensor& a, const Tensor& b) { return binary<r::Minimum>(a, b); }
Tensor add(const Tensor& a, double c) { return unary<r::AddC>(a, c); }
Tensor sub(const Tensor& a, double c) { return unary<r::AddC>(a, -c); }
Tensor rsub(const Tensor& a, double c) { return unary<r::RSubC>(a, c); }
Tensor mul(const Tensor& a, double c) { return unary<r::MulC>(a, c); }
Tensor div(const Tensor& a, double c) { return unary<r::DivC>(a, c); }
Tensor rdiv(const Tensor& a, double c) { return unary<r::RDivC>(a, c); }
Tensor pow(const Tensor& a, double c) { return unary<r::PowC>(a, c); }
Tensor maximum(const Tensor& a, double c) { return unary<r::MaxC>(a, c); }
Tensor minimum(const Tensor& a, double c) { return unary<r::MinC>(a, c); }

Tensor neg(const Tensor& a) { return unary<r::Neg>(a); }
Tensor exp(const Tensor& a) { return unary<r::Exp>(a); }
Tensor log(const Tensor& a) { return unary<r::Log>(a); }
Tensor log1p(const Tensor& a) { return unary<r::Log1p>(a); }
Tensor expm1(const Tensor& a) { return unary<r::Expm1>(a); }
Tensor sqrt(const Tensor& a) { return unary<r::Sqrt>(a); }
Tensor rsqrt(const Tensor& a) { return unary<r::Rsqrt>(a); }
Tensor square(const Tensor& a) { return unary<r::Square>(a); }
Tensor abs(const Tensor& a) { return unary<r::Abs>(a); }
Tensor sign(const Tensor& a) { return unary<r::Sign>(a); }
Tensor sin(const Tensor& a) { return unary<r::Sin>(a); }
Tensor cos(const Tensor& a) { return unary<r::Cos>(a); }
Tensor tan(const Tensor& a) { return unary<r::Tan>(a); }
Tensor tanh(const Tensor& a) { return unary<r::Tanh>(a); }
Tensor sigmoid(const Tensor& a) { return unary<r::Sigmoid>(a); }
Tensor relu(const Tensor& a) { return unary<r::Relu>(a); }
Tensor leaky_relu(const Tensor& a, double slope) { return unary<r::LeakyRelu>(a, slope); }
Tensor elu(const Tensor& a, double alpha) { return unary<r::Elu>(a, alpha); }
Tensor erf(const Tensor& a) { return unary<r::Erf>(a); }
Tensor gelu(const Tensor& a) { return unary<r::Gelu>(a); }
Tensor softplus(const Tensor& a) { return unary<r::Softplus>(a); }
Tensor clamp(const Tensor& a, double lo, double hi) {
  if (!(lo <= hi)) detail::fail("clamp: lo {} must not exceed hi {}", lo, hi);
  return unary<r::Clamp>(a, lo, hi);
}

Tensor gt(const Tensor& a, const Tensor& b) {
  return r::compare("gt", a, b, [](auto x, auto y) { return x > y; });
}
Tensor lt(const Tensor& a, const Tensor& b) {
  return r::compare("lt", a, b, [](auto x, auto y) { return x < y; });
}
Tensor ge(const Tensor& a, const Tensor& b) {
  return r::compare("ge", a, b, [](auto x, auto y) { return x >= y; });
}
Tensor le(const Tensor& a, const Tensor& b) {
  return r::compare("le", a, b, [](auto x, auto y) { return x <= y; });
}
Tensor eq(const Tensor& a, const Tensor& b) {
  return r::compare("eq", a, b, [](auto x, auto y) { return x == y; });
}
Tensor ne(const Tensor& a, const Tensor& b) {
  return r::compare("ne", a, b, [](auto x, auto y) { return x != y; });
}
Tensor gt(const Tensor& a, double c) { return gt(a, r::scalar_like(a, c)); }
Tensor lt(const Tensor& a, double c) { return lt(a, r::scalar_like(a, c)); }
Tensor ge(const Tensor& a, double c) { return ge(a, r::scalar_like(a, c)); }
Tensor le(const Tensor& a, double c) { return le(a, r::scalar_like(a, c)); }
Tensor eq(const Tensor& a, double c) { return eq(a, r::scalar_like(a, c)); }
Tensor ne(const Tensor& a, double c) { return ne(a, r::scalar_like(a, c)); }

Tensor where(const Tensor& mask, const Tensor& a, const Tensor& b) {
  detail::check_defined("where", mask);
  detail::check_float("where", a);
  detail::check_same_dtype("where", a, b);
  const Shape s =
      detail::broadcast_shapes("where", mask.shape(), detail::broadcast_shapes("where", a.shape(), b.shape()));
  const Tensor m = detail::expand_copy(mask.dtype() == a.dtype() ? mask : detail::convert(mask, a.dtype()), s);
  const Tensor ae = detail::expand_copy(a, s), be = detail::expand_copy(b, s);
  Tensor out = Access::make(s, a.dtype());
  detail::dispatch_float("where", a.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* mv = detail::ptr<T>(m);
    const T* av = detail::ptr<T>(ae);
    const T* bv = detail::ptr<T>(be);
    T* o = detail::ptr<T>(out);
    for (std::int64_t i = 0; i < s.numel(); ++i)
      o[i] = mv[i] != T(0) ? av[i] : bv[i];
  });
  if (detail::any_requires_grad({&a, &b})) {
    detail::record(r::where_info, out, {.inputs = {&a, &b}, .saved = {&m}});
  }
  return out;
}

Tensor Tensor::to(DType d) const {
  detail::check_defined("to", *this);
  if (d == dtype_) return *this;
  Tensor out = detail::convert(*this, d);
  // An int64 result is never differentiable: like a comparison, it is a constant.
  if (d != DType::int64 && detail::any_requires_grad({this})) {
    const std::int64_t from[1] = {static_cast<std::int64_t>(dtype_)};
    detail::record(r::to_info, out, {.inputs = {this}, .ints = from});
  }
  return out;
}

Tensor Tensor::clone() const {
  detail::check_defined("clone", *this);
  Tensor out = detail::convert(*this, dtype_);
  if (detail::any_requires_grad({this})) detail::record(r::clone_info, out, {.inputs = {this}});
  return out;
}

} // namespace autodiff

// Referenced by tensor_op_names() so that a static link keeps this file's rules registered.
void autodiff::detail::touch_elementwise() {}
