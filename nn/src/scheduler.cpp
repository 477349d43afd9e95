// Learning-rate schedules.

#include <nn/scheduler.hpp>

#include <autodiff/error.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <numbers>

namespace nn {

LRScheduler::LRScheduler(Optimizer& opt) : opt_(opt) {
  for (std::size_t g = 0; g < opt.group_count(); ++g)
    base_.push_back(opt.lr(g));
}

namespace {
[[noreturn]] void fail(const std::string& msg) { throw autodiff::Error("nn: " + msg); }

// Reads the scalar entries `names` of `state`, refusing a missing, non-scalar or unknown entry.
std::map<std::string, double> read_scalars(const StateDict& state, const std::vector<std::string>& names,
                                           const std::string& who) {
  std::map<std::string, double> out;
  for (const std::string& n : names) {
    const auto it = state.find(n);
    if (it == state.end()) fail(fmt::format("{}: missing entry '{}'", who, n));
    if (!it->second.defined() || it->second.numel() != 1) fail(fmt::format("{}: '{}' must hold one number", who, n));
    out[n] = it->second.item();
  }
  for (const auto& [k, v] : state)
    if (out.count(k) == 0) fail(fmt::format("{}: unexpected entry '{}'", who, k));
  return out;
}
// A count that converts exactly to int64 (1e30 or inf would be undefined behaviour, 2.5 truncated).
std::int64_t whole(double v, const std::string& key, const std::string& who) {
  if (!(v >= 0 && v <= 0x1.0p53) || v != std::floor(v))
    fail(fmt::format("{}: '{}' must be a whole number in [0, 2^53], got {}", who, key, v));
  return static_cast<std::int64_t>(v);
}
Tensor scalar(double v) { return autodiff::full({}, v, autodiff::DType::float64); }
} // namespace

StateDict LRScheduler::state_dict() const {
  StateDict out;
  out.emplace("last_epoch", scalar(static_cast<double>(epoch_)));
  for (std::size_t g = 0; g < base_.size(); ++g)
    out.emplace(fmt::format("base_lrs.{}", g), scalar(base_[g]));
  return out;
}

void LRScheduler::load_state_dict(const StateDict& state) {
  const std::string who = "LRScheduler: load_state_dict";
  std::vector<std::string> names{"last_epoch"};
  for (std::size_t g = 0; g < base_.size(); ++g)
    names.push_back(fmt::format("base_lrs.{}", g));
  const auto v = read_scalars(state, names, who);
  const std::int64_t epoch = whole(v.at("last_epoch"), "last_epoch", who);
  std::vector<double> base(base_.size());
  for (std::size_t g = 0; g < base.size(); ++g) {
    base[g] = v.at(names[g + 1]);
    if (!(base[g] >= 0) || !std::isfinite(base[g]))
      fail(fmt::format("{}: '{}' must be a finite rate >= 0, got {}", who, names[g + 1], base[g]));
  }
  epoch_ = epoch;
  base_ = std::move(base);
}

void LRScheduler::apply() {
  for (std::size_t g = 0; g < base_.size(); ++g)
    opt_.set_lr(lr_at(base_[g], epoch_), g);
}

void LRScheduler::step() {
  ++epoch_;
  apply();
}

namespace {
// A decay factor must keep the rate a rate: finite and >= 0 (a negative one would flip the sign of
// every other update, NaN would poison the weights on the next step).
void check_gamma(const char* who, double gamma) {
  if (!(gamma >= 0) || !std::isfinite(gamma))
    fail(fmt::format("{}: gamma must be a finite number >= 0, got {}", who, gamma));
}
} // namespace

StepLR::StepLR(Optimizer& opt, std::int64_t step_size, double gamma)
    : LRScheduler(opt), step_size_(step_size), gamma_(gamma) {
  if (step_size <= 0) throw autodiff::Error(fmt::format("nn: StepLR: step_size must be positive, got {}", step_size));
  check_gamma("StepLR", gamma);
}
double StepLR::lr_at(double base, std::int64_t e) const {
  return base * std::pow(gamma_, static_cast<double>(e / step_size_));
}

MultiStepLR::MultiStepLR(Optimizer& opt, std::vector<std::int64_t> milestones, double gamma)
    : LRScheduler(opt), milestones_(std::move(milestones)), gamma_(gamma) {
  if (!std::is_sorted(milestones_.begin(), milestones_.end()))
    throw autodiff::Error("nn: MultiStepLR: milestones must be increasing");
  check_gamma("MultiStepLR", gamma);
}
double MultiStepLR::lr_at(double base, std::int64_t e) const {
  const auto passed = std::upper_bound(milestones_.begin(), milestones_.end(), e) - milestones_.begin();
  return base * std::pow(gamma_, static_cast<double>(passed));
}

ExponentialLR::ExponentialLR(Optimizer& opt, double gamma) : LRScheduler(opt), gamma_(gamma) {
  check_gamma("ExponentialLR", gamma);
}
double ExponentialLR::lr_at(double base, std::int64_t e) const {
  return base * std::pow(gamma_, static_cast<double>(e));
}

CosineAnnealingLR::CosineAnnealingLR(Optimizer& opt, std::int64_t t_max, double eta_min)
    : LRScheduler(opt), t_max_(t_max), eta_min_(eta_min) {
  if (t_max <= 0) throw autodiff::Error(fmt::format("nn: CosineAnnealingLR: t_max must be positive, got {}", t_max));
  if (!(eta_min >= 0) || !std::isfinite(eta_min))
    fail(fmt::format("CosineAnnealingLR: eta_min must be a finite rate >= 0, got {}", eta_min));
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
  if (o.patience < 0 || o.cooldown < 0)
    fail(fmt::format("ReduceLROnPlateau: patience and cooldown must be >= 0, got {} and {}", o.patience, o.cooldown));
  for (const auto& [name, v] : {std::pair{"threshold", o.threshold}, {"min_lr", o.min_lr}, {"eps", o.eps}})
    if (!(v >= 0) || !std::isfinite(v))
      fail(fmt::format("ReduceLROnPlateau: {} must be a finite number >= 0, got {}", name, v));
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

StateDict ReduceLROnPlateau::state_dict() const {
  return {{"best", scalar(best_)},
          {"num_bad_epochs", scalar(static_cast<double>(bad_))},
          {"cooldown_counter", scalar(static_cast<double>(cooldown_left_))}};
}

void ReduceLROnPlateau::load_state_dict(const StateDict& state) {
  const std::string who = "ReduceLROnPlateau: load_state_dict";
  const auto v = read_scalars(state, {"best", "num_bad_epochs", "cooldown_counter"}, who);
  // best starts at +inf; NaN would make every later metric a bad epoch.
  if (std::isnan(v.at("best"))) fail(fmt::format("{}: 'best' is NaN", who));
  const std::int64_t bad = whole(v.at("num_bad_epochs"), "num_bad_epochs", who);
  const std::int64_t cooldown = whole(v.at("cooldown_counter"), "cooldown_counter", who);
  if (cooldown > o_.cooldown)
    fail(fmt::format("{}: 'cooldown_counter' is {}, more than the cooldown of {}", who, cooldown, o_.cooldown));
  best_ = v.at("best");
  bad_ = bad;
  cooldown_left_ = cooldown;
}

} // namespace nn
