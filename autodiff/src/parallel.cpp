// The one thread pool (docs/design.md, Note [One thread pool]).

#include <autodiff/error.hpp>
#include <autodiff/parallel.hpp>

#include <cblas.h>
#include <fmt/format.h>
#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace autodiff {
namespace {

// True on a pool worker, and on a caller while it runs its share of a parallel_for: a nested
// parallel_for runs inline instead of waiting for workers that are busy with the outer one.
thread_local bool in_parallel = false;

int default_threads() {
  if (const char* env = std::getenv("TAPEGRAD_NUM_THREADS"); env != nullptr) {
    const std::string s = env;
    char* end = nullptr;
    const long v = std::strtol(s.c_str(), &end, 10);
    if (s.empty() || end != s.c_str() + s.size() || !(s[0] >= '0' && s[0] <= '9') || v < 1 || v > 4096)
      throw Error(fmt::format("TAPEGRAD_NUM_THREADS: expected a whole number of threads in [1, 4096], got '{}'", s));
    return static_cast<int>(v);
  }
  return static_cast<int>(std::max(1U, std::thread::hardware_concurrency()));
}

class Pool {
public:
  Pool() = default;
  // A pool for a child of fork(), with the parent's count (see pool()).
  explicit Pool(int count) {
    std::call_once(init_, [&] { count_.store(count); });
    ready_.store(true);
  }
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;
  // The count, if it was ever read or set (otherwise a new pool reads the environment again).
  std::optional<int> count() const { return ready_.load() ? std::optional<int>(count_.load()) : std::nullopt; }

  int threads() {
    std::call_once(init_, [this] {
      const int n = default_threads();
      // OpenBLAS reads its own count from the environment when it loads; an explicit
      // OPENBLAS_NUM_THREADS is left alone until set_num_threads. Otherwise both start at the same
      // count (OpenBLAS's default is the core count too, so this rarely calls into it: resizing its
      // pool while another thread is inside a BLAS call is not safe).
      if (std::getenv("OPENBLAS_NUM_THREADS") == nullptr && openblas_get_num_threads() != n)
        openblas_set_num_threads(n);
      count_.store(n);
      ready_.store(true);
    });
    return count_.load(std::memory_order_relaxed);
  }

  void set(int n) {
    if (n < 1) throw Error(fmt::format("set_num_threads: the count must be >= 1, got {}", n));
    if (in_parallel) throw Error("set_num_threads: called from inside a parallel_for");
    threads(); // the environment's default is read (and checked) once, before it is replaced
    const std::lock_guard use(use_);
    if (n != count_.load()) {
      stop_workers();
      count_.store(n);
    }
    openblas_set_num_threads(n);
  }

  void run(std::int64_t n, std::int64_t grain, void* ctx, detail::RangeFn fn) {
    if (n <= 0) return;
    grain = std::max<std::int64_t>(grain, 1);
    if (n < 2 * grain || in_parallel) return fn(ctx, 0, n);
    const int threads = this->threads();
    if (threads == 1) return fn(ctx, 0, n);
    // Another thread is using the pool: run inline rather than wait for it (the workers are busy).
    std::unique_lock use(use_, std::try_to_lock);
    if (!use.owns_lock()) return fn(ctx, 0, n);
    if (workers_.empty()) start_workers(threads - 1);

    // BLAS calls inside the ranges (linear's ranges, nn::parallel_backward's shards) run on one
    // thread each: the ranges already occupy the cores. Set before the job is posted, since a polling
    // worker starts its range at once (set after, its products sometimes ran on OpenBLAS's threads
    // and rounded differently: docs/design.md, Note [Data-parallel steps]). Restored once every range
    // is done; no BLAS call is in flight on this thread, and the pool is ours (use_).
    const int blas = openblas_get_num_threads();
    if (blas > 1) openblas_set_num_threads(1);
    {
      const std::lock_guard lock(m_);
      ctx_ = ctx;
      fn_ = fn;
      n_ = n;
      tasks_ = std::min<std::int64_t>(threads, n / grain);
      for (std::int64_t t = 0; t < tasks_; ++t)
        claimed_[static_cast<std::size_t>(t)].store(false, std::memory_order_relaxed);
      failed_.store(false);
      error_ = nullptr;
      pending_ = static_cast<int>(workers_.size());
      ++generation_;
    }
    wake_.notify_all();
    in_parallel = true;
    work(0);
    in_parallel = false;
    spin_until([this] { return pending_.load(std::memory_order_acquire) == 0; });
    std::unique_lock lock(m_);
    done_.wait(lock, [this] { return pending_ == 0; });
    if (blas > 1) openblas_set_num_threads(blas);
    if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
  }

private:
  // Range t of tasks_: equal shares; for shares of 256 elements and more, boundaries rounded down
  // to a multiple of 16 elements, so that every range starts on a whole vector (64 bytes of float).
  std::int64_t bound(std::int64_t t) const {
    if (t >= tasks_) return n_;
    const std::int64_t b = n_ / tasks_ * t + n_ % tasks_ * t / tasks_;
    return n_ / tasks_ >= 256 ? b & ~std::int64_t{15} : b;
  }

  // Thread `self` (the caller 0, worker i i + 1) runs range `self` first, then any range nobody has
  // taken. Why: the same element range of a parameter then lands on the same core at every call, so
  // the optimizer's update finds its moments where the last update left them, in that core's cache
  // (with ranges taken first-come, a polling worker often took range 0, and on a VM whose vCPUs sit
  // far apart, writing lines the other core has touched is slow: Note [Data-parallel steps]); and a
  // range whose thread is late (asleep, preempted) is still taken by whoever is free.
  void work(std::int64_t self) {
    const auto run = [&](std::int64_t t) {
      if (claimed_[static_cast<std::size_t>(t)].exchange(true, std::memory_order_relaxed)) return;
      const std::int64_t b = bound(t), e = bound(t + 1);
      if (b == e || failed_.load(std::memory_order_relaxed)) return; // skip the rest after an error
      try {
        fn_(ctx_, b, e);
      } catch (...) {
        const std::lock_guard lock(error_m_);
        if (!error_) error_ = std::current_exception();
        failed_.store(true);
      }
    };
    if (self < tasks_) run(self);
    for (std::int64_t t = 0; t < tasks_; ++t)
      run(t);
  }

  void start_workers(int k) {
    // The generation is read here, not in the new thread: a worker that starts after the first job
    // was posted must still take part in it (the caller waits for every worker).
    std::uint64_t first = 0;
    {
      const std::lock_guard lock(m_);
      stop_ = false;
      stop_requested_.store(false);
      first = generation_;
    }
    claimed_ = std::make_unique<std::atomic<bool>[]>(static_cast<std::size_t>(k) + 1);
    for (int i = 0; i < k; ++i)
      workers_.emplace_back([this, first, self = std::int64_t{i} + 1] {
        in_parallel = true;
        std::uint64_t seen = first;
        for (;;) {
          spin_until([&] { return generation_.load(std::memory_order_acquire) != seen || stop_requested_.load(); });
          {
            std::unique_lock lock(m_);
            wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
            if (stop_) return;
            seen = generation_;
          }
          work(self);
          const std::lock_guard lock(m_);
          if (--pending_ == 0) done_.notify_one();
        }
      });
  }

  // Polls `done` for a while before the caller goes on to sleep on a condition variable. Why: on the
  // 2-vCPU VM a sleeping thread's wake-up costs some 80-100 us (the idle vCPU is halted and must be
  // woken by the hypervisor), more than a whole Adam update of the demo's largest weight; a demo step
  // runs its parallel regions microseconds apart. The poll spins on the CPU's pause hint and gives the
  // core away (yield) only every yield_every: a sched_yield is a system call, 1.3-1.5 us on this VM,
  // and a poller inside one sees `done` that much late (a two-thread round trip took 1.6-1.8 us
  // polling with yield, 0.5 us with pause). A runnable thread that wants the core (OpenBLAS's,
  // another process's) still gets it within yield_every; polling stops after spin_time (measured:
  // Note [One thread pool]).
  template <class Done> static void spin_until(Done done) {
    using clock = std::chrono::steady_clock;
    constexpr auto spin_time = std::chrono::microseconds(500), yield_every = std::chrono::microseconds(20);
    const auto start = clock::now();
    auto next_yield = start + yield_every;
    for (;;) {
      for (int i = 0; i < 32; ++i) { // some 0.6 us of pauses between clock reads
        if (done()) return;
        cpu_relax();
      }
      const auto now = clock::now();
      if (now - start >= spin_time) return;
      if (now >= next_yield) {
        std::this_thread::yield();
        next_yield = now + yield_every;
      }
    }
  }
  static void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
  }

  void stop_workers() {
    {
      const std::lock_guard lock(m_);
      stop_ = true;
      stop_requested_.store(true);
    }
    wake_.notify_all();
    for (auto& w : workers_)
      w.join();
    workers_.clear();
  }

  std::once_flag init_;
  std::atomic<int> count_{1};
  std::atomic<bool> ready_{false};
  std::mutex use_; // held by the thread whose parallel_for the workers are running

  std::mutex m_; // guards the job description and the counters below
  std::condition_variable wake_, done_;
  std::vector<std::thread> workers_;
  // Atomic, so that a polling thread (spin_until) may read them without the mutex; written under it.
  std::atomic<std::uint64_t> generation_ = 0;
  std::atomic<int> pending_ = 0;
  bool stop_ = false;
  std::atomic<bool> stop_requested_ = false;

  void* ctx_ = nullptr;
  detail::RangeFn fn_ = nullptr;
  std::int64_t n_ = 0, tasks_ = 0;
  std::unique_ptr<std::atomic<bool>[]> claimed_; // one per thread; range t taken (work())
  std::atomic<bool> failed_{false};
  std::mutex error_m_;
  std::exception_ptr error_;
};

// The process's pool, made on first use and never destroyed: at exit its workers are asleep (or
// polling) and hold nothing, and joining them from a static destructor would race with any thread
// still using the library. A child of fork() has none of its parent's workers (fork copies only the
// calling thread), and may have copied the pool's mutexes locked: the child's handler leaves the
// inherited pool alone (its workers cannot be joined) and starts a new one with the parent's count,
// which starts its workers on first use. Without it, the child's first parallel_for would wait
// forever for workers that do not exist.
std::atomic<Pool*> live{nullptr};
Pool& pool() {
  static const bool made = [] {
    live.store(new Pool);
    pthread_atfork(nullptr, nullptr, [] {
      const std::optional<int> n = live.load()->count();
      live.store(n ? new Pool(*n) : new Pool);
    });
    return true;
  }();
  (void)made;
  return *live.load(std::memory_order_acquire);
}

} // namespace

void set_num_threads(int n) { pool().set(n); }
int get_num_threads() { return pool().threads(); }

namespace detail {
void parallel_for_impl(std::int64_t n, std::int64_t grain, void* ctx, RangeFn fn) { pool().run(n, grain, ctx, fn); }
} // namespace detail

} // namespace autodiff
