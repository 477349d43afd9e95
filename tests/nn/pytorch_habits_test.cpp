// PyTorch habits that must work here or fail loudly: the training loop with no tape calls,
// freezing through any copy of a parameter, and gradient clipping when gradients could alias.

#include "../tensor/helpers.hpp"

#include <nn/nn.hpp>

#include <boost/test/unit_test.hpp>

#include <cmath>
#include <string>

using autodiff::DType;
using autodiff::Tensor;

using tapegrad_test::contains;
using tapegrad_test::error_of;

BOOST_AUTO_TEST_SUITE(pytorch_habits)

BOOST_AUTO_TEST_CASE(the_pytorch_training_loop_runs_in_flat_memory) {
  autodiff::manual_seed(3);
  auto model = nn::mlp({4, 16, 16, 3}, "relu");
  nn::Adam opt(model->parameters(), {.lr = 1e-2});
  const Tensor x = autodiff::randn({64, 4});
  const Tensor y = (autodiff::rand({64}) * 3.0).to(DType::int64);
  autodiff::TensorMemoryStats at_10{}, at_end{};
  double first = 0, last = 0;
  for (int step = 0; step < 2000; ++step) { // forward, loss, zero_grad, backward, step: no tape calls
    const Tensor loss = nn::cross_entropy((*model)(x), y);
    opt.zero_grad();
    loss.backward();
    opt.step();
    if (step == 0) first = loss.item();
    if (step == 10) at_10 = autodiff::tensor_memory_stats();
    if (step == 1999) at_end = autodiff::tensor_memory_stats(), last = loss.item();
  }
  BOOST_TEST(last < first);
  // It grew by one step's saved tensors per step before backward() freed the graph (2.7 GB after
  // 20,000 steps of a tiny MLP).
  BOOST_TEST(at_end.heap_allocations == at_10.heap_allocations);
  BOOST_TEST(at_end.cached_bytes == at_10.cached_bytes);
}

BOOST_AUTO_TEST_CASE(freezing_through_parameters_freezes_the_module) {
  autodiff::manual_seed(4);
  auto model = nn::mlp({3, 4, 2}, "tanh", DType::float64);
  nn::SGD opt(model->parameters(), {.lr = 0.5});
  model->parameters()[0].requires_grad(false); // the first layer's weight, through a copy
  const auto named = model->named_parameters();
  BOOST_TEST(named[0].first == "0.weight");
  BOOST_TEST(!named[0].second.requires_grad()); // reported the old per-handle flag before
  BOOST_TEST(named[1].second.requires_grad());
  const std::vector<double> frozen_before = named[0].second.to_vector();
  const std::vector<double> bias_before = named[1].second.to_vector();
  const Tensor x = autodiff::randn({5, 3}, DType::float64);
  for (int step = 0; step < 3; ++step) {
    opt.zero_grad();
    autodiff::sum(autodiff::square((*model)(x))).backward();
    BOOST_TEST(!named[0].second.grad().defined()); // no gradient is recorded for it
    opt.step();
  }
  BOOST_TEST(named[0].second.to_vector() == frozen_before);
  BOOST_TEST(named[1].second.to_vector() != bias_before);
  // A frozen parameter that kept a gradient from before it was frozen is still left alone.
  model->parameters()[0].requires_grad(true);
  opt.zero_grad();
  autodiff::sum(autodiff::square((*model)(x))).backward();
  model->parameters()[0].requires_grad(false);
  opt.step();
  BOOST_TEST(named[0].second.to_vector() == frozen_before);
}

BOOST_AUTO_TEST_CASE(an_optimizer_of_parameters_that_need_no_gradient_is_an_error) {
  Tensor w = autodiff::ones({2});
  const std::string e = error_of([&] { nn::SGD opt({w}, {.lr = 0.1}); });
  BOOST_TEST(contains(e, "SGD: parameter 0 (shape [2]) does not require grad"), e);
}

BOOST_AUTO_TEST_CASE(clipping_scales_each_gradient_once) {
  // reshape + add hand one adjoint to both leaves: their gradients used to share a buffer, and
  // clipping in place scaled it twice.
  Tensor p1 = autodiff::tensor({1, 2, 3, 4}, DType::float64), p2 = autodiff::ones({2, 2}, DType::float64);
  p1.requires_grad(true);
  p2.requires_grad(true);
  autodiff::sum(autodiff::reshape(p1, {2, 2}) + p2).backward();
  const double norm = nn::clip_grad_norm_({p1, p2}, 1.0); // both gradients are all ones: norm sqrt(8)
  BOOST_TEST(std::abs(norm - std::sqrt(8.0)) < 1e-12);
  const double scale = 1.0 / (std::sqrt(8.0) + 1e-6);
  for (const Tensor& p : {p1, p2})
    for (double g : p.grad().to_vector())
      BOOST_TEST(std::abs(g - scale) < 1e-15);
  autodiff::sum(autodiff::reshape(p1, {2, 2}) * 3.0 + p2).backward();
  nn::clip_grad_value_({p1, p2}, 0.5);
  BOOST_TEST(p2.grad().to_vector() == (std::vector<double>(4, 0.5)));
}

BOOST_AUTO_TEST_SUITE_END()
