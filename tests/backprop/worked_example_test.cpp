// The blog post's 3-2-1 sigmoid network (docs/backprop.md, "The example with numbers"): every
// quantity by the hand formulas in plain double, by tapegrad's reverse mode, and as documented.

#include "networks.hpp"

#include <autodiff/autodiff.hpp>

#include <boost/test/unit_test.hpp>

#include <array>
#include <cmath>
#include <random>

using namespace autodiff;

namespace {

struct Example {
  std::array<double, 3> x;
  double y;
  std::array<std::array<double, 2>, 3> W01; // rows: inputs i, columns: hidden units j
  std::array<double, 2> W12;                // rows: hidden units i (one output)
  double eta;
};

const Example post_example{{1.0, 0.5, -1.5}, 1.0, {{{0.1, -0.2}, {0.4, 0.3}, {-0.5, 0.2}}}, {0.7, -0.3}, 0.5};

// Every number the document's tables list.
struct Quantities {
  std::array<double, 2> vin1, vout1, fprime1;
  double vin2, yhat, fprime2, E, dE_dyhat;
  double delta2;
  std::array<double, 2> W12_delta2; // W^(1->2) delta^(2)
  std::array<double, 2> delta1;
  std::array<double, 2> gW12, dW12;                // dE/dW12, Delta W12
  std::array<std::array<double, 2>, 3> gW01, dW01; // dE/dW01, Delta W01
};

double sig(double z) { return 1.0 / (1.0 + std::exp(-z)); }

// The hand formulas, exactly as docs/backprop.md writes them for this network.
Quantities by_hand(const Example& ex) {
  Quantities q{};
  for (int j = 0; j < 2; ++j) {
    q.vin1[j] = ex.W01[0][j] * ex.x[0] + ex.W01[1][j] * ex.x[1] + ex.W01[2][j] * ex.x[2];
    q.vout1[j] = sig(q.vin1[j]);
    q.fprime1[j] = q.vout1[j] * (1.0 - q.vout1[j]);
  }
  q.vin2 = ex.W12[0] * q.vout1[0] + ex.W12[1] * q.vout1[1];
  q.yhat = sig(q.vin2);
  q.fprime2 = q.yhat * (1.0 - q.yhat);
  q.E = 0.5 * (ex.y - q.yhat) * (ex.y - q.yhat);
  q.dE_dyhat = -(ex.y - q.yhat);
  q.delta2 = (ex.y - q.yhat) * q.fprime2;
  for (int j = 0; j < 2; ++j) {
    q.W12_delta2[j] = ex.W12[j] * q.delta2;
    q.delta1[j] = q.W12_delta2[j] * q.fprime1[j];
  }
  for (int i = 0; i < 2; ++i) {
    q.gW12[i] = -q.delta2 * q.vout1[i];
    q.dW12[i] = ex.eta * q.delta2 * q.vout1[i];
  }
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 2; ++j) {
      q.gW01[i][j] = -q.delta1[j] * ex.x[i];
      q.dW01[i][j] = ex.eta * q.delta1[j] * ex.x[i];
    }
  return q;
}

// Reverse mode on E = 1/2 (y - yhat)^2, built neuron by neuron; the deltas are minus the adjoints
// of the pre-activations, the updates -eta times the adjoints of the weights.
Quantities by_autodiff(const Example& ex) {
  Tape tape;
  std::array<Var, 3> x{ex.x[0], ex.x[1], ex.x[2]};
  std::array<std::array<Var, 2>, 3> W01;
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 2; ++j)
      W01[i][j] = ex.W01[i][j];
  std::array<Var, 2> W12{ex.W12[0], ex.W12[1]};

  std::array<Var, 2> vin1, vout1;
  for (int j = 0; j < 2; ++j) {
    vin1[j] = W01[0][j] * x[0] + W01[1][j] * x[1] + W01[2][j] * x[2];
    vout1[j] = sigmoid(vin1[j]);
  }
  Var vin2 = W12[0] * vout1[0] + W12[1] * vout1[1];
  Var yhat = sigmoid(vin2);
  Var E = 0.5 * square(ex.y - yhat);
  E.backward();

  Quantities q{};
  for (int j = 0; j < 2; ++j) {
    q.vin1[j] = vin1[j].value();
    q.vout1[j] = vout1[j].value();
    q.fprime1[j] = vout1[j].grad() == 0 ? 0 : vin1[j].grad() / vout1[j].grad(); // dv_out/dv_in by chain rule
    q.W12_delta2[j] = -vout1[j].grad();                                         // dE/dv_out = -(W12 delta2)
    q.delta1[j] = -vin1[j].grad();
  }
  q.vin2 = vin2.value();
  q.yhat = yhat.value();
  q.E = E.value();
  q.dE_dyhat = yhat.grad();
  q.fprime2 = vin2.grad() / yhat.grad();
  q.delta2 = -vin2.grad();
  for (int i = 0; i < 2; ++i) {
    q.gW12[i] = W12[i].grad();
    q.dW12[i] = -ex.eta * W12[i].grad();
  }
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 2; ++j) {
      q.gW01[i][j] = W01[i][j].grad();
      q.dW01[i][j] = -ex.eta * W01[i][j].grad();
    }
  return q;
}

void check_agree(const Quantities& a, const Quantities& h, double tol) {
  auto near = [tol](double u, double v) { return backprop_test::scaled_diff(u, v) <= tol; };
  for (int j = 0; j < 2; ++j) {
    BOOST_TEST_CONTEXT("hidden unit " << j + 1) {
      BOOST_TEST(near(a.vin1[j], h.vin1[j]));
      BOOST_TEST(near(a.vout1[j], h.vout1[j]));
      BOOST_TEST(near(a.fprime1[j], h.fprime1[j]));
      BOOST_TEST(near(a.W12_delta2[j], h.W12_delta2[j]));
      BOOST_TEST(near(a.delta1[j], h.delta1[j]), "delta1 " << a.delta1[j] << " vs " << h.delta1[j]);
      BOOST_TEST(near(a.gW12[j], h.gW12[j]));
      BOOST_TEST(near(a.dW12[j], h.dW12[j]), "dW12 " << a.dW12[j] << " vs " << h.dW12[j]);
    }
  }
  BOOST_TEST(near(a.vin2, h.vin2));
  BOOST_TEST(near(a.yhat, h.yhat));
  BOOST_TEST(near(a.fprime2, h.fprime2));
  BOOST_TEST(near(a.E, h.E));
  BOOST_TEST(near(a.dE_dyhat, h.dE_dyhat));
  BOOST_TEST(near(a.delta2, h.delta2), "delta2 " << a.delta2 << " vs " << h.delta2);
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 2; ++j) {
      BOOST_TEST(near(a.gW01[i][j], h.gW01[i][j]), "dE/dW01[" << i << "][" << j << "]");
      BOOST_TEST(near(a.dW01[i][j], h.dW01[i][j]),
                 "dW01[" << i << "][" << j << "] " << a.dW01[i][j] << " vs " << h.dW01[i][j]);
    }
}

// True when `value` rounds to `documented` at 6 significant digits.
bool six_digits(double value, double documented) {
  const double half_unit = 0.5 * std::pow(10.0, std::floor(std::log10(std::fabs(documented))) - 5);
  return std::fabs(value - documented) <= half_unit * (1 + 1e-9);
}
#define CHECK_DOC(value, documented)                                                                                   \
  BOOST_TEST(six_digits(value, documented), #value " = " << (value) << ", documented " << (documented))

Example stepped(const Example& ex, const Quantities& q) {
  Example next = ex;
  for (int i = 0; i < 2; ++i)
    next.W12[i] += q.dW12[i];
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 2; ++j)
      next.W01[i][j] += q.dW01[i][j];
  return next;
}

} // namespace

BOOST_AUTO_TEST_SUITE(worked_example)

BOOST_AUTO_TEST_CASE(hand_formulas_equal_reverse_mode) {
  check_agree(by_autodiff(post_example), by_hand(post_example), 1e-12);
}

BOOST_AUTO_TEST_CASE(documented_numbers) {
  const Quantities q = by_autodiff(post_example);
  CHECK_DOC(q.vin1[0], 1.05000);
  CHECK_DOC(q.vin1[1], -0.350000);
  CHECK_DOC(q.vout1[0], 0.740775);
  CHECK_DOC(q.vout1[1], 0.413382);
  CHECK_DOC(q.fprime1[0], 0.192027);
  CHECK_DOC(q.fprime1[1], 0.242497);
  CHECK_DOC(q.vin2, 0.394528);
  CHECK_DOC(q.yhat, 0.597372);
  CHECK_DOC(q.fprime2, 0.240519);
  CHECK_DOC(q.E, 0.0810546);
  CHECK_DOC(q.dE_dyhat, -0.402628);
  CHECK_DOC(q.delta2, 0.0968395);
  CHECK_DOC(q.W12_delta2[0], 0.0677877);
  CHECK_DOC(q.W12_delta2[1], -0.0290519);
  CHECK_DOC(q.delta1[0], 0.0130171);
  CHECK_DOC(q.delta1[1], -0.00704500);
  CHECK_DOC(q.gW12[0], -0.0717363);
  CHECK_DOC(q.gW12[1], -0.0400317);
  CHECK_DOC(q.dW12[0], 0.0358681);
  CHECK_DOC(q.dW12[1], 0.0200159);
  const double gW01[3][2] = {{-0.0130171, 0.00704500}, {-0.00650855, 0.00352250}, {0.0195256, -0.0105675}};
  const double dW01[3][2] = {{0.00650855, -0.00352250}, {0.00325427, -0.00176125}, {-0.00976282, 0.00528375}};
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 2; ++j) {
      CHECK_DOC(q.gW01[i][j], gW01[i][j]);
      CHECK_DOC(q.dW01[i][j], dW01[i][j]);
    }

  const Example next = stepped(post_example, q);
  CHECK_DOC(next.W12[0], 0.735868);
  CHECK_DOC(next.W12[1], -0.279984);
  const double W01[3][2] = {{0.106509, -0.203522}, {0.403254, 0.298239}, {-0.509763, 0.205284}};
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 2; ++j)
      CHECK_DOC(next.W01[i][j], W01[i][j]);

  const Quantities after = by_autodiff(next);
  CHECK_DOC(after.vin1[0], 1.07278);
  CHECK_DOC(after.vin1[1], -0.362329);
  CHECK_DOC(after.vout1[0], 0.745125);
  CHECK_DOC(after.vout1[1], 0.410396);
  CHECK_DOC(after.vin2, 0.433410);
  CHECK_DOC(after.yhat, 0.606688);
  CHECK_DOC(after.E, 0.0773473);
  CHECK_DOC(q.E - after.E, 0.00370724);

  double grad_sq = 0;
  for (int i = 0; i < 2; ++i)
    grad_sq += q.gW12[i] * q.gW12[i];
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 2; ++j)
      grad_sq += q.gW01[i][j] * q.gW01[i][j];
  CHECK_DOC(grad_sq, 0.00751540);
  CHECK_DOC(post_example.eta * grad_sq, 0.00375770);
}

// The document also claims every gradient entry matches a central difference of E.
BOOST_AUTO_TEST_CASE(gradient_matches_finite_differences) {
  auto loss = [](const std::vector<Var>& w) {
    const Example& ex = post_example;
    Var vin2 = 0.0 * w[0];
    for (int j = 0; j < 2; ++j)
      vin2 += w[6 + j] * sigmoid(w[j] * ex.x[0] + w[2 + j] * ex.x[1] + w[4 + j] * ex.x[2]);
    return 0.5 * square(ex.y - sigmoid(vin2));
  };
  const std::vector<double> w{0.1, -0.2, 0.4, 0.3, -0.5, 0.2, 0.7, -0.3};
  const GradcheckReport r = gradcheck(loss, w, {.eps = 1e-6, .atol = 1e-9, .rtol = 1e-7});
  BOOST_TEST(r.passed, r.abs_error);
  const Quantities q = by_hand(post_example);
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 2; ++j)
      BOOST_TEST(std::fabs(r.numeric[static_cast<std::size_t>(2 * i + j)] - q.gW01[i][j]) < 1e-9);
  for (int i = 0; i < 2; ++i)
    BOOST_TEST(std::fabs(r.numeric[static_cast<std::size_t>(6 + i)] - q.gW12[i]) < 1e-9);
}

BOOST_AUTO_TEST_CASE(random_instances) {
  std::mt19937 rng(20240321);
  std::uniform_real_distribution<double> u(-2.0, 2.0), target(0.0, 1.0), rate(0.01, 2.0);
  for (int trial = 0; trial < 200; ++trial) {
    Example ex{};
    for (double& v : ex.x)
      v = u(rng);
    ex.y = target(rng);
    for (auto& row : ex.W01)
      for (double& w : row)
        w = u(rng);
    for (double& w : ex.W12)
      w = u(rng);
    ex.eta = rate(rng);
    BOOST_TEST_CONTEXT("trial " << trial) { check_agree(by_autodiff(ex), by_hand(ex), 1e-12); }
  }
}

BOOST_AUTO_TEST_SUITE_END()
