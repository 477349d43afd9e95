// Optimizers against trajectories computed by LibTorch 1.13 (torch_optim_reference.cpp), and the
// optimizer machinery: parameter groups, state dicts, clipping, schedules.

#include <nn/nn.hpp>

#include <autodiff/parallel.hpp>
#include <boost/test/unit_test.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <map>
#include <random>
#if defined(__SSE2__)
#include <xmmintrin.h>
#endif

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

// ---- the scalar loops the vectorised updates replaced ----------------------------------------
// One element at a time, std::sqrt with errno, the branches inside the loop: the optimizers as they
// were before optim_kernels.cpp, kept here as the reference the new kernels must match bit for bit
// (docs/design.md, Note [Vectorised updates]). Buffers start at zero (Adagrad's at `init`).
template <class T> struct ScalarRef {
  std::vector<T> w, b1, b2, b3; // the optimizer's buffers, in the order buffer_names lists them
  std::int64_t step = 0;
  bool started = false;
};

template <class T> void ref_sgd(ScalarRef<T>& r, const std::vector<T>& d, const nn::SGDOptions& o) {
  const T lr = static_cast<T>(o.lr), wd = static_cast<T>(o.weight_decay), mom = static_cast<T>(o.momentum);
  const T damp = static_cast<T>(1 - o.dampening);
  const bool first = !r.started;
  const bool use_mom = o.momentum != 0;
  auto& w = r.w;
  auto& buf = r.b1;
  for (std::size_t i = 0; i < w.size(); ++i) {
    T dp = d[i];
    if (wd != 0) dp = dp + wd * w[i];
    if (use_mom) {
      buf[i] = first ? dp : mom * buf[i] + damp * dp;
      dp = o.nesterov ? dp + mom * buf[i] : buf[i];
    }
    w[i] = w[i] - lr * dp;
  }
  r.started = true;
}

template <class T> void ref_adam(ScalarRef<T>& r, const std::vector<T>& d, const nn::AdamOptions& o, bool decoupled) {
  const std::int64_t step = ++r.step;
  auto &w = r.w, &m = r.b1, &v = r.b2, &vmax = r.b3;
  const T lr = static_cast<T>(o.lr), wd = static_cast<T>(o.weight_decay);
  const T b1 = static_cast<T>(o.beta1), b2 = static_cast<T>(o.beta2), eps = static_cast<T>(o.eps);
  const double bc1 = 1 - std::pow(o.beta1, static_cast<double>(step));
  const double bc2 = 1 - std::pow(o.beta2, static_cast<double>(step));
  const T step_size = static_cast<T>(o.lr / bc1);
  const T bc2_sqrt = static_cast<T>(std::sqrt(bc2));
  for (std::size_t i = 0; i < w.size(); ++i) {
    T gi = d[i];
    if (decoupled)
      w[i] = w[i] * (T(1) - lr * wd);
    else if (wd != 0)
      gi = gi + wd * w[i];
    m[i] = m[i] + (gi - m[i]) * (T(1) - b1);
    v[i] = v[i] * b2 + (T(1) - b2) * gi * gi;
    T vhat = v[i];
    if (o.amsgrad) vhat = vmax[i] = std::max(vmax[i], v[i]);
    const T denom = std::sqrt(vhat) / bc2_sqrt + eps;
    w[i] = w[i] - step_size * (m[i] / denom);
  }
}

template <class T> void ref_rmsprop(ScalarRef<T>& r, const std::vector<T>& d, const nn::RMSpropOptions& o) {
  auto &w = r.w, &sq = r.b1, &ga = r.b2, &buf = r.b3;
  const T lr = static_cast<T>(o.lr), wd = static_cast<T>(o.weight_decay), alpha = static_cast<T>(o.alpha);
  const T eps = static_cast<T>(o.eps), mom = static_cast<T>(o.momentum);
  for (std::size_t i = 0; i < w.size(); ++i) {
    T gi = d[i];
    if (wd != 0) gi = gi + wd * w[i];
    sq[i] = sq[i] * alpha + (T(1) - alpha) * gi * gi;
    T avg;
    if (o.centered) {
      ga[i] = ga[i] + (gi - ga[i]) * (T(1) - alpha);
      avg = std::sqrt(sq[i] - ga[i] * ga[i]) + eps;
    } else {
      avg = std::sqrt(sq[i]) + eps;
    }
    if (mom > 0) {
      buf[i] = buf[i] * mom + gi / avg;
      w[i] = w[i] - lr * buf[i];
    } else {
      w[i] = w[i] - lr * (gi / avg);
    }
  }
}

template <class T> void ref_adagrad(ScalarRef<T>& r, const std::vector<T>& d, const nn::AdagradOptions& o) {
  const std::int64_t step = ++r.step;
  auto &w = r.w, &sum = r.b1;
  const T wd = static_cast<T>(o.weight_decay), eps = static_cast<T>(o.eps);
  const T clr = static_cast<T>(o.lr / (1 + static_cast<double>(step - 1) * o.lr_decay));
  for (std::size_t i = 0; i < w.size(); ++i) {
    T gi = d[i];
    if (wd != 0) gi = gi + wd * w[i];
    sum[i] = sum[i] + gi * gi;
    const T std_ = std::sqrt(sum[i]) + eps;
    w[i] = w[i] - clr * (gi / std_);
  }
}

// The optimizer runs with flush-to-zero and denormals-are-zero; so does the reference.
struct RefFlush {
#if defined(__SSE2__)
  RefFlush() : saved(_mm_getcsr()) { _mm_setcsr(saved | 0x8040); }
  ~RefFlush() { _mm_setcsr(saved); }
  unsigned saved;
#endif
};

struct Case {
  std::string name;
  std::function<std::unique_ptr<nn::Optimizer>(std::vector<Tensor>)> make;
  std::function<void(ScalarRef<float>&, const std::vector<float>&)> ref32;
  std::function<void(ScalarRef<double>&, const std::vector<double>&)> ref64;
};

template <class O, class Opt> Case config_of(std::string name, Opt o, bool decoupled = false) {
  Case c;
  c.name = std::move(name);
  c.make = [o](std::vector<Tensor> p) -> std::unique_ptr<nn::Optimizer> {
    if constexpr (std::is_same_v<O, nn::AdamW>)
      return std::make_unique<nn::AdamW>(std::move(p), o);
    else
      return std::make_unique<O>(std::move(p), o);
  };
  auto ref = [=](auto& r, const auto& d) {
    if constexpr (std::is_same_v<Opt, nn::SGDOptions>)
      ref_sgd(r, d, o);
    else if constexpr (std::is_same_v<Opt, nn::AdamOptions>)
      ref_adam(r, d, o, decoupled);
    else if constexpr (std::is_same_v<Opt, nn::RMSpropOptions>)
      ref_rmsprop(r, d, o);
    else
      ref_adagrad(r, d, o);
  };
  c.ref32 = ref;
  c.ref64 = ref;
  return c;
}

std::vector<Case> every_configuration() {
  using nn::AdagradOptions, nn::AdamOptions, nn::RMSpropOptions, nn::SGDOptions;
  return {
      config_of<nn::SGD>("sgd", SGDOptions{.lr = 0.1}),
      config_of<nn::SGD>("sgd wd", SGDOptions{.lr = 0.1, .weight_decay = 0.01}),
      config_of<nn::SGD>("sgd momentum", SGDOptions{.lr = 0.1, .momentum = 0.9}),
      config_of<nn::SGD>("sgd momentum dampening wd",
                         SGDOptions{.lr = 0.1, .momentum = 0.9, .dampening = 0.1, .weight_decay = 0.01}),
      config_of<nn::SGD>("sgd nesterov", SGDOptions{.lr = 0.05, .momentum = 0.9, .nesterov = true}),
      config_of<nn::SGD>("sgd nesterov wd",
                         SGDOptions{.lr = 0.05, .momentum = 0.9, .weight_decay = 0.001, .nesterov = true}),
      config_of<nn::Adam>("adam", AdamOptions{.lr = 0.01}),
      config_of<nn::Adam>("adam wd", AdamOptions{.lr = 0.01, .weight_decay = 0.01}),
      config_of<nn::Adam>("adam amsgrad", AdamOptions{.lr = 0.01, .amsgrad = true}),
      config_of<nn::Adam>("adam amsgrad wd", AdamOptions{.lr = 0.01, .weight_decay = 0.01, .amsgrad = true}),
      config_of<nn::AdamW>("adamw", AdamOptions{.lr = 0.01, .weight_decay = 0.1}, true),
      config_of<nn::AdamW>("adamw no decay", AdamOptions{.lr = 0.01}, true),
      config_of<nn::AdamW>("adamw amsgrad", AdamOptions{.lr = 0.01, .weight_decay = 0.1, .amsgrad = true}, true),
      config_of<nn::RMSprop>("rmsprop", RMSpropOptions{.lr = 0.01}),
      config_of<nn::RMSprop>("rmsprop wd momentum", RMSpropOptions{.lr = 0.01, .weight_decay = 0.01, .momentum = 0.5}),
      config_of<nn::RMSprop>("rmsprop centered", RMSpropOptions{.lr = 0.01, .centered = true}),
      config_of<nn::RMSprop>("rmsprop centered momentum wd",
                             RMSpropOptions{.lr = 0.01, .weight_decay = 0.01, .momentum = 0.5, .centered = true}),
      config_of<nn::Adagrad>("adagrad", AdagradOptions{.lr = 0.1}),
      config_of<nn::Adagrad>(
          "adagrad decays",
          AdagradOptions{.lr = 0.1, .lr_decay = 0.01, .weight_decay = 0.01, .initial_accumulator_value = 0.1}),
  };
}

// The starting weights and each step's gradient for n elements and `steps` steps: zeros, -0, and
// normals at three scales with a 1e6 outlier in every 11. They depend on n and steps only, so they are
// drawn once and shared by every configuration, dtype and thread count: drawing them each time (libstdc++'s
// normal_distribution calls logl per number) was a third of this test's 41 s under the sanitizers.
struct Draws {
  std::vector<double> w0;
  std::vector<std::vector<double>> g; // one per step
};
const Draws& draws_for(std::size_t n, int steps) {
  static std::map<std::pair<std::size_t, int>, Draws> cache;
  auto [it, fresh] = cache.try_emplace({n, steps});
  Draws& d = it->second;
  if (!fresh) return d;
  std::mt19937_64 rng(n * 7919 + static_cast<std::size_t>(steps));
  std::normal_distribution<double> normal;
  auto draw = [&](std::size_t i, double scale) {
    switch (i % 11) {
    case 3:
      return 0.0;
    case 7:
      return -0.0;
    case 9:
      return scale * 1e6 * normal(rng);
    default:
      return scale * normal(rng);
    }
  };
  d.w0.resize(n);
  for (std::size_t i = 0; i < n; ++i)
    d.w0[i] = draw(i + 1, 1.0);
  for (int s = 0; s < steps; ++s) {
    const double scale = s % 3 == 0 ? 1e-3 : s % 3 == 1 ? 1.0 : 30.0;
    std::vector<double>& g = d.g.emplace_back(n);
    for (std::size_t i = 0; i < n; ++i)
      g[i] = draw(i + static_cast<std::size_t>(s), scale);
  }
  return d;
}

// Runs `steps` steps of one configuration on a parameter of n elements with random gradients
// (normal at three scales, with exact zeros, huge values and signed zeros mixed in) and checks every
// bit of the parameter and of every buffer against the scalar loop after each step.
// A parameter of n elements, of shape [rows, n / rows] when rows > 1 (split by whole rows).
template <class T> void check_bitwise(const Case& c, std::size_t n, int steps,
                                      const std::function<void(ScalarRef<T>&, const std::vector<T>&)>& ref,
                                      std::int64_t rows = 1) {
  const autodiff::Shape shape = rows > 1 ? autodiff::Shape{rows, static_cast<std::int64_t>(n) / rows}
                                         : autodiff::Shape{static_cast<std::int64_t>(n)};
  constexpr DType dt = std::is_same_v<T, float> ? DType::float32 : DType::float64;
  const Draws& d = draws_for(n, steps);
  const std::vector<double>& w0 = d.w0;
  Tensor w = autodiff::from_vector(w0, shape, dt).requires_grad(true);
  auto opt = c.make({w});
  ScalarRef<T> r;
  r.w.assign(w.data<T>().begin(), w.data<T>().end());
  const T init = c.name.find("decays") != std::string::npos ? static_cast<T>(0.1) : T(0);
  r.b1.assign(n, init);
  r.b2.assign(n, T(0));
  r.b3.assign(n, T(0));
  autodiff::Tape tape;
  for (int s = 0; s < steps; ++s) {
    const std::vector<double>& g = d.g[static_cast<std::size_t>(s)];
    const Tensor G = autodiff::from_vector(g, shape, dt);
    tape.reset();
    opt->zero_grad();
    autodiff::sum(w * G).backward(); // the gradient is G, exactly (G * 1)
    opt->step();
    std::vector<T> gt(n);
    for (std::size_t i = 0; i < n; ++i)
      gt[i] = static_cast<T>(g[i]);
    {
      const RefFlush flush;
      ref(r, gt);
    }
    const auto got = w.data<T>();
    const bool same = std::memcmp(got.data(), r.w.data(), n * sizeof(T)) == 0;
    BOOST_TEST_CONTEXT(fmt::format("{} {} n={} step {}", c.name, dt, n, s + 1)) {
      BOOST_TEST(same);
      if (!same) {
        for (std::size_t i = 0; i < n; ++i)
          if (std::memcmp(&got[i], &r.w[i], sizeof(T)) != 0) {
            BOOST_TEST_MESSAGE(fmt::format("first difference at {}: {} vs scalar {}", i, got[i], r.w[i]));
            break;
          }
        return;
      }
      // The buffers, in buffer_names order.
      const nn::StateDict state = opt->state_dict();
      const std::vector<T>* mine[] = {&r.b1, &r.b2, &r.b3};
      std::size_t slot = 0;
      for (const char* name :
           {"momentum_buffer", "exp_avg", "exp_avg_sq", "max_exp_avg_sq", "square_avg", "grad_avg", "sum"}) {
        auto it = state.find("state.0." + std::string(name));
        if (it == state.end()) continue;
        // RMSprop's momentum buffer is its third (after square_avg and grad_avg).
        const std::vector<T>* want =
            name == std::string("momentum_buffer") && c.name.rfind("rmsprop", 0) == 0 ? &r.b3 : mine[slot++];
        BOOST_TEST(std::memcmp(it->second.template data<T>().data(), want->data(), n * sizeof(T)) == 0,
                   "buffer " << name);
      }
    }
  }
}
} // namespace

BOOST_AUTO_TEST_SUITE(optimizers)

// The vectorised updates (optim_kernels.cpp) against the scalar loops they replaced, bit for bit,
// in float32 and float64, on sizes with vector tails, on one thread and split across threads.
BOOST_AUTO_TEST_CASE(updates_match_the_scalar_loops_bit_for_bit) {
  const int saved = autodiff::get_num_threads();
  for (const int threads : {1, 3}) {
    autodiff::set_num_threads(threads);
    for (const Case& c : every_configuration())
      for (const std::size_t n : {std::size_t{1}, std::size_t{37}, std::size_t{1037}, std::size_t{70001}}) {
        const int steps = n > 10000 ? 12 : 40;
        check_bitwise<float>(c, n, steps, c.ref32);
        check_bitwise<double>(c, n, steps, c.ref64);
      }
    // A matrix is split by whole rows (333 rows of 211: three ranges of 111 rows at 3 threads).
    for (const Case& c : every_configuration()) {
      check_bitwise<float>(c, 333 * 211, 12, c.ref32, 333);
      check_bitwise<double>(c, 333 * 211, 12, c.ref64, 333);
    }
  }
  autodiff::set_num_threads(saved);
}

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

// Every bad entry is refused with its name, and the optimizer is left exactly as it was.
BOOST_AUTO_TEST_CASE(load_state_dict_validates_every_entry) {
  Tensor w = fresh();
  nn::Adam opt({w}, {.lr = 0.1});
  train(opt, w, 3);
  const nn::StateDict good = opt.state_dict();
  const nn::StateDict sgd_state = [] {
    Tensor v = fresh();
    nn::SGD sgd({v}, {.lr = 0.1, .momentum = 0.9});
    train(sgd, v, 2);
    return sgd.state_dict();
  }();
  auto num = [](double v) { return autodiff::full({}, v, DType::float64); };
  const double inf = std::numeric_limits<double>::infinity(), nan = std::numeric_limits<double>::quiet_NaN();
  struct Case {
    std::string key;
    Tensor value; // undefined: erase the key
    std::string message;
  };
  const std::vector<Case> cases{
      {"param_groups.0.lr", num(nan), "'param_groups.0.lr'"},
      {"param_groups.0.lr", num(inf), "'param_groups.0.lr'"},
      {"param_groups.0.lr", num(-0.1), "'param_groups.0.lr'"},
      {"param_groups.0.weight_decay", num(nan), "'param_groups.0.weight_decay'"},
      {"param_groups.0.weight_decay", num(-1), "'param_groups.0.weight_decay'"},
      {"param_groups.0.weight_decay", num(inf), "'param_groups.0.weight_decay'"},
      {"state.0.step", num(inf), "'state.0.step'"},
      {"state.0.step", num(1e30), "'state.0.step'"},
      {"state.0.step", num(2.5), "'state.0.step'"},
      {"state.0.step", num(-1), "'state.0.step'"},
      {"state.0.step", num(nan), "'state.0.step'"},
      {"state.0.bogus", num(1), "'state.0.bogus'"},
      {"state.1.exp_avg", good.at("state.0.exp_avg"), "'state.1.exp_avg'"},
      {"state.00.exp_avg", good.at("state.0.exp_avg"), "'state.00.exp_avg'"},
      {"state.+0.step", num(1), "'state.+0.step'"},
      {"state.18446744073709551616.step", num(1), "'state.18446744073709551616.step'"},
      {"param_groups.1.lr", num(0.1), "'param_groups.1.lr'"},
      {"param_groups.0.momentum", num(0.1), "'param_groups.0.momentum'"},
      {"state.0.momentum_buffer", sgd_state.at("state.0.momentum_buffer"), "'state.0.momentum_buffer'"},
      {"state.0.exp_avg_sq", Tensor(), "'state.0.exp_avg_sq'"},
      {"bogus", num(1), "'bogus'"},
  };
  for (const Case& c : cases) {
    nn::StateDict s = good;
    if (c.value.defined())
      s[c.key] = c.value;
    else
      s.erase(c.key);
    BOOST_TEST_CONTEXT(c.key) {
      const std::vector<double> before = w.to_vector();
      BOOST_CHECK_EXCEPTION(opt.load_state_dict(s), autodiff::Error, [&](const autodiff::Error& e) {
        const std::string what = e.what();
        BOOST_TEST_MESSAGE(what);
        return what.find(c.message) != std::string::npos;
      });
      // nothing changed
      const nn::StateDict after = opt.state_dict();
      BOOST_TEST(after.size() == good.size());
      for (const auto& [k, t] : good)
        BOOST_TEST(after.at(k).to_vector() == t.to_vector(), boost::test_tools::per_element());
      BOOST_TEST(w.to_vector() == before, boost::test_tools::per_element());
    }
  }
  // undefined tensors (a state built in code, not read from a file)
  for (const char* key : {"state.0.exp_avg", "state.0.step", "param_groups.0.lr"}) {
    nn::StateDict s = good;
    s[key] = Tensor();
    BOOST_CHECK_THROW(opt.load_state_dict(s), autodiff::Error);
  }
  // another optimizer's whole state, with the same parameter count
  BOOST_CHECK_THROW(opt.load_state_dict(sgd_state), autodiff::Error);
  // a state of step 0 carries no buffers, and one of step > 0 all of them
  nn::Adam fresh_opt({fresh()});
  nn::StateDict zero = fresh_opt.state_dict();
  zero["state.0.exp_avg"] = good.at("state.0.exp_avg");
  BOOST_CHECK_THROW(fresh_opt.load_state_dict(zero), autodiff::Error);
  opt.load_state_dict(good);
}

BOOST_AUTO_TEST_CASE(rates_are_checked_where_they_are_set) {
  const double inf = std::numeric_limits<double>::infinity(), nan = std::numeric_limits<double>::quiet_NaN();
  BOOST_CHECK_THROW(nn::SGD({fresh()}, {.lr = inf}), autodiff::Error);
  BOOST_CHECK_THROW(nn::SGD({fresh()}, {.lr = nan}), autodiff::Error);
  BOOST_CHECK_THROW(nn::SGD({fresh()}, {.weight_decay = -0.1}), autodiff::Error);
  BOOST_CHECK_THROW(nn::Adam({fresh()}, {.weight_decay = nan}), autodiff::Error);
  BOOST_CHECK_THROW(nn::SGD(std::vector<nn::ParamGroup>{{{fresh()}, -1.0, {}}}, nn::SGDOptions{}), autodiff::Error);
  BOOST_CHECK_THROW(nn::SGD(std::vector<nn::ParamGroup>{{{fresh()}, {}, inf}}, nn::SGDOptions{}), autodiff::Error);
  nn::SGD opt({fresh()}, {.lr = 0.1});
  BOOST_CHECK_THROW(opt.set_lr(nan), autodiff::Error);
  BOOST_CHECK_THROW(opt.set_lr(-1, 0), autodiff::Error);
  BOOST_TEST(opt.lr() == 0.1);
}

// nn::Adam({p, p}) would update p twice per step: the same storage may appear once.
BOOST_AUTO_TEST_CASE(duplicate_parameters_are_refused) {
  Tensor p = fresh();
  Tensor q = p; // another handle of the same parameter
  auto message = [](const autodiff::Error& e) {
    return std::string(e.what()).find("parameter 1 is the same tensor as parameter 0") != std::string::npos;
  };
  BOOST_CHECK_EXCEPTION(nn::Adam({p, p}), autodiff::Error, message);
  BOOST_CHECK_EXCEPTION(nn::SGD({p, q}), autodiff::Error, message);
  BOOST_CHECK_EXCEPTION(nn::Adam(std::vector<nn::ParamGroup>{{{p}, {}, {}}, {{q}, 0.5, {}}}, nn::AdamOptions{}),
                        autodiff::Error, message);
  auto net = nn::mlp({2, 3, 1}, "tanh");
  std::vector<Tensor> twice = net->parameters();
  twice.push_back(net->parameters()[2]);
  BOOST_CHECK_THROW(nn::SGD(twice, {}), autodiff::Error);
  // equal values in different tensors are different parameters
  nn::SGD ok({fresh(), fresh()}, {});
  BOOST_TEST(ok.params(0).size() == 2);
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

// Schedule parameters that would make a rate negative, NaN or never reached are errors at
// construction, naming the schedule and the value (a negative gamma flips every other update).
BOOST_AUTO_TEST_CASE(schedule_parameters_are_checked) {
  Tensor w = fresh();
  nn::SGD opt({w}, {.lr = 0.1});
  const auto says = [](const std::string& what) {
    return [what](const autodiff::Error& e) { return std::string(e.what()).find(what) != std::string::npos; };
  };
  const double nan = std::nan("");
  BOOST_CHECK_EXCEPTION(nn::StepLR(opt, 2, -0.5), autodiff::Error,
                        says("nn: StepLR: gamma must be a finite number >= 0, got -0.5"));
  BOOST_CHECK_EXCEPTION(nn::MultiStepLR(opt, {1, 2}, nan), autodiff::Error, says("MultiStepLR: gamma"));
  BOOST_CHECK_EXCEPTION(nn::ExponentialLR(opt, INFINITY), autodiff::Error, says("ExponentialLR: gamma"));
  BOOST_CHECK_EXCEPTION(nn::CosineAnnealingLR(opt, 10, -1e-3), autodiff::Error, says("CosineAnnealingLR: eta_min"));
  BOOST_CHECK_EXCEPTION(nn::ReduceLROnPlateau(opt, {.patience = -1}), autodiff::Error, says("patience and cooldown"));
  BOOST_CHECK_EXCEPTION(nn::ReduceLROnPlateau(opt, {.cooldown = -2}), autodiff::Error, says("patience and cooldown"));
  BOOST_CHECK_EXCEPTION(nn::ReduceLROnPlateau(opt, {.threshold = nan}), autodiff::Error, says("threshold must be"));
  BOOST_CHECK_EXCEPTION(nn::ReduceLROnPlateau(opt, {.min_lr = -1}), autodiff::Error, says("min_lr must be"));
  // The boundaries are fine: gamma 0 (a rate of 0 after the first decay) and eta_min 0.
  nn::StepLR zero(opt, 1, 0.0);
  nn::CosineAnnealingLR cosine(opt, 10, 0.0);
}

BOOST_AUTO_TEST_SUITE_END()
