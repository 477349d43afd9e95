// Uses the installed package: a scalar gradient, a tensor Hessian-vector product, and one nn
// training step on a tensor model.
#include <autodiff/autodiff.hpp>
#include <nn/nn.hpp>

#include <cmath>

int main() {
  autodiff::Tape tape;
  autodiff::Var x = 2.0;
  autodiff::Var y = x * exp(x);
  y.backward();
  if (std::fabs(x.grad() - 3.0 * std::exp(2.0)) > 1e-12) return 1;

  // H v of sum(x^3) is 6 x v elementwise.
  const autodiff::Tensor at = autodiff::tensor({1.0, 2.0}, autodiff::DType::float64);
  const autodiff::Tensor v = autodiff::tensor({1.0, -1.0}, autodiff::DType::float64);
  const autodiff::Tensor hv = autodiff::hvp([](const autodiff::Tensor& t) { return sum(t * t * t); }, at, v);
  if (std::fabs(hv.at<double>({0}) - 6.0) > 1e-12 || std::fabs(hv.at<double>({1}) + 12.0) > 1e-12) return 1;

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
