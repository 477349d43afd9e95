// The reverse sweeps: one loop backwards over the tape, dispatching each op code to its rule.
// The same rules run with doubles (sweep) and with Var (sweep_recording, for create_graph).

#include "walk.hpp"

#include <autodiff/var.hpp>

#include <fmt/format.h>

#include <cmath>
#include <cstddef>
#include <utility>

namespace autodiff {

namespace {

// The rule context of the first-order sweep: plain doubles read from and written to the tape.
struct DoubleContext {
  const double* values;
  double* adj;
  std::uint32_t i, a_, b_;
  double c_, g_;
  double g() const { return g_; }
  double a() const { return values[a_]; }
  double b() const { return values[b_]; }
  double r() const { return values[i]; }
  double c() const { return c_; }
  void da(double v) { adj[a_] += v; }
  void db(double v) { adj[b_] += v; }
  void da_neg(double v) { adj[a_] -= v; }
  void db_neg(double v) { adj[b_] -= v; }
};

using detail::reverse_walk;

// detail::passes_adjoint (tape.hpp) lists the ops that need no zero-adjoint test: that test reads
// the adjoint just written by the node's consumer and is a sizeable part of the sweep's time.
using detail::passes_adjoint;

// Reads a tape array through its owner on every access, so that recording (which may move the
// array) during the walk is harmless, and nothing needs copying first.
template <class T> struct Live {
  const std::unique_ptr<T[]>& p;
  T operator[](std::size_t k) const { return p[k]; }
};

} // namespace

void Tape::sweep(std::span<const std::uint32_t> outputs, std::span<const double> seeds) {
  adj_.assign(n_, 0.0);
  for (std::size_t k = 0; k < outputs.size(); ++k)
    adj_[outputs[k]] += seeds[k];
  if (first_order_) {
    sweep_partials();
    swept_ = true;
    readable_adjoints_ = adj_.size();
    return;
  }
  double* adj = adj_.data();
  const double* values = values_.get();
  // The walk starts at the end of the tape so the operand cursors line up; nodes after the output
  // have a zero adjoint and are skipped.
  reverse_walk(ops_.get(), args_.data.get(), args_.size, consts_.data.get(), consts_.size, n_,
               [&](auto rule, std::uint32_t i, std::uint32_t a, std::uint32_t b, double c) {
                 using R = decltype(rule);
                 const double g = adj[i];
                 // Note [Zero adjoints] (docs/design.md); nodes the output does not depend on then
                 // cost little.
                 if constexpr (!passes_adjoint<R>)
                   if (g == 0) return;
                 DoubleContext x{values, adj, i, a, b, c, g};
                 R::vjp(x);
               });
  swept_ = true;
  readable_adjoints_ = adj_.size();
}

// Note [First-order tapes]: each entry's adjoint, added to its unit pairs' operands and, times each
// stored partial, to its other pairs' operands. A zero adjoint skips the latter (Note [Zero
// adjoints]): a partial may be infinite. Unit pairs need no test (0 times 1 is 0), as the default
// sweep does not test the ops that give them (detail::passes_adjoint). Leaves have no pairs, and
// entries after the outputs have a zero adjoint. The other pairs are read down from args_.size, the
// unit pairs up from units_, where recording left them.
void Tape::sweep_partials() {
  double* adj = adj_.data();
  const detail::PairCount* counts = counts_.get();
  const std::uint32_t* args = args_.data.get();
  const double* partials = partials_.get();
  std::size_t p = args_.size, u = units_;
  // Entries of the common shapes (unit pairs, other pairs) run unrolled: their loops' exits were
  // the sweep's mispredicted branches, one jump (predicted from the entries before it) replaces
  // them. 18-22% faster on S1, S3, LW and Toon (Note [First-order tapes]).
  const auto shape = [&]<std::size_t U, std::size_t K>(double g) {
    [&]<std::size_t... J>(std::index_sequence<J...>) { ((adj[args[u + J]] += g), ...); }
    (std::make_index_sequence<U>{});
    u += U;
    p -= K;
    if constexpr (K != 0) {
      if (g == 0) return;
      [&]<std::size_t... J>(std::index_sequence<J...>) { ((adj[args[p + J]] += g * partials[p + J]), ...); }
      (std::make_index_sequence<K>{});
    }
  };
  for (std::size_t i = n_; i-- > 0;) {
    const double g = adj[i];
    switch (static_cast<std::size_t>(counts[i])) {
    case 0: // a leaf
      continue;
#define TAPEGRAD_SHAPE(U, K)                                                                                           \
  case (U) << 4 | (K):                                                                                                 \
    shape.template operator()<U, K>(g);                                                                                \
    continue;
      TAPEGRAD_SHAPE(0, 1)
      TAPEGRAD_SHAPE(0, 2)
      TAPEGRAD_SHAPE(0, 3)
      TAPEGRAD_SHAPE(0, 4)
      TAPEGRAD_SHAPE(1, 0)
      TAPEGRAD_SHAPE(1, 1)
      TAPEGRAD_SHAPE(1, 2)
      TAPEGRAD_SHAPE(1, 3)
      TAPEGRAD_SHAPE(2, 0)
      TAPEGRAD_SHAPE(2, 1)
      TAPEGRAD_SHAPE(2, 2)
      TAPEGRAD_SHAPE(3, 0)
      TAPEGRAD_SHAPE(3, 1)
#undef TAPEGRAD_SHAPE
    default: // any other narrow entry, or a wide one
      break;
    }
    const auto h = static_cast<std::size_t>(counts[i]);
    std::size_t units = h >> 4, k = h & 15;
    if (counts[i] == detail::wide_entry) [[unlikely]] {
      units = 0;
      k = args[u++];
    }
    for (const std::size_t end = u + units; u < end; ++u)
      adj[args[u]] += g;
    p -= k;
    if (g == 0) continue;
    for (std::size_t j = p; j < p + k; ++j)
      adj[args[j]] += g * partials[j];
  }
}

double Tape::adjoint(const Var& v) const {
  if (v.gen_ != gen_) TapeAccess::foreign("grad", v, *this);
  if (!swept_)
    throw Error(fmt::format("autodiff: grad: no backward() has run on this tape since it was last reset "
                            "(node {})",
                            v.i_));
  if (v.i_ >= adj_.size())
    throw Error(fmt::format("autodiff: grad: node {} was recorded after the last backward(), which "
                            "reached nodes 0..{}",
                            v.i_, adj_.size() - 1));
  return adj_[v.i_];
}

void Var::backward() const {
  Tape& t = TapeAccess::checked("backward", *this);
  t.sweep(i_);
}

double Var::grad_checked() const { return Tape::active().adjoint(*this); }

std::vector<double> gradient(const Var& y, std::span<const Var> xs) { return TapeAccess::gradient(y, xs); }

std::vector<double> gradient(std::span<const Var> ys, std::span<const double> u, std::span<const Var> xs) {
  return TapeAccess::gradient(ys, u, xs);
}

std::vector<double> TapeAccess::gradient(std::span<const Var> ys, std::span<const double> u, std::span<const Var> xs) {
  if (ys.size() != u.size())
    throw Error(fmt::format("autodiff: gradient: {} outputs but {} seeds", ys.size(), u.size()));
  if (ys.empty()) return std::vector<double>(xs.size(), 0.0);
  Tape& t = checked("gradient", ys[0]);
  std::vector<std::uint32_t> roots;
  roots.reserve(ys.size());
  for (const Var& y : ys) {
    checked("gradient", y);
    roots.push_back(y.index());
  }
  for (const Var& x : xs)
    checked("gradient", x);
  t.sweep(roots, u);
  std::vector<double> out;
  out.reserve(xs.size());
  for (const Var& x : xs)
    out.push_back(t.adj_[x.index()]);
  return out;
}

std::vector<double> TapeAccess::gradient(const Var& y, std::span<const Var> xs) {
  Tape& t = TapeAccess::checked("gradient", y);
  for (const Var& x : xs)
    TapeAccess::checked("gradient", x);
  t.sweep(y.index());
  std::vector<double> out;
  out.reserve(xs.size());
  for (const Var& x : xs)
    out.push_back(t.adj_[x.index()]);
  return out;
}

// The create_graph sweep: adjoints are Vars, and each rule's arithmetic is recorded as it runs.
// New nodes go after the end of the tape, so the walk over the original nodes is unaffected;
// everything is addressed by index because recording may move the tape's arrays.
std::vector<Var> Tape::sweep_recording(const Var& output, const std::vector<Var>& inputs) {
  if (first_order_)
    throw Error("autodiff: grad: create_graph needs the ops of the computation, and a first-order tape "
                "(TapeOptions{.higher_order = false}) keeps only their partial derivatives; record on a default "
                "Tape, or use autodiff::hessian / hvp, which record on their own");
  // Nodes after the output are walked too (they have no adjoint): that keeps the operand cursors
  // simple, and costs little since the output is almost always the last node.
  const std::uint32_t n = n_;
  // Scratch kept by the tape: placeholders (`has` says which hold an adjoint), grown but not freed.
  if (recording_adj_.size() < n) recording_adj_.resize(n, output);
  std::vector<Var>& adj = recording_adj_;
  recording_has_.assign(n, 0);
  std::vector<char>& has = recording_has_;
  adj[output.i_] = Var(1.0);
  has[output.i_] = 1;

  struct VarContext {
    Tape& t;
    std::vector<Var>& adj;
    std::vector<char>& has;
    std::uint32_t i, a_, b_;
    double c_;
    Var g_;
    const Var& g() const { return g_; }
    Var a() const { return TapeAccess::make(t, t.values_[a_], a_); }
    Var b() const { return TapeAccess::make(t, t.values_[b_], b_); }
    Var r() const { return TapeAccess::make(t, t.values_[i], i); }
    double c() const { return c_; }
    // Note [Zero adjoints] (docs/design.md): its form for create_graph sweeps.
    bool dropped(const Var& v) const { return g_.value() == 0 && !std::isfinite(v.value()); }
    void add(std::uint32_t k, const Var& v) {
      if (dropped(v)) return;
      if (has[k])
        adj[k] = adj[k] + v;
      else
        adj[k] = v, has[k] = 1;
    }
    void subtract(std::uint32_t k, const Var& v) {
      if (dropped(v)) return;
      if (has[k])
        adj[k] = adj[k] - v;
      else
        adj[k] = -v, has[k] = 1;
    }
    void da(const Var& v) { add(a_, v); }
    void db(const Var& v) { add(b_, v); }
    void da_neg(const Var& v) { subtract(a_, v); }
    void db_neg(const Var& v) { subtract(b_, v); }
  };

  const std::size_t nargs = args_.size, nconsts = consts_.size;
  reverse_walk(Live<OpCode>{ops_}, Live<std::uint32_t>{args_.data}, nargs, Live<double>{consts_.data}, nconsts, n,
               [&](auto rule, std::uint32_t i, std::uint32_t a, std::uint32_t b, double c) {
                 if (!has[i]) return;
                 VarContext x{*this, adj, has, i, a, b, c, adj[i]};
                 decltype(rule)::vjp(x);
               });

  std::vector<Var> out;
  out.reserve(inputs.size());
  for (const Var& x : inputs) {
    if (x.i_ < n && has[x.i_])
      out.push_back(adj[x.i_]);
    else
      out.push_back(Var(0.0)); // y does not depend on x
  }
  return out;
}

std::vector<Var> grad(const Var& y, std::span<const Var> xs, GradOptions options) {
  TapeAccess::checked("grad", y);
  for (const Var& x : xs)
    TapeAccess::checked("grad", x);
  if (options.create_graph) return TapeAccess::grad_recording(y, xs);
  const std::vector<double> g = gradient(y, xs);
  return std::vector<Var>(g.begin(), g.end());
}

std::vector<Var> TapeAccess::grad_recording(const Var& y, std::span<const Var> xs) {
  return Tape::active().sweep_recording(y, std::vector<Var>(xs.begin(), xs.end()));
}

} // namespace autodiff
