// nn::Module: parameter registry, train/eval, state dicts.

#include <nn/module.hpp>

#include <autodiff/error.hpp>
#include <fmt/format.h>

#include <cstring>
#include <set>

namespace nn {

namespace {
[[noreturn]] void fail(const std::string& msg) { throw autodiff::Error("nn: " + msg); }
} // namespace

template <class F> void Module::visit(bool buffers, const std::string& prefix, F&& f) const {
  for (const auto& [n, t] : buffers ? buffers_ : params_)
    f(prefix + n, t);
  for (const auto& [n, child] : children_)
    child->visit(buffers, prefix + n + ".", f);
}

Tensor& Module::register_parameter(std::string name, Tensor t) {
  if (!t.defined()) fail(fmt::format("register_parameter: '{}' is an undefined tensor", name));
  if (t.dtype() == autodiff::DType::int64)
    fail(fmt::format("register_parameter: '{}' is int64; parameters are float", name));
  t.requires_grad(true);
  params_.emplace_back(std::move(name), std::move(t));
  return params_.back().second;
}

Tensor& Module::register_buffer(std::string name, Tensor t) {
  buffers_.emplace_back(std::move(name), std::move(t));
  return buffers_.back().second;
}

NamedTensors Module::named_parameters() const {
  NamedTensors out;
  visit(false, "", [&](const std::string& n, const Tensor& t) { out.emplace_back(n, t); });
  return out;
}

NamedTensors Module::named_buffers() const {
  NamedTensors out;
  visit(true, "", [&](const std::string& n, const Tensor& t) { out.emplace_back(n, t); });
  return out;
}

std::vector<Tensor> Module::parameters() const {
  std::vector<Tensor> out;
  visit(false, "", [&](const std::string&, const Tensor& t) { out.push_back(t); });
  return out;
}

void Module::train(bool on) {
  training_ = on;
  for (auto& [n, c] : children_)
    c->train(on);
}

void Module::zero_grad() {
  for (Tensor& p : parameters())
    p.zero_grad();
}

StateDict Module::state_dict() const {
  StateDict out;
  auto add = [&](const std::string& n, const Tensor& t) { out.emplace(n, t.detach().clone()); };
  visit(false, "", add);
  visit(true, "", add);
  return out;
}

void Module::load_state_dict(const StateDict& state, bool strict) {
  NamedTensors mine = named_parameters();
  for (auto& b : named_buffers())
    mine.push_back(b);
  std::set<std::string> seen;
  // Validate everything before changing anything.
  for (const auto& [n, t] : mine) {
    auto it = state.find(n);
    if (it == state.end()) {
      if (strict) fail(fmt::format("load_state_dict: missing entry '{}' (shape {})", n, t.shape()));
      continue;
    }
    seen.insert(n);
    const Tensor& src = it->second;
    if (!src.defined())
      fail(fmt::format("load_state_dict: '{}' is an undefined tensor in the state (the module's has shape {})", n,
                       t.shape()));
    if (!(src.shape() == t.shape()) || src.dtype() != t.dtype())
      fail(fmt::format("load_state_dict: '{}' has shape {} and dtype {} in the state, but {} and {} in the module", n,
                       src.shape(), src.dtype(), t.shape(), t.dtype()));
  }
  if (strict)
    for (const auto& [n, t] : state)
      if (!seen.count(n)) fail(fmt::format("load_state_dict: unexpected entry '{}' (shape {})", n, t.shape()));
  for (auto& [n, t] : mine) {
    auto it = state.find(n);
    if (it == state.end()) continue;
    const Tensor& src = it->second;
    const std::size_t bytes = static_cast<std::size_t>(t.numel()) * autodiff::dtype_size(t.dtype());
    Tensor dst = t;
    if (t.dtype() == autodiff::DType::float32)
      std::memcpy(dst.mutable_data<float>().data(), src.data<float>().data(), bytes);
    else
      std::memcpy(dst.mutable_data<double>().data(), src.data<double>().data(), bytes);
  }
}

std::string Module::describe(int indent) const {
  std::string out = name();
  if (children_.empty()) return out;
  out += "(\n";
  for (const auto& [n, c] : children_)
    out += fmt::format("{:{}}({}): {}\n", "", indent + 2, n, c->describe(indent + 2));
  out += fmt::format("{:{}})", "", indent);
  return out;
}

} // namespace nn
