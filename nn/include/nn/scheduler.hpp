#pragma once
// Learning-rate schedules, in PyTorch's closed forms. Call step() once per epoch (or per
// iteration, for warm-up), after the optimizer's step().

#include <nn/optim.hpp>

namespace nn {

class LRScheduler {
public:
  explicit LRScheduler(Optimizer& opt);
  virtual ~LRScheduler() = default;
  void step(); // advances one epoch and sets every group's rate
  std::int64_t last_epoch() const { return epoch_; }
  double last_lr(std::size_t group = 0) const { return opt_.lr(group); }
  // "last_epoch" and "base_lrs.<group>", as float64 scalars (PyTorch's names). Loading checks every
  // entry first (no missing or unknown names, an epoch that is a whole number >= 0, rates finite and
  // >= 0) and changes nothing on error; like PyTorch, it leaves the optimizer's rates alone (they
  // are in the optimizer's state dict).
  StateDict state_dict() const;
  void load_state_dict(const StateDict& state);

protected:
  virtual double lr_at(double base_lr, std::int64_t epoch) const = 0;
  void apply();

private:
  Optimizer& opt_;
  std::vector<double> base_;
  std::int64_t epoch_ = 0;
};

// base * gamma^floor(epoch / step_size)
class StepLR : public LRScheduler {
public:
  StepLR(Optimizer& opt, std::int64_t step_size, double gamma = 0.1);
  double lr_at(double base, std::int64_t epoch) const override;

private:
  std::int64_t step_size_;
  double gamma_;
};

// base * gamma^(number of milestones <= epoch)
class MultiStepLR : public LRScheduler {
public:
  MultiStepLR(Optimizer& opt, std::vector<std::int64_t> milestones, double gamma = 0.1);
  double lr_at(double base, std::int64_t epoch) const override;

private:
  std::vector<std::int64_t> milestones_;
  double gamma_;
};

// base * gamma^epoch
class ExponentialLR : public LRScheduler {
public:
  ExponentialLR(Optimizer& opt, double gamma);
  double lr_at(double base, std::int64_t epoch) const override;

private:
  double gamma_;
};

// eta_min + (base - eta_min) (1 + cos(pi epoch / t_max)) / 2
class CosineAnnealingLR : public LRScheduler {
public:
  CosineAnnealingLR(Optimizer& opt, std::int64_t t_max, double eta_min = 0);
  double lr_at(double base, std::int64_t epoch) const override;

private:
  std::int64_t t_max_;
  double eta_min_;
};

// Linear warm-up (PyTorch's LinearLR): the factor goes from start to end over total_iters steps.
class LinearLR : public LRScheduler {
public:
  LinearLR(Optimizer& opt, double start_factor = 1.0 / 3, double end_factor = 1.0, std::int64_t total_iters = 5);
  double lr_at(double base, std::int64_t epoch) const override;

private:
  double start_, end_;
  std::int64_t total_;
};

// Multiplies the rate by `factor` when the metric has not improved (relatively, by threshold) for
// more than `patience` epochs; mode min. Cooldown and min_lr as PyTorch.
class ReduceLROnPlateau {
public:
  struct Options {
    double factor = 0.1;
    std::int64_t patience = 10;
    double threshold = 1e-4;
    std::int64_t cooldown = 0;
    double min_lr = 0;
    double eps = 1e-8;
  };
  explicit ReduceLROnPlateau(Optimizer& opt) : ReduceLROnPlateau(opt, Options{}) {}
  ReduceLROnPlateau(Optimizer& opt, Options o);
  void step(double metric);
  // "best", "num_bad_epochs" and "cooldown_counter" as float64 scalars (PyTorch's names); loading
  // checks them all first (best not NaN, counts whole numbers >= 0, the cooldown at most the
  // configured one) and changes nothing on error.
  StateDict state_dict() const;
  void load_state_dict(const StateDict& state);

private:
  Optimizer& opt_;
  Options o_;
  double best_;
  std::int64_t bad_ = 0, cooldown_left_ = 0;
};

} // namespace nn
