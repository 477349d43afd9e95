// The fused softmax and losses: values against independent formulas, stability for logits of
// magnitude 1e4 (float32 and float64), reductions.

#include "helpers.hpp"

#include <limits>

using namespace autodiff;
using namespace tapegrad_test;

BOOST_AUTO_TEST_SUITE(losses)

BOOST_AUTO_TEST_CASE(cross_entropy_is_finite_and_exact_for_huge_logits) {
  for (DType d : {DType::float32, DType::float64}) {
    Tape tape;
    Tensor x = tensor({{1e4, 0, -1e4}, {0, 1e4, 1e4}}, d);
    x.requires_grad(true);
    const Tensor t = from_vector(std::vector<std::int64_t>{0, 2}, {2});
    const Tensor loss = cross_entropy(x, t);
    // row 0: the target dominates, loss 0; row 1: two equal maxima, loss log 2
    BOOST_TEST(std::fabs(loss.item() - std::log(2.0) / 2) < 1e-6);
    loss.backward();
    // (softmax - onehot) / N
    check_close(x.grad().to_vector(), {0, 0, 0, 0, 0.25, -0.25}, 1e-6, "gradient");
    const Tensor none = cross_entropy(x, t, Reduction::none);
    check_close(none.to_vector(), {0, std::log(2.0)}, 1e-6, "none");
    BOOST_TEST(std::fabs(cross_entropy(x, t, Reduction::sum).item() - std::log(2.0)) < 1e-6);
  }
}

// float32 rows run in vector lanes (libmvec's expf; Note [Vectorised kernels]) and float64 in scalar
// libm: the float32 loss and gradient, and softmax, against float64 on the same logits, over rows
// of 1003 classes (vector bodies and tails) with offsets up to 1e4. The bound: x - lse is taken in
// double and rounded after, so p = exp(x - lse) is off by p |x - lse| 2^-24 <= 2.2e-8 plus expf's
// own few ulp; the gradient (p - onehot) / N by that over N.
BOOST_AUTO_TEST_CASE(float32_rows_match_float64) {
  manual_seed(12);
  const std::int64_t n = 48, c = 1003;
  std::vector<double> xv = (randn({n, c}, DType::float64) * 4.0).to_vector();
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t j = 0; j < c; ++j)
      xv[static_cast<std::size_t>(i * c + j)] += static_cast<double>(i % 4) * 3e3; // 0, 3e3, 6e3, 9e3
  std::vector<std::int64_t> tv(static_cast<std::size_t>(n));
  for (std::size_t i = 0; i < tv.size(); ++i)
    tv[i] = static_cast<std::int64_t>((i * 131) % static_cast<std::size_t>(c));
  const Tensor t = from_vector(tv, {n});
  const Tensor x32 = from_vector(xv, {n, c}).requires_grad(true);         // the float32 values ...
  const Tensor x64 = x32.detach().to(DType::float64).requires_grad(true); // ... exactly, in float64
  Tape tape;
  const Tensor l32 = cross_entropy(x32, t);
  l32.backward(); // frees the tape's record: one loss at a time
  const Tensor l64 = cross_entropy(x64, t);
  l64.backward();
  BOOST_TEST(std::fabs(l32.item() - l64.item()) <= 1e-6 * std::fabs(l64.item()));
  const auto g32 = x32.grad().to_vector(), g64 = x64.grad().to_vector();
  double worst = 0;
  for (std::size_t k = 0; k < g32.size(); ++k)
    worst = std::max(worst, std::fabs(g32[k] - g64[k]));
  BOOST_TEST(worst <= 3e-7 / static_cast<double>(n), "gradient off by " << worst);
  const auto s32 = softmax(x32, 1).to_vector(), s64 = softmax(x64, 1).to_vector();
  worst = 0; // softmax takes x - max in float (as PyTorch): the same bound, absolute
  for (std::size_t k = 0; k < s32.size(); ++k)
    worst = std::max(worst, std::fabs(s32[k] - s64[k]));
  BOOST_TEST(worst <= 2e-7, "softmax off by " << worst);
}

BOOST_AUTO_TEST_CASE(cross_entropy_matches_log_softmax_and_nll) {
  manual_seed(5);
  Tape tape;
  const Tensor x = randn({6, 5}, DType::float64) * 3.0;
  const Tensor t = from_vector(std::vector<std::int64_t>{0, 4, 2, 2, 1, 3}, {6});
  const double a = cross_entropy(x, t).item();
  const double b = nll_loss(log_softmax(x, 1), t).item();
  double want = 0;
  for (std::int64_t i = 0; i < 6; ++i) {
    double s = 0;
    for (std::int64_t j = 0; j < 5; ++j)
      s += std::exp(x.at<double>({i, j}));
    want += std::log(s) - x.at<double>({i, t.at<std::int64_t>({i})});
  }
  want /= 6;
  BOOST_TEST(std::fabs(a - want) < 1e-12);
  BOOST_TEST(std::fabs(b - want) < 1e-12);
  const Tensor per = nll_loss(log_softmax(x, 1), t, Reduction::none);
  BOOST_TEST(per.shape().vec() == (std::vector<std::int64_t>{6}));
  BOOST_TEST(std::fabs(sum(per).item() - 6 * want) < 1e-11);
}

BOOST_AUTO_TEST_CASE(softmax_family_is_stable) {
  for (DType d : {DType::float32, DType::float64}) {
    const Tensor x = tensor({{1e4, -1e4, 0}, {-5e3, -5e3, -5e3}}, d);
    check_close(softmax(x, 1).to_vector(), {1, 0, 0, 1.0 / 3, 1.0 / 3, 1.0 / 3}, 1e-6, "softmax");
    check_close(log_softmax(x, 1).to_vector(), {0, -2e4, -1e4, -std::log(3.0), -std::log(3.0), -std::log(3.0)}, 1e-6,
                "log_softmax");
    check_close(logsumexp(x, 1).to_vector(), {1e4, -5e3 + std::log(3.0)}, 1e-6, "logsumexp");
  }
}

BOOST_AUTO_TEST_CASE(bce_with_logits_is_finite_for_huge_logits) {
  for (DType d : {DType::float32, DType::float64}) {
    Tape tape;
    Tensor x = tensor({1e4, -1e4, 0}, d);
    x.requires_grad(true);
    const Tensor y = tensor({0, 1, 1}, d);
    const Tensor loss = binary_cross_entropy_with_logits(x, y, Reduction::sum);
    BOOST_TEST(std::fabs(loss.item() - (2e4 + std::log(2.0))) < 1e-6 * 2e4);
    loss.backward();
    check_close(x.grad().to_vector(), {1, -1, -0.5}, 1e-6, "gradient: sigmoid(x) - y");
  }
}

BOOST_AUTO_TEST_CASE(mse_loss_reductions) {
  const Tensor a = tensor({1, 2, 3}, DType::float64), b = tensor({0, 2, 5}, DType::float64);
  BOOST_TEST(std::fabs(mse_loss(a, b).item() - 5.0 / 3) < 1e-15);
  BOOST_TEST(mse_loss(a, b, Reduction::sum).item() == 5.0);
  BOOST_TEST(mse_loss(a, b, Reduction::none).to_vector() == (std::vector<double>{1, 0, 4}));
}

BOOST_AUTO_TEST_CASE(norm_has_a_zero_subgradient_at_zero) {
  Tape tape;
  Tensor x = zeros({3}, DType::float64);
  x.requires_grad(true);
  norm(x).backward();
  BOOST_TEST(x.grad().to_vector() == (std::vector<double>{0, 0, 0}));
}

BOOST_AUTO_TEST_CASE(prod_gradient_with_zeros) {
  Tape tape;
  Tensor x = tensor({2, 0, 3}, DType::float64);
  x.requires_grad(true);
  prod(x).backward();
  BOOST_TEST(x.grad().to_vector() == (std::vector<double>{0, 6, 0}));
}

BOOST_AUTO_TEST_SUITE_END()
