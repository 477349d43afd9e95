// The comparison has teeth: the same hand rule with one classic mistake must disagree with
// reverse mode by far more than the 1e-12 the correct rule agrees to.

#include "networks.hpp"

#include <boost/test/unit_test.hpp>

#include <random>

using namespace backprop_test;

namespace {

constexpr double tol = 1e-12;
// A wrong rule must miss by a million times the tolerance at least, and by a visible fraction of
// the largest update, so that no rounding could explain it.
constexpr double far = 1e6 * tol;

double largest_update(const Backprop& r) {
  double m = 0;
  for (std::size_t l = 1; l < r.dW.size(); ++l)
    for (const Vec& row : r.dW[l])
      for (double v : row)
        m = std::max(m, std::fabs(v));
  return m;
}

void expect_disagreement(const NetworkShape& shape, const Network& net, const Batch& batch, Mistake m) {
  const Backprop ad = backprop_autodiff(net, batch, 0.5);
  const double correct = max_gradient_diff(ad, backprop_hand(net, batch, 0.5));
  const double broken = max_gradient_diff(ad, backprop_hand(net, batch, 0.5, m));
  BOOST_TEST_CONTEXT(describe(shape) << ", mistake: " << name(m)) {
    BOOST_TEST(correct <= tol);
    BOOST_TEST(broken > far);
    // Using already updated weights is a second-order mistake (its effect is eta times an update),
    // the others are first-order: they change the updates by a fraction of themselves.
    const double fraction = m == Mistake::stale_weights ? 1e-3 : 1e-2;
    BOOST_TEST(broken > fraction * largest_update(ad),
               "broken " << broken << ", largest update " << largest_update(ad));
  }
}

} // namespace

BOOST_AUTO_TEST_SUITE(broken_rules)

// The post's own example: each mistake changes its numbers visibly.
BOOST_AUTO_TEST_CASE(post_example_detects_each_mistake) {
  Network net;
  net.widths = {3, 2, 1};
  net.act = Activation::sigmoid;
  net.W = {{}, {{0.1, -0.2}, {0.4, 0.3}, {-0.5, 0.2}}, {{0.7}, {-0.3}}};
  net.b = {{}, {0.0, 0.0}, {0.0}};
  const Batch batch{{{1.0, 0.5, -1.5}}, {{1.0}}};
  const NetworkShape shape{net.widths, net.act, false, 1};
  for (Mistake m : {Mistake::drop_fprime, Mistake::flipped_sign, Mistake::literal_loss, Mistake::stale_weights})
    expect_disagreement(shape, net, batch, m);

  // Literally E = y - yhat: delta2 = f'(v_in2) = 0.240519 instead of 0.0968395.
  const Backprop literal = backprop_hand(net, batch, 0.5, Mistake::literal_loss);
  BOOST_TEST(std::fabs(literal.delta[2][0][0] - 0.240519) < 1e-6);
  // A flipped sign turns the step uphill: E grows after the update.
  const Backprop up = backprop_hand(net, batch, 0.5, Mistake::flipped_sign);
  Network climbed = net;
  for (std::size_t l = 1; l <= 2; ++l)
    for (std::size_t i = 0; i < net.W[l].size(); ++i)
      for (std::size_t j = 0; j < net.W[l][i].size(); ++j)
        climbed.W[l][i][j] += up.dW[l][i][j];
  BOOST_TEST(forward_hand(climbed, batch).E > forward_hand(net, batch).E);
}

// Random networks: every mistake, on every instance. Sigmoid and tanh only, and at most 4 layers,
// so that no instance has vanishing or dead-unit gradients a wrong rule could coincide with.
BOOST_AUTO_TEST_CASE(random_networks_detect_each_mistake) {
  std::mt19937 rng(99);
  std::uniform_int_distribution<std::size_t> layers(2, 4), width(2, 6), batch_size(1, 5);
  for (int trial = 0; trial < 60; ++trial) {
    const Activation act = trial % 2 == 0 ? Activation::sigmoid : Activation::tanh;
    const std::size_t L = layers(rng);
    const std::size_t n = width(rng);
    // Square layers, so that the transposed variants are well-formed and only the index order is wrong.
    const NetworkShape square_shape{std::vector<std::size_t>(L + 1, n), act, trial % 3 == 0, batch_size(rng)};
    const auto [net, batch] = random_instance(rng, square_shape);
    for (Mistake m : {Mistake::drop_fprime, Mistake::flipped_sign, Mistake::literal_loss, Mistake::transposed_backward,
                      Mistake::transposed_update, Mistake::stale_weights})
      expect_disagreement(square_shape, net, batch, m);
  }
}

// The transposed variants only make sense for square layers; anything else is refused, not read
// out of bounds.
BOOST_AUTO_TEST_CASE(transposed_variants_refuse_non_square_layers) {
  std::mt19937 rng(5);
  const auto [net, batch] = random_instance(rng, {{3, 2, 1}, Activation::sigmoid, false, 1});
  BOOST_CHECK_THROW(backprop_hand(net, batch, 0.5, Mistake::transposed_backward), autodiff::Error);
  BOOST_CHECK_THROW(backprop_hand(net, batch, 0.5, Mistake::transposed_update), autodiff::Error);
}

BOOST_AUTO_TEST_SUITE_END()
