// Losses: the fused ones come from autodiff; the rest are compositions of its ops.

#include <nn/loss.hpp>

#include <autodiff/error.hpp>
#include <fmt/format.h>

namespace nn {

namespace {
Tensor reduce(const Tensor& t, Reduction r) {
  switch (r) {
  case Reduction::mean:
    return autodiff::mean(t);
  case Reduction::sum:
    return autodiff::sum(t);
  case Reduction::none:
    return t;
  }
  return t;
}
void same_shape(std::string_view op, const Tensor& a, const Tensor& b) {
  if (!(a.shape() == b.shape()))
    throw autodiff::Error(fmt::format("nn: {}: input shape {} and target shape {} differ", op, a.shape(), b.shape()));
}
} // namespace

Tensor mse_loss(const Tensor& input, const Tensor& target, Reduction r) {
  same_shape("mse_loss", input, target);
  return autodiff::mse_loss(input, target, r);
}

Tensor l1_loss(const Tensor& input, const Tensor& target, Reduction r) {
  same_shape("l1_loss", input, target);
  return reduce(autodiff::abs(input - target), r);
}

Tensor huber_loss(const Tensor& input, const Tensor& target, Reduction r, double delta) {
  same_shape("huber_loss", input, target);
  if (!(delta > 0)) throw autodiff::Error(fmt::format("nn: huber_loss: delta must be positive, got {}", delta));
  const Tensor d = input - target;
  const Tensor a = autodiff::abs(d);
  return reduce(autodiff::where(autodiff::lt(a, delta), 0.5 * autodiff::square(d), delta * (a - 0.5 * delta)), r);
}

Tensor cross_entropy(const Tensor& logits, const Tensor& targets, Reduction r, double eps) {
  if (!(eps >= 0 && eps <= 1))
    throw autodiff::Error(fmt::format("nn: cross_entropy: label_smoothing must be in [0, 1], got {}", eps));
  if (eps == 0) return autodiff::cross_entropy(logits, targets, r);
  // (1 - e) * nll + e * mean over classes of -log p, per example, then reduced.
  const Tensor logp = autodiff::log_softmax(logits, 1);
  const Tensor nll = autodiff::nll_loss(logp, targets, Reduction::none);
  const Tensor smooth = -autodiff::mean(logp, 1);
  return reduce((1.0 - eps) * nll + eps * smooth, r);
}

Tensor nll_loss(const Tensor& log_probs, const Tensor& targets, Reduction r) {
  return autodiff::nll_loss(log_probs, targets, r);
}

Tensor bce_with_logits(const Tensor& logits, const Tensor& targets, Reduction r) {
  same_shape("bce_with_logits", logits, targets);
  return autodiff::binary_cross_entropy_with_logits(logits, targets, r);
}

} // namespace nn
