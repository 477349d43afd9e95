#pragma once
// Data parallelism on the cores of one machine: a batch split into shards, one per thread, each
// recorded on its own tape, their gradients summed into the parameters. docs/design.md,
// Note [Data-parallel steps].

#include <nn/module.hpp>

#include <cstdint>
#include <functional>

namespace nn {

using autodiff::Reduction;

// What one shard's computation gives back: its loss (a scalar) and, if wanted, an output with one
// row per input row (the logits, say, for an accuracy); an undefined output is fine.
struct ShardResult {
  Tensor loss;
  Tensor output;
};
using ShardFn = std::function<ShardResult(const Tensor& inputs, const Tensor& targets)>;

struct ParallelOptions {
  // How fn reduces its rows: mean (each shard's loss weighs rows / batch rows) or sum (weight 1).
  // Reduction::none is refused: a loss per row has no single backward.
  Reduction reduction = Reduction::mean;
  // The fewest rows a shard gets: a batch of n rows is split into min(get_num_threads(),
  // n / min_rows) shards (at least one). Below some 32 rows a shard's GEMMs are too small to pay for
  // the second thread.
  std::int64_t min_rows = 32;
};

// The forward and backward of one batch, as
//     ShardResult r = fn(inputs, targets); r.loss.backward();
// would compute them, with the rows (dim 0 of inputs and targets) split into contiguous shards that
// run at the same time on autodiff's thread pool (autodiff/parallel.hpp), each on its own thread
// and tape. Each shard backpropagates its loss times its weight, so the parameters' .grad()
// receive the batch's gradient (up to rounding: the shards sum in another order), accumulated as
// backward() accumulates. Returns the batch's loss and the shards' outputs concatenated, both
// detached. With one shard (one thread, or a small batch) it is exactly the two lines above.
//
// fn runs concurrently on several threads: it may read the model but must not write anything the
// shards share. Random numbers (nn::Dropout) are drawn on each shard from a generator seeded from
// the calling thread's, so a run is reproducible for a given thread count; each worker's own
// generator is restored afterwards. The first exception of any shard is rethrown here, after all
// shards have stopped; gradients of the shards that finished are left accumulated. Calling it with
// gradients disabled (inside a NoGradGuard) is an error: grad mode is per thread.
ShardResult parallel_backward(const Tensor& inputs, const Tensor& targets, const ShardFn& fn,
                              const ParallelOptions& options = {});

} // namespace nn
