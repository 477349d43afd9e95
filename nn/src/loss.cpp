// Losses: thin wrappers of autodiff's, which are their one home (autodiff/src/tensor/loss.cpp).

#include <nn/loss.hpp>

#include <autodiff/error.hpp>
#include <fmt/format.h>

namespace nn {

Tensor mse_loss(const Tensor& input, const Tensor& target, Reduction r) { return autodiff::mse_loss(input, target, r); }

Tensor l1_loss(const Tensor& input, const Tensor& target, Reduction r) { return autodiff::l1_loss(input, target, r); }

Tensor huber_loss(const Tensor& input, const Tensor& target, Reduction r, double delta) {
  return autodiff::huber_loss(input, target, r, delta);
}

Tensor cross_entropy(const Tensor& logits, const Tensor& targets, Reduction r, double label_smoothing) {
  return autodiff::cross_entropy(logits, targets, r, label_smoothing);
}

Tensor nll_loss(const Tensor& log_probs, const Tensor& targets, Reduction r) {
  return autodiff::nll_loss(log_probs, targets, r);
}

// autodiff's broadcasts the targets against the logits; nn's loss modules take equal shapes only.
Tensor bce_with_logits(const Tensor& logits, const Tensor& targets, Reduction r) {
  if (!(logits.shape() == targets.shape()))
    throw autodiff::Error(
        fmt::format("nn: bce_with_logits: input shape {} and target shape {} differ", logits.shape(), targets.shape()));
  return autodiff::binary_cross_entropy_with_logits(logits, targets, r);
}

} // namespace nn
