#pragma once
// nn::Module: a tree of layers owning named parameters, as torch::nn::Module.

#include <autodiff/tensor.hpp>

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace nn {

using autodiff::Tensor;
using NamedTensors = std::vector<std::pair<std::string, Tensor>>;
using StateDict = std::map<std::string, Tensor>;

class Module {
public:
  virtual ~Module() = default;
  Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  virtual Tensor forward(const Tensor& x) = 0;
  Tensor operator()(const Tensor& x) { return forward(x); }

  // Parameters of this module and its children, depth first in registration order, with dotted
  // names ("layers.0.weight"). The tensors share storage and gradient with the module's own.
  std::vector<Tensor> parameters() const;
  NamedTensors named_parameters() const;
  // Non-trainable state (none of the built-in layers has any yet) is part of state_dict too.
  NamedTensors named_buffers() const;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> named_children() const { return children_; }

  void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }
  void zero_grad();

  // Copies of every parameter and buffer by name (detached values, not views).
  StateDict state_dict() const;
  // Copies the values into this module's tensors. With strict, a missing or unexpected name is an
  // error; a shape or dtype mismatch always is. Nothing is changed unless everything matches.
  void load_state_dict(const StateDict& state, bool strict = true);

  // A short description of the module tree ("Sequential(\n  (0): Linear(784 -> 256)...").
  virtual std::string name() const = 0;
  std::string describe(int indent = 0) const;

protected:
  Tensor& register_parameter(std::string name, Tensor t);
  Tensor& register_buffer(std::string name, Tensor t);
  template <class M> std::shared_ptr<M> register_module(std::string name, std::shared_ptr<M> m) {
    children_.emplace_back(std::move(name), m);
    return m;
  }
  // Visits (prefix + name, tensor) for every parameter (or buffer) of the tree.
  template <class F> void visit(bool buffers, const std::string& prefix, F&& f) const;

private:
  NamedTensors params_;
  NamedTensors buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
  bool training_ = true;
};

} // namespace nn
