// Generates the optimizer trajectories that optim_test.cpp checks against, with LibTorch 1.13
// (Debian libtorch-dev). Built only with -DTAPEGRAD_TORCH_REFERENCE=ON; run it and paste its output.
#include <cstdio>
#include <functional>
#include <memory>
#include <torch/torch.h>
#include <vector>

int main() {
  torch::manual_seed(0);
  const std::vector<double> w0{0.5, -1.2, 2.0, 0.03, -0.7};
  const std::vector<double> a{1.0, 3.0, 0.5, 2.0, 1.5};
  const std::vector<double> b{0.2, -0.4, 1.0, 0.7, -0.3};
  auto opts = torch::TensorOptions().dtype(torch::kFloat64);
  auto A = torch::tensor(a, opts), B = torch::tensor(b, opts);
  struct Case {
    const char* name;
    std::function<std::unique_ptr<torch::optim::Optimizer>(std::vector<torch::Tensor>)> make;
  };
  std::vector<Case> cases{
      {"sgd", [](auto p) { return std::make_unique<torch::optim::SGD>(p, torch::optim::SGDOptions(0.1)); }},
      {"sgd_momentum",
       [](auto p) {
         return std::make_unique<torch::optim::SGD>(
             p, torch::optim::SGDOptions(0.1).momentum(0.9).dampening(0.1).weight_decay(0.01));
       }},
      {"sgd_nesterov",
       [](auto p) {
         return std::make_unique<torch::optim::SGD>(
             p, torch::optim::SGDOptions(0.05).momentum(0.9).nesterov(true).weight_decay(0.001));
       }},
      {"adam", [](auto p) { return std::make_unique<torch::optim::Adam>(p, torch::optim::AdamOptions(0.1)); }},
      {"adam_amsgrad",
       [](auto p) {
         return std::make_unique<torch::optim::Adam>(p,
                                                     torch::optim::AdamOptions(0.05).amsgrad(true).weight_decay(0.01));
       }},
      {"adamw",
       [](auto p) {
         return std::make_unique<torch::optim::AdamW>(p, torch::optim::AdamWOptions(0.05).weight_decay(0.1));
       }},
      {"rmsprop",
       [](auto p) { return std::make_unique<torch::optim::RMSprop>(p, torch::optim::RMSpropOptions(0.01)); }},
      {"rmsprop_centered",
       [](auto p) {
         return std::make_unique<torch::optim::RMSprop>(
             p, torch::optim::RMSpropOptions(0.01).momentum(0.5).centered(true).weight_decay(0.01));
       }},
      {"adagrad",
       [](auto p) {
         return std::make_unique<torch::optim::Adagrad>(
             p, torch::optim::AdagradOptions(0.1).lr_decay(0.01).weight_decay(0.01).initial_accumulator_value(0.1));
       }},
  };
  for (auto& c : cases) {
    auto w = torch::tensor(w0, opts).requires_grad_(true);
    auto opt = c.make({w});
    for (int s = 0; s < 20; ++s) {
      opt->zero_grad();
      auto loss = (0.5 * A * w * w + B * torch::sin(w)).sum();
      loss.backward();
      opt->step();
    }
    std::printf("{\"%s\", {", c.name);
    auto acc = w.accessor<double, 1>();
    for (int i = 0; i < 5; ++i)
      std::printf("%.17g%s", acc[i], i < 4 ? ", " : "");
    std::printf("}},\n");
  }
}
