// Tensor engine overhead and throughput: a chain of 1000 tiny ops (the per-op cost of recording and
// sweeping), and a 1024-1024-1024 MLP at batch 256 against the same computation written directly
// with cblas_sgemm and loops.

#include <autodiff/tensor.hpp>

#include <benchmark/benchmark.h>
#include <cblas.h>

#include <algorithm>
#include <vector>

using namespace autodiff;

namespace {

// ns per recorded op, forward + backward, from the time per iteration.
void set_per_op(benchmark::State& state, double ops) {
  state.counters["ns_per_op"] =
      benchmark::Counter(ops * 1e-9, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}

void BM_TensorChain1000(benchmark::State& state) {
  Tape tape;
  Tensor x = randn({16});
  x.requires_grad(true);
  constexpr int rounds = 333; // 3 ops a round, plus the final sum: 1000 ops
  for (auto _ : state) {
    tape.reset();
    Tensor h = x;
    for (int i = 0; i < rounds; ++i)
      h = tanh(h * 0.9 + x);
    Tensor y = sum(h);
    y.backward();
    x.zero_grad();
    benchmark::DoNotOptimize(y);
  }
  set_per_op(state, 3 * rounds + 1);
}
BENCHMARK(BM_TensorChain1000);

constexpr int batch = 256, width = 1024;

void BM_MlpTensor(benchmark::State& state) {
  Tape tape;
  manual_seed(1);
  const Tensor x = randn({batch, width}), y = randn({batch, width});
  Tensor w1 = randn({width, width}) * 0.03, b1 = zeros({width}), w2 = randn({width, width}) * 0.03, b2 = zeros({width});
  for (Tensor* p : {&w1, &b1, &w2, &b2})
    p->requires_grad(true);
  std::size_t allocs_before = 0;
  std::int64_t steps = 0;
  for (auto _ : state) {
    if (steps++ == 1) allocs_before = tensor_memory_stats().heap_allocations; // after the warm-up step
    tape.reset();
    const Tensor loss = mse_loss(matmul(relu(matmul(x, w1) + b1), w2) + b2, y);
    loss.backward();
    benchmark::DoNotOptimize(w1.grad());
    for (Tensor* p : {&w1, &b1, &w2, &b2})
      p->zero_grad();
  }
  // Heap allocations of tensor storage per training step once the caching allocator is warm.
  if (steps > 1)
    state.counters["allocs/step"] =
        static_cast<double>(tensor_memory_stats().heap_allocations - allocs_before) / static_cast<double>(steps - 1);
}
BENCHMARK(BM_MlpTensor)->Unit(benchmark::kMillisecond)->UseRealTime();

// The same network in PyTorch's Linear layout (weights [out, in]) through linear().
void BM_MlpTensorLinear(benchmark::State& state) {
  Tape tape;
  manual_seed(1);
  const Tensor x = randn({batch, width}), y = randn({batch, width});
  Tensor w1 = randn({width, width}) * 0.03, b1 = zeros({width}), w2 = randn({width, width}) * 0.03, b2 = zeros({width});
  for (Tensor* p : {&w1, &b1, &w2, &b2})
    p->requires_grad(true);
  for (auto _ : state) {
    tape.reset();
    const Tensor loss = mse_loss(linear(relu(linear(x, w1, b1)), w2, b2), y);
    loss.backward();
    benchmark::DoNotOptimize(w1.grad());
    for (Tensor* p : {&w1, &b1, &w2, &b2})
      p->zero_grad();
  }
}
BENCHMARK(BM_MlpTensorLinear)->Unit(benchmark::kMillisecond)->UseRealTime();

// The same forward and backward with no framework: 6 sgemm calls and plain loops.
void BM_MlpCblas(benchmark::State& state) {
  manual_seed(1);
  const Tensor xt = randn({batch, width}), yt = randn({batch, width});
  const Tensor w1t = randn({width, width}) * 0.03, w2t = randn({width, width}) * 0.03;
  const float *x = xt.data<float>().data(), *y = yt.data<float>().data(), *w1 = w1t.data<float>().data(),
              *w2 = w2t.data<float>().data();
  const std::size_t act = std::size_t{batch} * width, par = std::size_t{width} * width;
  std::vector<float> b1(width, 0), b2(width, 0), pre(act), h(act), out(act), gout(act), gh(act), gw1(par), gw2(par),
      gb1(width), gb2(width);
  for (auto _ : state) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, batch, width, width, 1, x, width, w1, width, 0, pre.data(),
                width);
    for (std::size_t i = 0; i < act; ++i) {
      pre[i] += b1[i % width];
      h[i] = pre[i] > 0 ? pre[i] : 0;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, batch, width, width, 1, h.data(), width, w2, width, 0,
                out.data(), width);
    double loss = 0;
    for (std::size_t i = 0; i < act; ++i) {
      const float d = out[i] + b2[i % width] - y[i];
      loss += double{d} * d;
      gout[i] = 2 * d / static_cast<float>(act);
    }
    benchmark::DoNotOptimize(loss);
    std::fill(gb2.begin(), gb2.end(), 0.0f);
    for (std::size_t i = 0; i < act; ++i)
      gb2[i % width] += gout[i];
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, width, width, batch, 1, h.data(), width, gout.data(), width, 0,
                gw2.data(), width);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, batch, width, width, 1, gout.data(), width, w2, width, 0,
                gh.data(), width);
    for (std::size_t i = 0; i < act; ++i)
      gh[i] = pre[i] > 0 ? gh[i] : 0;
    std::fill(gb1.begin(), gb1.end(), 0.0f);
    for (std::size_t i = 0; i < act; ++i)
      gb1[i % width] += gh[i];
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, width, width, batch, 1, x, width, gh.data(), width, 0,
                gw1.data(), width);
    benchmark::DoNotOptimize(gw1.data());
  }
}
BENCHMARK(BM_MlpCblas)->Unit(benchmark::kMillisecond)->UseRealTime();

} // namespace

BENCHMARK_MAIN();
