// The scalar engine against the plain double function and a hand-written gradient, all in one
// binary so that every ratio comes from one run. See benchmarks/README.md for what each measures.

#include "common.hpp"

#include <autodiff/autodiff.hpp>
#include <autodiff/detail/hvp.hpp>

#include <benchmark/benchmark.h>
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <iterator>
#include <random>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#ifdef TAPEGRAD_HAVE_CODIPACK
#include <codi.hpp>
#endif
#ifdef TAPEGRAD_HAVE_ADEPT
#include <adept.h>
#endif

namespace {

using autodiff::Tape;
using autodiff::Var;

// ---- the few functions the workloads need beyond arithmetic ---------------------------------------
// The workloads are templates over the number type, instantiated for double, tapegrad's Var and the
// peers' types. Where tapegrad has a primitive (square, softplus) Var and double use it; the peers
// get the same function written with their own arithmetic, as their users would write it.

// tapegrad's expressions (Note [Statements]) count as Var: square of one records one statement.
template <class T> inline constexpr bool is_tapegrad_or_double =
    std::is_same_v<T, Var> || std::is_same_v<T, double> || autodiff::VarExpression<T>;

// x^2. For the peers' expression types this returns their (unevaluated) product, so that their
// statement-level recording sees one statement: it refers to x, so use it only within one full
// expression (the expression-template `auto` pitfall). These two shims exist only because one
// template serves every engine; always inlined, so that they cost no engine a call (GCC otherwise
// keeps sq<Var> out of line, which a user calling autodiff::square directly never sees).
template <class E> [[gnu::always_inline]] inline auto sq(const E& x) {
  if constexpr (is_tapegrad_or_double<E>)
    return autodiff::square(x);
  else
    return x * x;
}

template <class T> [[gnu::always_inline]] inline T softplus_of(const T& z) {
  if constexpr (is_tapegrad_or_double<T>) {
    return autodiff::softplus(z);
  } else {
    using std::exp, std::log1p;
    if (z > 0.0) return z + log1p(exp(-z));
    return log1p(exp(z));
  }
}

// ---- S1: Rosenbrock ---------------------------------------------------------------------------

constexpr std::size_t s1_n = 100000;

template <class T> T rosenbrock_term(const T& xi, const T& xnext) { return 100.0 * sq(xnext - sq(xi)) + sq(1.0 - xi); }

// Starting the sum with the first term (not with T(0)) keeps a constant leaf off the tape.
template <class T> T rosenbrock(std::span<const T> x) {
  T s = rosenbrock_term(x[0], x[1]);
  for (std::size_t i = 1; i + 1 < x.size(); ++i)
    s = s + rosenbrock_term(x[i], x[i + 1]);
  return s;
}

// Each variable gets 200 t from the term before it and -400 x t - 2 (1 - x) from its own; carrying
// the former in a register keeps the loop free of read-modify-writes to g.
double rosenbrock_gradient(std::span<const double> x, std::span<double> g) {
  double f = 0, carry = 0;
  for (std::size_t i = 0; i + 1 < x.size(); ++i) {
    const double t = x[i + 1] - x[i] * x[i];
    const double u = 1.0 - x[i];
    f += 100.0 * t * t + u * u;
    g[i] = carry - 400.0 * x[i] * t - 2.0 * u;
    carry = 200.0 * t;
  }
  g[x.size() - 1] = carry;
  return f;
}

// The Hessian is tridiagonal: d2/dxi2 = 1200 xi^2 - 400 x(i+1) + 2, d2/dxi dx(i+1) = -400 xi,
// d2/dx(i+1)2 = 200, summed over the terms each variable appears in.
void rosenbrock_hvp(std::span<const double> x, std::span<const double> v, std::span<double> hv) {
  double carry = 0;
  for (std::size_t i = 0; i + 1 < x.size(); ++i) {
    const double off = -400.0 * x[i];
    hv[i] = carry + (1200.0 * x[i] * x[i] - 400.0 * x[i + 1] + 2.0) * v[i] + off * v[i + 1];
    carry = off * v[i] + 200.0 * v[i + 1];
  }
  hv[x.size() - 1] = carry;
}

// ---- S2: logistic regression ------------------------------------------------------------------

struct LogRegData {
  std::size_t n = 2000, d = 50;
  std::vector<double> x; // n rows of d features
  std::vector<double> y; // labels 0 or 1
};

// Parameters p: d weights, then the bias. NLL = sum softplus(z) - y z with z = w.x + b.
template <class T> T logreg_nll(std::span<const T> p, const LogRegData& data) {
  const std::size_t d = data.d;
  // `-> T`: with the peers' types an `auto` return would be an expression referring to z.
  auto sample = [&](std::size_t i) -> T {
    const double* xi = &data.x[i * d];
    T z = p[d];
    for (std::size_t j = 0; j < d; ++j)
      z = z + p[j] * xi[j];
    return softplus_of(z) - data.y[i] * z;
  };
  T nll = sample(0);
  for (std::size_t i = 1; i < data.n; ++i)
    nll = nll + sample(i);
  return nll;
}

double logreg_gradient(std::span<const double> p, const LogRegData& data, std::span<double> g) {
  std::fill(g.begin(), g.end(), 0.0);
  const std::size_t d = data.d;
  double f = 0;
  for (std::size_t i = 0; i < data.n; ++i) {
    const double* xi = &data.x[i * d];
    double z = p[d];
    for (std::size_t j = 0; j < d; ++j)
      z += p[j] * xi[j];
    f += autodiff::softplus(z) - data.y[i] * z;
    const double dz = autodiff::sigmoid(z) - data.y[i];
    for (std::size_t j = 0; j < d; ++j)
      g[j] += dz * xi[j];
    g[d] += dz;
  }
  return f;
}

// ---- S3: MLP 2-16-16-1 ------------------------------------------------------------------------

constexpr std::size_t mlp_hidden = 16;
// Per neuron: its input weights, then its bias. 16*3 + 16*17 + 17 = 337.
constexpr std::size_t mlp_l2 = mlp_hidden * 3;
constexpr std::size_t mlp_l3 = mlp_l2 + mlp_hidden * (mlp_hidden + 1);
constexpr std::size_t mlp_params = mlp_l3 + mlp_hidden + 1;
static_assert(mlp_params == 337);

struct MlpData {
  std::size_t n = 100;
  std::vector<double> x; // n points of 2 coordinates
  std::vector<double> y;
};

// b + sum w_k in_k, one operation per product and per sum, as micrograd writes a neuron. Inputs of
// the first layer are data (double); later layers multiply Var by Var.
template <class T, class In, std::size_t N> T neuron(const T* w, const std::array<In, N>& in) {
  T act = w[N];
  for (std::size_t k = 0; k < N; ++k)
    act = act + w[k] * in[k];
  return act;
}

// Builds the layer's outputs in place: a default-constructed Var would record a leaf.
template <class T, class In, std::size_t N>
std::array<T, mlp_hidden> tanh_layer(const T* w, const std::array<In, N>& in) {
  return [&]<std::size_t... J>(std::index_sequence<J...>) {
    using std::tanh;
    return std::array<T, mlp_hidden>{tanh(neuron(w + J * (N + 1), in))...};
  }
  (std::make_index_sequence<mlp_hidden>{});
}

template <class T> T mlp_mse(std::span<const T> p, const MlpData& data) {
  auto loss_at = [&](std::size_t k) -> T {
    const std::array<double, 2> x{data.x[2 * k], data.x[2 * k + 1]};
    const auto h1 = tanh_layer(p.data(), x);
    const auto h2 = tanh_layer(p.data() + mlp_l2, h1);
    return sq(neuron(p.data() + mlp_l3, h2) - data.y[k]);
  };
  T sum = loss_at(0);
  for (std::size_t k = 1; k < data.n; ++k)
    sum = sum + loss_at(k);
  return sum * (1.0 / static_cast<double>(data.n));
}

double mlp_gradient(std::span<const double> p, const MlpData& data, std::span<double> g) {
  constexpr std::size_t H = mlp_hidden;
  std::fill(g.begin(), g.end(), 0.0);
  const double scale = 1.0 / static_cast<double>(data.n);
  double f = 0;
  for (std::size_t k = 0; k < data.n; ++k) {
    const double x[2] = {data.x[2 * k], data.x[2 * k + 1]};
    double h1[H], h2[H];
    for (std::size_t j = 0; j < H; ++j) {
      const double* w = &p[j * 3];
      h1[j] = std::tanh(w[2] + w[0] * x[0] + w[1] * x[1]);
    }
    for (std::size_t j = 0; j < H; ++j) {
      const double* w = &p[mlp_l2 + j * (H + 1)];
      double a = w[H];
      for (std::size_t m = 0; m < H; ++m)
        a += w[m] * h1[m];
      h2[j] = std::tanh(a);
    }
    const double* w3 = &p[mlp_l3];
    double out = w3[H];
    for (std::size_t m = 0; m < H; ++m)
      out += w3[m] * h2[m];
    const double e = out - data.y[k];
    f += e * e;

    const double dout = 2.0 * e * scale;
    double dh1[H] = {};
    for (std::size_t j = 0; j < H; ++j) {
      g[mlp_l3 + j] += dout * h2[j];
      const double dz2 = dout * w3[j] * (1.0 - h2[j] * h2[j]);
      const double* w = &p[mlp_l2 + j * (H + 1)];
      double* gw = &g[mlp_l2 + j * (H + 1)];
      for (std::size_t m = 0; m < H; ++m) {
        gw[m] += dz2 * h1[m];
        dh1[m] += dz2 * w[m];
      }
      gw[H] += dz2;
    }
    g[mlp_l3 + H] += dout;
    for (std::size_t j = 0; j < H; ++j) {
      const double dz1 = dh1[j] * (1.0 - h1[j] * h1[j]);
      double* gw = &g[j * 3];
      gw[0] += dz1 * x[0];
      gw[1] += dz1 * x[1];
      gw[2] += dz1;
    }
  }
  return f * scale;
}

// ---- S4: advection (the two schemes of Adept's benchmark) ---------------------------------------
// A periodic 1-D field of 100 cells advected for 2000 steps at Courant number 0.125; the gradient
// is that of J = 0.1 sum q (final) with respect to the initial field. Each step computes the flux
// between neighbouring cells, moves it from cell to cell, and copies the two halo cells. Lax-Wendroff
// is a linear flux (additions and multiplications); Toon's scheme is exp, log and divisions.

constexpr std::size_t s4_nx = 100;
constexpr int s4_steps = 2000;
constexpr double s4_courant = 0.125;

template <class T, class Flux> T advect(std::span<const T> q0, Flux flux_between) {
  std::array<T, s4_nx> q;
  std::copy(q0.begin(), q0.end(), q.begin());
  std::array<T, s4_nx - 1> flux;
  for (int step = 0; step < s4_steps; ++step) {
    for (std::size_t i = 0; i + 1 < s4_nx; ++i)
      flux[i] = flux_between(q[i], q[i + 1]);
    for (std::size_t i = 1; i + 1 < s4_nx; ++i)
      q[i] = q[i] + (flux[i - 1] - flux[i]);
    q[0] = q[s4_nx - 2]; // periodic halo
    q[s4_nx - 1] = q[1];
  }
  T sum = q[0];
  for (std::size_t i = 1; i < s4_nx; ++i)
    sum = sum + q[i];
  return 0.1 * sum;
}

// Lax-Wendroff: the upwind-weighted mean of the two cells, c/2 ((l + r) + c (l - r)).
template <class T> T lax_wendroff(std::span<const T> q0) {
  return advect(q0, [](const T& l, const T& r) -> T {
    constexpr double c = s4_courant;
    return (0.5 * c) * ((l + r) + c * (l - r));
  });
}

// Toon et al.: exact for an exponential profile, ((l/r)^c - 1) l r / (l - r), with the power
// written as exp(c log(l/r)).
template <class T> T toon(std::span<const T> q0) {
  return advect(q0, [](const T& l, const T& r) -> T {
    using std::exp, std::log;
    return (exp(s4_courant * log(l / r)) - 1.0) * l * r / (l - r);
  });
}

// ---- the engines ----------------------------------------------------------------------------------
// Each engine says how to start a recording, make an input, finish, sweep from the output, and read
// an input's gradient; the workload functions are the same templates for all of them.

// On the default tape (every op a node, so gradients of gradients work), or on a first-order tape
// (Note [First-order tapes]: each statement's partials, stored while recording).
template <bool HigherOrder> struct TapegradEngineOf {
  using T = Var;
  static constexpr const char* name = HigherOrder ? "tapegrad" : "tapegrad first-order";
  Tape tape{autodiff::TapeOptions{.higher_order = HigherOrder}};
  explicit TapegradEngineOf(std::size_t /*nodes*/) {}
  void begin() { tape.reset(); }
  static void input(T& x, double v) { x = Var(v); }
  static void end(const T& /*y*/) {}
  static void reverse(const T& y) { y.backward(); }
  static double gradient(const T& x) { return x.grad(); }
  static double value(const T& y) { return y.value(); }
  double bytes() const { return static_cast<double>(tape.bytes_used()); }
  std::size_t nodes() const { return tape.size(); }
};
using TapegradEngine = TapegradEngineOf<true>;
using TapegradFirstOrderEngine = TapegradEngineOf<false>;

#ifdef TAPEGRAD_HAVE_CODIPACK
// CoDiPack's fastest first-order type: a Jacobian tape (partials stored while recording) in
// preallocated blocks with no capacity checks, sized from the tapegrad node count of the workload.
struct CodiEngine {
  using T = codi::RealReverseUnchecked;
  static constexpr const char* name = "CoDiPack";
  T::Tape& tape = T::getTape();
  explicit CodiEngine(std::size_t nodes) {
    tape.setParameter(codi::TapeParameters::StatementSize, 2 * nodes + 4096);
    tape.setParameter(codi::TapeParameters::JacobianSize, 3 * nodes + 4096);
  }
  void begin() {
    tape.reset(false); // the sweep clears the adjoints
    tape.setActive();
  }
  void input(T& x, double v) {
    x = v;
    tape.registerInput(x);
  }
  void end(T& y) {
    tape.registerOutput(y);
    tape.setPassive();
  }
  void reverse(T& y) {
    tape.clearAdjoints();
    y.setGradient(1.0);
    tape.evaluate();
  }
  static double gradient(const T& x) { return x.getGradient(); }
  static double value(const T& y) { return y.getValue(); }
  // Per statement its argument count (1 byte), per argument the partial and the operand (8 + 4).
  double bytes() const {
    return static_cast<double>(tape.getParameter(codi::TapeParameters::StatementSize)) * 1.0 +
           static_cast<double>(tape.getParameter(codi::TapeParameters::JacobianSize)) * 12.0;
  }
};
#endif

#ifdef TAPEGRAD_HAVE_ADEPT
// Adept-2's adouble: statements with their partials stored while recording. One Stack per thread
// may exist, so the engines share it.
struct AdeptEngine {
  using T = adept::adouble;
  static constexpr const char* name = "Adept-2";
  static adept::Stack& stack() {
    static adept::Stack s;
    return s;
  }
  explicit AdeptEngine(std::size_t /*nodes*/) { stack(); }
  static void begin() { stack().new_recording(); }
  static void input(T& x, double v) { x.set_value(v); }
  static void end(const T& /*y*/) {}
  static void reverse(const T& y) {
    stack().clear_gradients();
    y.set_gradient(1.0);
    stack().compute_adjoint();
  }
  static double gradient(const T& x) { return x.get_gradient(); }
  static double value(const T& y) { return y.value(); }
  // Per statement two indices (4 + 4), per operation the partial and the operand (8 + 4).
  static double bytes() {
    return static_cast<double>(stack().n_statements()) * 8.0 + static_cast<double>(stack().n_operations()) * 12.0;
  }
};
#endif

// ---- the measurement loops ----------------------------------------------------------------------

// One evaluation on a tape that lives across iterations: reset, record the leaves and the function,
// sweep, read the gradient. Only the first call grows the tape; later ones reuse its memory.
template <class E, class F> struct EngineGradient {
  using T = typename E::T;
  E engine;
  F f;
  std::span<const double> point;
  std::vector<T> xs;
  std::vector<double> grad;
  T y{};

  EngineGradient(F fn, std::span<const double> at, std::size_t nodes)
      : engine(nodes), f(std::move(fn)), point(at), xs(at.size()), grad(at.size()) {}

  void record() {
    engine.begin();
    for (std::size_t i = 0; i < point.size(); ++i)
      engine.input(xs[i], point[i]);
    y = f(std::span<const T>(xs));
    engine.end(y);
  }
  void reverse() {
    engine.reverse(y);
    for (std::size_t i = 0; i < xs.size(); ++i)
      grad[i] = engine.gradient(xs[i]);
  }
  double run() {
    record();
    reverse();
    return engine.value(y);
  }
};

template <class E, class F> void report_tape(benchmark::State& state, const EngineGradient<E, F>& t) {
  state.counters["bytes"] = t.engine.bytes();
  if constexpr (std::is_same_v<E, TapegradEngine> || std::is_same_v<E, TapegradFirstOrderEngine>) {
    state.counters["ops"] = static_cast<double>(t.engine.tape.operation_count());
    state.counters["bytes/op"] =
        t.engine.bytes() / static_cast<double>(std::max<std::size_t>(1, t.engine.tape.operation_count()));
  }
}

template <class Setup> void bench_gradient(benchmark::State& state, Setup setup) {
  auto t = setup();
  benchmark::DoNotOptimize(t.run()); // grows the tape and the adjoints to their steady size
  const auto before = bench::allocations();
  for (auto _ : state) {
    benchmark::DoNotOptimize(t.run());
    benchmark::DoNotOptimize(t.grad.data());
    benchmark::ClobberMemory();
  }
  bench::report_allocations(state, before);
  report_tape(state, t);
}

template <class Setup> void bench_record(benchmark::State& state, Setup setup) {
  auto t = setup();
  benchmark::DoNotOptimize(t.run());
  const auto before = bench::allocations();
  for (auto _ : state) {
    t.record();
    benchmark::DoNotOptimize(t.y);
    benchmark::ClobberMemory();
  }
  bench::report_allocations(state, before);
  report_tape(state, t);
}

template <class Setup> void bench_reverse(benchmark::State& state, Setup setup) {
  auto t = setup();
  benchmark::DoNotOptimize(t.run());
  const auto before = bench::allocations();
  for (auto _ : state) {
    t.reverse();
    benchmark::DoNotOptimize(t.grad.data());
    benchmark::ClobberMemory();
  }
  bench::report_allocations(state, before);
  report_tape(state, t);
}

template <class Fn> void bench_double(benchmark::State& state, Fn fn) {
  benchmark::DoNotOptimize(fn());
  const auto before = bench::allocations();
  for (auto _ : state) {
    benchmark::DoNotOptimize(fn());
    benchmark::ClobberMemory();
  }
  bench::report_allocations(state, before);
}

// ---- data ---------------------------------------------------------------------------------------

struct Workloads {
  std::vector<double> s1_x, s1_v;
  LogRegData s2;
  std::vector<double> s2_p;
  MlpData s3;
  std::vector<double> s3_p;
  std::vector<double> s4_q, s4_v; // the initial field, and a direction for the check
};

Workloads make_workloads() {
  std::mt19937_64 rng(20240601);
  std::uniform_real_distribution<double> unit(-1.0, 1.0);
  Workloads w;
  w.s1_x.resize(s1_n);
  w.s1_v.resize(s1_n);
  for (auto& x : w.s1_x)
    x = 1.5 * unit(rng);
  for (auto& v : w.s1_v)
    v = unit(rng);

  LogRegData& lr = w.s2;
  lr.x.resize(lr.n * lr.d);
  lr.y.resize(lr.n);
  std::vector<double> truth(lr.d);
  for (auto& t : truth)
    t = unit(rng);
  for (std::size_t i = 0; i < lr.n; ++i) {
    double z = 0;
    for (std::size_t j = 0; j < lr.d; ++j)
      z += truth[j] * (lr.x[i * lr.d + j] = unit(rng));
    lr.y[i] = 0.5 * (unit(rng) + 1.0) < autodiff::sigmoid(z) ? 1.0 : 0.0;
  }
  w.s2_p.resize(lr.d + 1);
  for (auto& p : w.s2_p)
    p = 0.3 * unit(rng);

  MlpData& m = w.s3;
  m.x.resize(2 * m.n);
  m.y.resize(m.n);
  for (std::size_t k = 0; k < m.n; ++k) {
    m.x[2 * k] = 2.0 * unit(rng);
    m.x[2 * k + 1] = 2.0 * unit(rng);
    m.y[k] = std::sin(1.5 * m.x[2 * k]) * std::cos(m.x[2 * k + 1]);
  }
  w.s3_p.resize(mlp_params);
  for (auto& p : w.s3_p)
    p = 0.5 * unit(rng);

  // One smooth bump between 1 and 2 (positive, as Toon's logarithm needs), as in Adept's benchmark.
  const double pi = std::acos(-1.0);
  w.s4_q.resize(s4_nx);
  w.s4_v.resize(s4_nx);
  for (std::size_t i = 0; i < s4_nx; ++i)
    w.s4_q[i] = 1.5 + 0.5 * std::sin(2.0 * pi * static_cast<double>(i) / (static_cast<double>(s4_nx) - 1.5));
  for (auto& v : w.s4_v)
    v = unit(rng);
  return w;
}

// ---- the start-up checks ------------------------------------------------------------------------

// Tapegrad node count of a workload: the peers' preallocation and the bytes-per-op denominator.
template <class F> std::size_t tapegrad_nodes(F f, std::span<const double> point) {
  EngineGradient<TapegradEngine, F> t(f, point, 0);
  t.run();
  return t.engine.nodes();
}

template <class E, class F>
std::vector<double> engine_gradient(F f, std::span<const double> point, std::size_t nodes, double* value) {
  EngineGradient<E, F> t(f, point, nodes);
  *value = t.run();
  return t.grad;
}

// Every engine's gradient against the reference (hand-written, or tapegrad's for S4), and its value
// against the plain function's.
template <class F> void check_engines(const char* what, F f, std::span<const double> point, double plain_value,
                                      std::span<const double> reference, double tolerance = 1e-12) {
  const std::size_t nodes = tapegrad_nodes(f, point);
  const auto one = [&]<class E>(E*) {
    double v = 0;
    const std::vector<double> g = engine_gradient<E>(f, point, nodes, &v);
    bench::check_close(fmt::format("{} gradient ({})", what, E::name), g, reference, tolerance);
    const double values[] = {v};
    const double plain[] = {plain_value};
    bench::check_close(fmt::format("{} value ({} vs plain)", what, E::name), values, plain, tolerance);
  };
  one(static_cast<TapegradEngine*>(nullptr));
  one(static_cast<TapegradFirstOrderEngine*>(nullptr));
#ifdef TAPEGRAD_HAVE_CODIPACK
  one(static_cast<CodiEngine*>(nullptr));
#endif
#ifdef TAPEGRAD_HAVE_ADEPT
  one(static_cast<AdeptEngine*>(nullptr));
#endif
}

// S4 has no hand-written gradient: tapegrad's is checked against a central difference along v
// (the other engines are then checked against tapegrad's). Toon's flux divides by the difference
// of neighbouring cells, which magnifies the difference's rounding: 1e-4 still catches any wrong
// partial, which changes the result at order 1.
template <class F, class Plain> std::vector<double>
checked_s4_gradient(const char* what, F f, Plain plain, std::span<const double> q, std::span<const double> v) {
  double value = 0;
  std::vector<double> g = engine_gradient<TapegradEngine>(f, q, 0, &value);
  const double h = 1e-6;
  std::vector<double> up(q.begin(), q.end()), down(q.begin(), q.end());
  double directional = 0;
  for (std::size_t i = 0; i < q.size(); ++i) {
    up[i] += h * v[i];
    down[i] -= h * v[i];
    directional += g[i] * v[i];
  }
  const double fd[] = {(plain(std::span<const double>(up)) - plain(std::span<const double>(down))) / (2 * h)};
  const double ad[] = {directional};
  bench::check_close(fmt::format("{} directional derivative (tape vs central difference)", what), ad, fd, 1e-4);
  return g;
}

// H v on a tape that lives across iterations: a create_graph gradient, then one sweep of it seeded
// with v. The create_graph sweep itself allocates (its result), and so does the second sweep.
struct TapeHvp {
  std::span<const double> x, v;
  Tape tape;
  std::vector<Var> xs;
  std::vector<double> hv;
  TapeHvp(std::span<const double> at, std::span<const double> dir) : x(at), v(dir), xs(at.size()), hv(at.size()) {}
  double run() {
    tape.reset();
    for (std::size_t i = 0; i < x.size(); ++i)
      xs[i] = Var(x[i]);
    const Var y = rosenbrock(std::span<const Var>(xs));
    const std::vector<Var> g = autodiff::grad(y, xs, {.create_graph = true});
    hv = autodiff::gradient(g, v, xs); // one sweep seeded with v on the gradient's nodes
    return y.value();
  }
};

// The same on a reused tape by forward over reverse (Note [Forward over reverse]): f recorded once,
// then a tangent pass and one reverse sweep with dual adjoints; nothing more is recorded.
struct TapeHvpForward {
  std::span<const double> x, v;
  Tape tape;
  std::vector<Var> xs;
  std::vector<double> hv;
  TapeHvpForward(std::span<const double> at, std::span<const double> dir)
      : x(at), v(dir), xs(at.size()), hv(at.size()) {}
  double run() {
    tape.reset();
    for (std::size_t i = 0; i < x.size(); ++i)
      xs[i] = Var(x[i]);
    const Var y = rosenbrock(std::span<const Var>(xs));
    hv = autodiff::detail::forward_over_reverse("hvp", y, xs, v).hv;
    return y.value();
  }
};

#ifdef TAPEGRAD_HAVE_CODIPACK
// CoDiPack's forward over reverse, its documented nesting for second order (a reverse type over a
// forward type, tutorial 6): T is RealReverseGen<RealForward>, as the tutorial's, or the preallocated
// unchecked Jacobian tape of CodiEngine over RealForward. The tangent v is seeded on the inputs while
// recording (the partials are stored with their tangents), the adjoint (1, 0) on y, and the inputs'
// adjoints then hold (gradient, H v).
template <class T> struct CodiHvp {
  static constexpr bool unchecked = std::is_same_v<T, codi::RealReverseUncheckedGen<codi::RealForward>>;
  std::span<const double> x, v;
  typename T::Tape& tape = T::getTape();
  std::vector<T> xs;
  std::vector<double> hv;
  CodiHvp(std::span<const double> at, std::span<const double> dir, std::size_t nodes)
      : x(at), v(dir), xs(at.size()), hv(at.size()) {
    if constexpr (unchecked) {
      tape.setParameter(codi::TapeParameters::StatementSize, 2 * nodes + 4096);
      tape.setParameter(codi::TapeParameters::JacobianSize, 3 * nodes + 4096);
    }
  }
  double run() {
    tape.reset(false);
    tape.setActive();
    for (std::size_t i = 0; i < x.size(); ++i) {
      xs[i] = x[i];
      xs[i].value().gradient() = v[i];
      tape.registerInput(xs[i]);
    }
    T y = rosenbrock(std::span<const T>(xs));
    tape.registerOutput(y);
    tape.setPassive();
    tape.clearAdjoints();
    y.gradient().value() = 1.0;
    tape.evaluate();
    for (std::size_t i = 0; i < x.size(); ++i)
      hv[i] = xs[i].getGradient().gradient();
    return y.getValue().getValue();
  }
};
using CodiHvpUnchecked = CodiHvp<codi::RealReverseUncheckedGen<codi::RealForward>>;
using CodiHvpTutorial = CodiHvp<codi::RealReverseGen<codi::RealForward>>;
#endif

// A Hessian on a reused tape: a create_graph gradient and one first-order sweep of it per row
// (autodiff::hessian's way before), one forward-over-reverse sweep per unit vector, or sweeps of
// detail::hessian_lanes unit vectors each (vector mode, autodiff::hessian's way now).
enum class HessianWay { create_graph, forward, forward_lanes };
template <class F> struct TapeHessian {
  F f;
  std::span<const double> x;
  HessianWay way;
  Tape tape;
  std::vector<Var> xs;
  std::vector<double> h; // row-major
  TapeHessian(F fn, std::span<const double> at, HessianWay w)
      : f(fn), x(at), way(w), xs(at.size()), h(at.size() * at.size()) {}
  double run() {
    tape.reset();
    const std::size_t n = x.size();
    for (std::size_t i = 0; i < n; ++i)
      xs[i] = Var(x[i]);
    const Var y = f(std::span<const Var>(xs));
    if (way == HessianWay::forward) {
      // Sweep j gives column j: d(dy/dx_i)/dx_j.
      std::vector<double> e(n, 0.0);
      for (std::size_t j = 0; j < n; ++j) {
        e[j] = 1.0;
        const std::vector<double> col = autodiff::detail::forward_over_reverse("hessian", y, xs, e).hv;
        for (std::size_t i = 0; i < n; ++i)
          h[i * n + j] = col[i];
        e[j] = 0.0;
      }
    } else if (way == HessianWay::forward_lanes) {
      const auto m = autodiff::detail::hessian_forward_over_reverse("hessian", y, xs);
      for (std::size_t i = 0; i < n; ++i)
        std::copy(m[i].begin(), m[i].end(), h.begin() + static_cast<std::ptrdiff_t>(i * n));
    } else {
      const std::vector<Var> g = autodiff::grad(y, xs, {.create_graph = true});
      for (std::size_t i = 0; i < n; ++i) {
        const std::vector<double> row = autodiff::gradient(g[i], xs);
        std::copy(row.begin(), row.end(), h.begin() + static_cast<std::ptrdiff_t>(i * n));
      }
    }
    return y.value();
  }
};

struct Workload {
  const char* name;
  std::string prefix;
  bool hand; // has plain and hand-written rows
};
const Workload workloads[] = {{"S1 Rosenbrock n=100000", "S1_rosenbrock", true},
                              {"S2 logistic NLL 2000x50", "S2_logreg", true},
                              {"S3 MLP 2-16-16-1 x100", "S3_mlp", true},
                              {"S4 Lax-Wendroff 100x2000", "S4_lax_wendroff", false},
                              {"S4 Toon 100x2000", "S4_toon", false}};
const char* const engine_keys[] = {"tapegrad", "codipack", "adept", "tapegrad1"};

void print_summary(const bench::RecordingReporter& r) {
  const auto us = [](std::optional<double> ns) { return ns ? fmt::format("{:.1f}", *ns / 1e3) : std::string("-"); };
  const auto ratio = [](std::optional<double> a, std::optional<double> b) {
    return a && b ? fmt::format("{:.2f}", *a / *b) : std::string("-");
  };
  const auto num = [](std::optional<double> v, const char* f) {
    return v ? fmt::format(fmt::runtime(f), *v) : std::string("-");
  };

  fmt::print("\nSummary: CPU time per iteration, the fastest repetition of each benchmark in this run; "
             "counters from the slowest\n\n");
  fmt::print("| workload | plain µs | hand grad µs | tape grad µs | tape/plain | tape/hand | hand/plain "
             "| record µs | reverse µs | ns/op | bytes/op | allocs/iter |\n");
  fmt::print("|---|---|---|---|---|---|---|---|---|---|---|---|\n");
  for (const Workload& w : workloads) {
    const std::string p = w.prefix;
    const auto plain = r.cpu_ns(p + "/plain");
    const auto hand = r.cpu_ns(p + "/hand_gradient");
    const auto tape = r.cpu_ns(p + "/tapegrad/gradient");
    const auto ops = r.counter(p + "/tapegrad/gradient", "ops");
    fmt::print("| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n", w.name, us(plain), us(hand), us(tape),
               ratio(tape, plain), ratio(tape, hand), ratio(hand, plain), us(r.cpu_ns(p + "/tapegrad/record")),
               us(r.cpu_ns(p + "/tapegrad/reverse")), tape && ops ? fmt::format("{:.2f}", *tape / *ops) : "-",
               num(r.counter(p + "/tapegrad/gradient", "bytes/op"), "{:.2f}"),
               num(r.counter(p + "/tapegrad/gradient", "allocs/iter"), "{:g}"));
  }

  // Side by side. Bytes per op divide each engine's tape bytes by tapegrad's operation count of the
  // same workload (the elementary operations of the function; the peers fold them into statements).
  // "tapegrad" records on the default tape, "first-order" on a first-order tape (Note [First-order tapes]).
  fmt::print("\n| workload | tapegrad µs | first-order µs | CoDiPack µs | Adept-2 µs | tapegrad ÷ CoDiPack "
             "| first-order ÷ CoDiPack | first-order ÷ Adept | record / reverse µs tapegrad "
             "| record / reverse µs first-order | record / reverse µs CoDiPack | record / reverse µs Adept-2 "
             "| bytes/op tapegrad | bytes/op first-order | bytes/op CoDiPack | bytes/op Adept-2 |\n");
  fmt::print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
  for (const Workload& w : workloads) {
    const std::string p = w.prefix + "/";
    const auto t = [&](const char* e, const char* what) { return r.cpu_ns(p + e + "/" + what); };
    const auto ops = r.counter(p + "tapegrad/gradient", "ops");
    const auto split = [&](const char* e) { return fmt::format("{} / {}", us(t(e, "record")), us(t(e, "reverse"))); };
    const auto per_op = [&](const char* e) {
      const auto bytes = r.counter(p + e + "/gradient", "bytes");
      return bytes && ops ? fmt::format("{:.1f}", *bytes / *ops) : std::string("-");
    };
    fmt::print("| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n", w.name,
               us(t("tapegrad", "gradient")), us(t("tapegrad1", "gradient")), us(t("codipack", "gradient")),
               us(t("adept", "gradient")), ratio(t("tapegrad", "gradient"), t("codipack", "gradient")),
               ratio(t("tapegrad1", "gradient"), t("codipack", "gradient")),
               ratio(t("tapegrad1", "gradient"), t("adept", "gradient")), split("tapegrad"), split("tapegrad1"),
               split("codipack"), split("adept"), per_op("tapegrad"), per_op("tapegrad1"), per_op("codipack"),
               per_op("adept"));
  }

  const auto grad = r.cpu_ns("S1_rosenbrock/tapegrad/gradient");
  const auto hvp_hand = r.cpu_ns("S1_rosenbrock/hand_hvp");
  const auto codi = r.cpu_ns("S1_rosenbrock/codipack_hvp");
  fmt::print("\n| HVP on S1 | µs | ÷ tapegrad gradient | ÷ hand HVP | ÷ CoDiPack FoR | allocs/iter |\n");
  fmt::print("|---|---|---|---|---|---|\n");
  const auto row = [&](const char* what, const std::string& name) {
    const auto t = r.cpu_ns(name);
    fmt::print("| {} | {} | {} | {} | {} | {} |\n", what, us(t), ratio(t, grad), ratio(t, hvp_hand), ratio(t, codi),
               num(r.counter(name, "allocs/iter"), "{:g}"));
  };
  row("hand-written HVP", "S1_rosenbrock/hand_hvp");
  row("grad(create_graph) + seeded sweep, reused tape", "S1_rosenbrock/tape_hvp");
  row("forward over reverse, reused tape", "S1_rosenbrock/tape_hvp_forward");
  row("autodiff::hvp (scratch tape, forward over reverse)", "S1_rosenbrock/autodiff_hvp");
  row("CoDiPack forward over reverse (RealReverseUncheckedGen<RealForward>)", "S1_rosenbrock/codipack_hvp");
  row("CoDiPack forward over reverse (RealReverseGen<RealForward>)", "S1_rosenbrock/codipack_hvp_checked");

  fmt::print(
      "\n| Hessian, reused tape | create_graph + n sweeps µs | n forward-over-reverse sweeps µs | ÷ create_graph "
      "| n / {} vector-mode sweeps µs | ÷ create_graph |\n",
      autodiff::detail::hessian_lanes);
  fmt::print("|---|---|---|---|---|---|\n");
  for (const char* w : {"S1_rosenbrock_n100", "S3_mlp"}) {
    const auto old = r.cpu_ns(std::string(w) + "/hessian_create_graph");
    const auto fwd = r.cpu_ns(std::string(w) + "/hessian_forward");
    const auto lanes = r.cpu_ns(std::string(w) + "/hessian_forward_lanes");
    fmt::print("| {} | {} | {} | {} | {} | {} |\n", w, us(old), us(fwd), ratio(fwd, old), us(lanes), ratio(lanes, old));
  }
}

} // namespace

int main(int argc, char** argv) {
  const Workloads w = make_workloads();
  // Generic lambdas: each engine instantiates them with its own number type.
  const auto s1 = [](auto x) { return rosenbrock(x); };
  const auto s2 = [&w](auto p) { return logreg_nll(p, w.s2); };
  const auto s3 = [&w](auto p) { return mlp_mse(p, w.s3); };
  const auto s4_lw = [](auto q) { return lax_wendroff(q); };
  const auto s4_toon = [](auto q) { return toon(q); };

  // Checks, once, outside any timing: every figure below is of a correct gradient.
  {
    std::vector<double> g(s1_n), g2(w.s2_p.size()), g3(mlp_params);
    const double f1 = rosenbrock_gradient(w.s1_x, g);
    const double plain1 = rosenbrock(std::span<const double>(w.s1_x));
    const double values1[] = {f1}, want1[] = {plain1};
    bench::check_close("S1 value (hand-written vs plain)", values1, want1);
    check_engines("S1", s1, w.s1_x, plain1, g);
    logreg_gradient(w.s2_p, w.s2, g2);
    check_engines("S2", s2, w.s2_p, logreg_nll(std::span<const double>(w.s2_p), w.s2), g2);
    mlp_gradient(w.s3_p, w.s3, g3);
    check_engines("S3", s3, w.s3_p, mlp_mse(std::span<const double>(w.s3_p), w.s3), g3);
    // 2000 steps: the engines sum the same partials in different orders.
    const auto lw_plain = [](std::span<const double> q) { return lax_wendroff(q); };
    const auto toon_plain = [](std::span<const double> q) { return toon(q); };
    check_engines("S4-LW", s4_lw, w.s4_q, lw_plain(w.s4_q),
                  checked_s4_gradient("S4-LW", s4_lw, lw_plain, w.s4_q, w.s4_v), 1e-10);
    // Toon's flux is ill-conditioned where neighbouring cells are close (it divides by their
    // difference), and the field flattens over 2000 steps: engines whose partials round
    // differently (Adept forms x / y's as 1 / y and -x / y^2) then differ by about 1e-5.
    check_engines("S4-Toon", s4_toon, w.s4_q, toon_plain(w.s4_q),
                  checked_s4_gradient("S4-Toon", s4_toon, toon_plain, w.s4_q, w.s4_v), 1e-4);

    std::vector<double> hv(s1_n);
    std::vector<double> hessians[2];
    rosenbrock_hvp(w.s1_x, w.s1_v, hv);
    TapeHvp t(w.s1_x, w.s1_v);
    t.run();
    bench::check_close("S1 HVP (tape vs hand-written)", t.hv, hv);
    const auto fn = [](const std::vector<Var>& x) { return rosenbrock(std::span<const Var>(x)); };
    bench::check_close("S1 HVP (autodiff::hvp vs hand-written)", autodiff::hvp(fn, w.s1_x, w.s1_v), hv);
    TapeHvpForward tf(w.s1_x, w.s1_v);
    tf.run();
    bench::check_close("S1 HVP (forward over reverse vs hand-written)", tf.hv, hv);
    for (const HessianWay way : {HessianWay::create_graph, HessianWay::forward, HessianWay::forward_lanes}) {
      TapeHessian h1(s1, std::span<const double>(w.s1_x).first(100), way);
      h1.run();
      TapeHessian h3(s3, std::span<const double>(w.s3_p), way);
      h3.run();
      if (way == HessianWay::create_graph) {
        hessians[0] = h1.h, hessians[1] = h3.h;
        continue;
      }
      const char* what = way == HessianWay::forward ? "forward" : "vector mode";
      bench::check_close(fmt::format("S1 n=100 Hessian ({} vs create_graph)", what), h1.h, hessians[0]);
      bench::check_close(fmt::format("S3 Hessian ({} vs create_graph)", what), h3.h, hessians[1], 1e-10);
    }
#ifdef TAPEGRAD_HAVE_CODIPACK
    CodiHvpUnchecked c(w.s1_x, w.s1_v, tapegrad_nodes(s1, w.s1_x));
    c.run();
    bench::check_close("S1 HVP (CoDiPack forward over reverse vs hand-written)", c.hv, hv);
    CodiHvpTutorial ct(w.s1_x, w.s1_v, 0);
    ct.run();
    bench::check_close("S1 HVP (CoDiPack RealReverseGen<RealForward> vs hand-written)", ct.hv, hv);
#endif
  }

  const auto reg = [](const std::string& name, auto fn) {
    bench::add_statistics(benchmark::RegisterBenchmark(name.c_str(), fn)->Unit(benchmark::kMicrosecond));
  };
  // gradient, record and reverse of one engine on one workload.
  const auto engine = [&]<class E>(E*, const std::string& prefix, const char* key, auto f,
                                   const std::vector<double>& point) {
    const std::size_t nodes = tapegrad_nodes(f, point);
    const auto setup = [=, &point] { return EngineGradient<E, decltype(f)>(f, point, nodes); };
    const std::string p = prefix + "/" + key;
    reg(p + "/gradient", [=](benchmark::State& s) { bench_gradient(s, setup); });
    reg(p + "/record", [=](benchmark::State& s) { bench_record(s, setup); });
    reg(p + "/reverse", [=](benchmark::State& s) { bench_reverse(s, setup); });
  };
  const auto engines = [&](const std::string& prefix, auto f, const std::vector<double>& point) {
    engine(static_cast<TapegradEngine*>(nullptr), prefix, engine_keys[0], f, point);
    engine(static_cast<TapegradFirstOrderEngine*>(nullptr), prefix, engine_keys[3], f, point);
#ifdef TAPEGRAD_HAVE_CODIPACK
    engine(static_cast<CodiEngine*>(nullptr), prefix, engine_keys[1], f, point);
#endif
#ifdef TAPEGRAD_HAVE_ADEPT
    engine(static_cast<AdeptEngine*>(nullptr), prefix, engine_keys[2], f, point);
#endif
  };
  const auto doubles = [&](const std::string& prefix, const std::vector<double>& point, auto plain, auto hand) {
    reg(prefix + "/plain",
        [=, &point](benchmark::State& s) { bench_double(s, [&] { return plain(std::span<const double>(point)); }); });
    reg(prefix + "/hand_gradient", [=, &point](benchmark::State& s) {
      std::vector<double> g(point.size());
      bench_double(s, [&] {
        const double v = hand(point, g);
        benchmark::DoNotOptimize(g.data());
        return v;
      });
    });
  };
  doubles(
      "S1_rosenbrock", w.s1_x, [](std::span<const double> x) { return rosenbrock(x); },
      [](std::span<const double> x, std::span<double> g) { return rosenbrock_gradient(x, g); });
  engines("S1_rosenbrock", s1, w.s1_x);
  doubles(
      "S2_logreg", w.s2_p, [&w](std::span<const double> p) { return logreg_nll(p, w.s2); },
      [&w](std::span<const double> p, std::span<double> g) { return logreg_gradient(p, w.s2, g); });
  engines("S2_logreg", s2, w.s2_p);
  doubles(
      "S3_mlp", w.s3_p, [&w](std::span<const double> p) { return mlp_mse(p, w.s3); },
      [&w](std::span<const double> p, std::span<double> g) { return mlp_gradient(p, w.s3, g); });
  engines("S3_mlp", s3, w.s3_p);
  engines("S4_lax_wendroff", s4_lw, w.s4_q);
  engines("S4_toon", s4_toon, w.s4_q);

  reg("S1_rosenbrock/hand_hvp", [&w](benchmark::State& s) {
    std::vector<double> hv(s1_n);
    bench_double(s, [&] {
      rosenbrock_hvp(w.s1_x, w.s1_v, hv);
      benchmark::DoNotOptimize(hv.data());
      return hv[0];
    });
  });
  reg("S1_rosenbrock/tape_hvp", [&w](benchmark::State& s) {
    TapeHvp t(w.s1_x, w.s1_v);
    bench_double(s, [&] { return t.run(); });
  });
  reg("S1_rosenbrock/tape_hvp_forward", [&w](benchmark::State& s) {
    TapeHvpForward t(w.s1_x, w.s1_v);
    bench_double(s, [&] { return t.run(); });
  });
#ifdef TAPEGRAD_HAVE_CODIPACK
  reg("S1_rosenbrock/codipack_hvp", [&w, s1](benchmark::State& s) {
    CodiHvpUnchecked t(w.s1_x, w.s1_v, tapegrad_nodes(s1, w.s1_x));
    bench_double(s, [&] { return t.run(); });
  });
  reg("S1_rosenbrock/codipack_hvp_checked", [&w](benchmark::State& s) {
    CodiHvpTutorial t(w.s1_x, w.s1_v, 0);
    bench_double(s, [&] { return t.run(); });
  });
#endif
  for (const HessianWay way : {HessianWay::create_graph, HessianWay::forward, HessianWay::forward_lanes}) {
    const char* what = way == HessianWay::create_graph ? "/hessian_create_graph"
                       : way == HessianWay::forward    ? "/hessian_forward"
                                                       : "/hessian_forward_lanes";
    reg(std::string("S1_rosenbrock_n100") + what, [&w, s1, way](benchmark::State& s) {
      TapeHessian t(s1, std::span<const double>(w.s1_x).first(100), way);
      bench_double(s, [&] { return t.run(); });
    });
    reg(std::string("S3_mlp") + what, [&w, s3, way](benchmark::State& s) {
      TapeHessian t(s3, std::span<const double>(w.s3_p), way);
      bench_double(s, [&] { return t.run(); });
    });
  }
  reg("S1_rosenbrock/autodiff_hvp", [&w](benchmark::State& s) {
    const autodiff::ScalarFunction fn = [](const std::vector<Var>& x) { return rosenbrock(std::span<const Var>(x)); };
    bench_double(s, [&] { return autodiff::hvp(fn, w.s1_x, w.s1_v)[0]; });
  });

  // Defaults that keep the whole binary around a minute and make the ratios robust on a shared
  // machine: 10 short repetitions of every benchmark, interleaved at random so that a burst of load
  // hits all benchmarks alike, and the fastest repetition reported. The same flags given on the
  // command line come later and win.
  return bench::run_benchmarks(argc, argv,
                               {"--benchmark_min_time=0.05", "--benchmark_repetitions=10",
                                "--benchmark_enable_random_interleaving=true",
                                "--benchmark_display_aggregates_only=true"},
                               print_summary);
}
