// Elementwise ops. Each op is one block below (after the machinery): the line that defines its
// public function names its rule, and the rule gives the forward value (`f`), the fast first-order
// rule and the create_graph rule at once. For an op with a scalar twin the rule is rules.hpp's, so
// the scalar and the tensor engine share one formula per derivative; an op without one has its
// rule (f and vjp, as in rules.hpp) right above its function. Broadcasting is not the rules'
// business: the binary kernels produce gradients in the broadcast shape and the engine sums them
// back (record.cpp). A zero adjoint never reaches a rule: Note [Zero adjoints] (docs/design.md).

#include "internal.hpp"
#include "kernels.hpp"

#include <autodiff/rules.hpp>

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

// ---- running a rule ----------------------------------------------------------------------------
// A rule's vjp is a template over a context (rules.hpp). Three contexts run it here:
// - Elem<T>: one element in float or double. The fast rule is a loop of it over raw storage; with a
//   rule free of `when` the loop has no branch but the zero-adjoint select, and can be vectorised.
// - Graph: whole recorded tensors, for the create_graph rule: its arithmetic is recorded.
// - Probe: at compile time, what the rule reads (which values the forward saves) and whether a
//   contribution is the adjoint itself, which needs no kernel (add) or no zero-adjoint mask (-g).
// A float32 value inside a rule. The shared rules spell constants as double literals (`0.5 * g`,
// `1.0 - r * r`), which with a plain float would promote the whole expression to double: converts
// in and out of every element, and half the vector lanes. With F32 a literal is rounded to float
// once (at compile time: the rules' literals are constants) and the arithmetic stays in float, as
// a float32 kernel written by hand would do it. Math functions are found by argument-dependent
// lookup, so the rules' unqualified `exp(...)` calls the float function.
struct F32 {
  float v;
  explicit constexpr operator float() const { return v; }
};
template <class L, class R>
concept F32Operands = (std::same_as<L, F32> && (std::same_as<R, F32> || std::is_arithmetic_v<R>)) ||
                      (std::is_arithmetic_v<L> && std::same_as<R, F32>);
constexpr float fv(F32 x) { return x.v; }
template <class A>
  requires std::is_arithmetic_v<A>
constexpr float fv(A x) { return static_cast<float>(x); }
constexpr F32 operator-(F32 a) { return {-a.v}; }
#define TAPEGRAD_F32_OP(op, R)                                                                                         \
  template <class L, class Rt>                                                                                         \
    requires F32Operands<L, Rt>                                                                                        \
  constexpr R operator op(L l, Rt r) { return R{fv(l) op fv(r)}; }
TAPEGRAD_F32_OP(+, F32)
TAPEGRAD_F32_OP(-, F32)
TAPEGRAD_F32_OP(*, F32)
TAPEGRAD_F32_OP(/, F32)
TAPEGRAD_F32_OP(<, bool)
TAPEGRAD_F32_OP(>, bool)
TAPEGRAD_F32_OP(<=, bool)
TAPEGRAD_F32_OP(>=, bool)
TAPEGRAD_F32_OP(==, bool)
TAPEGRAD_F32_OP(!=, bool)
#undef TAPEGRAD_F32_OP
inline F32 exp(F32 a) { return {std::exp(a.v)}; }
inline F32 log(F32 a) { return {std::log(a.v)}; }
inline F32 sin(F32 a) { return {std::sin(a.v)}; }
inline F32 cos(F32 a) { return {std::cos(a.v)}; }
inline F32 erf(F32 a) { return {std::erf(a.v)}; }
inline F32 sigmoid(F32 a) { return {rules::sigmoid_value(a.v)}; }
inline F32 pow(F32 a, F32 b) { return {std::pow(a.v, b.v)}; } // the rules' exponents are values too
// The value type of a rule run per element: F32 for float, the number itself for double.
template <class T> using ElemValue = std::conditional_t<std::is_same_v<T, float>, F32, T>;

template <class T, bool WantA = true, bool WantB = true> struct Elem {
  using value_type = T;
  using V = ElemValue<T>;
  T g_, a_, b_, r_, c_, c2_;
  T ga_ = 0, gb_ = 0;
  bool has_a = false, has_b = false; // constant-folded: a rule that contributes once just assigns
  V g() const { return V{g_}; }
  V a() const { return V{a_}; }
  V b() const { return V{b_}; }
  V r() const { return V{r_}; }
  V c() const { return V{c_}; } // in T, so `a == c` and the forward's tie agree in float32
  V c2() const { return V{c2_}; }
  static void put(T& acc, bool& has, T v, bool negate) {
    acc = has ? (negate ? acc - v : acc + v) : negate ? -v : v;
    has = true;
  }
  void da(V v) {
    if constexpr (WantA) put(ga_, has_a, static_cast<T>(v), false);
  }
  void da_neg(V v) {
    if constexpr (WantA) put(ga_, has_a, static_cast<T>(v), true);
  }
  void db(V v) {
    if constexpr (WantB) put(gb_, has_b, static_cast<T>(v), false);
  }
  void db_neg(V v) {
    if constexpr (WantB) put(gb_, has_b, static_cast<T>(v), true);
  }
  T ga() const { return has_a ? ga_ : T(0); } // a rule that does not call da contributes 0
  T gb() const { return has_b ? gb_ : T(0); }
};

// A saved tensor in the Graph context: a Tensor, plus the equality tests rules make (`a == b`,
// `b != 0`), which Tensor itself does not define as masks.
struct TV : Tensor {
  TV() = default;
  explicit TV(const Tensor& t) : Tensor(t) {}
};
Tensor operator==(const TV& a, const TV& b) { return eq(a, b); }
Tensor operator==(const TV& a, double c) { return eq(a, c); }
Tensor operator!=(const TV& a, double c) { return ne(a, c); }

struct Graph {
  TV g_, a_, b_, r_;
  double c_ = 0, c2_ = 0;
  Tensor mask{}; // where the enclosing when()s hold (a constant 0/1 tensor); undefined: everywhere
  Tensor ga{}, gb{};
  const TV& g() const { return g_; }
  const TV& a() const { return a_; }
  const TV& b() const { return b_; }
  const TV& r() const { return r_; }
  double c() const { return c_; }
  double c2() const { return c2_; }
  void put(Tensor& acc, Tensor v, bool negate) const {
    if (!v.defined()) return;
    // Masks select, never multiply: Elem gives 0 outside the mask whatever g is, and g * 0 would be
    // NaN where g is NaN (an all-NaN input reaching abs through a norm, say). At kinks the mask is a
    // constant, so the second derivative there is 0, as in PyTorch.
    if (mask.defined()) v = where(mask, v, scalar_like(v, 0));
    acc = acc.defined() ? (negate ? acc - v : acc + v) : negate ? -v : std::move(v);
  }
  void da(const Tensor& v) { put(ga, v, false); }
  void da_neg(const Tensor& v) { put(ga, v, true); }
  void db(const Tensor& v) { put(gb, v, false); }
  void db_neg(const Tensor& v) { put(gb, v, true); }
  template <class F> void when(const Tensor& cond, F&& then) {
    const Tensor outer = mask;
    mask = outer.defined() ? outer * cond : cond;
    then();
    mask = outer;
  }
  template <class F, class G> void when_else(const Tensor& cond, F&& then, G&& otherwise) {
    when(cond, then);
    when(1.0 - cond, otherwise); // cond is 0 at NaN, as `if` takes the else branch there
  }
};

// What a contribution is, as far as the probe can tell.
enum class Flow : std::uint8_t { none, g, neg_g, other };
constexpr bool passes(Flow f) { return f == Flow::g || f == Flow::neg_g; } // finite wherever g is
struct Uses {
  bool a = false, b = false, r = false; // which values the rule reads: the forward saves those
  Flow da = Flow::none, db = Flow::none;
};
struct Sym { // a value in the probe: only whether it is g, -g or anything else
  Flow f = Flow::other;
};
template <class L, class R>
concept SymOperands = (std::same_as<L, Sym> && (std::same_as<R, Sym> || std::is_arithmetic_v<R>)) ||
                      (std::is_arithmetic_v<L> && std::same_as<R, Sym>);
constexpr Sym operator-(Sym s) { return {s.f == Flow::g ? Flow::neg_g : s.f == Flow::neg_g ? Flow::g : Flow::other}; }
template <class L, class R>
  requires SymOperands<L, R>
constexpr Sym operator+(L, R) { return {}; }
template <class L, class R>
  requires SymOperands<L, R>
constexpr Sym operator-(L, R) { return {}; }
template <class L, class R>
  requires SymOperands<L, R>
constexpr Sym operator*(L, R) { return {}; }
template <class L, class R>
  requires SymOperands<L, R>
constexpr Sym operator/(L, R) { return {}; }
template <class L, class R>
  requires SymOperands<L, R>
constexpr bool operator<(L, R) { return false; }
template <class L, class R>
  requires SymOperands<L, R>
constexpr bool operator>(L, R) { return false; }
template <class L, class R>
  requires SymOperands<L, R>
constexpr bool operator<=(L, R) { return false; }
template <class L, class R>
  requires SymOperands<L, R>
constexpr bool operator>=(L, R) { return false; }
template <class L, class R>
  requires SymOperands<L, R>
constexpr bool operator==(L, R) { return false; }
template <class L, class R>
  requires SymOperands<L, R>
constexpr bool operator!=(L, R) { return false; }
constexpr Sym exp(Sym) { return {}; }
constexpr Sym log(Sym) { return {}; }
constexpr Sym sin(Sym) { return {}; }
constexpr Sym cos(Sym) { return {}; }
constexpr Sym erf(Sym) { return {}; }
constexpr Sym sigmoid(Sym) { return {}; }
template <class R>
  requires SymOperands<Sym, R>
constexpr Sym pow(Sym, R) { return {}; }

struct Probe {
  Uses u;
  int masked = 0; // inside a when(): a contribution there is never g itself
  static constexpr Sym g() { return {Flow::g}; }
  constexpr Sym a() { return u.a = true, Sym{}; }
  constexpr Sym b() { return u.b = true, Sym{}; }
  constexpr Sym r() { return u.r = true, Sym{}; }
  // A comparison of a constant is false: a rule's `if (x.c() == 0)` takes its general branch.
  static constexpr Sym c() { return {}; }
  static constexpr Sym c2() { return {}; }
  constexpr void put(Flow& to, Flow f) { to = to == Flow::none && masked == 0 ? f : Flow::other; }
  constexpr void da(Sym v) { put(u.da, v.f); }
  constexpr void da_neg(Sym v) { put(u.da, (-v).f); }
  constexpr void db(Sym v) { put(u.db, v.f); }
  constexpr void db_neg(Sym v) { put(u.db, (-v).f); }
  template <class C, class F> constexpr void when(const C&, F&& then) {
    ++masked;
    then();
    --masked;
  }
  template <class C, class F, class G> constexpr void when_else(const C& c, F&& then, G&& otherwise) {
    when(c, then);
    when(c, otherwise);
  }
};
template <class R> constexpr Uses probe() {
  Probe p;
  R::vjp(p);
  return p.u;
}
template <class R> inline constexpr Uses uses = probe<R>();

// An op of the table: a rule and the name its node, its errors and the op table use.
template <std::size_t N> struct OpName {
  char s[N];
  constexpr OpName(const char (&v)[N]) { std::copy_n(v, N, s); } // NOLINT: implicit, for "name"
};
template <class R, OpName N> struct Named {
  using rule = R;
  static constexpr std::string_view name{N.s, sizeof(N.s) - 1};
};

// The value of a unary rule, with the op's constants (none, c, or lo and hi) in T.
template <class R, class T> T value(T a, T c0, T c1) {
  if constexpr (requires { R::f(a); })
    return R::f(a);
  else if constexpr (requires { R::f(a, c0); })
    return R::f(a, c0);
  else
    return R::f(a, c0, c1);
}

// ---- unary ops -------------------------------------------------------------------------------------
template <class Op> void unary_backward(BackwardCtx& x) {
  using R = typename Op::rule;
  constexpr Uses u = uses<R>;
  if constexpr (u.da == Flow::g) { // a + c: the adjoint as it is, the sweep's handle when it is ours
    if (x.owned != nullptr)
      x.grad(0, std::move(*x.owned));
    else
      x.grad(0, x.g);
  } else {
    // The gradient goes into g's own storage when the rule may take it (BackwardCtx::owned): no
    // buffer to allocate and free, one array fewer in cache. A unique g shares storage with no
    // saved value, so the loop reads and writes one array through one pointer (two pointers that
    // may be equal would fail GCC's overlap test and run the scalar loop).
    const bool inplace = x.owned != nullptr && Access::unique(x.g);
    const DType d = x.g.dtype();
    const std::int64_t n = x.g.numel();
    Tensor ga = inplace ? std::move(*x.owned) : Access::make(x.g.shape(), d);
    dispatch_float(Op::name, d, [&](auto tag) {
      using T = decltype(tag);
      const T* av = u.a ? ptr<T>(x.saved(0)) : nullptr;
      const T* rv = u.r ? ptr<T>(x.saved(u.a ? 1 : 0)) : nullptr;
      const T c0 = static_cast<T>(x.c(0)), c1 = static_cast<T>(x.c(1));
      T* o = ptr<T>(ga);
      const auto rule = [=](T g, std::int64_t i) {
        Elem<T> e{g, u.a ? av[i] : T(0), T(0), u.r ? rv[i] : T(0), c0, c1};
        R::vjp(e);
        return g == T(0) ? T(0) : e.ga(); // Note [Zero adjoints]
      };
      if (inplace) {
        split(n, [=](std::int64_t i) { o[i] = rule(o[i], i); });
      } else {
        const T* gv = ptr<T>(x.g);
        split(n, [=](std::int64_t i) { o[i] = rule(gv[i], i); });
      }
    });
    x.grad(0, std::move(ga));
  }
}
template <class Op> void unary_backward_graph(BackwardCtx& x) {
  using R = typename Op::rule;
  constexpr Uses u = uses<R>;
  Graph e{TV(x.g), TV(u.a ? x.saved(0) : Tensor()), TV(), TV(u.r ? x.saved(u.a ? 1 : 0) : Tensor()), x.c(0), x.c(1)};
  R::vjp(e);
  x.grad(0, passes(u.da) ? e.ga : zero_adjoint(x.g, e.ga)); // Note [Zero adjoints], as unary_backward
}
template <class Op> const OpInfo unary_info{Op::name, &unary_backward<Op>, &unary_backward_graph<Op>};

template <class Op> Tensor unary_op(const Tensor& a, double c0, double c1) {
  using R = typename Op::rule;
  check_float(Op::name, a);
  Tensor out = Access::make(a.shape(), a.dtype());
  dispatch_float(Op::name, a.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* av = ptr<T>(a);
    T* o = ptr<T>(out);
    const T k0 = static_cast<T>(c0), k1 = static_cast<T>(c1);
    split(a.numel(), [=](std::int64_t i) { o[i] = value<R>(av[i], k0, k1); });
  });
  if (any_requires_grad({&a})) {
    const Tensor* saved[2];
    std::size_t ns = 0;
    if constexpr (uses<R>.a) saved[ns++] = &a;
    if constexpr (uses<R>.r) saved[ns++] = &out;
    record(unary_info<Op>, out, {.inputs = {&a}, .saved = TensorRefs(saved, ns), .c0 = c0, .c1 = c1});
  }
  return out;
}
template <class R, OpName N> Tensor unary(const Tensor& a, double c0 = 0, double c1 = 0) {
  return unary_op<Named<R, N>>(a, c0, c1);
}

// ---- binary ops -------------------------------------------------------------------------------------
// out[i] = fn(a at i, b at i, i) over the broadcast shape of out.
template <class T, class U, class Fn> void bmap(const Tensor& a, const Tensor& b, U* o, const Shape& s, Fn fn) {
  const T* x = ptr<T>(a);
  const T* y = ptr<T>(b);
  const std::int64_t n = s.numel();
  if (a.shape() == s && b.shape() == s) {
    split(n, [=](std::int64_t i) { o[i] = fn(x[i], y[i], i); });
  } else if (a.shape() == s && b.numel() == 1) {
    const T yv = y[0];
    split(n, [=](std::int64_t i) { o[i] = fn(x[i], yv, i); });
  } else if (b.shape() == s && a.numel() == 1) {
    const T xv = x[0];
    split(n, [=](std::int64_t i) { o[i] = fn(xv, y[i], i); });
  } else { // broadcast along rows: on the calling thread (Note [Vectorised kernels])
    for_rows<2>(s, {broadcast_strides(a.shape(), s), broadcast_strides(b.shape(), s)},
                [&](std::int64_t oo, auto off, std::int64_t len, auto st) {
                  const T* xr = x + off[0];
                  const T* yr = y + off[1];
                  U* orow = o + oo;
                  // the common row layouts get loops without strides, in the widest vectors
                  if (st[0] == 1 && st[1] == 1) {
                    run_range(0, len, [=](std::int64_t j) { orow[j] = fn(xr[j], yr[j], oo + j); });
                  } else if (st[0] == 1 && st[1] == 0) {
                    const T yv = yr[0];
                    run_range(0, len, [=](std::int64_t j) { orow[j] = fn(xr[j], yv, oo + j); });
                  } else if (st[0] == 0 && st[1] == 1) {
                    const T xv = xr[0];
                    run_range(0, len, [=](std::int64_t j) { orow[j] = fn(xv, yr[j], oo + j); });
                  } else {
                    for (std::int64_t j = 0; j < len; ++j)
                      orow[j] = fn(xr[j * st[0]], yr[j * st[1]], oo + j);
                  }
                });
  }
}

template <class Op> void binary_backward(BackwardCtx& x) {
  using R = typename Op::rule;
  constexpr Uses u = uses<R>;
  const bool need_a = x.needs(0), need_b = x.needs(1);
  const bool ka = need_a && u.da != Flow::g, kb = need_b && u.db != Flow::g; // those need a kernel
  // add (and sub's a): the adjoint as it is; the engine reduces broadcasting. When no kernel reads
  // g afterwards, the last input served takes the sweep's handle (BackwardCtx::owned) instead of a
  // copy of it.
  if (need_b && u.db == Flow::g) x.grad(1, x.g);
  if (need_a && u.da == Flow::g) {
    if (x.owned != nullptr && !kb)
      x.grad(0, std::move(*x.owned));
    else
      x.grad(0, x.g);
  }
  if (!ka && !kb) return;
  // A value the rule does not read was not saved: g (of the output's shape) stands in for it.
  const Tensor& a = u.a ? x.saved(0) : x.g;
  const Tensor& b = u.b ? x.saved(u.a ? 1 : 0) : x.g;
  const Tensor& r = u.r ? x.saved(int(u.a) + int(u.b)) : x.g;
  const Shape& s = x.g.shape();
  Tensor ga = ka ? Access::make(s, x.g.dtype()) : Tensor();
  Tensor gb = kb ? Access::make(s, x.g.dtype()) : Tensor();
  dispatch_float(Op::name, x.g.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* gv = ptr<T>(x.g);
    const T* rv = ptr<T>(r);
    T* ob = kb ? ptr<T>(gb) : nullptr;
    // One pass for both gradients; a single one gets a kernel without the other's arithmetic.
    auto run = [&]<bool WA, bool WB>() {
      bmap<T>(a, b, WA ? ptr<T>(ga) : ob, s, [&](T av, T bv, std::int64_t i) {
        Elem<T, WA, WB> e{gv[i], av, bv, rv[i], T(0), T(0)};
        R::vjp(e);
        const bool zero = gv[i] == T(0); // Note [Zero adjoints]
        if constexpr (WA && WB) ob[i] = zero ? T(0) : e.gb();
        return zero ? T(0) : WA ? e.ga() : e.gb();
      });
    };
    if (ka && kb)
      run.template operator()<true, true>();
    else if (ka)
      run.template operator()<true, false>();
    else
      run.template operator()<false, true>();
  });
  if (ka) x.grad(0, std::move(ga));
  if (kb) x.grad(1, std::move(gb));
}
template <class Op> void binary_backward_graph(BackwardCtx& x) {
  using R = typename Op::rule;
  constexpr Uses u = uses<R>;
  const Tensor none;
  Graph e{TV(x.g), TV(u.a ? x.saved(0) : none), TV(u.b ? x.saved(u.a ? 1 : 0) : none),
          TV(u.r ? x.saved(int(u.a) + int(u.b)) : none)};
  R::vjp(e);
  // Note [Zero adjoints], as binary_backward; g and -g are finite wherever g is
  if (x.needs(0)) x.grad(0, passes(u.da) ? e.ga : zero_adjoint(x.g, e.ga));
  if (x.needs(1)) x.grad(1, passes(u.db) ? e.gb : zero_adjoint(x.g, e.gb));
}
template <class Op> const OpInfo binary_info{Op::name, &binary_backward<Op>, &binary_backward_graph<Op>};

template <class Op> Tensor binary_op(const Tensor& a, const Tensor& b) {
  using R = typename Op::rule;
  check_float(Op::name, a);
  check_same_dtype(Op::name, a, b);
  const Shape s = broadcast_shapes(Op::name, a.shape(), b.shape());
  Tensor out = Access::make(s, a.dtype());
  dispatch_float(Op::name, a.dtype(), [&](auto tag) {
    using T = decltype(tag);
    bmap<T>(a, b, ptr<T>(out), s, [](T x, T y, std::int64_t) { return R::f(x, y); });
  });
  if (any_requires_grad({&a, &b})) {
    const Tensor* saved[3];
    std::size_t ns = 0;
    if constexpr (uses<R>.a) saved[ns++] = &a;
    if constexpr (uses<R>.b) saved[ns++] = &b;
    if constexpr (uses<R>.r) saved[ns++] = &out;
    record(binary_info<Op>, out, {.inputs = {&a, &b}, .saved = TensorRefs(saved, ns)});
  }
  return out;
}
template <class R, OpName N> Tensor binary(const Tensor& a, const Tensor& b) { return binary_op<Named<R, N>>(a, b); }

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

// ---- the ops ------------------------------------------------------------------------------------
// One block per op (docs/design.md, "Adding a tensor op"): its function, naming its rule; the rule
// itself right above it when the scalar engine has no twin. A tensor op's name is its own (the
// scalar `max` is the tensor `maximum`, as in PyTorch), but the formula is the scalar rule's.

// clang-format off
Tensor add(const Tensor& a, const Tensor& b)      { return binary<rules::Add, "add">(a, b); }
Tensor sub(const Tensor& a, const Tensor& b)      { return binary<rules::Sub, "sub">(a, b); }
Tensor mul(const Tensor& a, const Tensor& b)      { return binary<rules::Mul, "mul">(a, b); }
Tensor div(const Tensor& a, const Tensor& b)      { return binary<rules::Div, "div">(a, b); }
Tensor pow(const Tensor& a, const Tensor& b)      { return binary<rules::Pow, "pow">(a, b); }
Tensor maximum(const Tensor& a, const Tensor& b)  { return binary<rules::Max, "maximum">(a, b); }
Tensor minimum(const Tensor& a, const Tensor& b)  { return binary<rules::Min, "minimum">(a, b); }
Tensor add(const Tensor& a, double c)             { return unary<rules::AddC, "add_scalar">(a, c); }
Tensor sub(const Tensor& a, double c)             { return unary<rules::AddC, "add_scalar">(a, -c); }
Tensor rsub(const Tensor& a, double c)            { return unary<rules::RSubC, "rsub_scalar">(a, c); }
Tensor mul(const Tensor& a, double c)             { return unary<rules::MulC, "mul_scalar">(a, c); }
Tensor div(const Tensor& a, double c)             { return unary<rules::DivC, "div_scalar">(a, c); }
Tensor rdiv(const Tensor& a, double c)            { return unary<rules::RDivC, "rdiv_scalar">(a, c); }
Tensor pow(const Tensor& a, double c)             { return unary<rules::PowC, "pow_scalar">(a, c); }
Tensor maximum(const Tensor& a, double c)         { return unary<rules::MaxC, "maximum_scalar">(a, c); }
Tensor minimum(const Tensor& a, double c)         { return unary<rules::MinC, "minimum_scalar">(a, c); }
Tensor neg(const Tensor& a)                       { return unary<rules::Neg, "neg">(a); }
Tensor exp(const Tensor& a)                       { return unary<rules::Exp, "exp">(a); }
Tensor log(const Tensor& a)                       { return unary<rules::Log, "log">(a); }
Tensor log1p(const Tensor& a)                     { return unary<rules::Log1p, "log1p">(a); }
Tensor expm1(const Tensor& a)                     { return unary<rules::Expm1, "expm1">(a); }
Tensor sqrt(const Tensor& a)                      { return unary<rules::Sqrt, "sqrt">(a); }
Tensor square(const Tensor& a)                    { return unary<rules::Square, "square">(a); }
Tensor abs(const Tensor& a)                       { return unary<rules::Abs, "abs">(a); }
Tensor sin(const Tensor& a)                       { return unary<rules::Sin, "sin">(a); }
Tensor cos(const Tensor& a)                       { return unary<rules::Cos, "cos">(a); }
Tensor tan(const Tensor& a)                       { return unary<rules::Tan, "tan">(a); }
Tensor tanh(const Tensor& a)                      { return unary<rules::Tanh, "tanh">(a); }
Tensor sigmoid(const Tensor& a)                   { return unary<rules::Sigmoid, "sigmoid">(a); }
Tensor relu(const Tensor& a)                      { return unary<rules::Relu, "relu">(a); }
Tensor erf(const Tensor& a)                       { return unary<rules::Erf, "erf">(a); }
Tensor softplus(const Tensor& a)                  { return unary<rules::Softplus, "softplus">(a); }
// clang-format on

// Ops without a scalar twin: the rule, then the function.
namespace detail {
struct Rsqrt {
  template <class T> static T f(T a) { return T(1) / std::sqrt(a); }
  template <class X> static constexpr void vjp(X& x) { x.da_neg(0.5 * x.g() * x.r() * x.r() * x.r()); }
};
} // namespace detail
Tensor rsqrt(const Tensor& a) { return unary<r::Rsqrt, "rsqrt">(a); }

namespace detail {
struct Sign {
  template <class T> static T f(T a) { return T(a > 0) - T(a < 0); }
  template <class X> static constexpr void vjp(X&) {} // gradient 0
};
} // namespace detail
Tensor sign(const Tensor& a) { return unary<r::Sign, "sign">(a); }

namespace detail {
struct LeakyRelu { // c: the negative slope
  template <class T> static T f(T a, T c) { return a > 0 ? a : c * a; }
  template <class X> static constexpr void vjp(X& x) {
    rules::when_else(
        x, x.a() > 0, [&] { x.da(x.g()); }, [&] { x.da(x.g() * x.c()); });
  }
};
} // namespace detail
Tensor leaky_relu(const Tensor& a, double slope) { return unary<r::LeakyRelu, "leaky_relu">(a, slope); }

namespace detail {
struct Elu { // c: alpha
  template <class T> static T f(T a, T c) { return a > 0 ? a : c * std::expm1(a); }
  template <class X> static constexpr void vjp(X& x) {
    rules::when_else(
        x, x.a() > 0, [&] { x.da(x.g()); }, [&] { x.da(x.g() * (x.r() + x.c())); });
  }
};
} // namespace detail
Tensor elu(const Tensor& a, double alpha) { return unary<r::Elu, "elu">(a, alpha); }

namespace detail {
inline constexpr double sqrt1_2 = std::numbers::sqrt2 / 2;
inline constexpr double inv_sqrt2pi = 0.5 * std::numbers::inv_sqrtpi * std::numbers::sqrt2;
struct Gelu { // the exact (erf) form: a Phi(a)
  template <class T> static T f(T a) { return T(0.5) * a * (T(1) + std::erf(a * T(sqrt1_2))); }
  template <class X> static constexpr void vjp(X& x) {
    using std::erf;
    using std::exp;
    x.da(x.g() * (0.5 * (1.0 + erf(x.a() * sqrt1_2)) + x.a() * exp(-0.5 * x.a() * x.a()) * inv_sqrt2pi));
  }
};
} // namespace detail
Tensor gelu(const Tensor& a) { return unary<r::Gelu, "gelu">(a); }

namespace detail {
struct Clamp { // c, c2: lo, hi
  template <class T> static T f(T a, T lo, T hi) { return std::min(std::max(a, lo), hi); }
  template <class X> static constexpr void vjp(X& x) {
    rules::when(x, x.a() >= x.c(), [&] { rules::when(x, x.a() <= x.c2(), [&] { x.da(x.g()); }); });
  }
};
} // namespace detail
Tensor clamp(const Tensor& a, double lo, double hi) {
  if (!(lo <= hi)) detail::fail("clamp: lo {} must not exceed hi {}", lo, hi);
  return unary<r::Clamp, "clamp">(a, lo, hi);
}

// The elementwise part of two fused losses (loss.cpp reduces it): one pass and one node each,
// where the composition would record two or three ops and their intermediate tensors.
namespace detail {
struct SquaredError { // mse_loss: (a - b)^2
  template <class T> static T f(T a, T b) { return (a - b) * (a - b); }
  template <class X> static constexpr void vjp(X& x) {
    const auto d = 2.0 * x.g() * (x.a() - x.b());
    x.da(d);
    x.db_neg(d);
  }
};
Tensor squared_error(const Tensor& a, const Tensor& b) { return binary<SquaredError, "mse_loss">(a, b); }

struct LogitBce { // binary_cross_entropy_with_logits: softplus(a) - a b, logit a, target b
  template <class T> static T f(T a, T b) { return rules::softplus_value(a) - a * b; }
  template <class X> static constexpr void vjp(X& x) {
    using rules::sigmoid; // numbers; recorded tensors find autodiff::sigmoid by argument-dependent lookup
    x.da(x.g() * (sigmoid(x.a()) - x.b()));
    x.db_neg(x.g() * x.a());
  }
};
Tensor logit_bce(const Tensor& a, const Tensor& b) {
  return binary<LogitBce, "binary_cross_entropy_with_logits">(a, b);
}
} // namespace detail

// ---- comparisons, where, conversions: no rule table -----------------------------------------------------

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
