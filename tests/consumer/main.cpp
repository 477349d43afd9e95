// Uses the installed package: a scalar gradient, and one nn training step on a tensor model.
#include <autodiff/autodiff.hpp>
#include <nn/nn.hpp>

#include <cmath>

int main() {
  autodiff::Tape tape;
  autodiff::Var x = 2.0;
  autodiff::Var y = x * exp(x);
  y.backward();
  if (std::fabs(x.grad() - 3.0 * std::exp(2.0)) > 1e-12) return 1;

  autodiff::manual_seed(0);
  nn::Linear layer(3, 1);
  nn::SGD opt(layer.parameters(), {.lr = 0.1});
  const autodiff::Tensor in = autodiff::ones({4, 3});
  const double before = nn::mse_loss(layer(in), autodiff::zeros({4, 1})).item();
  nn::mse_loss(layer(in), autodiff::zeros({4, 1})).backward();
  opt.step();
  const double after = nn::mse_loss(layer(in), autodiff::zeros({4, 1})).item();
  return after < before ? 0 : 1;
}
