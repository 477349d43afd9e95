// Modules: parameter registry and names, initialisation, train/eval, state dicts and their errors.

#include <nn/nn.hpp>
#include <nn/safetensors.hpp>

#include <autodiff/tensor_gradcheck.hpp>
#include <boost/test/unit_test.hpp>
#include <fmt/format.h>

#include <cmath>
#include <filesystem>
#include <type_traits>
#include <unistd.h>

using autodiff::DType;
using autodiff::Tensor;

// Layer constructors take no number where a dim, a size or a flag is expected: Softmax(0.5) would
// be Softmax(dim = 0), Linear(3, 4, 0.5) a bias flag.
static_assert(!std::is_constructible_v<nn::Softmax, double>);
static_assert(!std::is_constructible_v<nn::Softmax, bool>);
static_assert(std::is_constructible_v<nn::Softmax, int> && std::is_constructible_v<nn::Softmax>);
static_assert(!std::is_constructible_v<nn::Flatten, double>);
static_assert(!std::is_constructible_v<nn::Flatten, int, double>);
static_assert(!std::is_constructible_v<nn::Flatten, int, bool>);
static_assert(std::is_constructible_v<nn::Flatten, int, int> && std::is_constructible_v<nn::Flatten>);
static_assert(!std::is_constructible_v<nn::Linear, double, int>);
static_assert(!std::is_constructible_v<nn::Linear, int, double>);
static_assert(!std::is_constructible_v<nn::Linear, int, int, double>);
static_assert(std::is_constructible_v<nn::Linear, int, int> && std::is_constructible_v<nn::Linear, int, int, bool>);
static_assert(std::is_constructible_v<nn::Linear, std::int64_t, std::int64_t, bool, DType>);
static_assert(std::is_constructible_v<nn::LeakyReLU, double> && std::is_constructible_v<nn::Dropout, double>);

BOOST_AUTO_TEST_SUITE(modules)

BOOST_AUTO_TEST_CASE(named_parameters_are_dotted_and_ordered) {
  autodiff::manual_seed(1);
  auto net = nn::mlp({4, 3, 2});
  std::vector<std::string> names;
  for (const auto& [n, t] : net->named_parameters())
    names.push_back(n);
  BOOST_TEST(names == std::vector<std::string>({"0.weight", "0.bias", "2.weight", "2.bias"}),
             boost::test_tools::per_element());
  BOOST_TEST(net->parameters().size() == 4u);
  BOOST_TEST((net->parameters()[0].shape() == autodiff::Shape({3, 4})));
  BOOST_TEST(net->describe().find("Linear(4 -> 3)") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(linear_init_follows_pytorch_bounds) {
  autodiff::manual_seed(7);
  nn::Linear lin(400, 300);
  const double bound = 1.0 / std::sqrt(400.0);
  double lo = 1, hi = -1, sum = 0, sq = 0;
  for (float v : lin.weight.data<float>()) {
    lo = std::min<double>(lo, v), hi = std::max<double>(hi, v);
    sum += v, sq += double(v) * v;
  }
  const double n = 400.0 * 300.0;
  BOOST_TEST(lo >= -bound);
  BOOST_TEST(hi <= bound);
  BOOST_TEST(hi > 0.99 * bound); // the whole interval is used
  BOOST_TEST(std::fabs(sum / n) < 0.01 * bound);
  // variance of U(-b, b) is b^2 / 3
  BOOST_TEST(std::fabs(sq / n - bound * bound / 3) < 0.02 * bound * bound / 3);
  for (float v : lin.bias.data<float>())
    BOOST_TEST(std::fabs(v) <= bound);
}

BOOST_AUTO_TEST_CASE(initialisers_are_seeded_and_scaled) {
  Tensor a = autodiff::zeros({256, 128}), b = autodiff::zeros({256, 128});
  autodiff::manual_seed(3);
  nn::init::kaiming_normal_(a, 0, "relu");
  autodiff::manual_seed(3);
  nn::init::kaiming_normal_(b, 0, "relu");
  BOOST_TEST(a.to_vector() == b.to_vector(), boost::test_tools::per_element());
  double sq = 0;
  for (double v : a.to_vector())
    sq += v * v;
  const double want = 2.0 / 128; // gain^2 / fan_in
  BOOST_TEST(std::fabs(sq / a.numel() - want) < 0.03 * want);
  nn::init::xavier_uniform_(a);
  const double bound = std::sqrt(6.0 / (128 + 256));
  for (double v : a.to_vector())
    BOOST_TEST(std::fabs(v) <= bound);
  nn::init::constant_(a, 0.25);
  for (double v : a.to_vector())
    BOOST_TEST(v == 0.25);
}

BOOST_AUTO_TEST_CASE(linear_forward_and_gradient) {
  autodiff::manual_seed(5);
  nn::Linear lin(3, 2, true, DType::float64);
  const Tensor x = autodiff::tensor({{1.0, 2.0, -1.0}, {0.5, 0.0, 3.0}}, DType::float64);
  const Tensor y = lin(x);
  const auto w = lin.weight.to_vector(), b = lin.bias.to_vector(), xv = x.to_vector();
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 2; ++j) {
      double s = b[static_cast<std::size_t>(j)];
      for (int k = 0; k < 3; ++k)
        s += xv[static_cast<std::size_t>(i * 3 + k)] * w[static_cast<std::size_t>(j * 3 + k)];
      BOOST_TEST(std::fabs(y.at<double>({i, j}) - s) < 1e-14);
    }
  auto f = [&](const std::vector<Tensor>& in) {
    return autodiff::sum(autodiff::tanh(autodiff::matmul(in[0], autodiff::transpose(in[1])) + in[2]));
  };
  BOOST_TEST(autodiff::gradcheck(f, {x, lin.weight.detach(), lin.bias.detach()}).passed);
  BOOST_CHECK_THROW(lin(autodiff::zeros({2, 4}, DType::float64)), autodiff::Error);
}

BOOST_AUTO_TEST_CASE(dropout_is_identity_in_eval_and_scaled_in_train) {
  autodiff::manual_seed(11);
  nn::Dropout drop(0.25);
  const Tensor x = autodiff::ones({1000});
  const auto kept = drop(x).to_vector();
  std::size_t zeros = 0;
  for (double v : kept) {
    BOOST_TEST((v == 0.0 || std::fabs(v - 1 / 0.75) < 1e-6));
    zeros += v == 0.0;
  }
  BOOST_TEST(zeros > 180u);
  BOOST_TEST(zeros < 320u);
  drop.eval();
  BOOST_TEST(drop(x).to_vector() == x.to_vector(), boost::test_tools::per_element());
  BOOST_CHECK_THROW(nn::Dropout(1.0), autodiff::Error);
}

BOOST_AUTO_TEST_CASE(train_eval_reaches_children) {
  auto net = std::make_shared<nn::Sequential>(std::initializer_list<std::shared_ptr<nn::Module>>{
      std::make_shared<nn::Linear>(2, 2), std::make_shared<nn::Dropout>(0.5)});
  net->eval();
  BOOST_TEST(!(*net)[1].is_training());
  net->train();
  BOOST_TEST((*net)[1].is_training());
}

BOOST_AUTO_TEST_CASE(activations_match_their_functions) {
  const Tensor x = autodiff::tensor({-2.0, -0.5, 0.0, 0.5, 3.0}, DType::float64);
  const auto v = x.to_vector();
  const auto relu = nn::ReLU()(x).to_vector(), th = nn::Tanh()(x).to_vector(), sg = nn::Sigmoid()(x).to_vector();
  const auto lr = nn::LeakyReLU(0.1)(x).to_vector(), el = nn::ELU(1.0)(x).to_vector(), ge = nn::GELU()(x).to_vector();
  for (std::size_t i = 0; i < v.size(); ++i) {
    BOOST_TEST(relu[i] == std::max(v[i], 0.0));
    BOOST_TEST(std::fabs(th[i] - std::tanh(v[i])) < 1e-15);
    BOOST_TEST(std::fabs(sg[i] - 1 / (1 + std::exp(-v[i]))) < 1e-15);
    BOOST_TEST(std::fabs(lr[i] - (v[i] > 0 ? v[i] : 0.1 * v[i])) < 1e-15);
    BOOST_TEST(std::fabs(el[i] - (v[i] > 0 ? v[i] : std::expm1(v[i]))) < 1e-15);
    BOOST_TEST(std::fabs(ge[i] - 0.5 * v[i] * (1 + std::erf(v[i] / std::sqrt(2.0)))) < 1e-15);
  }
  const auto sm = nn::Softmax(0)(x).to_vector();
  double z = 0;
  for (double a : v)
    z += std::exp(a);
  for (std::size_t i = 0; i < v.size(); ++i)
    BOOST_TEST(std::fabs(sm[i] - std::exp(v[i]) / z) < 1e-15);
  BOOST_TEST((nn::Flatten()(autodiff::zeros({2, 3, 4})).shape() == autodiff::Shape({2, 12})));
  BOOST_TEST(nn::Identity()(x).to_vector() == v, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(state_dict_round_trip_and_errors) {
  autodiff::manual_seed(2);
  auto a = nn::mlp({3, 4, 2});
  autodiff::manual_seed(9);
  auto b = nn::mlp({3, 4, 2});
  BOOST_TEST(a->parameters()[0].to_vector() != b->parameters()[0].to_vector());
  b->load_state_dict(a->state_dict());
  for (std::size_t i = 0; i < 4; ++i)
    BOOST_TEST(a->parameters()[i].to_vector() == b->parameters()[i].to_vector(), boost::test_tools::per_element());

  // The state dict holds copies: changing it does not touch the module.
  nn::StateDict s = a->state_dict();
  s.at("0.bias").mutable_data<float>()[0] = 123.0f;
  BOOST_TEST(a->parameters()[1].to_vector()[0] != 123.0);

  auto expect = [](const std::string& word) {
    return [word](const autodiff::Error& e) { return std::string(e.what()).find(word) != std::string::npos; };
  };
  nn::StateDict missing = s;
  missing.erase("2.weight");
  BOOST_CHECK_EXCEPTION(b->load_state_dict(missing), autodiff::Error, expect("missing entry '2.weight'"));
  nn::StateDict extra = s;
  extra.emplace("3.weight", autodiff::zeros({1}));
  BOOST_CHECK_EXCEPTION(b->load_state_dict(extra), autodiff::Error, expect("unexpected entry '3.weight'"));
  nn::StateDict wrong = s;
  wrong.at("0.weight") = autodiff::zeros({4, 4});
  BOOST_CHECK_EXCEPTION(b->load_state_dict(wrong), autodiff::Error, expect("'0.weight' has shape [4,4]"));
  // Nothing changed by the failed loads; non-strict loading skips what is missing.
  BOOST_TEST(a->parameters()[0].to_vector() == b->parameters()[0].to_vector(), boost::test_tools::per_element());
  b->load_state_dict(missing, false);
}

BOOST_AUTO_TEST_CASE(load_errors_name_the_file_and_the_tensor) {
  // A tensor of 9 dimensions was reported by Shape alone, naming neither the file nor the tensor;
  // an undefined tensor in a state as "shape [] and dtype float32".
  const auto path =
      std::filesystem::temp_directory_path() / fmt::format("tapegrad_nine_dims.{}.safetensors", ::getpid());
  nn::safetensors::File f;
  const std::vector<float> one{1.0f};
  f.tensors["deep"] = nn::safetensors::Entry::of<float>({1, 1, 1, 1, 1, 1, 1, 1, 1}, one);
  nn::safetensors::save(path, f);
  std::string e;
  try {
    (void)nn::load_state_dict(path);
  } catch (const autodiff::Error& err) {
    e = err.what();
  }
  std::filesystem::remove(path);
  BOOST_TEST(e.find(path.string()) != std::string::npos, e);
  BOOST_TEST(e.find("tensor 'deep' has 9 dimensions") != std::string::npos, e);

  auto model = nn::mlp({2, 3});
  nn::StateDict state = model->state_dict();
  state.at("0.bias") = Tensor();
  e.clear();
  try {
    model->load_state_dict(state);
  } catch (const autodiff::Error& err) {
    e = err.what();
  }
  BOOST_TEST(e.find("'0.bias' is an undefined tensor in the state") != std::string::npos, e);
}

BOOST_AUTO_TEST_SUITE_END()
