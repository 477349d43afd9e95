// A two-layer MLP: every parameter gradient against backpropagation written out with loops, and a
// short training run that must fit its data.

#include "helpers.hpp"

using namespace autodiff;
using namespace tapegrad_test;

BOOST_AUTO_TEST_SUITE(training)

BOOST_AUTO_TEST_CASE(mlp_gradients_match_hand_written_backprop) {
  manual_seed(21);
  const std::int64_t N = 4, I = 3, H = 5, O = 2;
  for (DType d : {DType::float64, DType::float32}) {
    Tape tape;
    Tensor x = randn({N, I}, d), w1 = randn({I, H}, d), b1 = randn({H}, d), w2 = randn({H, O}, d), b2 = randn({O}, d),
           y = randn({N, O}, d);
    for (Tensor* p : {&w1, &b1, &w2, &b2})
      p->requires_grad(true);
    const Tensor loss = mse_loss(matmul(tanh(matmul(x, w1) + b1), w2) + b2, y);
    loss.backward();

    // forward and backward by hand, in double
    auto X = x.to_vector(), W1 = w1.to_vector(), B1 = b1.to_vector(), W2 = w2.to_vector(), B2 = b2.to_vector(),
         Y = y.to_vector();
    std::vector<double> h(N * H), out(N * O), gW1(I * H, 0), gB1(H, 0), gW2(H * O, 0), gB2(O, 0);
    double l = 0;
    for (std::int64_t n = 0; n < N; ++n) {
      for (std::int64_t j = 0; j < H; ++j) {
        double s = B1[j];
        for (std::int64_t i = 0; i < I; ++i)
          s += X[n * I + i] * W1[i * H + j];
        h[n * H + j] = std::tanh(s);
      }
      for (std::int64_t k = 0; k < O; ++k) {
        double s = B2[k];
        for (std::int64_t j = 0; j < H; ++j)
          s += h[n * H + j] * W2[j * O + k];
        out[n * O + k] = s;
        l += (s - Y[n * O + k]) * (s - Y[n * O + k]) / (N * O);
      }
    }
    for (std::int64_t n = 0; n < N; ++n) {
      std::vector<double> gh(H, 0);
      for (std::int64_t k = 0; k < O; ++k) {
        const double go = 2 * (out[n * O + k] - Y[n * O + k]) / (N * O);
        gB2[k] += go;
        for (std::int64_t j = 0; j < H; ++j) {
          gW2[j * O + k] += h[n * H + j] * go;
          gh[j] += W2[j * O + k] * go;
        }
      }
      for (std::int64_t j = 0; j < H; ++j) {
        const double gs = gh[j] * (1 - h[n * H + j] * h[n * H + j]);
        gB1[j] += gs;
        for (std::int64_t i = 0; i < I; ++i)
          gW1[i * H + j] += X[n * I + i] * gs;
      }
    }
    const double tol = d == DType::float64 ? 1e-12 : 1e-5;
    BOOST_TEST(std::fabs(loss.item() - l) <= tol * std::max(1.0, l));
    check_close(w1.grad().to_vector(), gW1, tol, "w1");
    check_close(b1.grad().to_vector(), gB1, tol, "b1");
    check_close(w2.grad().to_vector(), gW2, tol, "w2");
    check_close(b2.grad().to_vector(), gB2, tol, "b2");
    BOOST_TEST((w1.grad().dtype() == d));
  }
}

BOOST_AUTO_TEST_CASE(sgd_fits_a_small_classification_problem) {
  manual_seed(7);
  Tape tape;
  // two interleaved classes on a line: needs the hidden layer
  const Tensor x = reshape(linspace(-2, 2, 32), {32, 1});
  std::vector<std::int64_t> labels;
  for (std::int64_t i = 0; i < 32; ++i)
    labels.push_back((i / 8) % 2);
  const Tensor t = from_vector(labels, {32});
  Tensor w1 = randn({1, 16}), b1 = zeros({16}), w2 = randn({16, 2}) * 0.3, b2 = zeros({2});
  std::vector<Tensor*> params{&w1, &b1, &w2, &b2};
  for (Tensor* p : params)
    p->requires_grad(true);
  double first = 0, last = 0;
  for (int step = 0; step < 1500; ++step) {
    tape.reset();
    const Tensor loss = cross_entropy(matmul(tanh(matmul(x, w1) * 2.0 + b1), w2) + b2, t);
    loss.backward();
    if (step == 0) first = loss.item();
    last = loss.item();
    NoGradGuard ng;
    for (Tensor* p : params) {
      Tensor updated = *p - p->grad() * 0.5;
      auto dst = p->mutable_data<float>();
      auto src = updated.data<float>();
      std::copy(src.begin(), src.end(), dst.begin());
      p->zero_grad();
    }
  }
  BOOST_TEST(first > 0.6);
  BOOST_TEST(last < 0.15);
  const Tensor pred = argmax(matmul(tanh(matmul(x, w1) * 2.0 + b1), w2) + b2, 1);
  BOOST_TEST(sum(eq(pred, t).to(DType::float32)).item() >= 30.0);
}

BOOST_AUTO_TEST_SUITE_END()
