#pragma once
// Shared by the benchmark programs: a counting global allocator, a reporter that keeps every
// run's time for a summary printed after Google Benchmark finishes, and the gradient comparison
// used by the start-up checks.
//
// Include this header in exactly one translation unit per benchmark binary: it replaces the global
// operator new and delete, which may be defined only once in a program.

#include <benchmark/benchmark.h>
#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <new>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace bench {

// Relaxed: the count is read only between loops on the benchmark's own thread; atomic so that
// allocations on other threads (the library's, the framework's) are not a data race.
inline std::atomic<std::uint64_t> heap_allocations{0};

inline std::uint64_t allocations() { return heap_allocations.load(std::memory_order_relaxed); }

inline void* counted_malloc(std::size_t n) {
  heap_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
inline void* counted_aligned(std::size_t n, std::align_val_t al) {
  heap_allocations.fetch_add(1, std::memory_order_relaxed);
  const auto a = static_cast<std::size_t>(al);
  // aligned_alloc wants a size that is a multiple of the alignment.
  const std::size_t rounded = (std::max<std::size_t>(n, 1) + a - 1) / a * a;
  if (void* p = std::aligned_alloc(a, rounded)) return p;
  throw std::bad_alloc();
}

// Adds the statistics RecordingReporter reads when a benchmark runs with repetitions.
inline benchmark::internal::Benchmark* add_statistics(benchmark::internal::Benchmark* b) {
  return b->ComputeStatistics("min", [](const std::vector<double>& v) { return *std::min_element(v.begin(), v.end()); })
      ->ComputeStatistics("max", [](const std::vector<double>& v) { return *std::max_element(v.begin(), v.end()); });
}

// Sets the "allocs/iter" counter from the allocations made since `before`; call it right after the
// timed loop so nothing but that loop is counted.
inline void report_allocations(benchmark::State& state, std::uint64_t before) {
  const auto n = static_cast<double>(allocations() - before);
  state.counters["allocs/iter"] = state.iterations() == 0 ? 0.0 : n / static_cast<double>(state.iterations());
}

// max_i |a_i - b_i| / max_i |b_i|: relative to the gradient's size, because single components can
// be sums with cancellation whose rounding differs with the order of summation.
inline double relative_difference(std::span<const double> a, std::span<const double> b) {
  if (a.size() != b.size()) return INFINITY;
  double diff = 0, scale = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    diff = std::max(diff, std::fabs(a[i] - b[i]));
    scale = std::max(scale, std::fabs(b[i]));
  }
  return scale == 0 ? diff : diff / scale;
}

// Aborts the program (the figures would be meaningless) when a gradient disagrees.
inline void check_close(std::string_view what, std::span<const double> got, std::span<const double> want,
                        double tolerance = 1e-12) {
  const double d = relative_difference(got, want);
  if (!(d <= tolerance)) {
    std::fflush(stdout); // the checks that passed, before abort() drops the buffer
    fmt::print(stderr, "check failed: {}: relative difference {:.3g} exceeds {:.1g} ({} components)\n", what, d,
               tolerance, want.size());
    std::abort();
  }
  fmt::print("check {:<44} relative difference {:.2e}\n", what, d);
}

// Shows the usual console output and keeps, per benchmark, the fastest repetition's CPU time (the
// least disturbed by other processes on a shared machine) and the counters of the slowest (so an
// allocation in any repetition shows). Needs the "min" and "max" statistics from add_statistics.
class RecordingReporter : public benchmark::ConsoleReporter {
public:
  struct Result {
    double cpu_ns = 0;
    benchmark::UserCounters counters;
  };

  void ReportRuns(const std::vector<Run>& runs) override {
    for (const Run& r : runs) {
      if (r.error_occurred) continue;
      const std::string name = r.run_name.str();
      const bool single = r.run_type == Run::RT_Iteration && r.repetitions <= 1;
      if (r.run_type == Run::RT_Aggregate && r.aggregate_name == "min") {
        results_[name].cpu_ns = r.GetAdjustedCPUTime() * nanoseconds_per(r.time_unit);
      } else if (r.run_type == Run::RT_Aggregate && r.aggregate_name == "max") {
        results_[name].counters = r.counters;
      } else if (single) {
        results_[name] = Result{r.GetAdjustedCPUTime() * nanoseconds_per(r.time_unit), r.counters};
      }
    }
    ConsoleReporter::ReportRuns(runs);
  }

  std::optional<Result> find(const std::string& name) const {
    const auto it = results_.find(name);
    if (it == results_.end()) return std::nullopt;
    return it->second;
  }
  std::optional<double> cpu_ns(const std::string& name) const {
    const auto r = find(name);
    if (!r) return std::nullopt;
    return r->cpu_ns;
  }
  std::optional<double> counter(const std::string& name, const std::string& counter) const {
    const auto r = find(name);
    if (!r) return std::nullopt;
    const auto it = r->counters.find(counter);
    if (it == r->counters.end()) return std::nullopt;
    return it->second.value;
  }

private:
  static double nanoseconds_per(benchmark::TimeUnit u) {
    switch (u) {
    case benchmark::kNanosecond:
      return 1;
    case benchmark::kMicrosecond:
      return 1e3;
    case benchmark::kMillisecond:
      return 1e6;
    case benchmark::kSecond:
      return 1e9;
    }
    return 1;
  }

private:
  std::map<std::string, Result> results_;
};

// Runs the registered benchmarks with `defaults` put before the command line's flags (so that the
// same flags given there win), through a RecordingReporter, then calls summary(reporter).
template <class Summary>
int run_benchmarks(int argc, char** argv, std::vector<std::string> defaults, Summary&& summary) {
  std::vector<char*> args(argv, argv + argc);
  for (std::size_t k = 0; k < defaults.size(); ++k)
    args.insert(args.begin() + 1 + static_cast<std::ptrdiff_t>(k), defaults[k].data());
  int n = static_cast<int>(args.size());
  benchmark::Initialize(&n, args.data());
  if (benchmark::ReportUnrecognizedArguments(n, args.data())) return 1;
  RecordingReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  summary(reporter);
  return 0;
}

} // namespace bench

// The replaced global allocation functions (every form that allocates routes through the counted
// ones; the nothrow forms return null instead of throwing).
void* operator new(std::size_t n) { return bench::counted_malloc(n); }
void* operator new[](std::size_t n) { return bench::counted_malloc(n); }
void* operator new(std::size_t n, std::align_val_t a) { return bench::counted_aligned(n, a); }
void* operator new[](std::size_t n, std::align_val_t a) { return bench::counted_aligned(n, a); }
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  try {
    return bench::counted_malloc(n);
  } catch (...) {
    return nullptr;
  }
}
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept {
  try {
    return bench::counted_malloc(n);
  } catch (...) {
    return nullptr;
  }
}
void* operator new(std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  try {
    return bench::counted_aligned(n, a);
  } catch (...) {
    return nullptr;
  }
}
void* operator new[](std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  try {
    return bench::counted_aligned(n, a);
  } catch (...) {
    return nullptr;
  }
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }
