// The optimizers' vectorised updates (nn/src/optim_kernels.cpp) against the plain scalar loops
// they replaced, on one float32 parameter of 784 x 256 (the demo's first layer), at 1 and 2
// threads; and the thread pool's own cost (docs/design.md, Note [One thread pool]).

#include "common.hpp"

#include <autodiff/parallel.hpp>
#include <nn/nn.hpp>

#include <cmath>
#include <functional>
#include <random>
#if defined(__SSE2__)
#include <xmmintrin.h>
#endif

namespace {

using autodiff::Tensor;

constexpr std::int64_t rows = 784, cols = 256, n = rows * cols;

std::vector<float> random_vector(std::size_t size, double scale, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal;
  std::vector<float> v(size);
  for (float& x : v)
    x = static_cast<float>(scale * normal(rng));
  return v;
}

// The scalar loops as they were: one element per iteration, the configuration tested inside the
// loop, std::sqrt with errno (this file is compiled with the default -fmath-errno), flush-to-zero
// set around the loop as the optimizer does.
struct Plain {
  std::vector<float> w = random_vector(n, 0.05, 1), g = random_vector(n, 1e-2, 2), b1 = std::vector<float>(n),
                     b2 = std::vector<float>(n), b3 = std::vector<float>(n);
  std::int64_t step = 0;
};

void plain_sgd(Plain& s, const nn::SGDOptions& o) {
  const float lr = static_cast<float>(o.lr), wd = static_cast<float>(o.weight_decay),
              mom = static_cast<float>(o.momentum), damp = static_cast<float>(1 - o.dampening);
  const bool first = s.step++ == 0, use_mom = o.momentum != 0;
  for (std::size_t i = 0; i < s.w.size(); ++i) {
    float dp = s.g[i];
    if (wd != 0) dp = dp + wd * s.w[i];
    if (use_mom) {
      s.b1[i] = first ? dp : mom * s.b1[i] + damp * dp;
      dp = o.nesterov ? dp + mom * s.b1[i] : s.b1[i];
    }
    s.w[i] = s.w[i] - lr * dp;
  }
}

void plain_adam(Plain& s, const nn::AdamOptions& o, bool decoupled) {
  const std::int64_t step = ++s.step;
  const float lr = static_cast<float>(o.lr), wd = static_cast<float>(o.weight_decay);
  const float b1 = static_cast<float>(o.beta1), b2 = static_cast<float>(o.beta2), eps = static_cast<float>(o.eps);
  const double bc1 = 1 - std::pow(o.beta1, static_cast<double>(step));
  const double bc2 = 1 - std::pow(o.beta2, static_cast<double>(step));
  const float step_size = static_cast<float>(o.lr / bc1), bc2_sqrt = static_cast<float>(std::sqrt(bc2));
  auto &w = s.w, &m = s.b1, &v = s.b2, &vmax = s.b3;
  for (std::size_t i = 0; i < w.size(); ++i) {
    float gi = s.g[i];
    if (decoupled)
      w[i] = w[i] * (1.0F - lr * wd);
    else if (wd != 0)
      gi = gi + wd * w[i];
    m[i] = m[i] + (gi - m[i]) * (1.0F - b1);
    v[i] = v[i] * b2 + (1.0F - b2) * gi * gi;
    float vhat = v[i];
    if (o.amsgrad) vhat = vmax[i] = std::max(vmax[i], v[i]);
    const float denom = std::sqrt(vhat) / bc2_sqrt + eps;
    w[i] = w[i] - step_size * (m[i] / denom);
  }
}

void plain_rmsprop(Plain& s, const nn::RMSpropOptions& o) {
  const float lr = static_cast<float>(o.lr), wd = static_cast<float>(o.weight_decay),
              alpha = static_cast<float>(o.alpha), eps = static_cast<float>(o.eps),
              mom = static_cast<float>(o.momentum);
  auto &w = s.w, &sq = s.b1, &ga = s.b2, &buf = s.b3;
  for (std::size_t i = 0; i < w.size(); ++i) {
    float gi = s.g[i];
    if (wd != 0) gi = gi + wd * w[i];
    sq[i] = sq[i] * alpha + (1.0F - alpha) * gi * gi;
    float avg;
    if (o.centered) {
      ga[i] = ga[i] + (gi - ga[i]) * (1.0F - alpha);
      avg = std::sqrt(sq[i] - ga[i] * ga[i]) + eps;
    } else {
      avg = std::sqrt(sq[i]) + eps;
    }
    if (mom > 0) {
      buf[i] = buf[i] * mom + gi / avg;
      w[i] = w[i] - lr * buf[i];
    } else {
      w[i] = w[i] - lr * (gi / avg);
    }
  }
}

void plain_adagrad(Plain& s, const nn::AdagradOptions& o) {
  const std::int64_t step = ++s.step;
  const float wd = static_cast<float>(o.weight_decay), eps = static_cast<float>(o.eps);
  const float clr = static_cast<float>(o.lr / (1 + static_cast<double>(step - 1) * o.lr_decay));
  for (std::size_t i = 0; i < s.w.size(); ++i) {
    float gi = s.g[i];
    if (wd != 0) gi = gi + wd * s.w[i];
    s.b1[i] = s.b1[i] + gi * gi;
    const float std_ = std::sqrt(s.b1[i]) + eps;
    s.w[i] = s.w[i] - clr * (gi / std_);
  }
}

struct Workload {
  std::string name;
  std::function<void(Plain&)> plain;
  std::function<std::unique_ptr<nn::Optimizer>(std::vector<Tensor>)> make;
};

const std::vector<Workload>& workloads() {
  using nn::AdagradOptions, nn::AdamOptions, nn::RMSpropOptions, nn::SGDOptions;
  static const SGDOptions sgd_m{.lr = 0.01, .momentum = 0.9},
      sgd_n{.lr = 0.01, .momentum = 0.9, .weight_decay = 1e-4, .nesterov = true};
  static const AdamOptions adam{.lr = 1e-3}, ams{.lr = 1e-3, .weight_decay = 1e-4, .amsgrad = true},
      adamw{.lr = 1e-3, .weight_decay = 1e-2};
  static const RMSpropOptions rms{.lr = 1e-3, .momentum = 0.9, .centered = true};
  static const AdagradOptions ada{.lr = 1e-2, .weight_decay = 1e-4};
  static const std::vector<Workload> all{
      {"sgd_momentum", [](Plain& s) { plain_sgd(s, sgd_m); },
       [](auto p) { return std::make_unique<nn::SGD>(p, sgd_m); }},
      {"sgd_nesterov_wd", [](Plain& s) { plain_sgd(s, sgd_n); },
       [](auto p) { return std::make_unique<nn::SGD>(p, sgd_n); }},
      {"adam", [](Plain& s) { plain_adam(s, adam, false); },
       [](auto p) { return std::make_unique<nn::Adam>(p, adam); }},
      {"adam_amsgrad_wd", [](Plain& s) { plain_adam(s, ams, false); },
       [](auto p) { return std::make_unique<nn::Adam>(p, ams); }},
      {"adamw", [](Plain& s) { plain_adam(s, adamw, true); },
       [](auto p) { return std::make_unique<nn::AdamW>(p, adamw); }},
      {"rmsprop_centered_momentum", [](Plain& s) { plain_rmsprop(s, rms); },
       [](auto p) { return std::make_unique<nn::RMSprop>(p, rms); }},
      {"adagrad_wd", [](Plain& s) { plain_adagrad(s, ada); },
       [](auto p) { return std::make_unique<nn::Adagrad>(p, ada); }},
  };
  return all;
}

void bench_plain(benchmark::State& state, const Workload& wl) {
  Plain s;
#if defined(__SSE2__)
  const unsigned saved = _mm_getcsr();
  _mm_setcsr(saved | 0x8040);
#endif
  for (auto _ : state) {
    wl.plain(s);
    benchmark::DoNotOptimize(s.w.data());
    benchmark::ClobberMemory();
  }
#if defined(__SSE2__)
  _mm_setcsr(saved);
#endif
}

void bench_step(benchmark::State& state, const Workload& wl, int threads) {
  autodiff::set_num_threads(threads);
  const std::vector<float> w0 = random_vector(n, 0.05, 1), g = random_vector(n, 1e-2, 2);
  Tensor w = autodiff::from_vector(w0, {rows, cols}).requires_grad(true);
  const Tensor G = autodiff::from_vector(g, {rows, cols});
  {
    autodiff::Tape tape;
    autodiff::sum(w * G).backward(); // the gradient, set once and reused by every step
  }
  auto opt = wl.make({w});
  opt->step(); // creates the buffers outside the timing
  for (auto _ : state) {
    opt->step();
    benchmark::ClobberMemory();
  }
}

// One parallel_for over two ranges that do nothing: the pool's round trip (wake a worker, wait
// for it), which sets the size below which an update stays on the calling thread.
void bench_round_trip(benchmark::State& state) {
  autodiff::set_num_threads(2);
  std::atomic<std::int64_t> sink{0};
  for (auto _ : state)
    autodiff::parallel_for(2, 1, [&](std::int64_t b, std::int64_t e) { sink.fetch_add(e - b); });
  benchmark::DoNotOptimize(sink.load());
}

// Adam's step on one parameter of `size` elements at 1 and 2 threads: where splitting starts to pay.
void bench_adam_size(benchmark::State& state, int threads) {
  autodiff::set_num_threads(threads);
  const auto size = state.range(0);
  Tensor w = autodiff::randn({size}).requires_grad(true);
  const Tensor G = autodiff::randn({size});
  {
    autodiff::Tape tape;
    autodiff::sum(w * G).backward();
  }
  nn::Adam opt({w}, nn::AdamOptions{.lr = 1e-3});
  opt.step();
  for (auto _ : state) {
    opt.step();
    benchmark::ClobberMemory();
  }
}

const std::vector<std::int64_t> sizes{32768, 65536, 98304, 131072, 262144};

void register_all() {
  for (const Workload& wl : workloads()) {
    bench::add_statistics(benchmark::RegisterBenchmark((wl.name + "/plain").c_str(), bench_plain, wl))
        ->Unit(benchmark::kMicrosecond)
        ->UseRealTime();
    for (const int t : {1, 2})
      bench::add_statistics(
          benchmark::RegisterBenchmark(fmt::format("{}/step_{}t", wl.name, t).c_str(), bench_step, wl, t))
          ->Unit(benchmark::kMicrosecond)
          ->UseRealTime();
  }
  bench::add_statistics(benchmark::RegisterBenchmark("pool/round_trip_2t", bench_round_trip))
      ->Unit(benchmark::kMicrosecond)
      ->UseRealTime();
  for (const int t : {1, 2}) {
    auto* b = benchmark::RegisterBenchmark(fmt::format("adam_size/{}t", t).c_str(), bench_adam_size, t);
    for (const std::int64_t s : sizes)
      b->Arg(s);
    bench::add_statistics(b)->Unit(benchmark::kMicrosecond)->UseRealTime();
  }
}

// Keeps each benchmark's fastest repetition in wall-clock time: the threaded runs must be judged
// by the time the caller waits, not by the calling thread's CPU time.
class WallReporter : public benchmark::ConsoleReporter {
public:
  void ReportRuns(const std::vector<Run>& runs) override {
    for (const Run& r : runs)
      if (!r.error_occurred && r.run_type == Run::RT_Aggregate && r.aggregate_name == "min")
        best_[r.run_name.str()] = r.GetAdjustedRealTime() * (r.time_unit == benchmark::kMicrosecond ? 1e3 : 1.0);
    ConsoleReporter::ReportRuns(runs);
  }
  std::optional<double> ns(const std::string& name) const {
    const auto it = best_.find(name);
    if (it == best_.end()) return std::nullopt;
    return it->second;
  }

private:
  std::map<std::string, double> best_;
};

} // namespace

int main(int argc, char** argv) {
  register_all();
  std::vector<std::string> defaults{"--benchmark_min_time=0.05", "--benchmark_repetitions=10",
                                    "--benchmark_enable_random_interleaving=true",
                                    "--benchmark_display_aggregates_only=true"};
  std::vector<char*> args(argv, argv + argc);
  for (std::size_t k = 0; k < defaults.size(); ++k)
    args.insert(args.begin() + 1 + static_cast<std::ptrdiff_t>(k), defaults[k].data());
  int count = static_cast<int>(args.size());
  benchmark::Initialize(&count, args.data());
  if (benchmark::ReportUnrecognizedArguments(count, args.data())) return 1;
  WallReporter r;
  benchmark::RunSpecifiedBenchmarks(&r);
  benchmark::Shutdown();

  fmt::print(
      "\nFastest of the repetitions, wall-clock time.\n\n| float32, {} x {} | plain loop µs | step 1 thread µs | "
      "plain / step | step 2 threads µs | 1t / 2t |\n|---|---|---|---|---|---|\n",
      rows, cols);
  for (const Workload& wl : workloads()) {
    const auto plain = r.ns(wl.name + "/plain/real_time"), t1 = r.ns(wl.name + "/step_1t/real_time"),
               t2 = r.ns(wl.name + "/step_2t/real_time");
    if (!plain || !t1 || !t2) continue;
    fmt::print("| {} | {:.1f} | {:.1f} | {:.2f}x | {:.1f} | {:.2f}x |\n", wl.name, *plain / 1e3, *t1 / 1e3,
               *plain / *t1, *t2 / 1e3, *t1 / *t2);
  }
  if (const auto rt = r.ns("pool/round_trip_2t/real_time"))
    fmt::print("\npool round trip at 2 threads: {:.1f} µs\n", *rt / 1e3);
  fmt::print("\n| Adam, elements | 1 thread µs | 2 threads µs | 1t / 2t |\n|---|---|---|---|\n");
  for (const std::int64_t s : sizes) {
    const auto a = r.ns(fmt::format("adam_size/1t/{}/real_time", s)),
               b = r.ns(fmt::format("adam_size/2t/{}/real_time", s));
    if (a && b) fmt::print("| {} | {:.1f} | {:.1f} | {:.2f}x |\n", s, *a / 1e3, *b / 1e3, *a / *b);
  }
}
