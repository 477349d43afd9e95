// Layers built from autodiff's tensor ops.

#include <nn/init.hpp>
#include <nn/layers.hpp>

#include <autodiff/error.hpp>
#include <fmt/format.h>

#include <cmath>

namespace nn {

Linear::Linear(std::int64_t in, std::int64_t out, bool with_bias, autodiff::DType dtype) : in_(in), out_(out) {
  if (in <= 0 || out <= 0)
    throw autodiff::Error(fmt::format("nn: Linear: features must be positive, got in {} out {}", in, out));
  weight = register_parameter("weight", autodiff::zeros({out, in}, dtype));
  init::kaiming_uniform_(weight, std::sqrt(5.0));
  if (with_bias) {
    bias = register_parameter("bias", autodiff::zeros({out}, dtype));
    const double bound = 1.0 / std::sqrt(static_cast<double>(in));
    init::uniform_(bias, -bound, bound);
  }
}

Tensor Linear::forward(const Tensor& x) {
  if (x.dim() < 1 || x.size(-1) != in_)
    throw autodiff::Error(
        fmt::format("nn: Linear({} -> {}): input of shape {} does not end in {}", in_, out_, x.shape(), in_));
  return autodiff::linear(x, weight, bias);
}

std::string Linear::name() const {
  return fmt::format("Linear({} -> {}{})", in_, out_, bias.defined() ? "" : ", no bias");
}

Sequential::Sequential(std::initializer_list<std::shared_ptr<Module>> layers) {
  for (const auto& m : layers)
    push_back(m);
}

void Sequential::push_back(std::shared_ptr<Module> m) {
  if (!m) throw autodiff::Error("nn: Sequential: null module");
  register_module(std::to_string(layers_.size()), m);
  layers_.push_back(std::move(m));
}

Tensor Sequential::forward(const Tensor& x) {
  Tensor h = x;
  for (auto& m : layers_)
    h = m->forward(h);
  return h;
}

Tensor ReLU::forward(const Tensor& x) { return autodiff::relu(x); }
Tensor Tanh::forward(const Tensor& x) { return autodiff::tanh(x); }
Tensor Sigmoid::forward(const Tensor& x) { return autodiff::sigmoid(x); }
Tensor GELU::forward(const Tensor& x) { return autodiff::gelu(x); }
Tensor Identity::forward(const Tensor& x) { return x; }
Tensor LeakyReLU::forward(const Tensor& x) { return autodiff::leaky_relu(x, slope_); }
std::string LeakyReLU::name() const { return fmt::format("LeakyReLU({})", slope_); }
Tensor ELU::forward(const Tensor& x) { return autodiff::elu(x, alpha_); }
std::string ELU::name() const { return fmt::format("ELU({})", alpha_); }
Tensor Softmax::forward(const Tensor& x) { return autodiff::softmax(x, dim_); }
std::string Softmax::name() const { return fmt::format("Softmax(dim={})", dim_); }

Dropout::Dropout(double p) : p_(p) {
  if (!(p >= 0 && p < 1)) throw autodiff::Error(fmt::format("nn: Dropout: p must be in [0, 1), got {}", p));
}
Tensor Dropout::forward(const Tensor& x) {
  if (!is_training() || p_ == 0) return x;
  Tensor keep;
  {
    autodiff::NoGradGuard guard;
    keep = autodiff::lt(autodiff::rand(x.shape(), x.dtype()), 1.0 - p_) * (1.0 / (1.0 - p_));
  }
  return x * keep;
}
std::string Dropout::name() const { return fmt::format("Dropout(p={})", p_); }

Tensor Flatten::forward(const Tensor& x) { return autodiff::flatten(x, start_, end_); }

std::shared_ptr<Sequential> mlp(const std::vector<std::int64_t>& sizes, const std::string& activation,
                                autodiff::DType dtype) {
  if (sizes.size() < 2) throw autodiff::Error("nn: mlp: needs at least an input and an output size");
  auto net = std::make_shared<Sequential>();
  for (std::size_t i = 0; i + 1 < sizes.size(); ++i) {
    net->push_back(std::make_shared<Linear>(sizes[i], sizes[i + 1], true, dtype));
    if (i + 2 == sizes.size()) break;
    if (activation == "relu")
      net->push_back(std::make_shared<ReLU>());
    else if (activation == "tanh")
      net->push_back(std::make_shared<Tanh>());
    else if (activation == "sigmoid")
      net->push_back(std::make_shared<Sigmoid>());
    else if (activation == "gelu")
      net->push_back(std::make_shared<GELU>());
    else
      throw autodiff::Error(fmt::format("nn: mlp: unknown activation '{}'", activation));
  }
  return net;
}

} // namespace nn
