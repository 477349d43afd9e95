#pragma once
// Layers: Linear, Sequential, activations, Dropout, Flatten, Identity.

#include <nn/module.hpp>

#include <initializer_list>
#include <memory>

namespace nn {

// y = x W^T + b with W [out, in] and b [out], initialised as PyTorch does (kaiming_uniform with
// a = sqrt(5) for W, i.e. U(-1/sqrt(in), 1/sqrt(in)), and the same bound for b).
class Linear : public Module {
public:
  Linear(std::int64_t in_features, std::int64_t out_features, bool bias = true,
         autodiff::DType dtype = autodiff::DType::float32);
  // Sizes are counts and bias a flag: Linear(784.5, 10) or Linear(3, 4, 0.5) do not compile.
  template <class... A> Linear(A&&...) requires(autodiff::detail::any_floating<A...>) = delete;
  Tensor forward(const Tensor& x) override;
  std::string name() const override;
  Tensor weight, bias;

private:
  std::int64_t in_, out_;
};

class Sequential : public Module {
public:
  Sequential() = default;
  Sequential(std::initializer_list<std::shared_ptr<Module>> layers);
  void push_back(std::shared_ptr<Module> m);
  Tensor forward(const Tensor& x) override;
  std::string name() const override { return "Sequential"; }
  std::size_t size() const { return layers_.size(); }
  Module& operator[](std::size_t i) { return *layers_.at(i); }

private:
  std::vector<std::shared_ptr<Module>> layers_;
};

#define TAPEGRAD_NN_ACTIVATION(Name)                                                                                   \
  class Name : public Module {                                                                                         \
  public:                                                                                                              \
    Tensor forward(const Tensor& x) override;                                                                          \
    std::string name() const override { return #Name "()"; }                                                           \
  };
TAPEGRAD_NN_ACTIVATION(ReLU)
TAPEGRAD_NN_ACTIVATION(Tanh)
TAPEGRAD_NN_ACTIVATION(Sigmoid)
TAPEGRAD_NN_ACTIVATION(GELU)
TAPEGRAD_NN_ACTIVATION(Identity)
#undef TAPEGRAD_NN_ACTIVATION

class LeakyReLU : public Module {
public:
  explicit LeakyReLU(double negative_slope = 0.01) : slope_(negative_slope) {}
  Tensor forward(const Tensor& x) override;
  std::string name() const override;

private:
  double slope_;
};

class ELU : public Module {
public:
  explicit ELU(double alpha = 1.0) : alpha_(alpha) {}
  Tensor forward(const Tensor& x) override;
  std::string name() const override;

private:
  double alpha_;
};

class Softmax : public Module {
public:
  explicit Softmax(int dim = -1) : dim_(dim) {}
  // Softmax(0.5) or Softmax(true) is no dim:
  template <class D> explicit Softmax(D&&) requires(autodiff::detail::not_a_dim<D>) = delete;
  Tensor forward(const Tensor& x) override;
  std::string name() const override;

private:
  int dim_;
};

// Zeroes each element with probability p in training and scales the rest by 1/(1-p); the identity
// in eval mode.
class Dropout : public Module {
public:
  explicit Dropout(double p = 0.5);
  Tensor forward(const Tensor& x) override;
  std::string name() const override;

private:
  double p_;
};

// Flattens dims [start_dim, end_dim] (default: all but the batch dim).
class Flatten : public Module {
public:
  explicit Flatten(int start_dim = 1, int end_dim = -1) : start_(start_dim), end_(end_dim) {}
  // dims are integers:
  template <class... D> explicit Flatten(D&&...) requires((autodiff::detail::not_a_dim<D> || ...)) = delete;
  Tensor forward(const Tensor& x) override;
  std::string name() const override { return "Flatten()"; }

private:
  int start_, end_;
};

// A convenience for building MLPs: sizes {784, 256, 128, 10} with an activation between layers.
std::shared_ptr<Sequential> mlp(const std::vector<std::int64_t>& sizes, const std::string& activation = "relu",
                                autodiff::DType dtype = autodiff::DType::float32);

} // namespace nn
