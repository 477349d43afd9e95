// Losses against loops written here, and gradchecked in float64.

#include <nn/nn.hpp>

#include <autodiff/tensor_gradcheck.hpp>
#include <boost/test/unit_test.hpp>

#include <cmath>

using autodiff::DType;
using autodiff::Reduction;
using autodiff::Tensor;

namespace {
const Tensor input = autodiff::tensor({{0.3, -1.2, 2.5}, {1.7, 0.1, -0.4}}, DType::float64);
const Tensor target = autodiff::tensor({{0.0, -1.0, 0.5}, {3.0, 0.2, -0.4}}, DType::float64);
const Tensor logits =
    autodiff::tensor({{1.0, -2.0, 0.5, 3.0}, {0.2, 0.1, -1.0, 0.0}, {5.0, 2.0, 2.0, -3.0}}, DType::float64);
const Tensor labels = autodiff::from_vector(std::vector<std::int64_t>{3, 0, 1}, {3});

double reduce(const std::vector<double>& v, Reduction r) {
  double s = 0;
  for (double x : v)
    s += x;
  return r == Reduction::mean ? s / static_cast<double>(v.size()) : s;
}
} // namespace

BOOST_AUTO_TEST_SUITE(losses)

BOOST_AUTO_TEST_CASE(regression_losses_match_loops) {
  const auto a = input.to_vector(), b = target.to_vector();
  std::vector<double> l1, mse, huber;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double d = a[i] - b[i];
    l1.push_back(std::fabs(d));
    mse.push_back(d * d);
    huber.push_back(std::fabs(d) < 0.8 ? 0.5 * d * d : 0.8 * (std::fabs(d) - 0.4));
  }
  for (Reduction r : {Reduction::mean, Reduction::sum}) {
    BOOST_TEST(std::fabs(nn::L1Loss(r)(input, target).item() - reduce(l1, r)) < 1e-14);
    BOOST_TEST(std::fabs(nn::MSELoss(r)(input, target).item() - reduce(mse, r)) < 1e-14);
    BOOST_TEST(std::fabs(nn::HuberLoss(r, 0.8)(input, target).item() - reduce(huber, r)) < 1e-14);
  }
  const auto none = nn::huber_loss(input, target, Reduction::none, 0.8).to_vector();
  for (std::size_t i = 0; i < none.size(); ++i)
    BOOST_TEST(std::fabs(none[i] - huber[i]) < 1e-15);
  BOOST_CHECK_THROW(nn::mse_loss(input, autodiff::zeros({3, 2}, DType::float64)), autodiff::Error);
}

BOOST_AUTO_TEST_CASE(cross_entropy_with_label_smoothing_matches_loops) {
  const double eps = 0.2;
  const auto z = logits.to_vector();
  std::vector<double> plain, smooth;
  for (int i = 0; i < 3; ++i) {
    double m = -1e300, s = 0;
    for (int c = 0; c < 4; ++c)
      m = std::max(m, z[static_cast<std::size_t>(i * 4 + c)]);
    for (int c = 0; c < 4; ++c)
      s += std::exp(z[static_cast<std::size_t>(i * 4 + c)] - m);
    const double lse = m + std::log(s);
    const auto y = static_cast<std::size_t>(labels.data<std::int64_t>()[static_cast<std::size_t>(i)]);
    const double nll = lse - z[static_cast<std::size_t>(i) * 4 + y];
    double uniform = 0;
    for (int c = 0; c < 4; ++c)
      uniform += (lse - z[static_cast<std::size_t>(i * 4 + c)]) / 4;
    plain.push_back(nll);
    smooth.push_back((1 - eps) * nll + eps * uniform);
  }
  BOOST_TEST(std::fabs(nn::CrossEntropyLoss()(logits, labels).item() - reduce(plain, Reduction::mean)) < 1e-14);
  BOOST_TEST(std::fabs(nn::CrossEntropyLoss(Reduction::sum, eps)(logits, labels).item() -
                       reduce(smooth, Reduction::sum)) < 1e-13);
  const Tensor logp = autodiff::log_softmax(logits, 1);
  BOOST_TEST(std::fabs(nn::NLLLoss()(logp, labels).item() - reduce(plain, Reduction::mean)) < 1e-14);
}

BOOST_AUTO_TEST_CASE(bce_with_logits_matches_loop) {
  const Tensor y = autodiff::tensor({{0.0, 1.0, 1.0}, {0.0, 0.3, 1.0}}, DType::float64);
  const auto x = input.to_vector(), t = y.to_vector();
  std::vector<double> l;
  for (std::size_t i = 0; i < x.size(); ++i)
    l.push_back(std::log1p(std::exp(-std::fabs(x[i]))) + std::max(x[i], 0.0) - x[i] * t[i]);
  BOOST_TEST(std::fabs(nn::BCEWithLogitsLoss()(input, y).item() - reduce(l, Reduction::mean)) < 1e-14);
}

BOOST_AUTO_TEST_CASE(losses_are_gradchecked) {
  auto check = [](auto f, const std::vector<Tensor>& in) {
    const auto r = autodiff::gradcheck(f, in);
    BOOST_TEST(r.passed, fmt::format("{}", r));
  };
  check([](const std::vector<Tensor>& v) { return nn::l1_loss(v[0], v[1]); }, {input, target});
  check([](const std::vector<Tensor>& v) { return nn::huber_loss(v[0], v[1], Reduction::sum, 0.8); }, {input, target});
  check([](const std::vector<Tensor>& v) { return nn::mse_loss(v[0], v[1]); }, {input, target});
  check([](const std::vector<Tensor>& v) { return nn::cross_entropy(v[0], labels, Reduction::mean, 0.1); }, {logits});
  check([](const std::vector<Tensor>& v) { return nn::bce_with_logits(v[0], autodiff::sigmoid(v[1])); },
        {input, target});
}

BOOST_AUTO_TEST_SUITE_END()
