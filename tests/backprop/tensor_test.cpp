// The same networks with autodiff::Tensor: the deltas, read through retain_grad() on the
// pre-activations, and the updates equal the scalar Var network's and the hand rule's.

#include "networks.hpp"

#include <autodiff/tensor.hpp>

#include <boost/test/unit_test.hpp>

using namespace backprop_test;
using autodiff::DType;
using autodiff::Tensor;

namespace {

Tensor to_tensor(const Mat& m) {
  std::vector<double> flat;
  for (const Vec& row : m)
    flat.insert(flat.end(), row.begin(), row.end());
  return autodiff::from_vector(flat, {static_cast<std::int64_t>(m.size()), static_cast<std::int64_t>(m[0].size())},
                               DType::float64);
}
Mat to_mat(const Tensor& t) {
  const auto v = t.to_vector();
  Mat m(static_cast<std::size_t>(t.size(0)), Vec(static_cast<std::size_t>(t.size(1))));
  for (std::size_t i = 0; i < m.size(); ++i)
    for (std::size_t j = 0; j < m[i].size(); ++j)
      m[i][j] = v[i * m[i].size() + j];
  return m;
}

// Z_l = A_{l-1} W_l + b_l, A_l = f(Z_l), E = mean over rows of 1/2 ||Y - A_L||^2.
Backprop backprop_tensor(const Network& net, const Batch& batch, double eta) {
  const std::size_t L = net.layers();
  autodiff::Tape tape;
  std::vector<Tensor> W(L + 1), b(L + 1), Z(L + 1);
  Tensor a = to_tensor(batch.X);
  for (std::size_t l = 1; l <= L; ++l) {
    W[l] = to_tensor(net.W[l]).requires_grad(true);
    Z[l] = autodiff::matmul(a, W[l]);
    if (net.bias) {
      b[l] = autodiff::from_vector(net.b[l], {static_cast<std::int64_t>(net.b[l].size())}, DType::float64)
                 .requires_grad(true);
      Z[l] = Z[l] + b[l];
    }
    Z[l].retain_grad();
    a = net.act == Activation::sigmoid ? autodiff::sigmoid(Z[l])
        : net.act == Activation::tanh  ? autodiff::tanh(Z[l])
                                       : autodiff::relu(Z[l]);
  }
  const Tensor E = 0.5 * autodiff::sum(autodiff::square(to_tensor(batch.Y) - a)) / static_cast<double>(batch.X.size());
  E.backward();
  Backprop r;
  r.E = E.item();
  r.delta.assign(L + 1, {});
  r.dW.assign(L + 1, {});
  r.db.assign(L + 1, {});
  for (std::size_t l = 1; l <= L; ++l) {
    r.delta[l] = to_mat(-Z[l].grad());
    r.dW[l] = to_mat(-eta * W[l].grad());
    r.db[l] = net.bias ? (-eta * b[l].grad()).to_vector() : Vec(net.widths[l], 0.0);
  }
  return r;
}

} // namespace

BOOST_AUTO_TEST_SUITE(tensor_network)

BOOST_AUTO_TEST_CASE(tensor_deltas_equal_scalar_and_hand_deltas) {
  std::mt19937 rng(2024);
  int checked = 0;
  for (Activation act : {Activation::sigmoid, Activation::tanh, Activation::relu})
    for (bool bias : {false, true})
      for (const std::vector<std::size_t>& widths :
           {std::vector<std::size_t>{3, 2, 1}, {4, 8, 8, 2}, {1, 5, 3, 6, 1}, {8, 1, 8}, {2, 3, 4, 5, 6, 7, 2}})
        for (std::size_t batch : {1u, 5u}) {
          const NetworkShape shape{widths, act, bias, batch};
          const auto [net, data] = random_instance(rng, shape);
          const Backprop tensor = backprop_tensor(net, data, 0.5);
          const Backprop scalar = backprop_autodiff(net, data, 0.5);
          const Backprop hand = backprop_hand(net, data, 0.5);
          BOOST_TEST_CONTEXT(describe(shape)) {
            BOOST_TEST(std::fabs(tensor.E - scalar.E) <= 1e-12);
            BOOST_TEST(max_gradient_diff(tensor, scalar) <= 1e-12);
            BOOST_TEST(max_gradient_diff(tensor, hand) <= 1e-12);
            // and a broken hand rule is far off, so the comparison has teeth
            BOOST_TEST(max_gradient_diff(tensor, backprop_hand(net, data, 0.5, Mistake::drop_fprime)) > 1e-6);
          }
          ++checked;
        }
  BOOST_TEST(checked == 60);
}

BOOST_AUTO_TEST_SUITE_END()
