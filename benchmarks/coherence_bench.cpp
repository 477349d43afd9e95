// What moving data between two cores costs on this machine: the measurement behind Note
// [Data-parallel steps]'s account of the 2-thread demo step. One thread (the "writer", as the
// optimizer's update) reads and rewrites a float buffer after another thread has done something to
// it; the time is that rewrite's, the median of the repetitions. A plain program (no tapegrad, no
// Google Benchmark): it measures the machine, not the library.
//
//   coherence_bench [--kib 512] [--reps 200]
//
// The cases, each preceded by the writer's own rewrite:
//   local          nothing else touched the buffer
//   other wrote    the other thread rewrote it (its lines move over, modified)
//   other read     the other thread read it (both cores now hold the lines, shared)
//   other read+32M the other thread read it, then read 32 MiB of other data
// and, for comparison, the writer only reading the buffer after the other thread wrote it.
//
// Then what the second core adds to computing: the demo's largest product (128 x 784 times 784 x
// 256, OpenBLAS on one thread per call) whole on one thread, against its two halves of output
// columns (what autodiff's linear gives each thread, Note [Owned rows]) on the two threads at once.
// A ratio of 0.5 is a second core as fast as the first; it bounds what any split of the demo's
// matrix products can reach on this machine.

#include <CLI/CLI.hpp>
#include <cblas.h>
#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>
#include <vector>

namespace {

using clock_type = std::chrono::steady_clock;

// Sixteen independent sums, so that the loop vectorises and the read runs at memory speed.
float sum(const std::vector<float>& a) {
  float acc[16] = {};
  for (std::size_t i = 0; i + 16 <= a.size(); i += 16)
    for (std::size_t k = 0; k < 16; ++k)
      acc[k] += a[i + k];
  float s = 0;
  for (const float v : acc)
    s += v;
  return s;
}

void rewrite(std::vector<float>& a) {
  for (float& v : a)
    v = v * 0.5F + 1.0F;
}

enum class Other { nothing, write, read, read_then_stream };

// The median time of `op` on this thread after the other thread did `other` to the buffer.
template <class Op> double median_us(std::vector<float>& buf, Other other, int reps, Op op) {
  std::vector<float> junk(std::size_t{8} << 20, 1.0F); // 32 MiB
  std::atomic<int> turn{0};
  std::atomic<float> sink{0};
  std::thread peer([&] {
    for (int r = 0; r < reps; ++r) {
      while (turn.load() != 1) {
      }
      if (other == Other::write) rewrite(buf);
      if (other == Other::read || other == Other::read_then_stream) sink.store(sum(buf));
      if (other == Other::read_then_stream) sink.store(sum(junk));
      turn.store(2);
    }
  });
  std::vector<double> t;
  for (int r = 0; r < reps; ++r) {
    rewrite(buf);
    turn.store(1);
    while (turn.load() != 2) {
    }
    const auto t0 = clock_type::now();
    op();
    t.push_back(std::chrono::duration<double, std::micro>(clock_type::now() - t0).count());
    turn.store(0);
  }
  peer.join();
  std::nth_element(t.begin(), t.begin() + reps / 2, t.end());
  return t[static_cast<std::size_t>(reps / 2)];
}

// The median time of the product x w^T, x [m, k], w [n, k]: whole on this thread, or its two
// halves of output columns on this thread and the other at once.
double gemm_us(bool halves, int reps) {
  constexpr int m = 128, k = 784, n = 256;
  std::vector<float> x(m * k, 0.5F), w(n * k, 0.25F), y(m * n);
  const auto product = [&](int c0, int c1) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, c1 - c0, k, 1.0F, x.data(), k, w.data() + c0 * k, k, 0.0F,
                y.data() + c0, n);
  };
  std::atomic<int> go{0}, done{0};
  std::thread peer([&] {
    for (int r = 0; r < reps && halves; ++r) {
      while (go.load() <= r) {
      }
      product(n / 2, n);
      done.store(r + 1);
    }
  });
  std::vector<double> t;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = clock_type::now();
    if (halves) {
      go.store(r + 1);
      product(0, n / 2);
      while (done.load() <= r) {
      }
    } else {
      product(0, n);
    }
    t.push_back(std::chrono::duration<double, std::micro>(clock_type::now() - t0).count());
  }
  peer.join();
  std::nth_element(t.begin(), t.begin() + reps / 2, t.end());
  return t[static_cast<std::size_t>(reps / 2)];
}

} // namespace

extern "C" void openblas_set_num_threads(int);

int main(int argc, char** argv) {
  CLI::App app{"coherence_bench: the cost of writing data another core has touched"};
  int kib = 512, reps = 200;
  app.add_option("--kib", kib, "buffer size in KiB")->check(CLI::Range(4, 1 << 20))->capture_default_str();
  app.add_option("--reps", reps, "repetitions (median reported)")->check(CLI::Range(1, 100000))->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  std::vector<float> buf(static_cast<std::size_t>(kib) * 256, 1.0F);
  std::atomic<float> sink{0};
  const auto write = [&] { rewrite(buf); };
  const auto read = [&] { sink.store(sum(buf)); };
  fmt::print("{} KiB buffer, median of {} repetitions, {} hardware threads\n", kib, reps,
             std::thread::hardware_concurrency());
  const double local = median_us(buf, Other::nothing, reps, write);
  fmt::print("| the writer rewrites it after | us | x local |\n|---|---|---|\n");
  fmt::print("| nothing else (local) | {:.1f} | 1.0 |\n", local);
  for (const auto& [name, other] :
       {std::pair{"the other thread wrote it", Other::write}, std::pair{"the other thread read it", Other::read},
        std::pair{"the other thread read it, then 32 MiB else", Other::read_then_stream}}) {
    const double us = median_us(buf, other, reps, write);
    fmt::print("| {} | {:.1f} | {:.1f} |\n", name, us, us / local);
  }
  const double remote_read = median_us(buf, Other::write, reps, read);
  fmt::print("\nreading it after the other thread wrote it: {:.1f} us ({:.1f} GB/s)\n", remote_read,
             static_cast<double>(buf.size() * sizeof(float)) / (remote_read * 1e3));

  openblas_set_num_threads(1); // one thread per call, as inside tapegrad's parallel_for
  const double whole = gemm_us(false, reps), halves = gemm_us(true, reps);
  fmt::print("\n128x784 times 784x256 (sgemm, one BLAS thread per call): whole on one thread {:.1f} us, "
             "its two column halves on two threads at once {:.1f} us ({:.2f}x; 0.5 is a second core as fast)\n",
             whole, halves, halves / whole);
  return sink.load() == -1.0F ? 1 : 0;
}
