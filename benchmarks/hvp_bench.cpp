// Hessian-vector products of a tensor loss against one gradient of it: the 784-256-10 MLP with
// cross-entropy over a batch, differentiated in all its parameters. The HVP is a create_graph
// gradient followed by one reverse sweep of <gradient, v>; theory puts it near 4x a gradient.

#include "common.hpp"

#include <autodiff/tensor.hpp>
#include <autodiff/tensor_derivatives.hpp>

#include <cmath>
#include <string>
#include <vector>

using namespace autodiff;

namespace {

constexpr std::int64_t batch = 128, in_f = 784, hidden = 256, classes = 10;

enum class Act { relu, tanh };

struct Problem {
  Tensor x, targets;
  std::vector<Tensor> params, dirs;
  Act act;
  Problem(DType d, Act a) : act(a) {
    manual_seed(7);
    x = rand({batch, in_f}, d);
    std::vector<std::int64_t> t(batch);
    for (std::int64_t i = 0; i < batch; ++i)
      t[static_cast<std::size_t>(i)] = (i * 7) % classes;
    targets = from_vector(t, {batch});
    const double s1 = 1 / std::sqrt(double(in_f)), s2 = 1 / std::sqrt(double(hidden));
    params = {randn({hidden, in_f}, d) * s1, randn({hidden}, d) * s1, randn({classes, hidden}, d) * s2,
              randn({classes}, d) * s2};
    for (Tensor& p : params) {
      p = p.detach();
      p.requires_grad(true);
      dirs.push_back(randn(p.shape(), d));
    }
  }
  Tensor loss(const std::vector<Tensor>& p) const {
    const Tensor h = linear(x, p[0], p[1]);
    return cross_entropy(linear(act == Act::relu ? relu(h) : tanh(h), p[2], p[3]), targets);
  }
};

// The figures below are only worth reading if the HVP is right: compare it, in float64, with
// central differences of the gradient along v.
void check_hvp(Act act) {
  Problem p(DType::float64, act);
  const std::vector<Tensor> hv = hvp([&](const std::vector<Tensor>& q) { return p.loss(q); }, p.params, p.dirs);
  const double eps = 1e-6;
  auto grad_at = [&](double h) {
    Tape tape;
    std::vector<Tensor> q;
    for (std::size_t k = 0; k < p.params.size(); ++k) {
      q.push_back((p.params[k].detach() + p.dirs[k] * h).detach());
      q.back().requires_grad(true);
    }
    return grad(p.loss(q), q);
  };
  const auto up = grad_at(eps), down = grad_at(-eps);
  std::vector<double> got, want;
  for (std::size_t k = 0; k < hv.size(); ++k) {
    const auto a = hv[k].to_vector(), u = up[k].to_vector(), d = down[k].to_vector();
    got.insert(got.end(), a.begin(), a.end());
    for (std::size_t e = 0; e < u.size(); ++e)
      want.push_back((u[e] - d[e]) / (2 * eps));
  }
  bench::check_close(act == Act::relu ? "MLP HVP (relu) vs differences of gradients"
                                      : "MLP HVP (tanh) vs differences of gradients",
                     got, want, 1e-6);
}

void bm_gradient(benchmark::State& state, Act act) {
  const Problem p(DType::float32, act);
  Tape tape;
  for (auto _ : state) {
    tape.reset();
    const std::vector<Tensor> g = grad(p.loss(p.params), p.params);
    benchmark::DoNotOptimize(g[0].data<float>().data());
  }
}

// On a reused tape, as a Newton-CG or Lanczos loop would call it.
void bm_hvp(benchmark::State& state, Act act) {
  const Problem p(DType::float32, act);
  Tape tape;
  const auto before = tensor_memory_stats().heap_allocations;
  std::int64_t steps = 0;
  std::size_t warm = before;
  for (auto _ : state) {
    if (steps++ == 1) warm = tensor_memory_stats().heap_allocations;
    tape.reset();
    const std::vector<Tensor> g = grad(p.loss(p.params), p.params, {.create_graph = true});
    const std::vector<Tensor> hv = grad(g, p.params, p.dirs);
    benchmark::DoNotOptimize(hv[0].data<float>().data());
  }
  if (steps > 1)
    state.counters["tensor_allocs/iter"] =
        static_cast<double>(tensor_memory_stats().heap_allocations - warm) / static_cast<double>(steps - 1);
}

// autodiff::hvp: a tape of its own per call, as a one-off user would call it.
void bm_hvp_function(benchmark::State& state, Act act) {
  const Problem p(DType::float32, act);
  const TensorFunctionN f = [&](const std::vector<Tensor>& q) { return p.loss(q); };
  for (auto _ : state) {
    const std::vector<Tensor> hv = hvp(f, p.params, p.dirs);
    benchmark::DoNotOptimize(hv[0].data<float>().data());
  }
}

void print_summary(const bench::RecordingReporter& r) {
  const auto ms = [](std::optional<double> ns) { return ns ? fmt::format("{:.3f}", *ns * 1e-6) : std::string("-"); };
  const auto ratio = [](std::optional<double> a, std::optional<double> b) {
    return a && b ? fmt::format("{:.2f}", *a / *b) : std::string("-");
  };
  fmt::print("\nSummary: CPU time per iteration, fastest of the repetitions; 784-{}-10 MLP, batch {}, float32\n\n",
             hidden, batch);
  fmt::print("| activation | gradient ms | HVP ms (reused tape) | HVP / gradient (target ≤5x) | autodiff::hvp ms | "
             "/ gradient |\n|---|---|---|---|---|---|\n");
  for (const std::string a : {"relu", "tanh"}) {
    const auto g = r.cpu_ns("MLP784_" + a + "/gradient");
    const auto h = r.cpu_ns("MLP784_" + a + "/hvp");
    const auto f = r.cpu_ns("MLP784_" + a + "/autodiff_hvp");
    fmt::print("| {} | {} | {} | {} | {} | {} |\n", a, ms(g), ms(h), ratio(h, g), ms(f), ratio(f, g));
  }
}

} // namespace

int main(int argc, char** argv) {
  check_hvp(Act::relu);
  check_hvp(Act::tanh);
  for (auto [name, act] : {std::pair{"relu", Act::relu}, std::pair{"tanh", Act::tanh}}) {
    const std::string p = std::string("MLP784_") + name;
    const Act a = act;
    bench::add_statistics(benchmark::RegisterBenchmark((p + "/gradient").c_str(), [a](benchmark::State& s) {
                            bm_gradient(s, a);
                          })->Unit(benchmark::kMillisecond));
    bench::add_statistics(benchmark::RegisterBenchmark((p + "/hvp").c_str(), [a](benchmark::State& s) {
                            bm_hvp(s, a);
                          })->Unit(benchmark::kMillisecond));
    bench::add_statistics(benchmark::RegisterBenchmark((p + "/autodiff_hvp").c_str(), [a](benchmark::State& s) {
                            bm_hvp_function(s, a);
                          })->Unit(benchmark::kMillisecond));
  }
  // As scalar_bench: short interleaved repetitions, the fastest reported; flags given later win.
  return bench::run_benchmarks(argc, argv,
                               {"--benchmark_min_time=0.2", "--benchmark_repetitions=8",
                                "--benchmark_enable_random_interleaving=true",
                                "--benchmark_display_aggregates_only=true"},
                               print_summary);
}
