// Forward over reverse (docs/design.md, "Note [Forward over reverse]"): H v from the recorded f
// by a tangent pass forwards over the tape and a reverse sweep whose adjoints are dual numbers, both
// running the ops' own vjp rules. Nothing is recorded.

#include <autodiff/detail/dual.hpp>
#include <autodiff/detail/hvp.hpp>
#include <autodiff/var.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <string_view>
#include <utility>
#include <vector>

namespace autodiff {

using detail::Dual;

namespace {

// Ops whose every contribution is exactly +g or -g: at g = (0, 0) they add zeros and never a
// non-finite value, so the reverse sweep tests neither (the list of backward.cpp's passes_adjoint,
// Note [Zero adjoints]; a new op is tested unless listed).
template <class R> inline constexpr bool passes_adjoint = false;
template <> inline constexpr bool passes_adjoint<rules::Leaf> = true;
template <> inline constexpr bool passes_adjoint<rules::Add> = true;
template <> inline constexpr bool passes_adjoint<rules::Sub> = true;
template <> inline constexpr bool passes_adjoint<rules::AddC> = true;
template <> inline constexpr bool passes_adjoint<rules::RSubC> = true;
template <> inline constexpr bool passes_adjoint<rules::Neg> = true;

// The rule context of the reverse sweep: operands and result are (value, tangent) from the tangent
// pass, the adjoint g and the contributions are duals. A contribution is dropped where the adjoint's
// value is 0 and the contribution is not finite, as the create_graph sweep drops it (Note [Zero
// adjoints]): there it becomes a constant 0, which contributes 0 to the value and to the tangent.
// Test: whether contributions need the test (not for ops in passes_adjoint, which pass +-g).
template <bool Test> struct DualContext {
  const Dual* prim;
  Dual* adj;
  std::uint32_t i, a_, b_;
  double c_;
  Dual g_;
  Dual g() const { return g_; }
  Dual a() const { return prim[a_]; }
  Dual b() const { return prim[b_]; }
  Dual r() const { return prim[i]; }
  double c() const { return c_; }
  bool dropped(Dual v) const { return Test && g_.v == 0 && !std::isfinite(v.v); }
  void add(std::uint32_t k, Dual v) {
    if (dropped(v)) return;
    adj[k].v += v.v;
    adj[k].t += v.t;
  }
  void subtract(std::uint32_t k, Dual v) {
    if (dropped(v)) return;
    adj[k].v -= v.v;
    adj[k].t -= v.t;
  }
  void da(Dual v) { add(a_, v); }
  void db(Dual v) { add(b_, v); }
  void da_neg(Dual v) { subtract(a_, v); }
  void db_neg(Dual v) { subtract(b_, v); }
};

// Scratch of the sweep, per thread: grown to the largest tape seen and kept, so that hvp in a loop
// allocates only its result (as the scratch tape keeps its record). The sweep calls no user code,
// so an hvp inside f (which runs before the sweep) never finds it in use.
struct Scratch {
  std::vector<Dual> prim, adj;
  std::vector<std::pair<std::uint32_t, double>> seeds;
};
thread_local Scratch scratch;

} // namespace

struct HvpSweep {
  static detail::HvpResult run(std::string_view op, const Var& y, std::span<const Var> xs, std::span<const double> v);
};

detail::HvpResult HvpSweep::run(std::string_view op, const Var& y, std::span<const Var> xs, std::span<const double> v) {
  if (xs.size() != v.size())
    throw Error(fmt::format("autodiff: {}: {} variables but v has {} components", op, xs.size(), v.size()));
  const Tape& t = TapeAccess::checked(op, y);
  for (const Var& x : xs) {
    TapeAccess::checked(op, x);
    if (t.ops_[x.index()] != OpCode::Leaf)
      throw Error(fmt::format("autodiff: {}: node {} is not a leaf (op {}): H v is taken in leaves only", op, x.index(),
                              op_name(t.ops_[x.index()])));
  }
  const std::uint32_t n = y.index() + 1; // nodes after y do not affect it
  const double* values = t.values_.get();
  const OpCode* ops = t.ops_.get();
  const std::uint32_t* args = t.args_.data.get();
  const double* consts = t.consts_.data.get();

  // The seeds in node order, so that the tangent pass takes them with one cursor; a variable given
  // twice gets the sum of its components, as the create_graph path's seeded sweep gives it.
  auto& seeds = scratch.seeds;
  seeds.clear();
  for (std::size_t k = 0; k < xs.size(); ++k)
    if (xs[k].index() < n) seeds.emplace_back(xs[k].index(), v[k]);
  if (!std::is_sorted(seeds.begin(), seeds.end(), [](auto& l, auto& r) { return l.first < r.first; }))
    std::stable_sort(seeds.begin(), seeds.end(), [](auto& l, auto& r) { return l.first < r.first; });
  seeds.emplace_back(n, 0.0); // a sentinel: no bound test in the loop

  if (scratch.prim.size() < n) {
    scratch.prim.resize(n);
    scratch.adj.resize(n);
  }
  Dual* prim = scratch.prim.data();
  Dual* adj = scratch.adj.data();

  // The tangent pass: each node's value and tangent (its partials, from its rule with g = 1, times
  // its operands' tangents), and its adjoint cleared in the same pass over memory.
  std::size_t ap = 0, cp = 0, sp = 0;
  for (std::uint32_t i = 0; i < n; ++i) {
    switch (ops[i]) {
#define TAPEGRAD_X(Name)                                                                                               \
  case OpCode::Name: {                                                                                                 \
    using R = rules::Name;                                                                                             \
    double tangent = 0;                                                                                                \
    if constexpr (R::form == rules::Form::leaf) {                                                                      \
      for (; seeds[sp].first == i; ++sp)                                                                               \
        tangent += seeds[sp].second;                                                                                   \
    } else if constexpr (R::form == rules::Form::binary) {                                                             \
      const Dual a = prim[args[ap]], b = prim[args[ap + 1]];                                                           \
      ap += 2;                                                                                                         \
      detail::Partials p{a.v, b.v, values[i], 0};                                                                      \
      R::vjp(p);                                                                                                       \
      tangent = detail::tangent_term(p.pa, a.t) + detail::tangent_term(p.pb, b.t);                                     \
    } else {                                                                                                           \
      const Dual a = prim[args[ap++]];                                                                                 \
      double c = 0;                                                                                                    \
      if constexpr (R::form == rules::Form::unary_const) c = consts[cp++];                                             \
      detail::Partials p{a.v, 0, values[i], c};                                                                        \
      R::vjp(p);                                                                                                       \
      tangent = detail::tangent_term(p.pa, a.t);                                                                       \
    }                                                                                                                  \
    prim[i] = {values[i], tangent};                                                                                    \
    adj[i] = {};                                                                                                       \
    break;                                                                                                             \
  }
      TAPEGRAD_SCALAR_OPS(TAPEGRAD_X)
#undef TAPEGRAD_X
    }
  }

  // The reverse sweep from y, the operand cursors where the tangent pass left them.
  adj[y.index()] = {1.0, 0.0};
  for (std::uint32_t i = n; i-- > 0;) {
    switch (ops[i]) {
#define TAPEGRAD_X(Name)                                                                                               \
  case OpCode::Name: {                                                                                                 \
    using R = rules::Name;                                                                                             \
    std::uint32_t a = 0, b = 0;                                                                                        \
    double c = 0;                                                                                                      \
    if constexpr (R::form == rules::Form::binary) {                                                                    \
      ap -= 2;                                                                                                         \
      a = args[ap];                                                                                                    \
      b = args[ap + 1];                                                                                                \
    } else if constexpr (R::form != rules::Form::leaf) {                                                               \
      a = args[--ap];                                                                                                  \
    }                                                                                                                  \
    if constexpr (R::form == rules::Form::unary_const) c = consts[--cp];                                               \
    const Dual g = adj[i];                                                                                             \
    /* Note [Zero adjoints], for a dual adjoint: (0, 0) contributes nothing. */                                        \
    if constexpr (!passes_adjoint<R>)                                                                                  \
      if (g.v == 0 && g.t == 0) break;                                                                                 \
    DualContext<!passes_adjoint<R>> x{prim, adj, i, a, b, c, g};                                                       \
    R::vjp(x);                                                                                                         \
    break;                                                                                                             \
  }
      TAPEGRAD_SCALAR_OPS(TAPEGRAD_X)
#undef TAPEGRAD_X
    }
  }

  detail::HvpResult out;
  out.gradient.reserve(xs.size());
  out.hv.reserve(xs.size());
  for (const Var& x : xs) {
    const Dual d = x.index() < n ? adj[x.index()] : Dual{}; // y does not depend on a later x
    out.gradient.push_back(d.v);
    out.hv.push_back(d.t);
  }
  return out;
}

detail::HvpResult detail::forward_over_reverse(std::string_view op, const Var& y, std::span<const Var> xs,
                                               std::span<const double> v) {
  return HvpSweep::run(op, y, xs, v);
}

} // namespace autodiff
