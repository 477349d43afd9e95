// A training batch gathered from a shuffled dataset held in memory (nn/src/data.cpp): the demo's
// ByteImageDataset (Fashion-MNIST's size: 60,000 images of 784 bytes, scaled to float32 per batch)
// and a TensorDataset of float32 rows, against the same copies as plain loops (what batch() was
// before it prefetched the rows 8 places ahead). One batch of 128 per iteration, in a shuffled order.

#include <nn/data.hpp>

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstring>
#include <numeric>
#include <random>
#include <span>
#include <vector>

namespace {

constexpr std::int64_t images = 60000, pixels = 784, batch = 128;

struct Set {
  std::vector<std::uint8_t> bytes;
  std::vector<float> floats;
  std::vector<std::int64_t> labels, order;
  Set() : bytes(static_cast<std::size_t>(images * pixels)), labels(static_cast<std::size_t>(images)) {
    std::mt19937 rng(1);
    for (auto& b : bytes)
      b = static_cast<std::uint8_t>(rng());
    floats.assign(bytes.begin(), bytes.end());
    for (auto& l : labels)
      l = static_cast<std::int64_t>(rng() % 10);
    order.resize(static_cast<std::size_t>(images));
    std::iota(order.begin(), order.end(), 0);
    std::shuffle(order.begin(), order.end(), rng);
  }
  // The indices of the i-th batch of the shuffled order (wrapping around).
  std::span<const std::int64_t> indices(std::int64_t i) const {
    const std::int64_t first = (i * batch) % (images - batch);
    return {order.data() + first, static_cast<std::size_t>(batch)};
  }
};
const Set& set() {
  static const Set s;
  return s;
}

// One shuffled batch a iteration from `data`, through nn's batch().
void time_batches(benchmark::State& state, const nn::Dataset& data) {
  const Set& s = set();
  std::int64_t i = 0;
  for (auto _ : state)
    benchmark::DoNotOptimize(data.batch(s.indices(i++)));
}
void BM_ByteImageDataset(benchmark::State& state) {
  const Set& s = set();
  time_batches(state, nn::ByteImageDataset(s.bytes, pixels, s.labels));
}
void BM_Loop_byte_batch(benchmark::State& state) {
  const Set& s = set();
  std::vector<float> x(static_cast<std::size_t>(batch * pixels));
  std::vector<std::int64_t> y(static_cast<std::size_t>(batch));
  const float scale = 1.0f / 255.0f;
  std::int64_t i = 0;
  for (auto _ : state) {
    const auto idx = s.indices(i++);
    for (std::size_t k = 0; k < idx.size(); ++k) {
      const std::uint8_t* src = s.bytes.data() + idx[k] * pixels;
      float* row = x.data() + k * pixels;
      for (std::int64_t p = 0; p < pixels; ++p)
        row[p] = static_cast<float>(src[p]) * scale;
      y[k] = s.labels[static_cast<std::size_t>(idx[k])];
    }
    benchmark::DoNotOptimize(x.data());
    benchmark::ClobberMemory();
  }
}
void BM_TensorDataset(benchmark::State& state) {
  const Set& s = set();
  time_batches(state, nn::TensorDataset(autodiff::from_vector(s.floats, {images, pixels}),
                                        autodiff::from_vector(s.labels, {images})));
}
void BM_Loop_float_batch(benchmark::State& state) {
  const Set& s = set();
  std::vector<float> x(static_cast<std::size_t>(batch * pixels));
  std::int64_t i = 0;
  for (auto _ : state) {
    const auto idx = s.indices(i++);
    for (std::size_t k = 0; k < idx.size(); ++k)
      std::memcpy(x.data() + k * pixels, s.floats.data() + idx[k] * pixels, pixels * sizeof(float));
    benchmark::DoNotOptimize(x.data());
    benchmark::ClobberMemory();
  }
}
BENCHMARK(BM_Loop_byte_batch)->UseRealTime();
BENCHMARK(BM_ByteImageDataset)->UseRealTime();
BENCHMARK(BM_Loop_float_batch)->UseRealTime();
BENCHMARK(BM_TensorDataset)->UseRealTime();

} // namespace

BENCHMARK_MAIN();
