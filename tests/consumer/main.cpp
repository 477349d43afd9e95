#include <autodiff/autodiff.hpp>

#include <cmath>

int main() {
  autodiff::Tape tape;
  autodiff::Var x = 2.0;
  autodiff::Var y = x * exp(x);
  y.backward();
  return std::fabs(x.grad() - 3.0 * std::exp(2.0)) < 1e-12 ? 0 : 1;
}
