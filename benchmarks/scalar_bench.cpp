// The scalar engine against the plain double function and a hand-written gradient, all in one
// binary so that every ratio comes from one run. See benchmarks/README.md for what each measures.

#include "common.hpp"

#include <autodiff/autodiff.hpp>

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
#include <utility>
#include <vector>

namespace {

using autodiff::Tape;
using autodiff::Var;

// ---- S1: Rosenbrock ---------------------------------------------------------------------------

constexpr std::size_t s1_n = 100000;

template <class T> T rosenbrock_term(const T& xi, const T& xnext) {
  using namespace autodiff; // square(double)
  return 100.0 * square(xnext - square(xi)) + square(1.0 - xi);
}

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
  using namespace autodiff; // softplus(double)
  const std::size_t d = data.d;
  auto sample = [&](std::size_t i) {
    const double* xi = &data.x[i * d];
    T z = p[d];
    for (std::size_t j = 0; j < d; ++j)
      z = z + p[j] * xi[j];
    return softplus(z) - data.y[i] * z;
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
  using namespace autodiff; // square(double)
  auto loss_at = [&](std::size_t k) {
    const std::array<double, 2> x{data.x[2 * k], data.x[2 * k + 1]};
    const auto h1 = tanh_layer(p.data(), x);
    const auto h2 = tanh_layer(p.data() + mlp_l2, h1);
    return square(neuron(p.data() + mlp_l3, h2) - data.y[k]);
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

// ---- the measurement loops ----------------------------------------------------------------------

// One evaluation on a tape that lives across iterations: reset, record the leaves and the function,
// sweep, read the gradient. Only the first call grows the tape; later ones reuse its memory.
template <class F> struct TapeGradient {
  F f;
  std::span<const double> point;
  Tape tape;
  std::vector<Var> xs;
  std::vector<double> grad;

  TapeGradient(F fn, std::span<const double> at) : f(std::move(fn)), point(at), xs(at.size()), grad(at.size()) {}

  void record_leaves() {
    for (std::size_t i = 0; i < point.size(); ++i)
      xs[i] = Var(point[i]);
  }
  Var record() {
    tape.reset();
    record_leaves();
    return f(std::span<const Var>(xs));
  }
  void read_gradient() {
    for (std::size_t i = 0; i < xs.size(); ++i)
      grad[i] = xs[i].grad();
  }
  double run() {
    const Var y = record();
    y.backward();
    read_gradient();
    return y.value();
  }
  void report_tape(benchmark::State& state) const {
    state.counters["bytes/op"] =
        static_cast<double>(tape.bytes_used()) / static_cast<double>(std::max<std::size_t>(1, tape.operation_count()));
    state.counters["ops"] = static_cast<double>(tape.operation_count());
  }
};

template <class Setup> void bench_tape_gradient(benchmark::State& state, Setup setup) {
  auto t = setup();
  benchmark::DoNotOptimize(t.run()); // grows the tape and the adjoints to their steady size
  const auto before = bench::allocations();
  for (auto _ : state) {
    benchmark::DoNotOptimize(t.run());
    benchmark::DoNotOptimize(t.grad.data());
    benchmark::ClobberMemory();
  }
  bench::report_allocations(state, before);
  t.report_tape(state);
}

template <class Setup> void bench_tape_record(benchmark::State& state, Setup setup) {
  auto t = setup();
  benchmark::DoNotOptimize(t.record().value());
  const auto before = bench::allocations();
  for (auto _ : state) {
    const Var y = t.record();
    benchmark::DoNotOptimize(y);
    benchmark::ClobberMemory();
  }
  bench::report_allocations(state, before);
  t.report_tape(state);
}

template <class Setup> void bench_tape_sweep(benchmark::State& state, Setup setup) {
  auto t = setup();
  const Var y = t.record();
  y.backward();
  const auto before = bench::allocations();
  for (auto _ : state) {
    y.backward();
    t.read_gradient();
    benchmark::DoNotOptimize(t.grad.data());
    benchmark::ClobberMemory();
  }
  bench::report_allocations(state, before);
  t.report_tape(state);
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
  return w;
}

// ---- the start-up checks ------------------------------------------------------------------------

template <class F> void check_workload(const char* what, F f, std::span<const double> point, double plain_value,
                                       double hand_value, std::span<const double> hand) {
  TapeGradient<F> t(f, point);
  const double v = t.run();
  bench::check_close(fmt::format("{} gradient (tape vs hand-written)", what), t.grad, hand);
  const double values[] = {v, hand_value};
  const double plain[] = {plain_value, plain_value};
  bench::check_close(fmt::format("{} value (tape, hand vs plain)", what), values, plain);
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

void print_summary(const bench::RecordingReporter& r) {
  struct Row {
    const char* name;
    const char* prefix;
    double target;
  };
  const Row rows[] = {{"S1 Rosenbrock n=100000", "S1_rosenbrock", 20},
                      {"S2 logistic NLL 2000x50", "S2_logreg", 6},
                      {"S3 MLP 2-16-16-1 x100", "S3_mlp", 5}};
  const auto us = [](std::optional<double> ns) { return ns ? fmt::format("{:.1f}", *ns / 1e3) : std::string("-"); };
  const auto ratio = [](std::optional<double> a, std::optional<double> b) {
    return a && b ? fmt::format("{:.2f}", *a / *b) : std::string("-");
  };
  const auto num = [](std::optional<double> v, const char* f) {
    return v ? fmt::format(fmt::runtime(f), *v) : std::string("-");
  };

  fmt::print("\nSummary: CPU time per iteration, the fastest repetition of each benchmark in this run; "
             "counters from the slowest\n\n");
  fmt::print("| workload | plain µs | hand grad µs | tape grad µs | tape/plain | tape/hand | target | hand/plain "
             "| record µs | sweep µs | ns/op | bytes/op | allocs/iter |\n");
  fmt::print("|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
  for (const Row& row : rows) {
    const std::string p = row.prefix;
    const auto plain = r.cpu_ns(p + "/plain");
    const auto hand = r.cpu_ns(p + "/hand_gradient");
    const auto tape = r.cpu_ns(p + "/tape_gradient");
    const auto ops = r.counter(p + "/tape_gradient", "ops");
    const auto tape_over_hand = tape && hand ? std::optional<double>(*tape / *hand) : std::nullopt;
    const std::string verdict = tape_over_hand ? (*tape_over_hand <= row.target ? "met" : "missed") : std::string("-");
    fmt::print("| {} | {} | {} | {} | {} | {} | ≤{:g}x {} | {} | {} | {} | {} | {} | {} |\n", row.name, us(plain),
               us(hand), us(tape), ratio(tape, plain), ratio(tape, hand), row.target, verdict, ratio(hand, plain),
               us(r.cpu_ns(p + "/tape_record_only")), us(r.cpu_ns(p + "/tape_sweep_only")),
               tape && ops ? fmt::format("{:.2f}", *tape / *ops) : std::string("-"),
               num(r.counter(p + "/tape_gradient", "bytes/op"), "{:.2f}"),
               num(r.counter(p + "/tape_gradient", "allocs/iter"), "{:g}"));
  }

  const auto grad = r.cpu_ns("S1_rosenbrock/tape_gradient");
  const auto hvp = r.cpu_ns("S1_rosenbrock/tape_hvp");
  const auto hvp_fn = r.cpu_ns("S1_rosenbrock/autodiff_hvp");
  const auto hvp_hand = r.cpu_ns("S1_rosenbrock/hand_hvp");
  fmt::print("\n| HVP on S1 | µs | / tape gradient (target ≤5x, theory ~4x) | / hand HVP | allocs/iter |\n");
  fmt::print("|---|---|---|---|---|\n");
  fmt::print("| hand-written HVP | {} | - | 1.00 | {} |\n", us(hvp_hand),
             num(r.counter("S1_rosenbrock/hand_hvp", "allocs/iter"), "{:g}"));
  fmt::print("| grad(create_graph) + backward, reused tape | {} | {} | {} | {} |\n", us(hvp), ratio(hvp, grad),
             ratio(hvp, hvp_hand), num(r.counter("S1_rosenbrock/tape_hvp", "allocs/iter"), "{:g}"));
  fmt::print("| autodiff::hvp (own tape each call) | {} | {} | {} | {} |\n", us(hvp_fn), ratio(hvp_fn, grad),
             ratio(hvp_fn, hvp_hand), num(r.counter("S1_rosenbrock/autodiff_hvp", "allocs/iter"), "{:g}"));
}

} // namespace

int main(int argc, char** argv) {
  const Workloads w = make_workloads();
  const auto s1 = [](std::span<const Var> x) { return rosenbrock(x); };
  const auto s2 = [&w](std::span<const Var> p) { return logreg_nll(p, w.s2); };
  const auto s3 = [&w](std::span<const Var> p) { return mlp_mse(p, w.s3); };

  // Checks, once, outside any timing: every figure below is of a correct gradient.
  {
    std::vector<double> g(s1_n), g2(w.s2_p.size()), g3(mlp_params);
    const double f1 = rosenbrock_gradient(w.s1_x, g);
    check_workload("S1", s1, w.s1_x, rosenbrock(std::span<const double>(w.s1_x)), f1, g);
    const double f2 = logreg_gradient(w.s2_p, w.s2, g2);
    check_workload("S2", s2, w.s2_p, logreg_nll(std::span<const double>(w.s2_p), w.s2), f2, g2);
    const double f3 = mlp_gradient(w.s3_p, w.s3, g3);
    check_workload("S3", s3, w.s3_p, mlp_mse(std::span<const double>(w.s3_p), w.s3), f3, g3);

    std::vector<double> hv(s1_n);
    rosenbrock_hvp(w.s1_x, w.s1_v, hv);
    TapeHvp t(w.s1_x, w.s1_v);
    t.run();
    bench::check_close("S1 HVP (tape vs hand-written)", t.hv, hv);
    const auto fn = [](const std::vector<Var>& x) { return rosenbrock(std::span<const Var>(x)); };
    bench::check_close("S1 HVP (autodiff::hvp vs hand-written)", autodiff::hvp(fn, w.s1_x, w.s1_v), hv);
  }

  const auto reg = [](const std::string& name, auto fn) {
    bench::add_statistics(benchmark::RegisterBenchmark(name.c_str(), fn)->Unit(benchmark::kMicrosecond));
  };
  const auto workload = [&](const std::string& prefix, auto f, const std::vector<double>& point, auto plain,
                            auto hand) {
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
    const auto setup = [=, &point] { return TapeGradient<decltype(f)>(f, point); };
    reg(prefix + "/tape_gradient", [=](benchmark::State& s) { bench_tape_gradient(s, setup); });
    reg(prefix + "/tape_record_only", [=](benchmark::State& s) { bench_tape_record(s, setup); });
    reg(prefix + "/tape_sweep_only", [=](benchmark::State& s) { bench_tape_sweep(s, setup); });
  };
  workload(
      "S1_rosenbrock", s1, w.s1_x, [](std::span<const double> x) { return rosenbrock(x); },
      [](std::span<const double> x, std::span<double> g) { return rosenbrock_gradient(x, g); });
  workload(
      "S2_logreg", s2, w.s2_p, [&w](std::span<const double> p) { return logreg_nll(p, w.s2); },
      [&w](std::span<const double> p, std::span<double> g) { return logreg_gradient(p, w.s2, g); });
  workload(
      "S3_mlp", s3, w.s3_p, [&w](std::span<const double> p) { return mlp_mse(p, w.s3); },
      [&w](std::span<const double> p, std::span<double> g) { return mlp_gradient(p, w.s3, g); });

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
  reg("S1_rosenbrock/autodiff_hvp", [&w](benchmark::State& s) {
    const autodiff::ScalarFunction fn = [](const std::vector<Var>& x) { return rosenbrock(std::span<const Var>(x)); };
    bench_double(s, [&] { return autodiff::hvp(fn, w.s1_x, w.s1_v)[0]; });
  });

  // Defaults that keep the whole binary under a minute and make the ratios robust on a shared
  // machine: 10 short repetitions of every benchmark, interleaved at random so that a burst of load
  // hits all benchmarks alike, and the fastest repetition reported. The same flags given on the
  // command line come later and win.
  return bench::run_benchmarks(argc, argv,
                               {"--benchmark_min_time=0.05", "--benchmark_repetitions=10",
                                "--benchmark_enable_random_interleaving=true",
                                "--benchmark_display_aggregates_only=true"},
                               print_summary);
}
