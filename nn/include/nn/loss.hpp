#pragma once
// Losses as functions and as modules, with PyTorch's definitions and reductions.

#include <nn/module.hpp>

namespace nn {

using autodiff::Reduction;

Tensor mse_loss(const Tensor& input, const Tensor& target, Reduction r = Reduction::mean);
Tensor l1_loss(const Tensor& input, const Tensor& target, Reduction r = Reduction::mean);
// 0.5 d^2 where |d| < delta, else delta (|d| - 0.5 delta).
Tensor huber_loss(const Tensor& input, const Tensor& target, Reduction r = Reduction::mean, double delta = 1.0);
// logits [N, C], int64 targets [N]. With label smoothing e the target distribution is
// (1 - e) one_hot + e / C, as PyTorch.
Tensor cross_entropy(const Tensor& logits, const Tensor& targets, Reduction r = Reduction::mean,
                     double label_smoothing = 0.0);
Tensor nll_loss(const Tensor& log_probs, const Tensor& targets, Reduction r = Reduction::mean);
Tensor bce_with_logits(const Tensor& logits, const Tensor& targets, Reduction r = Reduction::mean);

// Loss modules take (input, target); Module::forward (one argument) is not meaningful for them.
class Loss {
public:
  explicit Loss(Reduction r) : reduction(r) {}
  virtual ~Loss() = default;
  virtual Tensor operator()(const Tensor& input, const Tensor& target) const = 0;
  Reduction reduction;
};

class MSELoss : public Loss {
public:
  explicit MSELoss(Reduction r = Reduction::mean) : Loss(r) {}
  Tensor operator()(const Tensor& i, const Tensor& t) const override { return nn::mse_loss(i, t, reduction); }
};
class L1Loss : public Loss {
public:
  explicit L1Loss(Reduction r = Reduction::mean) : Loss(r) {}
  Tensor operator()(const Tensor& i, const Tensor& t) const override { return nn::l1_loss(i, t, reduction); }
};
class HuberLoss : public Loss {
public:
  explicit HuberLoss(Reduction r = Reduction::mean, double delta = 1.0) : Loss(r), delta(delta) {}
  Tensor operator()(const Tensor& i, const Tensor& t) const override { return nn::huber_loss(i, t, reduction, delta); }
  double delta;
};
class CrossEntropyLoss : public Loss {
public:
  explicit CrossEntropyLoss(Reduction r = Reduction::mean, double label_smoothing = 0.0)
      : Loss(r), label_smoothing(label_smoothing) {}
  Tensor operator()(const Tensor& i, const Tensor& t) const override {
    return nn::cross_entropy(i, t, reduction, label_smoothing);
  }
  double label_smoothing;
};
class NLLLoss : public Loss {
public:
  explicit NLLLoss(Reduction r = Reduction::mean) : Loss(r) {}
  Tensor operator()(const Tensor& i, const Tensor& t) const override { return nn::nll_loss(i, t, reduction); }
};
class BCEWithLogitsLoss : public Loss {
public:
  explicit BCEWithLogitsLoss(Reduction r = Reduction::mean) : Loss(r) {}
  Tensor operator()(const Tensor& i, const Tensor& t) const override { return nn::bce_with_logits(i, t, reduction); }
};

} // namespace nn
