// Learning-rate schedules.

#include <nn/scheduler.hpp>

#include <autodiff/error.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numbers>

namespace nn {

LRScheduler::LRScheduler(Optimizer& opt) : opt_(opt) {
  for (std::size_t g = 0; g < opt.group_count(); ++g)
    base_.push_back(opt.lr(g));
}

void LRScheduler::apply() {
  for (std::size_t g = 0; g < base_.size(); ++g)
    opt_.set_lr(lr_at(base_[g], epoch_), g);
}

void LRScheduler::step() {
  ++epoch_;
  apply();
}

StepLR::StepLR(Optimizer& opt, std::int64_t step_size, double gamma)
    : LRScheduler(opt), step_size_(step_size), gamma_(gamma) {
  if (step_size <= 0) throw autodiff::Error(fmt::format("nn: StepLR: step_size must be positive, got {}", step_size));
}
double StepLR::lr_at(double base, std::int64_t e) const {
  return base * std::pow(gamma_, static_cast<double>(e / step_size_));
}

MultiStepLR::MultiStepLR(Optimizer& opt, std::vector<std::int64_t> milestones, double gamma)
    : LRScheduler(opt), milestones_(std::move(milestones)), gamma_(gamma) {
  if (!std::is_sorted(milestones_.begin(), milestones_.end()))
    throw autodiff::Error("nn: MultiStepLR: milestones must be increasing");
}
double MultiStepLR::lr_at(double base, std::int64_t e) const {
  const auto passed = std::upper_bound(milestones_.begin(), milestones_.end(), e) - milestones_.begin();
  return base * std::pow(gamma_, static_cast<double>(passed));
}

ExponentialLR::ExponentialLR(Optimizer& opt, double gamma) : LRScheduler(opt), gamma_(gamma) {}
double ExponentialLR::lr_at(double base, std::int64_t e) const {
  return base * std::pow(gamma_, static_cast<double>(e));
}

CosineAnnealingLR::CosineAnnealingLR(Optimizer& opt, std::int64_t t_max, double eta_min)
    : LRScheduler(opt), t_max_(t_max), eta_min_(eta_min) {
  if (t_max <= 0) throw autodiff::Error(fmt::format("nn: CosineAnnealingLR: t_max must be positive, got {}", t_max));
}
double CosineAnnealingLR::lr_at(double base, std::int64_t e) const {
  return eta_min_ + (base - eta_min_) *
                        (1 + std::cos(std::numbers::pi * static_cast<double>(e) / static_cast<double>(t_max_))) / 2;
}

LinearLR::LinearLR(Optimizer& opt, double start, double end, std::int64_t total)
    : LRScheduler(opt), start_(start), end_(end), total_(total) {
  if (!(start > 0 && start <= 1) || !(end >= 0 && end <= 1) || total <= 0)
    throw autodiff::Error(fmt::format("nn: LinearLR: need 0 < start_factor <= 1, 0 <= end_factor <= 1, total_iters > 0 "
                                      "(got {}, {}, {})",
                                      start, end, total));
  apply(); // PyTorch applies the start factor at construction
}
double LinearLR::lr_at(double base, std::int64_t e) const {
  const double t = static_cast<double>(std::min(e, total_)) / static_cast<double>(total_);
  return base * (start_ + (end_ - start_) * t);
}

ReduceLROnPlateau::ReduceLROnPlateau(Optimizer& opt, Options o)
    : opt_(opt), o_(o), best_(std::numeric_limits<double>::infinity()) {
  if (!(o.factor > 0 && o.factor < 1))
    throw autodiff::Error(fmt::format("nn: ReduceLROnPlateau: factor must be in (0, 1), got {}", o.factor));
}

void ReduceLROnPlateau::step(double metric) {
  if (metric < best_ * (1 - o_.threshold)) {
    best_ = metric;
    bad_ = 0;
  } else {
    ++bad_;
  }
  if (cooldown_left_ > 0) {
    --cooldown_left_;
    bad_ = 0;
  }
  if (bad_ > o_.patience) {
    for (std::size_t g = 0; g < opt_.group_count(); ++g) {
      const double old_lr = opt_.lr(g);
      const double new_lr = std::max(old_lr * o_.factor, o_.min_lr);
      if (old_lr - new_lr > o_.eps) opt_.set_lr(new_lr, g);
    }
    cooldown_left_ = o_.cooldown;
    bad_ = 0;
  }
}

} // namespace nn
