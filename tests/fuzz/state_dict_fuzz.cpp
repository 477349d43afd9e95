// libFuzzer target for Module::load_state_dict and Optimizer::load_state_dict from safetensors
// bytes: any file either loads or throws autodiff::Error (never another exception, UB or a crash),
// a refused load changes nothing, and an accepted optimizer state survives a step and a round trip.
// nn::load_state_dict takes a path, so each input goes through one scratch file of this process.

#include "scratch_file.hpp"

#include <nn/nn.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <unistd.h>

namespace {
bool same(const nn::StateDict& a, const nn::StateDict& b) {
  if (a.size() != b.size()) return false;
  for (const auto& [k, t] : a) {
    const auto it = b.find(k);
    if (it == b.end() || !(it->second.shape() == t.shape()) || it->second.dtype() != t.dtype()) return false;
    const auto x = t.to_vector(), y = it->second.to_vector();
    for (std::size_t i = 0; i < x.size(); ++i)
      if (!(x[i] == y[i]) && !(x[i] != x[i] && y[i] != y[i])) return false;
  }
  return true;
}

// Loads `state` into `opt`; on error, checks that nothing changed.
template <class Opt> void try_optimizer(Opt& opt, nn::Module& model, const nn::StateDict& state) {
  const nn::StateDict before = opt.state_dict();
  try {
    opt.load_state_dict(state);
  } catch (const autodiff::Error&) {
    if (!same(before, opt.state_dict())) std::abort();
    return;
  }
  // Accepted: a step must run (no UB with any accepted step count or buffer) and the state must
  // round-trip.
  autodiff::Tape tape;
  opt.zero_grad();
  nn::mse_loss(model(autodiff::ones({1, 2})), autodiff::zeros({1, 2})).backward();
  opt.step();
  const nn::StateDict after = opt.state_dict();
  opt.load_state_dict(after);
  if (!same(after, opt.state_dict())) std::abort();
}
} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::filesystem::path scratch = tapegrad_fuzz::write_scratch("state", data, size);
  nn::StateDict state;
  try {
    state = nn::load_state_dict(scratch);
  } catch (const autodiff::Error&) {
    return 0;
  }
  autodiff::manual_seed(1);
  auto model = nn::mlp({2, 3, 2}, "tanh"); // parameters 0.weight [3,2], 0.bias [3], 2.weight [2,3], 2.bias [2]
  for (bool strict : {true, false}) {
    const nn::StateDict before = model->state_dict();
    try {
      model->load_state_dict(state, strict);
    } catch (const autodiff::Error&) {
      if (!same(before, model->state_dict())) std::abort();
    }
  }
  nn::Adam adam(model->parameters(), {.amsgrad = true});
  try_optimizer(adam, *model, state);
  nn::SGD sgd(model->parameters(), {.lr = 0.1, .momentum = 0.9});
  try_optimizer(sgd, *model, state);
  nn::RMSprop rms(model->parameters(), {.momentum = 0.5, .centered = true});
  try_optimizer(rms, *model, state);
  nn::Adagrad adagrad(model->parameters());
  try_optimizer(adagrad, *model, state);
  return 0;
}
