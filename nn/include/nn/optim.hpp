#pragma once
// Optimizers with PyTorch's update rules and defaults (torch.optim, version 2.x, foreach off), so
// that trajectories can be compared number for number. See docs/nn.md for the formulas.

#include <nn/module.hpp>

#include <optional>

namespace nn {

// A parameter group: its parameters and, optionally, its own learning rate and weight decay.
struct ParamGroup {
  std::vector<Tensor> params;
  std::optional<double> lr;
  std::optional<double> weight_decay;
};

class Optimizer {
public:
  virtual ~Optimizer() = default;
  // Updates every parameter that has a gradient (parameters without one are skipped).
  virtual void step() = 0;
  void zero_grad();

  std::size_t group_count() const { return groups_.size(); }
  double lr(std::size_t group = 0) const { return groups_.at(group).lr; }
  void set_lr(double lr, std::size_t group); // every group when called as set_lr(lr)
  void set_lr(double lr);
  const std::vector<Tensor>& params(std::size_t group) const { return groups_.at(group).params; }

  // Learning rates, step counts and per-parameter buffers ("state.<k>.exp_avg", with k the
  // parameter's position across groups), as float64 or parameter-dtype tensors.
  StateDict state_dict() const;
  // Restores what state_dict saved. Every entry is checked before anything changes: the names
  // (no missing, unknown or stray entries, and only the buffers this optimizer keeps), shapes and
  // dtypes, rates and weight decays (finite, >= 0, as the constructors require) and step counts
  // (whole numbers in [0, 2^53]). An error names the offending entry.
  void load_state_dict(const StateDict& state);

protected:
  struct Group {
    std::vector<Tensor> params;
    double lr;
    double weight_decay;
  };
  Optimizer(std::vector<ParamGroup> groups, double lr, double weight_decay, std::string name);
  // The named state buffer of parameter k, created filled with `init` on first use.
  Tensor& buffer(std::size_t k, const std::string& name, const Tensor& like, double init = 0.0);
  bool has_buffer(std::size_t k, const std::string& name) const;
  std::int64_t& step_count(std::size_t k) { return steps_.at(k); }
  // Calls f(group, k, param, grad) for every parameter with a gradient.
  template <class F> void each(F&& f);
  // The buffers step() keeps for every parameter it has updated at least once (a parameter with
  // step count 0 has none); load_state_dict accepts exactly these.
  virtual std::vector<std::string> buffer_names() const = 0;

  std::vector<Group> groups_;
  std::string name_;

private:
  std::vector<std::map<std::string, Tensor>> state_;
  std::vector<std::int64_t> steps_;
};

struct SGDOptions {
  double lr = 1e-3;
  double momentum = 0;
  double dampening = 0;
  double weight_decay = 0;
  bool nesterov = false;
};
class SGD : public Optimizer {
public:
  SGD(std::vector<Tensor> params, SGDOptions o = {}) : SGD(std::vector<ParamGroup>{{std::move(params), {}, {}}}, o) {}
  SGD(std::vector<ParamGroup> groups, SGDOptions o);
  void step() override;
  std::vector<std::string> buffer_names() const override;
  SGDOptions options;
};

struct AdamOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0; // AdamW's default is 1e-2; pass it explicitly there
  bool amsgrad = false;
};
class Adam : public Optimizer {
public:
  Adam(std::vector<Tensor> params, AdamOptions o = {})
      : Adam(std::vector<ParamGroup>{{std::move(params), {}, {}}}, o) {}
  Adam(std::vector<ParamGroup> groups, AdamOptions o, bool decoupled = false);
  void step() override;
  std::vector<std::string> buffer_names() const override;
  AdamOptions options;

private:
  bool decoupled_;
};
// Adam with decoupled weight decay: p *= 1 - lr * wd before the Adam step.
class AdamW : public Adam {
public:
  static AdamOptions defaults() {
    AdamOptions o;
    o.weight_decay = 1e-2;
    return o;
  }
  AdamW(std::vector<Tensor> params, AdamOptions o = defaults())
      : AdamW(std::vector<ParamGroup>{{std::move(params), {}, {}}}, o) {}
  AdamW(std::vector<ParamGroup> groups, AdamOptions o) : Adam(std::move(groups), o, true) { name_ = "AdamW"; }
};

struct RMSpropOptions {
  double lr = 1e-2;
  double alpha = 0.99;
  double eps = 1e-8;
  double weight_decay = 0;
  double momentum = 0;
  bool centered = false;
};
class RMSprop : public Optimizer {
public:
  RMSprop(std::vector<Tensor> params, RMSpropOptions o = {})
      : RMSprop(std::vector<ParamGroup>{{std::move(params), {}, {}}}, o) {}
  RMSprop(std::vector<ParamGroup> groups, RMSpropOptions o);
  void step() override;
  std::vector<std::string> buffer_names() const override;
  RMSpropOptions options;
};

struct AdagradOptions {
  double lr = 1e-2;
  double lr_decay = 0;
  double weight_decay = 0;
  double initial_accumulator_value = 0;
  double eps = 1e-10;
};
class Adagrad : public Optimizer {
public:
  Adagrad(std::vector<Tensor> params, AdagradOptions o = {})
      : Adagrad(std::vector<ParamGroup>{{std::move(params), {}, {}}}, o) {}
  Adagrad(std::vector<ParamGroup> groups, AdagradOptions o);
  void step() override;
  std::vector<std::string> buffer_names() const override;
  AdagradOptions options;
};

// Scales all gradients together so that their global 2-norm is at most max_norm; returns the norm
// before clipping. As PyTorch: coefficient max_norm / (norm + 1e-6), applied only when below 1.
double clip_grad_norm_(const std::vector<Tensor>& params, double max_norm);
// Clamps every gradient element to [-clip, clip].
void clip_grad_value_(const std::vector<Tensor>& params, double clip);

} // namespace nn
