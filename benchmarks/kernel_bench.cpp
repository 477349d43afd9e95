// The elementwise kernels (Note [Vectorised kernels], docs/design.md) against plain scalar loops in
// float32: the forward of an op, and a first-order step (forward, then the backward rule for a given
// adjoint), at sizes below and above the thread threshold, with 1 and 2 threads. The plain loops
// are compiled as a user's code would be (this file's flags: math-errno on, baseline x86-64).

#include <autodiff/parallel.hpp>
#include <autodiff/tape.hpp>
#include <autodiff/tensor.hpp>

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <span>
#include <vector>

using namespace autodiff;

namespace {

enum class Op { tanh, relu, sigmoid, exp, mul, sum };

Tensor apply(Op op, const Tensor& x, const Tensor& y) {
  switch (op) {
  case Op::tanh:
    return tanh(x);
  case Op::relu:
    return relu(x);
  case Op::sigmoid:
    return sigmoid(x);
  case Op::exp:
    return exp(x);
  case Op::mul:
    return mul(x, y);
  case Op::sum:
    return sum(x);
  }
  return x;
}

void set_rate(benchmark::State& state, std::int64_t n) {
  state.SetItemsProcessed(state.iterations() * n);
  state.counters["ns_per_elem"] = benchmark::Counter(
      static_cast<double>(n) * 1e-9, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}

// range(0): elements; range(1): threads.
void BM_Kernel(benchmark::State& state, Op op, bool backward) {
  const std::int64_t n = state.range(0);
  set_num_threads(static_cast<int>(state.range(1)));
  manual_seed(1);
  Tensor x = randn({n}), y = randn({n});
  const Tensor g = randn(op == Op::sum ? Shape{} : Shape{n});
  x.requires_grad(backward);
  Tape tape;
  for (auto _ : state) {
    tape.reset();
    Tensor r = apply(op, x, y);
    if (backward) {
      r.backward(g);
      benchmark::DoNotOptimize(x.grad());
      x.zero_grad();
    }
    benchmark::DoNotOptimize(r);
  }
  set_rate(state, n);
  set_num_threads(1);
}

// The same arithmetic as plain loops over std::vector: the forward value, then (backward) the
// gradient from the adjoint, in the op's usual formula. op is a template parameter, so that each
// loop is compiled for its op alone (a switch left inside the loop would stop it vectorising).
template <Op op> void BM_Loop(benchmark::State& state, bool backward) {
  const std::int64_t n = state.range(0);
  manual_seed(1);
  const Tensor xt = randn({n}), yt = randn({n}), gt = randn({n}); // alive while their spans are used
  const std::span<const float> x = xt.data<float>(), y = yt.data<float>(), g = gt.data<float>();
  std::vector<float> r(static_cast<std::size_t>(n)), ga(static_cast<std::size_t>(n));
  float s = 0;
  for (auto _ : state) {
    for (std::int64_t i = 0; i < n; ++i) {
      const float a = x[i];
      switch (op) {
      case Op::tanh:
        r[i] = std::tanh(a);
        break;
      case Op::relu:
        r[i] = a > 0 ? a : 0.0f;
        break;
      case Op::sigmoid:
        r[i] = 1.0f / (1.0f + std::exp(-a));
        break;
      case Op::exp:
        r[i] = std::exp(a);
        break;
      case Op::mul:
        r[i] = a * y[i];
        break;
      case Op::sum:
        s += a;
        break;
      }
    }
    if (backward) {
      for (std::int64_t i = 0; i < n; ++i) {
        switch (op) {
        case Op::tanh:
          ga[i] = g[i] * (1.0f - r[i] * r[i]);
          break;
        case Op::relu:
          ga[i] = x[i] > 0 ? g[i] : 0.0f;
          break;
        case Op::sigmoid:
          ga[i] = g[i] * r[i] * (1.0f - r[i]);
          break;
        case Op::exp:
          ga[i] = g[i] * r[i];
          break;
        case Op::mul:
          ga[i] = g[i] * y[i];
          break;
        case Op::sum:
          ga[i] = g[0];
          break;
        }
      }
    }
    benchmark::DoNotOptimize(r.data());
    benchmark::DoNotOptimize(ga.data());
    benchmark::DoNotOptimize(s);
    benchmark::ClobberMemory();
  }
  set_rate(state, n);
}

void kernel_args(benchmark::internal::Benchmark* b) {
  for (std::int64_t n : {1024, 65536, 1 << 20})
    for (std::int64_t t : {1, 2})
      b->Args({n, t});
  b->UseRealTime();
}
void loop_args(benchmark::internal::Benchmark* b) {
  for (std::int64_t n : {1024, 65536, 1 << 20})
    b->Args({n, 1});
  b->UseRealTime();
}

// BM_Loop_<op>/fwd against BM_Kernel_<op>/fwd, and the same for fwd_bwd.
#define TAPEGRAD_KERNEL_BENCH(op)                                                                                      \
  void BM_Loop_##op(benchmark::State& state, bool backward) { BM_Loop<Op::op>(state, backward); }                      \
  void BM_Kernel_##op(benchmark::State& state, bool backward) { BM_Kernel(state, Op::op, backward); }                  \
  BENCHMARK_CAPTURE(BM_Loop_##op, fwd, false)->Apply(loop_args);                                                       \
  BENCHMARK_CAPTURE(BM_Kernel_##op, fwd, false)->Apply(kernel_args);                                                   \
  BENCHMARK_CAPTURE(BM_Loop_##op, fwd_bwd, true)->Apply(loop_args);                                                    \
  BENCHMARK_CAPTURE(BM_Kernel_##op, fwd_bwd, true)->Apply(kernel_args);
TAPEGRAD_KERNEL_BENCH(tanh)
TAPEGRAD_KERNEL_BENCH(relu)
TAPEGRAD_KERNEL_BENCH(sigmoid)
TAPEGRAD_KERNEL_BENCH(exp)
TAPEGRAD_KERNEL_BENCH(mul)
TAPEGRAD_KERNEL_BENCH(sum)

// Ops that work a line at a time (kernels.hpp's each_line, line_extremum, run_sum's blocks) on
// [rows, 1000] float32, forward then backward, against the same as plain loops (one pass per line,
// as the kernels were before lanes and as one writes them). range(0): rows; range(1): threads. Rows
// split across the pool from 2 x 65536 elements (131 rows of 1000). `max_dim0` reduces the columns
// (1000 lines of stride 1000, lanes across the columns); `max_all` the whole tensor (ranges on
// the pool from 2 x 65536 elements); `softmax_dim0` a softmax along the rows, each line strided.
enum class Line { softmax, cross_entropy, logsumexp, max, norm, max_dim0, max_all, softmax_dim0 };
constexpr std::int64_t row_cols = 1000;
void BM_Kernel_rows(benchmark::State& state, Line op) {
  const std::int64_t rows = state.range(0);
  set_num_threads(static_cast<int>(state.range(1)));
  manual_seed(1);
  Tensor x = randn({rows, row_cols});
  const Tensor g = randn({rows, row_cols});
  std::vector<double> tv(static_cast<std::size_t>(rows));
  for (std::size_t i = 0; i < tv.size(); ++i)
    tv[i] = static_cast<double>(i % row_cols);
  const Tensor targets = from_vector(tv, {rows}, DType::int64);
  x.requires_grad(true);
  Tape tape;
  for (auto _ : state) {
    tape.reset();
    switch (op) {
    case Line::softmax:
      softmax(x, 1).backward(g);
      break;
    case Line::cross_entropy:
      cross_entropy(x, targets).backward();
      break;
    case Line::logsumexp:
      sum(logsumexp(x, 1)).backward();
      break;
    case Line::max:
      sum(max(x, 1)).backward();
      break;
    case Line::norm:
      sum(norm(x, 2, 1)).backward();
      break;
    case Line::max_dim0:
      sum(max(x, 0)).backward();
      break;
    case Line::max_all:
      max(x).backward();
      break;
    case Line::softmax_dim0:
      softmax(x, 0).backward(g);
      break;
    }
    benchmark::DoNotOptimize(x.grad());
    x.zero_grad();
  }
  set_rate(state, rows * row_cols);
  set_num_threads(1);
}
void BM_Loop_rows(benchmark::State& state, Line op) {
  const std::int64_t rows = state.range(0);
  manual_seed(1);
  const Tensor xt = randn({rows, row_cols}), gt = randn({rows, row_cols});
  const std::span<const float> x = xt.data<float>(), g = gt.data<float>();
  std::vector<float> r(x.size()), ga(x.size());
  const auto extremum = [&](std::size_t b, std::size_t n, std::size_t stride) { // the one-pass rule
    float best = x[b];
    std::size_t at = 0;
    for (std::size_t k = 1; k < n && best == best; ++k)
      if (x[b + k * stride] > best || x[b + k * stride] != x[b + k * stride]) best = x[b + k * stride], at = k;
    return at;
  };
  for (auto _ : state) {
    std::fill(ga.begin(), ga.end(), 0.0f); // the backward of a max writes the winners into zeros
    if (op == Line::softmax_dim0) {        // a strided loop per column, as the one-line kernel was
      for (std::size_t c = 0; c < row_cols; ++c) {
        const auto n = static_cast<std::size_t>(rows);
        float m = x[c];
        for (std::size_t k = 1; k < n; ++k)
          m = std::max(m, x[k * row_cols + c]);
        double sum = 0;
        for (std::size_t k = 0; k < n; ++k)
          sum += r[k * row_cols + c] = std::exp(x[k * row_cols + c] - m);
        const float inv = static_cast<float>(1.0 / sum);
        double dot = 0;
        for (std::size_t k = 0; k < n; ++k)
          dot += g[k * row_cols + c] * (r[k * row_cols + c] *= inv);
        for (std::size_t k = 0; k < n; ++k)
          ga[k * row_cols + c] = r[k * row_cols + c] * (g[k * row_cols + c] - static_cast<float>(dot));
      }
    } else if (op == Line::max_all) {
      ga[extremum(0, x.size(), 1)] = 1;
    } else if (op == Line::max_dim0) {
      for (std::size_t c = 0; c < row_cols; ++c)
        ga[extremum(c, static_cast<std::size_t>(rows), row_cols) * row_cols + c] = 1;
    }
    for (std::int64_t i = 0; i < rows && op != Line::max_all && op != Line::max_dim0 && op != Line::softmax_dim0; ++i) {
      const std::size_t b = static_cast<std::size_t>(i * row_cols);
      if (op == Line::max) {
        ga[b + extremum(b, row_cols, 1)] = 1;
        continue;
      }
      if (op == Line::norm) {
        double s = 0;
        for (std::size_t k = 0; k < row_cols; ++k)
          s += static_cast<double>(x[b + k]) * x[b + k];
        const float nrm = static_cast<float>(std::sqrt(s));
        for (std::size_t k = 0; k < row_cols; ++k)
          ga[b + k] = x[b + k] / nrm;
        continue;
      }
      float m = x[b];
      for (std::size_t k = 1; k < row_cols; ++k)
        m = std::max(m, x[b + k]);
      double sum = 0;
      for (std::size_t k = 0; k < row_cols; ++k)
        sum += r[b + k] = std::exp(x[b + k] - m);
      if (op == Line::logsumexp) {
        const float lse = static_cast<float>(m + std::log(sum));
        for (std::size_t k = 0; k < row_cols; ++k)
          ga[b + k] = std::exp(x[b + k] - lse);
        continue;
      }
      const float inv = static_cast<float>(1.0 / sum);
      for (std::size_t k = 0; k < row_cols; ++k)
        r[b + k] *= inv;
      double dot = 0;
      for (std::size_t k = 0; k < row_cols; ++k)
        dot += g[b + k] * r[b + k];
      for (std::size_t k = 0; k < row_cols; ++k)
        ga[b + k] = r[b + k] * (g[b + k] - static_cast<float>(dot));
    }
    benchmark::DoNotOptimize(ga.data());
    benchmark::ClobberMemory();
  }
  set_rate(state, rows * row_cols);
}
void row_args(benchmark::internal::Benchmark* b) {
  for (std::int64_t rows : {16, 128, 1024})
    for (std::int64_t t : {1, 2})
      b->Args({rows, t});
  b->UseRealTime();
}
void loop_row_args(benchmark::internal::Benchmark* b) {
  for (std::int64_t rows : {16, 128, 1024})
    b->Arg(rows);
  b->UseRealTime();
}
BENCHMARK_CAPTURE(BM_Loop_rows, softmax_fwd_bwd, Line::softmax)->Apply(loop_row_args);
BENCHMARK_CAPTURE(BM_Kernel_rows, softmax_fwd_bwd, Line::softmax)->Apply(row_args);
BENCHMARK_CAPTURE(BM_Kernel_rows, cross_entropy_fwd_bwd, Line::cross_entropy)->Apply(row_args);
BENCHMARK_CAPTURE(BM_Loop_rows, logsumexp_fwd_bwd, Line::logsumexp)->Apply(loop_row_args);
BENCHMARK_CAPTURE(BM_Kernel_rows, logsumexp_fwd_bwd, Line::logsumexp)->Apply(row_args);
BENCHMARK_CAPTURE(BM_Loop_rows, max_fwd_bwd, Line::max)->Apply(loop_row_args);
BENCHMARK_CAPTURE(BM_Kernel_rows, max_fwd_bwd, Line::max)->Apply(row_args);
BENCHMARK_CAPTURE(BM_Loop_rows, norm_fwd_bwd, Line::norm)->Apply(loop_row_args);
BENCHMARK_CAPTURE(BM_Kernel_rows, norm_fwd_bwd, Line::norm)->Apply(row_args);
BENCHMARK_CAPTURE(BM_Loop_rows, max_dim0_fwd_bwd, Line::max_dim0)->Apply(loop_row_args);
BENCHMARK_CAPTURE(BM_Kernel_rows, max_dim0_fwd_bwd, Line::max_dim0)->Apply(row_args);
BENCHMARK_CAPTURE(BM_Loop_rows, softmax_dim0_fwd_bwd, Line::softmax_dim0)->Apply(loop_row_args);
BENCHMARK_CAPTURE(BM_Kernel_rows, softmax_dim0_fwd_bwd, Line::softmax_dim0)->Apply(row_args);
BENCHMARK_CAPTURE(BM_Loop_rows, max_all_fwd_bwd, Line::max_all)->Apply(loop_row_args);
BENCHMARK_CAPTURE(BM_Kernel_rows, max_all_fwd_bwd, Line::max_all)->Apply(row_args);

} // namespace

BENCHMARK_MAIN();
