// Datasets and the DataLoader.

#include <nn/data.hpp>

#include <autodiff/error.hpp>
#include <autodiff/parallel.hpp>
#include <autodiff/tensor.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numbers>
#include <numeric>

namespace nn {

using autodiff::DType;

namespace {
[[noreturn]] void fail(const std::string& msg) { throw autodiff::Error("nn: " + msg); }

// The product of the dims after the first, not numel / rows: that is 0 when there are no rows.
std::size_t row_bytes(const Tensor& t) {
  std::int64_t n = 1;
  for (int d = 1; d < t.dim(); ++d)
    n *= t.size(d);
  return static_cast<std::size_t>(n) * autodiff::dtype_size(t.dtype());
}
const std::byte* bytes_of(const Tensor& t) {
  switch (t.dtype()) {
  case DType::float32:
    return reinterpret_cast<const std::byte*>(t.data<float>().data());
  case DType::float64:
    return reinterpret_cast<const std::byte*>(t.data<double>().data());
  case DType::int64:
    return reinterpret_cast<const std::byte*>(t.data<std::int64_t>().data());
  }
  return nullptr;
}
std::byte* mutable_bytes_of(Tensor& t) {
  switch (t.dtype()) {
  case DType::float32:
    return reinterpret_cast<std::byte*>(t.mutable_data<float>().data());
  case DType::float64:
    return reinterpret_cast<std::byte*>(t.mutable_data<double>().data());
  case DType::int64:
    return reinterpret_cast<std::byte*>(t.mutable_data<std::int64_t>().data());
  }
  return nullptr;
}
// Asks for the cache line holding p. GCC 12 deletes __builtin_prefetch calls in the loop below as
// dead code (its DCE pass; -fno-tree-dce keeps them), so on x86 the instruction is written out.
inline void prefetch_line(const std::byte* p) {
#if defined(__x86_64__) && defined(__GNUC__)
  asm volatile("prefetcht0 %0" : : "m"(*reinterpret_cast<const char*>(p)));
#else
  __builtin_prefetch(p);
#endif
}

// Asks for the lines of a row of `bytes` bytes at `row`: its first 4096 bytes (a longer row is a
// sequential read the hardware prefetcher follows).
inline void prefetch_row(const std::byte* row, std::size_t bytes) {
  constexpr std::size_t line = 64, most = 4096;
  const std::size_t n = std::min(bytes, most);
  for (std::size_t b = 0; b < n; b += line)
    prefetch_line(row + b);
  if (n > 0) prefetch_line(row + n - 1); // a row that does not start on a line ends on one more
}
// The rows at `indices` (those in [0, count)) of an array of `count` rows of `bytes` bytes.
void prefetch_rows(const std::byte* base, std::size_t bytes, std::int64_t count,
                   std::span<const std::int64_t> indices) {
  for (const std::int64_t i : indices)
    if (i >= 0 && i < count) prefetch_row(base + static_cast<std::size_t>(i) * bytes, bytes);
}

// copy(k, row) for the rows of a batch, row k being the `bytes` bytes at base + indices[k] * bytes.
// Why the prefetch: a shuffled batch reads rows scattered over the whole set (47 MB of Fashion-MNIST
// bytes), each a few cache lines the hardware prefetcher cannot guess, so every row waited for
// memory: 40 us a demo batch of 128 images. The lines of the row `ahead` places on are requested
// while this one is copied: 16-20 us (4, 8 and 16 places measured alike, within the VM's noise).
// Why the split: a batch of at least two ranges of split_bytes of output has its rows copied across
// the pool (autodiff::parallel_for; range t on thread t, as the rows split of a step reads them).
// At 2 threads the cores had both read the previous batch from the buffer the allocator hands back,
// and a core writing lines the other has read waits for them (6.9x a local write on the far VM,
// benchmarks/coherence_bench). The demo's batch in epoch_compare's 2-thread step (features split)
// took 69-103 us whole on the caller, 39-62 us split (36-48 us at 1 thread). `out_bytes` is a row's
// size in the output. The indices are checked by the caller; `copy(k, row)` writes output row k only.
template <class Copy> void each_row_prefetched(const std::byte* base, std::size_t bytes, std::size_t out_bytes,
                                               std::span<const std::int64_t> indices, const Copy& copy) {
  constexpr std::size_t ahead = 8;
  constexpr std::size_t split_bytes = 65536; // some 3-6 us of copying, against a 1 us pool round trip
  const auto rows = [&](std::int64_t r0, std::int64_t r1) {
    const auto first = static_cast<std::size_t>(r0), last = static_cast<std::size_t>(r1);
    const auto prefetch = [&](std::size_t k) {
      if (k < last) prefetch_row(base + static_cast<std::size_t>(indices[k]) * bytes, bytes);
    };
    for (std::size_t k = first; k < first + ahead; ++k)
      prefetch(k);
    for (std::size_t k = first; k < last; ++k) {
      prefetch(k + ahead);
      copy(k, base + static_cast<std::size_t>(indices[k]) * bytes);
    }
  };
  const auto grain = static_cast<std::int64_t>(split_bytes / std::max<std::size_t>(out_bytes, 1)) + 1;
  autodiff::parallel_for(static_cast<std::int64_t>(indices.size()), grain, rows);
}

// Rows `indices` of t (checked by the caller), as a new contiguous tensor.
Tensor gather_rows(const Tensor& t, std::span<const std::int64_t> indices) {
  autodiff::Shape s = t.shape();
  s[0] = static_cast<std::int64_t>(indices.size());
  Tensor out = autodiff::empty(s, t.dtype()); // every byte is written below
  const std::size_t rb = row_bytes(t);
  std::byte* dst = mutable_bytes_of(out);
  each_row_prefetched(bytes_of(t), rb, rb, indices,
                      [&](std::size_t k, const std::byte* row) { std::memcpy(dst + k * rb, row, rb); });
  return out;
}
} // namespace

void Dataset::prefetch(std::span<const std::int64_t> /*indices*/) const {}

Batch Dataset::batch(std::span<const std::int64_t> indices) const {
  std::vector<Tensor> xs, ys;
  for (auto i : indices) {
    Batch b = get(i);
    xs.push_back(b.inputs);
    ys.push_back(b.targets);
  }
  autodiff::NoGradGuard guard;
  return {autodiff::stack(xs, 0), autodiff::stack(ys, 0)};
}

TensorDataset::TensorDataset(Tensor inputs, Tensor targets) : inputs_(inputs.detach()), targets_(targets.detach()) {
  if (inputs_.dim() < 1 || targets_.dim() < 1 || inputs_.size(0) != targets_.size(0))
    fail(fmt::format("TensorDataset: inputs {} and targets {} need the same first dim", inputs_.shape(),
                     targets_.shape()));
}

Batch TensorDataset::get(std::int64_t index) const {
  if (index < 0 || index >= size()) fail(fmt::format("TensorDataset: index {} out of range [0, {})", index, size()));
  const std::int64_t i[1] = {index};
  Batch b = batch(i);
  autodiff::Shape xs, ys;
  for (int d = 1; d < b.inputs.dim(); ++d)
    xs.push_back(b.inputs.size(d));
  for (int d = 1; d < b.targets.dim(); ++d)
    ys.push_back(b.targets.size(d));
  return {autodiff::reshape(b.inputs, xs), autodiff::reshape(b.targets, ys)};
}

Batch TensorDataset::batch(std::span<const std::int64_t> indices) const {
  for (auto i : indices)
    if (i < 0 || i >= size()) fail(fmt::format("TensorDataset: index {} out of range [0, {})", i, size()));
  return {gather_rows(inputs_, indices), gather_rows(targets_, indices)};
}

void TensorDataset::prefetch(std::span<const std::int64_t> indices) const {
  prefetch_rows(bytes_of(inputs_), row_bytes(inputs_), size(), indices);
  prefetch_rows(bytes_of(targets_), row_bytes(targets_), size(), indices);
}

ByteImageDataset::ByteImageDataset(std::vector<std::uint8_t> pixels, std::int64_t per_image,
                                   std::vector<std::int64_t> labels, float scale)
    : pixels_(std::move(pixels)), per_image_(per_image), labels_(std::move(labels)), scale_(scale) {
  // Checked as a tensor shape [images, per_image]: labels.size() * per_image could wrap to the pixel count.
  const std::int64_t dims[2] = {static_cast<std::int64_t>(labels_.size()), per_image};
  const auto count = autodiff::checked_numel(dims);
  if (per_image <= 0 || !count || pixels_.size() != static_cast<std::size_t>(*count))
    fail(fmt::format("ByteImageDataset: {} pixel bytes do not make {} images of {} pixels", pixels_.size(),
                     labels_.size(), per_image));
}

Batch ByteImageDataset::get(std::int64_t index) const {
  const std::int64_t i[1] = {index};
  Batch b = batch(i);
  return {autodiff::reshape(b.inputs, {per_image_}), autodiff::reshape(b.targets, autodiff::Shape{})};
}

Batch ByteImageDataset::batch(std::span<const std::int64_t> indices) const {
  const auto n = static_cast<std::int64_t>(indices.size());
  // Every element is written below: no zero fill first (400 KiB a demo batch).
  Tensor x = autodiff::empty({n, per_image_});
  Tensor y = autodiff::empty({n}, DType::int64);
  float* dst = x.mutable_data<float>().data();
  std::int64_t* lab = y.mutable_data<std::int64_t>().data();
  const auto per = static_cast<std::size_t>(per_image_);
  for (const std::int64_t i : indices)
    if (i < 0 || i >= size()) fail(fmt::format("ByteImageDataset: index {} out of range [0, {})", i, size()));
  const float scale = scale_;
  each_row_prefetched(reinterpret_cast<const std::byte*>(pixels_.data()), per, per * sizeof(float), indices,
                      [&](std::size_t k, const std::byte* bytes) {
                        const auto* src = reinterpret_cast<const std::uint8_t*>(bytes);
                        float* row = dst + k * per;
                        for (std::size_t p = 0; p < per; ++p)
                          row[p] = static_cast<float>(src[p]) * scale;
                        lab[k] = labels_[static_cast<std::size_t>(indices[k])];
                      });
  return {x, y};
}

void ByteImageDataset::prefetch(std::span<const std::int64_t> indices) const {
  prefetch_rows(reinterpret_cast<const std::byte*>(pixels_.data()), static_cast<std::size_t>(per_image_), size(),
                indices);
  prefetch_rows(reinterpret_cast<const std::byte*>(labels_.data()), sizeof(std::int64_t), size(), indices);
}

DataLoader::DataLoader(std::shared_ptr<const Dataset> data, DataLoaderOptions o) : data_(std::move(data)), o_(o) {
  if (!data_) fail("DataLoader: null dataset");
  if (o.batch_size <= 0) fail(fmt::format("DataLoader: batch_size must be positive, got {}", o.batch_size));
  if (data_->size() == 0) fail("DataLoader: the dataset is empty");
}

std::int64_t DataLoader::batches_per_epoch() const {
  const std::int64_t n = data_->size();
  return o_.drop_last ? n / o_.batch_size : (n + o_.batch_size - 1) / o_.batch_size;
}

DataLoader::Iterator DataLoader::begin() {
  const std::int64_t n = data_->size();
  order_.resize(static_cast<std::size_t>(n));
  std::iota(order_.begin(), order_.end(), 0);
  if (o_.shuffle) {
    std::mt19937_64 rng(o_.seed + static_cast<std::uint64_t>(epoch_));
    // Fisher-Yates with our own index draws, so the order is the same on every standard library.
    for (std::int64_t i = n - 1; i > 0; --i) {
      const auto j = static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(i + 1));
      std::swap(order_[static_cast<std::size_t>(i)], order_[static_cast<std::size_t>(j)]);
    }
  }
  ++epoch_;
  end_pos_ = batches_per_epoch();
  return Iterator(this, 0);
}

DataLoader::Iterator DataLoader::end() const { return Iterator(this, end_pos_); }

DataLoader::Iterator::Iterator(const DataLoader* l, std::int64_t pos) : loader_(l), pos_(pos) {
  if (pos_ < loader_->end_pos_) load();
}

void DataLoader::Iterator::load() {
  const std::int64_t bs = loader_->o_.batch_size;
  const std::int64_t first = pos_ * bs;
  const std::int64_t count = std::min(bs, loader_->data_->size() - first);
  batch_ = loader_->data_->batch(
      std::span<const std::int64_t>(loader_->order_.data() + first, static_cast<std::size_t>(count)));
  if (pos_ + 1 < loader_->end_pos_) { // the next batch's rows, towards the cache while this one trains
    const std::int64_t next = std::min(bs, loader_->data_->size() - first - count);
    loader_->data_->prefetch(
        std::span<const std::int64_t>(loader_->order_.data() + first + count, static_cast<std::size_t>(next)));
  }
}

DataLoader::Iterator& DataLoader::Iterator::operator++() {
  ++pos_;
  if (pos_ < loader_->end_pos_)
    load();
  else
    batch_ = {};
  return *this;
}

namespace {
TensorDataset points(const std::vector<float>& xy, const std::vector<std::int64_t>& labels) {
  const auto n = static_cast<std::int64_t>(labels.size());
  return TensorDataset(autodiff::from_vector(xy, {n, 2}), autodiff::from_vector(labels, {n}));
}
} // namespace

TensorDataset make_moons(std::int64_t n, double noise, std::uint64_t seed) {
  if (n < 2) fail(fmt::format("make_moons: need at least 2 points, got {}", n));
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> gauss(0.0, 1.0);
  std::vector<float> xy;
  std::vector<std::int64_t> labels;
  const std::int64_t outer = n / 2, inner = n - outer;
  for (std::int64_t i = 0; i < outer; ++i) {
    const double t =
        std::numbers::pi * static_cast<double>(i) / static_cast<double>(std::max<std::int64_t>(outer - 1, 1));
    xy.push_back(static_cast<float>(std::cos(t) + noise * gauss(rng)));
    xy.push_back(static_cast<float>(std::sin(t) + noise * gauss(rng)));
    labels.push_back(0);
  }
  for (std::int64_t i = 0; i < inner; ++i) {
    const double t =
        std::numbers::pi * static_cast<double>(i) / static_cast<double>(std::max<std::int64_t>(inner - 1, 1));
    xy.push_back(static_cast<float>(1 - std::cos(t) + noise * gauss(rng)));
    xy.push_back(static_cast<float>(0.5 - std::sin(t) + noise * gauss(rng)));
    labels.push_back(1);
  }
  return points(xy, labels);
}

TensorDataset make_circles(std::int64_t n, double noise, double factor, std::uint64_t seed) {
  if (n < 2 || !(factor > 0 && factor < 1))
    fail(fmt::format("make_circles: need n >= 2 and 0 < factor < 1, got {} and {}", n, factor));
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> gauss(0.0, 1.0);
  std::vector<float> xy;
  std::vector<std::int64_t> labels;
  for (std::int64_t i = 0; i < n; ++i) {
    const bool in = i >= n / 2;
    const double t = 2 * std::numbers::pi * static_cast<double>(i) / static_cast<double>(n / 2 + 1);
    const double r = in ? factor : 1.0;
    xy.push_back(static_cast<float>(r * std::cos(t) + noise * gauss(rng)));
    xy.push_back(static_cast<float>(r * std::sin(t) + noise * gauss(rng)));
    labels.push_back(in ? 1 : 0);
  }
  return points(xy, labels);
}

TensorDataset make_spirals(std::int64_t n, int classes, double noise, std::uint64_t seed) {
  if (n < classes || classes < 2)
    fail(fmt::format("make_spirals: need classes >= 2 and n >= classes, got {} and {}", classes, n));
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> gauss(0.0, 1.0);
  std::vector<float> xy;
  std::vector<std::int64_t> labels;
  const std::int64_t per = n / classes;
  for (int c = 0; c < classes; ++c) {
    const std::int64_t count = c + 1 == classes ? n - per * (classes - 1) : per;
    for (std::int64_t i = 0; i < count; ++i) {
      const double r = static_cast<double>(i) / static_cast<double>(std::max<std::int64_t>(count, 1));
      const double t = 2 * std::numbers::pi * c / classes + 4 * r + noise * gauss(rng);
      xy.push_back(static_cast<float>(r * std::sin(t)));
      xy.push_back(static_cast<float>(r * std::cos(t)));
      labels.push_back(c);
    }
  }
  return points(xy, labels);
}

} // namespace nn
