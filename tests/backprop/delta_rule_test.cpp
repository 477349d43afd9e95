// The delta rule generalised (docs/backprop.md, "The general delta rule, in matrix form"):
// delta_l = (W_{l+1} delta_{l+1}) ⊙ f'(v_in_l), dW_l = eta x_{l-1} delta_l^T, equal to reverse mode,
// layer by layer, for random networks. E is the MEAN over the batch of 1/2 ||y - yhat||^2.

#include "networks.hpp"

#include <boost/test/unit_test.hpp>

#include <random>

using namespace backprop_test;

namespace {

constexpr double tol = 1e-12;

NetworkShape random_shape(std::mt19937& rng, Activation act, bool bias, bool many) {
  std::uniform_int_distribution<std::size_t> layers(1, 6), width(1, 8), batch(2, 7);
  NetworkShape s{{}, act, bias, many ? batch(rng) : 1};
  const std::size_t L = layers(rng);
  for (std::size_t l = 0; l <= L; ++l)
    s.widths.push_back(width(rng));
  return s;
}

// Returns whether reverse mode found any nonzero weight update, so callers can see the comparison
// was not all zeros (dead relu networks).
bool compare_layer_by_layer(const NetworkShape& shape, const Network& net, const Batch& batch, double eta) {
  const Backprop hand = backprop_hand(net, batch, eta);
  const Backprop ad = backprop_autodiff(net, batch, eta);
  BOOST_TEST(scaled_diff(ad.E, hand.E) <= tol, describe(shape) << ": E " << ad.E << " vs " << hand.E);
  for (std::size_t l = 1; l <= net.layers(); ++l) {
    BOOST_TEST_CONTEXT(describe(shape) << ", layer " << l) {
      BOOST_TEST(max_diff(ad.Z[l], hand.Z[l]) <= tol);
      BOOST_TEST(max_diff(ad.delta[l], hand.delta[l]) <= tol);
      BOOST_TEST(max_diff(ad.dW[l], hand.dW[l]) <= tol);
      BOOST_TEST(max_diff(ad.db[l], hand.db[l]) <= tol);
    }
  }
  for (std::size_t l = 1; l <= net.layers(); ++l)
    for (const Vec& row : ad.dW[l])
      for (double v : row)
        if (v != 0.0) return true;
  return false;
}

} // namespace

BOOST_AUTO_TEST_SUITE(delta_rule)

// Every combination of activation, bias and batch kind, 40 random shapes each (L 1..6, widths 1..8).
BOOST_AUTO_TEST_CASE(random_networks_agree_with_reverse_mode) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<double> rate(0.01, 1.0);
  int compared = 0;
  int live[3] = {0, 0, 0}; // per activation: instances with some nonzero update
  for (Activation act : {Activation::sigmoid, Activation::tanh, Activation::relu})
    for (bool bias : {false, true})
      for (bool many : {false, true})
        for (int trial = 0; trial < 40; ++trial) {
          const NetworkShape shape = random_shape(rng, act, bias, many);
          const auto [net, batch] = random_instance(rng, shape);
          live[static_cast<int>(act)] += compare_layer_by_layer(shape, net, batch, rate(rng)) ? 1 : 0;
          ++compared;
        }
  BOOST_TEST(compared == 3 * 2 * 2 * 40);
  BOOST_TEST(live[0] == 160);
  BOOST_TEST(live[1] == 160);
  BOOST_TEST(live[2] >= 80, "relu instances with nonzero gradients: " << live[2]);
}

// The extremes of the ranges, which random draws may miss.
BOOST_AUTO_TEST_CASE(extreme_shapes) {
  std::mt19937 rng(11);
  const std::vector<std::vector<std::size_t>> shapes{
      {1, 1}, {8, 8}, {1, 1, 1, 1, 1, 1, 1}, {8, 8, 8, 8, 8, 8, 8}, {8, 1, 8, 1, 8, 1, 8}, {3, 2, 1}};
  for (const auto& widths : shapes)
    for (Activation act : {Activation::sigmoid, Activation::tanh, Activation::relu})
      for (bool bias : {false, true})
        for (std::size_t B : {std::size_t{1}, std::size_t{16}}) {
          const NetworkShape shape{widths, act, bias, B};
          const auto [net, batch] = random_instance(rng, shape);
          compare_layer_by_layer(shape, net, batch, 0.5);
        }
}

// The batch convention: with the mean, the batch's updates are the average of the single-example
// updates (the 1/B sits in delta_L and propagates linearly).
BOOST_AUTO_TEST_CASE(batch_update_is_mean_of_example_updates) {
  std::mt19937 rng(3);
  const NetworkShape shape{{4, 5, 3, 2}, Activation::tanh, true, 6};
  const auto [net, batch] = random_instance(rng, shape);
  const Backprop whole = backprop_autodiff(net, batch, 0.5);
  std::vector<Mat> mean_dW(whole.dW.size());
  for (std::size_t l = 1; l < whole.dW.size(); ++l)
    mean_dW[l].assign(whole.dW[l].size(), Vec(whole.dW[l][0].size(), 0.0));
  for (std::size_t n = 0; n < batch.X.size(); ++n) {
    const Batch one{{batch.X[n]}, {batch.Y[n]}};
    const Backprop single = backprop_hand(net, one, 0.5);
    for (std::size_t l = 1; l < whole.dW.size(); ++l)
      for (std::size_t i = 0; i < whole.dW[l].size(); ++i)
        for (std::size_t j = 0; j < whole.dW[l][i].size(); ++j)
          mean_dW[l][i][j] += single.dW[l][i][j] / static_cast<double>(batch.X.size());
  }
  for (std::size_t l = 1; l < whole.dW.size(); ++l)
    BOOST_TEST(max_diff(whole.dW[l], mean_dW[l]) <= tol, "layer " << l);
}

// relu'(0) = 0 on both sides: a unit sitting exactly on the kink passes no gradient either way.
BOOST_AUTO_TEST_CASE(relu_kink_convention_matches) {
  Network net;
  net.widths = {2, 2, 1};
  net.act = Activation::relu;
  net.W = {{}, {{1.0, 0.5}, {-1.0, 0.25}}, {{0.75}, {0.5}}};
  net.b = {{}, {0.0, 0.0}, {0.0}};
  const Batch batch{{{0.5, 0.5}}, {{2.0}}}; // hidden unit 1: 0.5 - 0.5 = 0 exactly
  const Backprop hand = backprop_hand(net, batch, 1.0);
  const Backprop ad = backprop_autodiff(net, batch, 1.0);
  BOOST_TEST(hand.Z[1][0][0] == 0.0);
  BOOST_TEST(ad.delta[1][0][0] == 0.0);
  BOOST_TEST(hand.delta[1][0][0] == 0.0);
  BOOST_TEST(max_gradient_diff(ad, hand) <= tol);
  BOOST_TEST(ad.delta[1][0][1] != 0.0); // the other unit is active and does get a delta
}

BOOST_AUTO_TEST_SUITE_END()
