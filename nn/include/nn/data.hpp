#pragma once
// Datasets and a DataLoader: batching, seeded shuffling, drop-last, collation into tensors.

#include <autodiff/tensor.hpp>

#include <cstdint>
#include <memory>
#include <random>
#include <span>
#include <vector>

namespace nn {

using autodiff::Tensor;

struct Batch {
  Tensor inputs;
  Tensor targets;
};

class Dataset {
public:
  virtual ~Dataset() = default;
  virtual std::int64_t size() const = 0;
  // One example (inputs, target) as tensors without the batch dim.
  virtual Batch get(std::int64_t index) const = 0;
  // The examples at `indices`, stacked along a new first dim. The default stacks get(i); datasets
  // held in memory override it to copy rows straight into the batch.
  virtual Batch batch(std::span<const std::int64_t> indices) const;
  // A hint that batch(indices) comes next: datasets held in memory ask the CPU to bring those rows
  // into its caches now, so that the copy later finds them there (the DataLoader calls it for the
  // next batch while the current one trains). The default does nothing. It never fails: an index out
  // of range is skipped here and refused by batch().
  virtual void prefetch(std::span<const std::int64_t> indices) const;
};

// Rows of two tensors: inputs [N, ...] and targets [N, ...] (any dtypes).
class TensorDataset : public Dataset {
public:
  TensorDataset(Tensor inputs, Tensor targets);
  std::int64_t size() const override { return inputs_.size(0); }
  Batch get(std::int64_t index) const override;
  Batch batch(std::span<const std::int64_t> indices) const override;
  void prefetch(std::span<const std::int64_t> indices) const override;
  const Tensor& inputs() const { return inputs_; }
  const Tensor& targets() const { return targets_; }

private:
  Tensor inputs_, targets_;
};

// Images kept as bytes (a quarter of the memory of floats) and scaled to float32 per batch:
// inputs [N, pixels_per_image] scaled by `scale`, int64 labels [N].
class ByteImageDataset : public Dataset {
public:
  ByteImageDataset(std::vector<std::uint8_t> pixels, std::int64_t pixels_per_image, std::vector<std::int64_t> labels,
                   float scale = 1.0f / 255.0f);
  std::int64_t size() const override { return static_cast<std::int64_t>(labels_.size()); }
  Batch get(std::int64_t index) const override;
  Batch batch(std::span<const std::int64_t> indices) const override;
  void prefetch(std::span<const std::int64_t> indices) const override;

private:
  std::vector<std::uint8_t> pixels_;
  std::int64_t per_image_;
  std::vector<std::int64_t> labels_;
  float scale_;
};

struct DataLoaderOptions {
  std::int64_t batch_size = 64;
  bool shuffle = false;
  bool drop_last = false;
  std::uint64_t seed = 0; // the shuffle of epoch e uses seed + e, so runs and resumes reproduce
};

// Iterates over one epoch of batches: `for (const Batch& b : loader)`. Each range-for starts the
// next epoch (reshuffled when shuffle is on).
class DataLoader {
public:
  DataLoader(std::shared_ptr<const Dataset> data, DataLoaderOptions o);
  std::int64_t batches_per_epoch() const;
  std::int64_t epoch() const { return epoch_; }
  void set_epoch(std::int64_t e) { epoch_ = e; } // for resuming: the next epoch's shuffle

  class Iterator {
  public:
    const Batch& operator*() const { return batch_; }
    const Batch* operator->() const { return &batch_; }
    Iterator& operator++();
    bool operator==(const Iterator& o) const { return pos_ == o.pos_; }

  private:
    friend class DataLoader;
    Iterator(const DataLoader* l, std::int64_t pos);
    void load();
    const DataLoader* loader_;
    std::int64_t pos_;
    Batch batch_;
  };
  Iterator begin();
  Iterator end() const;

private:
  std::shared_ptr<const Dataset> data_;
  DataLoaderOptions o_;
  std::vector<std::int64_t> order_;
  std::int64_t epoch_ = 0;
  std::int64_t end_pos_ = 0;
};

// Synthetic 2-D classification data (inputs float32 [n, 2], int64 labels [n]), seeded.
TensorDataset make_moons(std::int64_t n, double noise, std::uint64_t seed);
TensorDataset make_circles(std::int64_t n, double noise, double factor, std::uint64_t seed);
TensorDataset make_spirals(std::int64_t n, int classes, double noise, std::uint64_t seed);

} // namespace nn
