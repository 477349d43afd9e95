// nn::parallel_backward (docs/design.md, Note [Data-parallel steps]).
#include <nn/parallel.hpp>

#include <autodiff/parallel.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

namespace nn {

namespace {
[[noreturn]] void fail(const std::string& what) { throw autodiff::Error("nn: parallel_backward: " + what); }

Tensor checked_loss(const ShardResult& r, std::int64_t rows) {
  if (!r.loss.defined()) fail(fmt::format("the shard of {} rows returned an undefined loss", rows));
  if (r.loss.numel() != 1)
    fail(fmt::format("the shard of {} rows returned a loss of shape {}; it must be a scalar (reduce it)", rows,
                     r.loss.shape()));
  if (r.output.defined() && (r.output.dim() == 0 || r.output.size(0) != rows))
    fail(fmt::format("the shard of {} rows returned an output of shape {}; it must have one row per input row", rows,
                     r.output.shape()));
  return r.loss;
}

} // namespace

ShardResult parallel_backward(const Tensor& inputs, const Tensor& targets, const ShardFn& fn,
                              const ParallelOptions& options) {
  if (!fn) fail("no function given");
  if (!inputs.defined() || !targets.defined()) fail("inputs and targets must be defined tensors");
  if (inputs.dim() == 0 || targets.dim() == 0 || inputs.size(0) != targets.size(0))
    fail(fmt::format("inputs {} and targets {} must have the same number of rows (dim 0)", inputs.shape(),
                     targets.shape()));
  if (options.reduction == Reduction::none) fail("reduction none is not supported: the loss must be a scalar");
  if (options.min_rows < 1) fail(fmt::format("min_rows must be >= 1, got {}", options.min_rows));
  // Grad mode is per thread: under a NoGradGuard the caller's shard would record nothing while the
  // workers' shards recorded and accumulated, a gradient of part of the batch.
  if (!autodiff::grad_enabled())
    fail("called with gradients disabled (inside a NoGradGuard): nothing to backpropagate");
  const std::int64_t n = inputs.size(0);
  const std::int64_t shards = std::clamp<std::int64_t>(n / options.min_rows, 1, autodiff::get_num_threads());

  if (shards == 1) {
    ShardResult r = fn(inputs, targets);
    checked_loss(r, n).backward();
    return {r.loss.detach(), r.output.defined() ? r.output.detach() : Tensor()};
  }

  // Seeds for the shards' generators, drawn on this thread: the same for every run with the same
  // seed and thread count.
  std::vector<std::uint64_t> seeds;
  for (const double u : autodiff::rand({shards}, autodiff::DType::float64).to_vector())
    seeds.push_back(static_cast<std::uint64_t>(std::ldexp(u, 53)));
  std::vector<double> losses(static_cast<std::size_t>(shards));
  std::vector<Tensor> outputs(static_cast<std::size_t>(shards));
  const auto first_row = [&](std::int64_t s) { return n * s / shards; };
  autodiff::DType loss_dtype = autodiff::DType::float32;

  autodiff::parallel_for(shards, 1, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t s = begin; s < end; ++s) {
      const auto k = static_cast<std::size_t>(s);
      const std::int64_t lo = first_row(s), hi = first_row(s + 1), rows = hi - lo;
      autodiff::ScratchTape tape;            // this shard's record, on this thread; its memory is reused next step
      const autodiff::ForkRng rng(seeds[k]); // the worker's own generator comes back afterwards
      const ShardResult r = fn(autodiff::slice(inputs, 0, lo, hi), autodiff::slice(targets, 0, lo, hi));
      const Tensor loss = checked_loss(r, rows);
      const double weight =
          options.reduction == Reduction::mean ? static_cast<double>(rows) / static_cast<double>(n) : 1.0;
      (weight == 1.0 ? loss : loss * weight).backward();
      losses[k] = loss.item() * weight;
      if (s == 0) loss_dtype = loss.dtype();
      if (r.output.defined()) outputs[k] = r.output.detach();
    }
  });

  double total = 0;
  for (const double l : losses) // in shard order: the same sum for any assignment of shards to threads
    total += l;
  Tensor output;
  if (std::all_of(outputs.begin(), outputs.end(), [](const Tensor& t) { return t.defined(); }))
    output = autodiff::concat(outputs, 0);
  return {autodiff::full({}, total, loss_dtype), output};
}

} // namespace nn
