// Optimizers: PyTorch's formulas and operation order (torch/optim/*.py, single-tensor path), in
// the parameter's dtype. The element loops are in optim_kernels.cpp (docs/design.md, Note
// [Vectorised updates]); large parameters are split across the thread pool.

#include <nn/optim.hpp>

#include "optim_kernels.hpp"

#include <autodiff/error.hpp>
#include <autodiff/parallel.hpp>
#include <fmt/format.h>

#include <algorithm>
#if defined(__SSE2__)
#include <xmmintrin.h>
#endif
#include <cmath>
#include <cstdio>
#include <cstring>

namespace nn {

using autodiff::DType;

namespace {
[[noreturn]] void fail(const std::string& msg) { throw autodiff::Error("nn: " + msg); }

// Runs f with the element type of t (float or double).
template <class F> void dispatch(const Tensor& t, F&& f) {
  if (t.dtype() == DType::float32)
    f(float{});
  else if (t.dtype() == DType::float64)
    f(double{});
  else
    fail(fmt::format("optimizer: parameter of dtype {} cannot be optimised", t.dtype()));
}
template <class T> std::span<T> mut(Tensor& t) { return t.mutable_data<T>(); } // no copy: no atomic updates
} // namespace

namespace {
// A learning rate or weight decay must be a finite number >= 0 (PyTorch checks >= 0; an infinite
// one turns every parameter into NaN or inf at the first step).
void check_rate(const std::string& who, const char* what, double v) {
  if (!(v >= 0) || !std::isfinite(v)) fail(fmt::format("{}: invalid {} {}", who, what, v));
}
} // namespace

Optimizer::Optimizer(std::vector<ParamGroup> groups, double lr, double wd, std::string name) : name_(std::move(name)) {
  check_rate(name_, "learning rate", lr);
  check_rate(name_, "weight decay", wd);
  std::size_t count = 0;
  // Storage of every parameter seen so far: the same tensor twice (directly, through another
  // handle, or in two groups) would be updated twice per step.
  std::map<const void*, std::size_t> seen;
  for (std::size_t gi = 0; gi < groups.size(); ++gi) {
    auto& g = groups[gi];
    if (g.lr) check_rate(name_, fmt::format("learning rate of group {}:", gi).c_str(), *g.lr);
    if (g.weight_decay) check_rate(name_, fmt::format("weight decay of group {}:", gi).c_str(), *g.weight_decay);
    for (const Tensor& p : g.params) {
      const std::size_t k = count + static_cast<std::size_t>(&p - g.params.data());
      if (!p.defined() || !p.is_leaf())
        fail(fmt::format("{}: parameter {} must be a defined leaf tensor (not the result of a recorded op)", name_, k));
      // Rejected rather than kept: a tensor that never asked for a gradient has no gradient slot,
      // so the optimizer's copy would not see a later requires_grad(true) and would silently never
      // update. Frozen parameters of a module (requires_grad(false) after registration) are the
      // case PyTorch users mean; pass the trainable ones, or freeze after building the optimizer.
      if (!p.requires_grad())
        fail(fmt::format("{}: parameter {} (shape {}) does not require grad; pass only trainable parameters, or "
                         "freeze with requires_grad(false) after constructing the optimizer (frozen parameters "
                         "are skipped by step())",
                         name_, k, p.shape()));
      if (p.dtype() == DType::int64) fail(fmt::format("{}: int64 tensors cannot be optimised", name_));
      if (const auto [it, fresh] = seen.emplace(p.storage_id(), k); !fresh)
        fail(fmt::format("{}: parameter {} is the same tensor as parameter {}; each parameter may appear once "
                         "(across all groups)",
                         name_, k, it->second));
    }
    count += g.params.size();
    groups_.push_back({std::move(g.params), g.lr.value_or(lr), g.weight_decay.value_or(wd)});
  }
  if (count == 0) fail(fmt::format("{}: got an empty parameter list", name_));
  state_.resize(count);
  steps_.assign(count, 0);
}

void Optimizer::zero_grad() {
  for (auto& g : groups_)
    for (Tensor& p : g.params)
      p.zero_grad();
}

void Optimizer::set_lr(double lr, std::size_t group) {
  check_rate(name_, "learning rate", lr);
  groups_.at(group).lr = lr;
}
void Optimizer::set_lr(double lr) {
  check_rate(name_, "learning rate", lr);
  for (auto& g : groups_)
    g.lr = lr;
}

namespace {
// Moving averages of gradients that are exactly zero (weights of always-black border pixels, dead
// units) decay geometrically into subnormal numbers after a few hundred steps, and arithmetic on
// subnormals is two orders of magnitude slower on x86: an Adam epoch became 3x slower by epoch 5.
// The update runs with flush-to-zero and denormals-are-zero, restored afterwards; it changes
// nothing above 1e-38 (float) or 1e-308 (double). The control register is per thread, so every
// range of a split update sets it on the thread that runs it.
class FlushDenormals {
public:
#if defined(__SSE2__)
  FlushDenormals() : saved_(_mm_getcsr()) { _mm_setcsr(saved_ | 0x8040); }
  ~FlushDenormals() { _mm_setcsr(saved_); }

private:
  unsigned saved_;
#endif
};

// Elements per range when an update is split across threads (docs/design.md, Note [One thread
// pool]): below twice this, a parameter is updated on the calling thread.
constexpr std::int64_t update_grain = 16384;

// Runs f(begin, end) over parameter p's elements, split across the pool's threads for large
// parameters. The updates are elementwise, so the split changes no bits. A parameter of two or more
// dimensions is split by whole rows (its first dimension), in the pool's equal shares: autodiff's
// linear splits a weight's rows the same way, so each thread updates the rows it computed with and
// whose gradient it wrote (docs/design.md, Note [Owned rows]).
template <class F> void run_split(const autodiff::Tensor& p, F&& f) {
  const std::int64_t n = p.numel();
  if (n < 2 * update_grain) { // what parallel_for would do, without the call into the pool
    const FlushDenormals flush;
    f(std::size_t{0}, static_cast<std::size_t>(n));
    return;
  }
  const std::int64_t rows = p.dim() >= 2 ? p.size(0) : n, per_row = n / rows; // n > 0: rows > 0
  autodiff::parallel_for(rows, (update_grain + per_row - 1) / per_row, [&](std::int64_t b, std::int64_t e) {
    const FlushDenormals flush;
    f(static_cast<std::size_t>(b * per_row), static_cast<std::size_t>(e * per_row));
  });
}
} // namespace

template <class F> void Optimizer::each(F&& f) {
  std::size_t k = 0;
  for (auto& g : groups_)
    for (Tensor& p : g.params) {
      const Tensor grad = p.grad();
      // A frozen parameter (requires_grad(false), seen through every copy) is left as it is, even
      // if it kept a gradient from before it was frozen.
      if (grad.defined() && p.requires_grad()) {
        if (!(grad.shape() == p.shape()))
          fail(fmt::format("{}: gradient of parameter {} has shape {} but the parameter {}", name_, k, grad.shape(),
                           p.shape()));
        // The update kernels take the two as distinct arrays (optim_kernels.hpp).
        if (grad.storage_id() == p.storage_id())
          fail(fmt::format("{}: gradient of parameter {} shares its storage with the parameter", name_, k));
        f(g, k, p, grad);
      }
      ++k;
    }
}

bool Optimizer::has_buffer(std::size_t k, const std::string& name) const { return state_.at(k).count(name) != 0; }

Tensor& Optimizer::buffer(std::size_t k, const std::string& name, const Tensor& like, double init) {
  auto& s = state_.at(k);
  auto it = s.find(name);
  if (it == s.end()) {
    autodiff::NoGradGuard guard;
    it = s.emplace(name, autodiff::full(like.shape(), init, like.dtype())).first;
  }
  return it->second;
}

StateDict Optimizer::state_dict() const {
  StateDict out;
  for (std::size_t g = 0; g < groups_.size(); ++g) {
    out.emplace(fmt::format("param_groups.{}.lr", g), autodiff::full({}, groups_[g].lr, DType::float64));
    out.emplace(fmt::format("param_groups.{}.weight_decay", g),
                autodiff::full({}, groups_[g].weight_decay, DType::float64));
  }
  for (std::size_t k = 0; k < state_.size(); ++k) {
    out.emplace(fmt::format("state.{}.step", k), autodiff::full({}, static_cast<double>(steps_[k]), DType::float64));
    for (const auto& [n, t] : state_[k])
      out.emplace(fmt::format("state.{}.{}", k, n), t.clone());
  }
  return out;
}

namespace {
// The index in "state.<k>.<name>" or "param_groups.<k>.<name>": decimal digits only (sscanf's %zu
// would take "+1", " 1" and "-1", the last wrapping round), below `count`.
bool parse_entry(const std::string& key, const std::string& prefix, std::size_t count, std::size_t& k,
                 std::string& name) {
  if (key.rfind(prefix, 0) != 0) return false;
  std::size_t i = prefix.size();
  const std::size_t digits = i;
  k = 0;
  while (i < key.size() && key[i] >= '0' && key[i] <= '9') {
    if (i - digits >= 9) return false; // more than any count here
    k = k * 10 + static_cast<std::size_t>(key[i] - '0');
    ++i;
  }
  if (i == digits || (key[digits] == '0' && i - digits > 1) || i >= key.size() || key[i] != '.') return false;
  name = key.substr(i + 1);
  return k < count && !name.empty();
}
} // namespace

void Optimizer::load_state_dict(const StateDict& state) {
  const std::string who = name_ + ": load_state_dict";
  auto scalar = [&](const std::string& key) {
    auto it = state.find(key);
    if (it == state.end()) fail(fmt::format("{}: missing entry '{}'", who, key));
    if (!it->second.defined() || it->second.numel() != 1) fail(fmt::format("{}: '{}' must hold one number", who, key));
    return it->second.item();
  };
  // Validate everything first, then apply.
  std::vector<Group> groups = groups_;
  for (std::size_t g = 0; g < groups.size(); ++g) {
    const std::string lr_key = fmt::format("param_groups.{}.lr", g),
                      wd_key = fmt::format("param_groups.{}.weight_decay", g);
    groups[g].lr = scalar(lr_key);
    groups[g].weight_decay = scalar(wd_key);
    check_rate(who, fmt::format("'{}':", lr_key).c_str(), groups[g].lr);
    check_rate(who, fmt::format("'{}':", wd_key).c_str(), groups[g].weight_decay);
  }
  std::vector<std::int64_t> steps(steps_.size());
  for (std::size_t k = 0; k < steps.size(); ++k) {
    const std::string key = fmt::format("state.{}.step", k);
    const double s = scalar(key);
    // A whole number that converts exactly: 2.5 would be truncated, and 1e30 or inf do not fit an
    // int64 (converting them is undefined behaviour).
    if (!(s >= 0 && s <= 0x1.0p53) || s != std::floor(s))
      fail(fmt::format("{}: '{}' must be a whole number of steps in [0, 2^53], got {}", who, key, s));
    steps[k] = static_cast<std::int64_t>(s);
  }
  std::vector<const Tensor*> flat;
  for (auto& g : groups_)
    for (const Tensor& p : g.params)
      flat.push_back(&p);
  const std::vector<std::string> names = buffer_names();
  std::vector<std::map<std::string, Tensor>> buffers(state_.size());
  for (const auto& [key, t] : state) {
    std::size_t k = 0;
    std::string name;
    if (parse_entry(key, "param_groups.", groups.size(), k, name) && (name == "lr" || name == "weight_decay")) continue;
    if (!parse_entry(key, "state.", flat.size(), k, name)) fail(fmt::format("{}: unexpected entry '{}'", who, key));
    if (name == "step") continue;
    if (std::find(names.begin(), names.end(), name) == names.end())
      fail(fmt::format("{}: unexpected entry '{}': {} keeps no buffer '{}' (a state of another optimizer, or of "
                       "other options?)",
                       who, key, name_, name));
    if (steps[k] == 0) fail(fmt::format("{}: unexpected entry '{}': parameter {} has not been stepped", who, key, k));
    if (!t.defined()) fail(fmt::format("{}: '{}' is an undefined tensor", who, key));
    if (!(t.shape() == flat[k]->shape()) || t.dtype() != flat[k]->dtype())
      fail(fmt::format("{}: '{}' has shape {} {}, but parameter {} is {} {}", who, key, t.shape(), t.dtype(), k,
                       flat[k]->shape(), flat[k]->dtype()));
    buffers[k].emplace(name, t.clone());
  }
  for (std::size_t k = 0; k < steps.size(); ++k)
    if (steps[k] > 0)
      for (const std::string& n : names)
        if (buffers[k].count(n) == 0)
          fail(
              fmt::format("{}: missing entry 'state.{}.{}' (parameter {} has taken {} steps)", who, k, n, k, steps[k]));
  groups_ = std::move(groups);
  steps_ = std::move(steps);
  state_ = std::move(buffers);
}

std::vector<std::string> SGD::buffer_names() const {
  if (options.momentum != 0) return {"momentum_buffer"};
  return {};
}
std::vector<std::string> Adam::buffer_names() const {
  if (options.amsgrad) return {"exp_avg", "exp_avg_sq", "max_exp_avg_sq"};
  return {"exp_avg", "exp_avg_sq"};
}
std::vector<std::string> RMSprop::buffer_names() const {
  std::vector<std::string> out{"square_avg"};
  if (options.centered) out.emplace_back("grad_avg");
  if (options.momentum > 0) out.emplace_back("momentum_buffer");
  return out;
}
std::vector<std::string> Adagrad::buffer_names() const { return {"sum"}; }

// ---- SGD ------------------------------------------------------------------------------------
SGD::SGD(std::vector<ParamGroup> groups, SGDOptions o)
    : Optimizer(std::move(groups), o.lr, o.weight_decay, "SGD"), options(o) {
  if (o.nesterov && (o.momentum <= 0 || o.dampening != 0))
    fail("SGD: Nesterov momentum requires a momentum and zero dampening");
  if (!(o.momentum >= 0)) fail(fmt::format("SGD: invalid momentum {}", o.momentum));
}

void SGD::step() {
  each([&](Group& g, std::size_t k, Tensor& p, const Tensor& grad) {
    dispatch(p, [&](auto tag) {
      using T = decltype(tag);
      kernels::SGDArgs<T> a{};
      a.w = mut<T>(p).data();
      a.g = grad.data<T>().data();
      a.lr = static_cast<T>(g.lr);
      a.wd = static_cast<T>(g.weight_decay);
      a.mom = static_cast<T>(options.momentum);
      a.damp = static_cast<T>(1 - options.dampening);
      a.decay = a.wd != 0; // in T: a decay that rounds to 0 adds nothing, as 0 * w would for finite w
      // Looked up only with momentum: a string and a map lookup per parameter were some 30% of the
      // instructions of a tiny step's update (callgrind, tiny_mlp_compare).
      a.first = options.momentum != 0 && !has_buffer(k, "momentum_buffer");
      a.nesterov = options.nesterov;
      // Tested in double, as buffer_names: a momentum that rounds to 0 in float still keeps a buffer.
      if (options.momentum != 0) a.buf = mut<T>(buffer(k, "momentum_buffer", p)).data();
      run_split(p, [&](std::size_t b, std::size_t e) { kernels::sgd(a, b, e); });
    });
    ++step_count(k);
  });
}

// ---- Adam / AdamW -------------------------------------------------------------------------------
Adam::Adam(std::vector<ParamGroup> groups, AdamOptions o, bool decoupled)
    : Optimizer(std::move(groups), o.lr, o.weight_decay, "Adam"), options(o), decoupled_(decoupled) {
  if (!(o.beta1 >= 0 && o.beta1 < 1) || !(o.beta2 >= 0 && o.beta2 < 1))
    fail(fmt::format("{}: betas must be in [0, 1), got ({}, {})", name_, o.beta1, o.beta2));
  if (!(o.eps >= 0)) fail(fmt::format("{}: invalid eps {}", name_, o.eps));
}

void Adam::step() {
  each([&](Group& g, std::size_t k, Tensor& p, const Tensor& grad) {
    const std::int64_t step = ++step_count(k);
    dispatch(p, [&](auto tag) {
      using T = decltype(tag);
      kernels::AdamArgs<T> a{};
      a.w = mut<T>(p).data();
      a.g = grad.data<T>().data();
      a.m = mut<T>(buffer(k, "exp_avg", p)).data();
      a.v = mut<T>(buffer(k, "exp_avg_sq", p)).data();
      if (options.amsgrad) a.vmax = mut<T>(buffer(k, "max_exp_avg_sq", p)).data();
      const T lr = static_cast<T>(g.lr), b1 = static_cast<T>(options.beta1);
      a.wd = static_cast<T>(g.weight_decay);
      a.keep = T(1) - lr * a.wd;
      a.one_minus_b1 = T(1) - b1; // lerp weight, as torch's exp_avg.lerp_
      a.b2 = static_cast<T>(options.beta2);
      a.one_minus_b2 = T(1) - a.b2;
      a.eps = static_cast<T>(options.eps);
      const double bc1 = 1 - std::pow(options.beta1, static_cast<double>(step));
      const double bc2 = 1 - std::pow(options.beta2, static_cast<double>(step));
      a.step_size = static_cast<T>(g.lr / bc1);
      a.bc2_sqrt = static_cast<T>(std::sqrt(bc2));
      a.decay = decoupled_  ? kernels::AdamDecay::decoupled
                : a.wd != 0 ? kernels::AdamDecay::coupled
                            : kernels::AdamDecay::none;
      run_split(p, [&](std::size_t b, std::size_t e) { kernels::adam(a, b, e); });
    });
  });
}

// ---- RMSprop ------------------------------------------------------------------------------------
RMSprop::RMSprop(std::vector<ParamGroup> groups, RMSpropOptions o)
    : Optimizer(std::move(groups), o.lr, o.weight_decay, "RMSprop"), options(o) {
  if (!(o.alpha >= 0)) fail(fmt::format("RMSprop: invalid alpha {}", o.alpha));
}

void RMSprop::step() {
  each([&](Group& g, std::size_t k, Tensor& p, const Tensor& grad) {
    ++step_count(k);
    dispatch(p, [&](auto tag) {
      using T = decltype(tag);
      kernels::RMSpropArgs<T> a{};
      a.w = mut<T>(p).data();
      a.g = grad.data<T>().data();
      a.sq = mut<T>(buffer(k, "square_avg", p)).data();
      if (options.centered) a.ga = mut<T>(buffer(k, "grad_avg", p)).data();
      a.lr = static_cast<T>(g.lr);
      a.wd = static_cast<T>(g.weight_decay);
      a.alpha = static_cast<T>(options.alpha);
      a.one_minus_alpha = T(1) - a.alpha;
      a.eps = static_cast<T>(options.eps);
      a.mom = static_cast<T>(options.momentum);
      // The buffer exists when the momentum is > 0 in double (buffer_names); it is used when it is
      // > 0 in T, as before.
      if (options.momentum > 0) {
        T* buf = mut<T>(buffer(k, "momentum_buffer", p)).data();
        if (a.mom > 0) a.buf = buf;
      }
      run_split(p, [&](std::size_t b, std::size_t e) { kernels::rmsprop(a, b, e); });
    });
  });
}

// ---- Adagrad ------------------------------------------------------------------------------------
Adagrad::Adagrad(std::vector<ParamGroup> groups, AdagradOptions o)
    : Optimizer(std::move(groups), o.lr, o.weight_decay, "Adagrad"), options(o) {
  if (!(o.lr_decay >= 0)) fail(fmt::format("Adagrad: invalid lr_decay {}", o.lr_decay));
  if (!(o.initial_accumulator_value >= 0))
    fail(fmt::format("Adagrad: invalid initial_accumulator_value {}", o.initial_accumulator_value));
}

void Adagrad::step() {
  each([&](Group& g, std::size_t k, Tensor& p, const Tensor& grad) {
    const std::int64_t step = ++step_count(k);
    dispatch(p, [&](auto tag) {
      using T = decltype(tag);
      kernels::AdagradArgs<T> a{};
      a.w = mut<T>(p).data();
      a.g = grad.data<T>().data();
      a.sum = mut<T>(buffer(k, "sum", p, options.initial_accumulator_value)).data();
      a.wd = static_cast<T>(g.weight_decay);
      a.eps = static_cast<T>(options.eps);
      a.clr = static_cast<T>(g.lr / (1 + static_cast<double>(step - 1) * options.lr_decay));
      run_split(p, [&](std::size_t b, std::size_t e) { kernels::adagrad(a, b, e); });
    });
  });
}

// ---- clipping -----------------------------------------------------------------------------------
double clip_grad_norm_(const std::vector<Tensor>& params, double max_norm) {
  if (!(max_norm >= 0)) fail(fmt::format("clip_grad_norm_: max_norm must be non-negative, got {}", max_norm));
  double total = 0;
  for (const Tensor& p : params) {
    const Tensor g = p.grad();
    if (!g.defined()) continue;
    dispatch(g, [&](auto tag) {
      using T = decltype(tag);
      for (T v : g.data<T>())
        total += static_cast<double>(v) * static_cast<double>(v);
    });
  }
  total = std::sqrt(total);
  const double coef = max_norm / (total + 1e-6);
  if (coef < 1) {
    for (const Tensor& p : params) {
      Tensor g = p.grad();
      if (!g.defined()) continue;
      dispatch(g, [&](auto tag) {
        using T = decltype(tag);
        for (T& v : mut<T>(g))
          v = static_cast<T>(v * coef);
      });
    }
  }
  return total;
}

void clip_grad_value_(const std::vector<Tensor>& params, double clip) {
  if (!(clip >= 0)) fail(fmt::format("clip_grad_value_: clip must be non-negative, got {}", clip));
  for (const Tensor& p : params) {
    Tensor g = p.grad();
    if (!g.defined()) continue;
    dispatch(g, [&](auto tag) {
      using T = decltype(tag);
      for (T& v : mut<T>(g))
        v = std::clamp(v, static_cast<T>(-clip), static_cast<T>(clip));
    });
  }
}

} // namespace nn
