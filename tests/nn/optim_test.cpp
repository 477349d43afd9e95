// Optimizers against trajectories computed by LibTorch 1.13 (torch_optim_reference.cpp), and the
// optimizer machinery: parameter groups, state dicts, clipping, schedules.

#include <nn/nn.hpp>

#include <boost/test/unit_test.hpp>
#include <fmt/format.h>

#include <cmath>
#include <functional>
#include <map>

using autodiff::DType;
using autodiff::Tensor;

namespace {
const std::vector<double> w0{0.5, -1.2, 2.0, 0.03, -0.7};
const Tensor A = autodiff::tensor({1.0, 3.0, 0.5, 2.0, 1.5}, DType::float64);
const Tensor B = autodiff::tensor({0.2, -0.4, 1.0, 0.7, -0.3}, DType::float64);

Tensor loss_of(const Tensor& w) { return autodiff::sum(0.5 * A * w * w + B * autodiff::sin(w)); }

// w after 20 steps of each optimizer on loss_of, printed by LibTorch.
const std::map<std::string, std::vector<double>> torch_reference{
    {"sgd",
     {-0.11312402516922583, 0.13113458446942614, 0.21678981655432855, -0.32848982202678983, 0.16267597942609727}},
    {"sgd_momentum",
     {0.044244311181288659, 0.090765402510765772, -0.60572863669603261, -0.45339305308323952, 0.15883128473500099}},
    {"sgd_nesterov",
     {-0.23219295324396796, 0.16257145976607582, -1.6245450500242025, -0.29895808334002, 0.087914269021215741}},
    {"adam",
     {-0.29749510492083375, 0.35865183512607329, -0.074007706257692304, -0.24323476148076095, 0.42736878214144369}},
    {"adam_amsgrad",
     {-0.29498868464365074, -0.26706304014229848, 0.9692288562047443, -0.3912207183777745, 0.17168954234496359}},
    {"adamw",
     {-0.29413038091031596, -0.2063010959709764, 0.82188677954061151, -0.38392075461167297, 0.18638622123973003}},
    {"rmsprop",
     {-0.064045039673413851, -0.52207959895690259, 1.1493439205896303, -0.32720682119118183, -0.079330305088459993}},
    {"rmsprop_centered",
     {-0.19417267186855283, -0.080400423254907941, 0.22891063915944007, -0.32983903154327293, 0.17145749446909483}},
    {"adagrad",
     {-0.022727411709336884, -0.56920591327520009, 1.2510900979228126, -0.32052055158364645, -0.1209034809527075}},
};

using Factory = std::function<std::unique_ptr<nn::Optimizer>(std::vector<Tensor>)>;
const std::map<std::string, Factory> factories{
    {"sgd", [](auto p) { return std::make_unique<nn::SGD>(p, nn::SGDOptions{.lr = 0.1}); }},
    {"sgd_momentum",
     [](auto p) {
       return std::make_unique<nn::SGD>(
           p, nn::SGDOptions{.lr = 0.1, .momentum = 0.9, .dampening = 0.1, .weight_decay = 0.01});
     }},
    {"sgd_nesterov",
     [](auto p) {
       return std::make_unique<nn::SGD>(
           p, nn::SGDOptions{.lr = 0.05, .momentum = 0.9, .weight_decay = 0.001, .nesterov = true});
     }},
    {"adam", [](auto p) { return std::make_unique<nn::Adam>(p, nn::AdamOptions{.lr = 0.1}); }},
    {"adam_amsgrad",
     [](auto p) {
       return std::make_unique<nn::Adam>(p, nn::AdamOptions{.lr = 0.05, .weight_decay = 0.01, .amsgrad = true});
     }},
    {"adamw", [](auto p) { return std::make_unique<nn::AdamW>(p, nn::AdamOptions{.lr = 0.05, .weight_decay = 0.1}); }},
    {"rmsprop", [](auto p) { return std::make_unique<nn::RMSprop>(p, nn::RMSpropOptions{.lr = 0.01}); }},
    {"rmsprop_centered",
     [](auto p) {
       return std::make_unique<nn::RMSprop>(
           p, nn::RMSpropOptions{.lr = 0.01, .weight_decay = 0.01, .momentum = 0.5, .centered = true});
     }},
    {"adagrad",
     [](auto p) {
       return std::make_unique<nn::Adagrad>(
           p, nn::AdagradOptions{.lr = 0.1, .lr_decay = 0.01, .weight_decay = 0.01, .initial_accumulator_value = 0.1});
     }},
};

Tensor fresh() { return autodiff::from_vector(w0, {5}, DType::float64).requires_grad(true); }

void train(nn::Optimizer& opt, Tensor& w, int steps) {
  autodiff::Tape tape;
  for (int s = 0; s < steps; ++s) {
    tape.reset();
    opt.zero_grad();
    loss_of(w).backward();
    opt.step();
  }
}
} // namespace

BOOST_AUTO_TEST_SUITE(optimizers)

BOOST_AUTO_TEST_CASE(trajectories_match_libtorch) {
  for (const auto& [name, make] : factories) {
    Tensor w = fresh();
    auto opt = make({w});
    train(*opt, w, 20);
    const auto got = w.to_vector();
    const auto& want = torch_reference.at(name);
    for (std::size_t i = 0; i < 5; ++i)
      BOOST_TEST_CONTEXT(fmt::format("{} component {}: {} vs torch {}", name, i, got[i], want[i])) {
        BOOST_TEST(std::fabs(got[i] - want[i]) <= 1e-10);
      }
  }
}

BOOST_AUTO_TEST_CASE(state_dict_resumes_exactly) {
  for (const auto& [name, make] : factories) {
    Tensor straight = fresh();
    auto a = make({straight});
    train(*a, straight, 20);

    Tensor w = fresh();
    auto b = make({w});
    train(*b, w, 8);
    const nn::StateDict saved = b->state_dict();
    const std::vector<double> at8 = w.to_vector();
    Tensor resumed = autodiff::from_vector(at8, {5}, DType::float64).requires_grad(true);
    auto c = make({resumed});
    c->load_state_dict(saved);
    train(*c, resumed, 12);
    BOOST_TEST_CONTEXT(name) {
      BOOST_TEST(resumed.to_vector() == straight.to_vector(), boost::test_tools::per_element());
    }
  }
}

BOOST_AUTO_TEST_CASE(param_groups_have_their_own_rates) {
  Tensor a = autodiff::tensor({1.0}, DType::float64).requires_grad(true);
  Tensor b = autodiff::tensor({1.0}, DType::float64).requires_grad(true);
  nn::SGD opt(std::vector<nn::ParamGroup>{{{a}, 0.5, {}}, {{b}, {}, {}}}, nn::SGDOptions{.lr = 0.1});
  autodiff::Tape tape;
  autodiff::sum(a * a + b * b).backward();
  opt.step();
  BOOST_TEST(a.item() == 1.0 - 0.5 * 2.0);
  BOOST_TEST(b.item() == 1.0 - 0.1 * 2.0);
  BOOST_TEST(opt.lr(0) == 0.5);
  opt.set_lr(0.01);
  BOOST_TEST(opt.lr(0) == 0.01);
  BOOST_TEST(opt.lr(1) == 0.01);
}

BOOST_AUTO_TEST_CASE(bad_configurations_throw) {
  BOOST_CHECK_THROW(nn::SGD(std::vector<Tensor>{}), autodiff::Error);
  BOOST_CHECK_THROW(nn::SGD({fresh()}, {.lr = 0.1, .nesterov = true}), autodiff::Error);
  BOOST_CHECK_THROW(nn::Adam({fresh()}, {.beta1 = 1.0}), autodiff::Error);
  BOOST_CHECK_THROW(nn::Adam({autodiff::zeros({2})}), autodiff::Error); // no requires_grad
  nn::Adam opt({fresh()});
  nn::StateDict s = opt.state_dict();
  s.erase("param_groups.0.lr");
  BOOST_CHECK_THROW(opt.load_state_dict(s), autodiff::Error);
}

BOOST_AUTO_TEST_CASE(gradient_clipping) {
  Tensor a = autodiff::tensor({1.0, 2.0}, DType::float64).requires_grad(true);
  Tensor b = autodiff::tensor({2.0}, DType::float64).requires_grad(true);
  {
    autodiff::Tape tape;
    autodiff::sum(1.5 * a * a + b * b).backward(); // grads 3a = (3, 6); b*b broadcasts to 2 elements: 4b = 8
  }
  const double norm = nn::clip_grad_norm_({a, b}, 1.0);
  BOOST_TEST(std::fabs(norm - std::sqrt(9.0 + 36.0 + 64.0)) < 1e-12);
  const double coef = 1.0 / (norm + 1e-6);
  BOOST_TEST(std::fabs(a.grad().to_vector()[1] - 6 * coef) < 1e-15);
  BOOST_TEST(std::fabs(b.grad().item() - 8 * coef) < 1e-15);
  nn::clip_grad_value_({a, b}, 0.5);
  BOOST_TEST(a.grad().to_vector()[1] == 0.5);
  // a norm below the bound is left alone
  const auto before = a.grad().to_vector();
  nn::clip_grad_norm_({a, b}, 100.0);
  BOOST_TEST(a.grad().to_vector() == before, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(schedules_follow_their_closed_forms) {
  auto rates = [](auto make_sched, int epochs) {
    Tensor w = fresh();
    nn::SGD opt({w}, {.lr = 0.1});
    auto sched = make_sched(opt);
    std::vector<double> out{opt.lr()};
    for (int e = 0; e < epochs; ++e) {
      sched.step();
      out.push_back(opt.lr());
    }
    return out;
  };
  const auto step = rates([](nn::Optimizer& o) { return nn::StepLR(o, 3, 0.5); }, 7);
  BOOST_TEST(step == std::vector<double>({0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025, 0.025}),
             boost::test_tools::per_element());
  const auto multi = rates([](nn::Optimizer& o) { return nn::MultiStepLR(o, {2, 5}, 0.1); }, 6);
  BOOST_TEST(std::fabs(multi[1] - 0.1) < 1e-18);
  BOOST_TEST(std::fabs(multi[2] - 0.01) < 1e-17);
  BOOST_TEST(std::fabs(multi[5] - 0.001) < 1e-17);
  const auto expo = rates([](nn::Optimizer& o) { return nn::ExponentialLR(o, 0.9); }, 3);
  BOOST_TEST(std::fabs(expo[3] - 0.1 * 0.729) < 1e-16);
  const auto cosine = rates([](nn::Optimizer& o) { return nn::CosineAnnealingLR(o, 10, 0.001); }, 10);
  BOOST_TEST(std::fabs(cosine[5] - (0.001 + 0.099 * 0.5)) < 1e-15);
  BOOST_TEST(std::fabs(cosine[10] - 0.001) < 1e-15);
  const auto warm = rates([](nn::Optimizer& o) { return nn::LinearLR(o, 0.25, 1.0, 3); }, 5);
  BOOST_TEST(std::fabs(warm[0] - 0.025) < 1e-16);
  BOOST_TEST(std::fabs(warm[1] - 0.05) < 1e-16);
  BOOST_TEST(std::fabs(warm[3] - 0.1) < 1e-16);
  BOOST_TEST(std::fabs(warm[5] - 0.1) < 1e-16);

  Tensor w = fresh();
  nn::SGD opt({w}, {.lr = 1.0});
  nn::ReduceLROnPlateau plateau(opt, {.factor = 0.5, .patience = 2});
  for (double metric : {1.0, 0.5, 0.6, 0.6, 0.6})
    plateau.step(metric); // 3 bad epochs > patience 2
  BOOST_TEST(opt.lr() == 0.5);
  plateau.step(0.4);
  BOOST_TEST(opt.lr() == 0.5);
}

BOOST_AUTO_TEST_SUITE_END()
