// The thread pool (docs/design.md, Note [One thread pool]): parallel_for covers its range exactly
// once in ranges of at least the grain, runs small ranges, nested calls and calls made while
// another thread owns the pool on the caller, rethrows, and stays usable; the optimizers give the
// same bits at any thread count; batches copy their rows across it. Run under ThreadSanitizer by scripts/test.sh.

#include <autodiff/error.hpp>
#include <autodiff/parallel.hpp>
#include <autodiff/tensor.hpp>
#include <nn/data.hpp>
#include <nn/optim.hpp>

#include <boost/test/unit_test.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

#include "restore_threads.hpp"

namespace {

using tapegrad_test::RestoreThreads;

struct Range {
  std::int64_t b, e;
  std::thread::id who;
};

// Runs parallel_for and returns the ranges it called fn with, sorted.
std::vector<Range> ranges_of(std::int64_t n, std::int64_t grain) {
  std::mutex m;
  std::vector<Range> out;
  autodiff::parallel_for(n, grain, [&](std::int64_t b, std::int64_t e) {
    const std::lock_guard lock(m);
    out.push_back({b, e, std::this_thread::get_id()});
  });
  std::sort(out.begin(), out.end(), [](const Range& x, const Range& y) { return x.b < y.b; });
  return out;
}

} // namespace

BOOST_AUTO_TEST_SUITE(thread_pool)

BOOST_AUTO_TEST_CASE(counts_are_checked_and_kept) {
  const RestoreThreads restore;
  BOOST_TEST(autodiff::get_num_threads() >= 1);
  BOOST_CHECK_THROW(autodiff::set_num_threads(0), autodiff::Error);
  BOOST_CHECK_THROW(autodiff::set_num_threads(-3), autodiff::Error);
  for (const int t : {3, 1, 2}) {
    autodiff::set_num_threads(t);
    BOOST_TEST(autodiff::get_num_threads() == t);
    BOOST_TEST(openblas_get_num_threads() == t); // one count for both pools
  }
}

BOOST_AUTO_TEST_CASE(ranges_cover_everything_once) {
  const RestoreThreads restore;
  for (const int t : {1, 2, 3, 4}) {
    autodiff::set_num_threads(t);
    for (const std::int64_t n : {0, 1, 15, 16, 17, 100, 1000, 4097, 100000})
      for (const std::int64_t grain : {1, 16, 64, 1000}) {
        const auto r = ranges_of(n, grain);
        BOOST_TEST_CONTEXT("threads " << t << " n " << n << " grain " << grain) {
          if (n == 0) {
            BOOST_TEST(r.empty());
            continue;
          }
          BOOST_TEST(r.size() >= 1U);
          BOOST_TEST(r.size() <= static_cast<std::size_t>(t));
          std::int64_t next = 0;
          for (const Range& x : r) {
            BOOST_TEST(x.b == next);
            BOOST_TEST(x.e > x.b);
            next = x.e;
          }
          BOOST_TEST(next == n);
          // Small ranges, and one thread, stay on the caller in one call.
          if (n < 2 * grain || t == 1) {
            BOOST_TEST(r.size() == 1U);
            BOOST_TEST((r[0].who == std::this_thread::get_id()));
          }
          // Ranges are at least the grain, give or take the rounding of boundaries to 16.
          if (r.size() > 1)
            for (std::size_t i = 0; i + 1 < r.size(); ++i)
              BOOST_TEST(r[i].e - r[i].b >= grain - 15);
        }
      }
  }
}

BOOST_AUTO_TEST_CASE(work_reaches_the_workers) {
  const RestoreThreads restore;
  autodiff::set_num_threads(2);
  // Each range waits (bounded) for the other to start: with two ranges, two threads must run them.
  std::atomic<int> started{0};
  std::vector<std::thread::id> who(2);
  autodiff::parallel_for(2, 1, [&](std::int64_t b, std::int64_t) {
    who[static_cast<std::size_t>(b)] = std::this_thread::get_id();
    started.fetch_add(1);
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (started.load() < 2 && std::chrono::steady_clock::now() < until)
      std::this_thread::yield();
  });
  BOOST_TEST(started.load() == 2);
  BOOST_TEST((who[0] != who[1]));
}

BOOST_AUTO_TEST_CASE(exceptions_reach_the_caller_and_the_pool_survives) {
  const RestoreThreads restore;
  autodiff::set_num_threads(3);
  for (int rep = 0; rep < 20; ++rep) {
    BOOST_CHECK_THROW(autodiff::parallel_for(3000, 1000,
                                             [&](std::int64_t b, std::int64_t) {
                                               if (b > 0) throw std::runtime_error("range failed");
                                             }),
                      std::runtime_error);
    const auto r = ranges_of(3000, 1000);
    BOOST_TEST(r.size() == 3U);
  }
  // set_num_threads from inside a range is refused, not a deadlock.
  BOOST_CHECK_THROW(autodiff::parallel_for(2, 1, [](std::int64_t, std::int64_t) { autodiff::set_num_threads(1); }),
                    autodiff::Error);
}

BOOST_AUTO_TEST_CASE(nested_and_concurrent_calls) {
  const RestoreThreads restore;
  autodiff::set_num_threads(2);
  // Nested: the inner call runs on whichever thread runs the outer range.
  std::atomic<std::int64_t> total{0};
  autodiff::parallel_for(4, 1, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t i = b; i < e; ++i)
      autodiff::parallel_for(1000, 10, [&](std::int64_t ib, std::int64_t ie) { total.fetch_add(ie - ib); });
  });
  BOOST_TEST(total.load() == 4000);

  // Four user threads at once: one owns the pool at a time, the others run on their own thread.
  std::atomic<int> bad{0};
  std::vector<std::thread> users;
  for (int k = 0; k < 4; ++k)
    users.emplace_back([&, k] {
      for (int rep = 0; rep < 200; ++rep) {
        std::vector<int> hits(static_cast<std::size_t>(5000 + k));
        autodiff::parallel_for(static_cast<std::int64_t>(hits.size()), 64, [&](std::int64_t b, std::int64_t e) {
          for (std::int64_t i = b; i < e; ++i)
            ++hits[static_cast<std::size_t>(i)];
        });
        if (std::any_of(hits.begin(), hits.end(), [](int h) { return h != 1; })) bad.fetch_add(1);
      }
    });
  for (auto& u : users)
    u.join();
  BOOST_TEST(bad.load() == 0);
}

BOOST_AUTO_TEST_CASE(optimizer_steps_split_across_threads_keep_their_bits) {
  const RestoreThreads restore;
  // Larger than twice the optimizers' grain (16384 elements), so the update is split.
  constexpr std::int64_t n = 100003;
  auto run = [&](int t) {
    autodiff::set_num_threads(t);
    autodiff::manual_seed(5);
    autodiff::Tensor w = autodiff::randn({n}).requires_grad(true);
    const autodiff::Tensor g = autodiff::randn({n});
    nn::Adam opt({w}, nn::AdamOptions{.lr = 1e-2, .amsgrad = true});
    autodiff::Tape tape;
    for (int s = 0; s < 5; ++s) {
      tape.reset();
      opt.zero_grad();
      autodiff::sum(w * g * w).backward();
      opt.step();
    }
    const auto d = w.data<float>();
    return std::vector<float>(d.begin(), d.end());
  };
  const auto one = run(1);
  for (const int t : {2, 3}) {
    const auto many = run(t);
    BOOST_TEST(std::memcmp(one.data(), many.data(), one.size() * sizeof(float)) == 0, "threads " << t);
  }
}

// Note [Owned rows]: linear splits a large product by rows of its weight. Its ranges write disjoint
// columns of y, disjoint rows of dw and their own partial products of dx, and the optimizer then
// updates the same rows on the same threads: under ThreadSanitizer this checks those writes (the
// values are checked against plain loops in tests/tensor, kernels). A few steps of a layer at 2 and
// 3 threads agree with one thread up to the rounding of dx's partial sums.
BOOST_AUTO_TEST_CASE(linear_layers_split_across_threads_train_as_on_one) {
  const RestoreThreads restore;
  std::vector<autodiff::Tensor> kept; // every run's tensors stay alive: no run gets another's buffers back
  auto run = [&](int t) {
    autodiff::set_num_threads(t);
    autodiff::manual_seed(9);
    autodiff::Tensor x = autodiff::randn({64, 256}).requires_grad(true);
    autodiff::Tensor w = autodiff::randn({200, 256}).requires_grad(true); // 64 x 256 per row: split
    autodiff::Tensor b = autodiff::zeros({200}).requires_grad(true);
    nn::Adam opt({w, b}, nn::AdamOptions{.lr = 1e-2});
    autodiff::Tape tape;
    for (int s = 0; s < 3; ++s) {
      tape.reset();
      opt.zero_grad();
      autodiff::sum(autodiff::tanh(autodiff::linear(x, w, b) * 0.05)).backward();
      opt.step();
    }
    kept.insert(kept.end(), {x, w, b, x.grad()});
    std::vector<double> v = w.to_vector(), gx = x.grad().to_vector();
    v.insert(v.end(), gx.begin(), gx.end());
    return v;
  };
  const auto one = run(1);
  for (const int t : {2, 3}) {
    const auto many = run(t);
    BOOST_TEST_REQUIRE(many.size() == one.size());
    double worst = 0;
    for (std::size_t i = 0; i < one.size(); ++i)
      worst = std::max(worst, std::fabs(many[i] - one[i]) / (1 + std::fabs(one[i])));
    BOOST_TEST(worst < 1e-5, "threads " << t << ": off by " << worst);
  }
}

// A batch of at least two 64 KiB ranges of output has its rows copied across the pool
// (nn/src/data.cpp): every row lands where it belongs at 1, 2 and 3 threads, for both datasets, and
// bad indices are still refused before any range starts. Under ThreadSanitizer this checks that the
// ranges write disjoint rows. Fresh outputs at every count are kept alive together, so a row no
// range wrote cannot pass by holding an earlier run's value (the allocator hands buffers back).
BOOST_AUTO_TEST_CASE(batches_copy_their_rows_across_threads) {
  const RestoreThreads restore;
  constexpr std::int64_t images = 97, per = 3001; // 12 KiB of float a row: ranges of 6 rows
  std::vector<std::uint8_t> pixels(static_cast<std::size_t>(images * per));
  std::vector<double> floats(pixels.size());
  for (std::size_t k = 0; k < pixels.size(); ++k)
    floats[k] = pixels[k] = static_cast<std::uint8_t>((k * 7 + k / per * 13) % 251);
  std::vector<std::int64_t> labels(static_cast<std::size_t>(images));
  for (std::size_t i = 0; i < labels.size(); ++i)
    labels[i] = static_cast<std::int64_t>(i * 5 % 11);
  const nn::ByteImageDataset bytes(pixels, per, labels, 0.5f);
  const nn::TensorDataset tensors(
      autodiff::from_vector(floats, {images, per}),
      autodiff::from_vector(std::vector<double>(labels.begin(), labels.end()), {images}, autodiff::DType::int64));
  std::vector<std::int64_t> idx;
  for (std::int64_t k = 0; k < 61; ++k)
    idx.push_back((k * 37 + 3) % images);
  std::vector<nn::Batch> kept;
  for (const int t : {1, 2, 3}) {
    autodiff::set_num_threads(t);
    for (const bool from_bytes : {true, false}) {
      kept.push_back(from_bytes ? bytes.batch(idx) : tensors.batch(idx));
      const auto x = kept.back().inputs.to_vector();
      const auto y = kept.back().targets.to_vector();
      BOOST_TEST_REQUIRE(x.size() == idx.size() * static_cast<std::size_t>(per));
      int wrong = 0;
      for (std::size_t k = 0; k < idx.size(); ++k) {
        const auto i = static_cast<std::size_t>(idx[k]);
        wrong += y[k] != static_cast<double>(labels[i]);
        for (std::size_t p = 0; p < static_cast<std::size_t>(per); ++p)
          wrong += x[k * per + p] != (from_bytes ? 0.5 : 1.0) * static_cast<double>(pixels[i * per + p]);
      }
      BOOST_TEST(wrong == 0, "threads " << t << (from_bytes ? ", bytes" : ", tensors") << ": " << wrong << " wrong");
    }
    idx.back() = images; // refused before the copy starts, at every count
    BOOST_CHECK_THROW(bytes.batch(idx), autodiff::Error);
    BOOST_CHECK_THROW(tensors.batch(idx), autodiff::Error);
    idx.back() = 5;
  }
}

// TAPEGRAD_NUM_THREADS is read once per process, so each value is tried in a fresh copy of this
// program that runs only env_child below. TAPEGRAD_POOL_CHILD_EXPECT is the count that copy must
// report, or 0 for "get_num_threads throws, naming the variable".
BOOST_AUTO_TEST_CASE(env_child) {
  const char* expect = std::getenv("TAPEGRAD_POOL_CHILD_EXPECT");
  if (expect == nullptr) return; // a helper for the next case, meaningful only in its child
  const int want = std::atoi(expect);
  if (want > 0) {
    BOOST_TEST(autodiff::get_num_threads() == want);
  } else {
    BOOST_CHECK_EXCEPTION(autodiff::get_num_threads(), autodiff::Error, [](const autodiff::Error& e) {
      return std::string(e.what()).find("TAPEGRAD_NUM_THREADS") != std::string::npos;
    });
  }
}

BOOST_AUTO_TEST_CASE(the_environment_sets_the_default_count) {
  if (std::getenv("TAPEGRAD_POOL_CHILD_EXPECT") != nullptr) return; // in a child: no grandchildren
  const std::string self = std::filesystem::read_symlink("/proc/self/exe").string();
  for (const auto& [value, expect] :
       {std::pair{"3", 3}, {"1", 1}, {"0", 0}, {"-2", 0}, {"2x", 0}, {"", 0}, {" 2", 0}}) {
    const std::string cmd = fmt::format("TAPEGRAD_NUM_THREADS='{}' TAPEGRAD_POOL_CHILD_EXPECT={} '{}' "
                                        "--run_test=thread_pool/env_child >/dev/null 2>&1",
                                        value, expect, self);
    BOOST_TEST(std::system(cmd.c_str()) == 0, "TAPEGRAD_NUM_THREADS='" << value << "'");
  }
}

// fork() copies only the calling thread: a child must not wait for the parent's workers. It gets a
// pool of its own with the parent's count (a hang here is cut short by alarm and fails the test).
// ThreadSanitizer does not support starting threads in the child of a multithreaded process.
BOOST_AUTO_TEST_CASE(a_forked_child_gets_a_pool_of_its_own) {
#if defined(__SANITIZE_THREAD__)
  return;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
  return;
#endif
#endif
  const RestoreThreads restore;
  autodiff::set_num_threads(2);
  std::atomic<std::int64_t> covered{0};
  autodiff::parallel_for(4000, 1000, [&](std::int64_t b, std::int64_t e) { covered += e - b; }); // workers run
  BOOST_TEST(covered.load() == 4000);
  const pid_t pid = fork();
  BOOST_REQUIRE(pid >= 0);
  if (pid == 0) {
    alarm(10);
    std::atomic<std::int64_t> child_covered{0};
    autodiff::parallel_for(4000, 1000, [&](std::int64_t b, std::int64_t e) { child_covered += e - b; });
    _exit(child_covered.load() == 4000 && autodiff::get_num_threads() == 2 ? 0 : 1);
  }
  int status = 0;
  BOOST_REQUIRE(waitpid(pid, &status, 0) == pid);
  BOOST_TEST(WIFEXITED(status));
  BOOST_TEST(WEXITSTATUS(status) == 0);
}

BOOST_AUTO_TEST_SUITE_END()
