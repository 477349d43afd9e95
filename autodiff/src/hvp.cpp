// Forward over reverse (docs/design.md, "Note [Forward over reverse]"): H v from the recorded f
// by a tangent pass forwards over the tape and a reverse sweep whose adjoints are dual numbers, both
// running the ops' own vjp rules. Nothing is recorded.

#include "walk.hpp"

#include <autodiff/detail/dual.hpp>
#include <autodiff/detail/hvp.hpp>
#include <autodiff/var.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace autodiff {

using detail::Dual;

namespace {

// detail::passes_adjoint (tape.hpp): ops whose every contribution is exactly +g or -g; at
// g = (0, 0) they add zeros and never a non-finite value, so the reverse sweep tests neither.
using detail::passes_adjoint;

// The rule context of the reverse sweep: operands and result are (value, tangents) from the tangent
// pass, the adjoint g and the contributions are duals. A contribution is dropped where the adjoint's
// value is 0 and the contribution is not finite, as the create_graph sweep drops it (Note [Zero
// adjoints]): there it becomes a constant 0, which contributes 0 to the value and to the tangent.
// Test: whether contributions need the test (not for ops in passes_adjoint, which pass +-g).
template <int K, bool Test> struct DualContext {
  using D = detail::DualN<K>;
  // One (value, tangent) pair is passed in registers; K of them by reference.
  using Ref = std::conditional_t<(K == 1), D, const D&>;
  const D* prim;
  D* adj;
  std::uint32_t i, a_, b_;
  double c_;
  Ref g_;
  Ref g() const { return g_; }
  Ref a() const { return prim[a_]; }
  Ref b() const { return prim[b_]; }
  Ref r() const { return prim[i]; }
  double c() const { return c_; }
  bool dropped(const D& v) const { return Test && g_.v == 0 && !std::isfinite(v.v); }
  void add(std::uint32_t k, const D& v) {
    if (dropped(v)) return;
    adj[k].v += v.v;
    for (int l = 0; l < K; ++l)
      adj[k].t[l] += v.t[l];
  }
  void subtract(std::uint32_t k, const D& v) {
    if (dropped(v)) return;
    adj[k].v -= v.v;
    for (int l = 0; l < K; ++l)
      adj[k].t[l] -= v.t[l];
  }
  void da(const D& v) { add(a_, v); }
  void db(const D& v) { add(b_, v); }
  void da_neg(const D& v) { subtract(a_, v); }
  void db_neg(const D& v) { subtract(b_, v); }
};

// A seed: tangent `lane` of leaf `node` starts at `value`.
struct Seed {
  std::uint32_t node;
  int lane;
  double value;
};

// Scratch of the sweeps, per thread and lane count: grown to the largest tape seen and kept, so
// that hvp in a loop allocates only its result (as the scratch tape keeps its record). The sweep
// calls no user code, so an hvp inside f (which runs before the sweep) never finds it in use.
template <int K> struct Scratch { std::vector<detail::DualN<K>> prim, adj; };
template <int K> Scratch<K>& scratch() {
  thread_local Scratch<K> s;
  return s;
}

std::vector<Seed>& seed_scratch() {
  thread_local std::vector<Seed> s;
  return s;
}

} // namespace

struct HvpSweep {
  static const Tape& check(std::string_view op, const Var& y, std::span<const Var> xs);
  // The two passes from y (of tape t), with `seeds` sorted by node and ended by a sentinel of node
  // y + 1; returns the adjoints, indexed by node (valid up to y).
  template <int K> static const detail::DualN<K>* run(const Tape& t, const Var& y, std::span<const Seed> seeds);
};

const Tape& HvpSweep::check(std::string_view op, const Var& y, std::span<const Var> xs) {
  const Tape& t = TapeAccess::checked(op, y);
  if (!t.higher_order())
    throw Error(fmt::format("autodiff: {}: needs the ops of the computation, and a first-order tape keeps only their "
                            "partial derivatives (Note [First-order tapes])",
                            op));
  for (const Var& x : xs) {
    TapeAccess::checked(op, x);
    if (t.ops_[x.index()] != OpCode::Leaf)
      throw Error(fmt::format("autodiff: {}: node {} is not a leaf (op {}): H v is taken in leaves only", op, x.index(),
                              op_name(t.ops_[x.index()])));
  }
  return t;
}

template <int K> const detail::DualN<K>* HvpSweep::run(const Tape& t, const Var& y, std::span<const Seed> seeds) {
  using D = detail::DualN<K>;
  const std::uint32_t n = y.index() + 1; // nodes after y do not affect it
  const double* values = t.values_.get();
  const OpCode* ops = t.ops_.get();
  const std::uint32_t* args = t.args_.data.get();
  const double* consts = t.consts_.data.get();

  Scratch<K>& scr = scratch<K>();
  if (scr.prim.size() < n) {
    scr.prim.resize(n);
    scr.adj.resize(n);
  }
  D* prim = scr.prim.data();
  D* adj = scr.adj.data();

  // The tangent pass: each node's value and tangents (its partials, from its rule with g = 1, times
  // its operands' tangents), and its adjoint cleared in the same pass over memory.
  std::size_t ap = 0, cp = 0, sp = 0;
  for (std::uint32_t i = 0; i < n; ++i) {
    D& out = prim[i];
    out.v = values[i];
    switch (ops[i]) {
#define TAPEGRAD_X(Name)                                                                                               \
  case OpCode::Name: {                                                                                                 \
    using R = rules::Name;                                                                                             \
    if constexpr (R::form == rules::Form::leaf) {                                                                      \
      for (int l = 0; l < K; ++l)                                                                                      \
        out.t[l] = 0;                                                                                                  \
      for (; seeds[sp].node == i; ++sp)                                                                                \
        out.t[seeds[sp].lane] += seeds[sp].value;                                                                      \
    } else if constexpr (R::form == rules::Form::binary) {                                                             \
      const D& a = prim[args[ap]];                                                                                     \
      const D& b = prim[args[ap + 1]];                                                                                 \
      ap += 2;                                                                                                         \
      detail::Partials p{a.v, b.v, values[i], 0};                                                                      \
      R::vjp(p);                                                                                                       \
      for (int l = 0; l < K; ++l)                                                                                      \
        out.t[l] = detail::tangent_term(p.pa, a.t[l]) + detail::tangent_term(p.pb, b.t[l]);                            \
    } else {                                                                                                           \
      const D& a = prim[args[ap++]];                                                                                   \
      double c = 0;                                                                                                    \
      if constexpr (R::form == rules::Form::unary_const) c = consts[cp++];                                             \
      detail::Partials p{a.v, 0, values[i], c};                                                                        \
      R::vjp(p);                                                                                                       \
      for (int l = 0; l < K; ++l)                                                                                      \
        out.t[l] = detail::tangent_term(p.pa, a.t[l]);                                                                 \
    }                                                                                                                  \
    break;                                                                                                             \
  }
      TAPEGRAD_SCALAR_OPS(TAPEGRAD_X)
#undef TAPEGRAD_X
    }
    adj[i] = D{};
  }

  // The reverse sweep from y, the operand cursors where the tangent pass left them.
  adj[y.index()].v = 1.0;
  detail::reverse_walk(ops, args, ap, consts, cp, n,
                       [&](auto rule, std::uint32_t i, std::uint32_t a, std::uint32_t b, double c) {
                         using R = decltype(rule);
                         if constexpr (R::form != rules::Form::leaf) {
                           const D g = adj[i];
                           // Note [Zero adjoints], for a dual adjoint: (0, 0...) contributes nothing.
                           if constexpr (!passes_adjoint<R>)
                             if (g.v == 0 && std::all_of(g.t, g.t + K, [](double x) { return x == 0; })) return;
                           DualContext<K, !passes_adjoint<R>> x{prim, adj, i, a, b, c, g};
                           R::vjp(x);
                         }
                       });
  return adj;
}

detail::HvpResult detail::forward_over_reverse(std::string_view op, const Var& y, std::span<const Var> xs,
                                               std::span<const double> v) {
  if (xs.size() != v.size())
    throw Error(fmt::format("autodiff: {}: {} variables but v has {} components", op, xs.size(), v.size()));
  const Tape& t = HvpSweep::check(op, y, xs);
  const std::uint32_t n = y.index() + 1;
  // The seeds in node order, so that the tangent pass takes them with one cursor; a variable given
  // twice gets the sum of its components, as the create_graph path's seeded sweep gives it.
  std::vector<Seed>& seeds = seed_scratch();
  seeds.clear();
  for (std::size_t k = 0; k < xs.size(); ++k)
    if (xs[k].index() < n) seeds.push_back({xs[k].index(), 0, v[k]});
  const auto by_node = [](const Seed& l, const Seed& r) { return l.node < r.node; };
  if (!std::is_sorted(seeds.begin(), seeds.end(), by_node)) std::stable_sort(seeds.begin(), seeds.end(), by_node);
  seeds.push_back({n, 0, 0.0}); // a sentinel: no bound test in the loop

  const Dual* adj = HvpSweep::run<1>(t, y, seeds);
  HvpResult out;
  out.gradient.reserve(xs.size());
  out.hv.reserve(xs.size());
  for (const Var& x : xs) {
    const Dual d = x.index() < n ? adj[x.index()] : Dual{}; // y does not depend on a later x
    out.gradient.push_back(d.v);
    out.hv.push_back(d.t[0]);
  }
  return out;
}

namespace {
// Columns j0 .. j0 + K - 1 of h per sweep, one unit vector per lane: h[i][j] = d(dy/dx_i)/dx_j, the
// create_graph path's h[i][j] (it differentiates row i's gradient in x_j).
template <int K>
void hessian_columns(const Tape& t, const Var& y, std::span<const Var> xs, std::vector<std::vector<double>>& h) {
  const std::uint32_t n = y.index() + 1;
  const std::size_t m = xs.size();
  std::vector<Seed>& seeds = seed_scratch();
  for (std::size_t j0 = 0; j0 < m; j0 += K) {
    const std::size_t j1 = std::min(m, j0 + K);
    seeds.clear();
    for (std::size_t j = j0; j < j1; ++j)
      if (xs[j].index() < n) seeds.push_back({xs[j].index(), static_cast<int>(j - j0), 1.0});
    const auto by_node = [](const Seed& l, const Seed& r) { return l.node < r.node; };
    if (!std::is_sorted(seeds.begin(), seeds.end(), by_node)) std::stable_sort(seeds.begin(), seeds.end(), by_node);
    seeds.push_back({n, 0, 0.0});
    const detail::DualN<K>* adj = HvpSweep::run<K>(t, y, seeds);
    for (std::size_t i = 0; i < m; ++i) {
      if (xs[i].index() >= n) continue; // y does not depend on a later x
      const detail::DualN<K>& d = adj[xs[i].index()];
      for (std::size_t j = j0; j < j1; ++j)
        h[i][j] = d.t[j - j0];
    }
  }
}
} // namespace

std::vector<std::vector<double>> detail::hessian_forward_over_reverse(std::string_view op, const Var& y,
                                                                      std::span<const Var> xs) {
  const Tape& t = HvpSweep::check(op, y, xs);
  const std::size_t m = xs.size();
  std::vector<std::vector<double>> h(m, std::vector<double>(m, 0.0));
  // One lane for one variable (the width hvp uses), eight otherwise. Each width instantiates every
  // rule for its dual type (seconds of compile time per build, and CI builds this file four times);
  // for 2 to 7 variables the idle lanes cost arithmetic on a tape that is small anyway.
  static_assert(hessian_lanes == 8);
  if (m <= 1)
    hessian_columns<1>(t, y, xs, h);
  else
    hessian_columns<8>(t, y, xs, h);
  return h;
}

} // namespace autodiff
