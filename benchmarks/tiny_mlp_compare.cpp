// One SGD training step of a tiny MLP, 2-16-16-1 with tanh hidden layers, MSE on a batch of 100
// float32 points, four ways in one run: tapegrad (nn::mlp, nn::mse_loss, nn::SGD); the floor, the
// same step written by hand with the kernels tapegrad uses (cblas_sgemm for the layers, element loops
// in the widest vectors with glibc's vector tanhf); the same step as plain per-sample loops, as one
// writes it without a library; and LibTorch when it was found at configure time. At this size a step
// is a few microseconds, so tapegrad / floor is the engine's cost per op (recording, buffers,
// dispatch). Rounds are interleaved; each engine's fastest round is printed.
//
//   tiny_mlp_compare [--rounds 7] [--steps 2000] [--only-tapegrad | --only-floor]

#include <autodiff/parallel.hpp>
#include <autodiff/tensor.hpp>
#include <nn/layers.hpp>
#include <nn/loss.hpp>
#include <nn/optim.hpp>

#include <CLI/CLI.hpp>
#include <cblas.h>
#include <fmt/format.h>

#if TAPEGRAD_HAVE_TORCH
#include <torch/torch.h>
#endif

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

// The floor's element loops as tapegrad's (autodiff/src/tensor/kernels.hpp): compiled for AVX-512,
// AVX2 and baseline x86-64 with the widest picked at load time, and tanhf in vector lanes from
// libmvec where CMake found it (this file is compiled with -fno-math-errno, as tapegrad's kernels).
#if defined(__x86_64__) && defined(__ELF__) && defined(__GNUC__) && !defined(__clang__) &&                             \
    !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
#define FLOOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define FLOOR_CLONES
#endif
#if defined(TAPEGRAD_HAVE_LIBMVEC) && !defined(__clang__)
extern "C" __attribute__((simd("notinbranch"))) float tanhf(float) noexcept;
#endif

namespace {

constexpr int batch = 100, hidden = 16;
constexpr float lr = 0.1f;

struct Data {
  std::vector<float> x; // batch x 2
  std::vector<float> y; // batch x 1
};

Data make_data() {
  Data d;
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-1, 1);
  for (int i = 0; i < batch; ++i) {
    const float a = u(rng), b = u(rng);
    d.x.push_back(a);
    d.x.push_back(b);
    d.y.push_back(std::sin(2 * a) * b);
  }
  return d;
}

// Microseconds per step over `steps` steps, after `step` has already been warmed up.
double us_per_step(const std::function<void()>& step, int steps) {
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < steps; ++i)
    step();
  return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() / steps;
}

// ---- the floor: the same kernels, no framework ----------------------------------------------------------
template <class F> FLOOR_CLONES void each(int n, const F& f) {
  for (int i = 0; i < n; ++i)
    f(i);
}

// z = a w^T + b for a [n, in], w [out, in], b [out]: z [n, out].
void linear(int n, int in, int out, const float* a, const float* w, const float* b, float* z) {
  each(n, [&](int i) { // the rows in one vectorised loop nest, as tapegrad's linear fills them
    for (int o = 0; o < out; ++o)
      z[i * out + o] = b[o];
  });
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, out, in, 1, a, in, w, in, 1, z, out);
}
// gw = d^T a [out, in], gb = column sums of d [out] (d^T times a vector of ones), and, when ga is
// given, ga = d w [n, in].
void linear_backward(int n, int in, int out, const float* a, const float* w, const float* d, float* gw, float* gb,
                     float* ga) {
  static const std::vector<float> ones(batch, 1.0f);
  cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out, in, n, 1, d, out, a, in, 0, gw, in);
  cblas_sgemv(CblasRowMajor, CblasTrans, n, out, 1, d, out, ones.data(), 1, 0, gb, 1);
  if (ga != nullptr) cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, in, out, 1, d, out, w, in, 0, ga, in);
}

// The parameters, their gradients and the activations the backward reads, as both hand-written
// steps keep them: weights [out, in] as Linear's, row-major, drawn as Linear draws them.
struct Net {
  std::vector<float> w1 = std::vector<float>(hidden * 2), b1 = std::vector<float>(hidden),
                     w2 = std::vector<float>(hidden * hidden), b2 = std::vector<float>(hidden),
                     w3 = std::vector<float>(hidden), b3 = std::vector<float>(1);
  std::vector<float> h1 = std::vector<float>(batch * hidden), h2 = std::vector<float>(batch * hidden),
                     d1 = std::vector<float>(batch * hidden), d2 = std::vector<float>(batch * hidden),
                     out = std::vector<float>(batch), dout = std::vector<float>(batch);
  std::vector<float> gw1 = w1, gb1 = b1, gw2 = w2, gb2 = b2, gw3 = w3, gb3 = b3;
  float loss = 0;

  Net() {
    std::mt19937 rng(0);
    auto init = [&](std::vector<float>& w, std::vector<float>& b, int in) {
      std::uniform_real_distribution<float> u(-1 / std::sqrt(float(in)), 1 / std::sqrt(float(in)));
      for (auto& v : w)
        v = u(rng);
      for (auto& v : b)
        v = u(rng);
    };
    init(w1, b1, 2);
    init(w2, b2, hidden);
    init(w3, b3, hidden);
  }
  // sgd(parameter, gradient) for each of the six
  template <class F> void update(const F& sgd) {
    sgd(w1, gw1);
    sgd(b1, gb1);
    sgd(w2, gw2);
    sgd(b2, gb2);
    sgd(w3, gw3);
    sgd(b3, gb3);
  }
};

struct Floor : Net {
  // The step's three phases, as tapegrad's (forward with the loss, backward, update), so that
  // --only-floor can time each against --only-tapegrad's phases.
  void forward(const Data& d) {
    float *a1 = h1.data(), *a2 = h2.data(), *o = out.data(), *go = dout.data();
    const float* y = d.y.data();
    linear(batch, 2, hidden, d.x.data(), w1.data(), b1.data(), a1);
    each(batch * hidden, [&](int k) { a1[k] = std::tanh(a1[k]); });
    linear(batch, hidden, hidden, a1, w2.data(), b2.data(), a2);
    each(batch * hidden, [&](int k) { a2[k] = std::tanh(a2[k]); });
    linear(batch, hidden, 1, a2, w3.data(), b3.data(), o);
    float sum = 0;
    for (int i = 0; i < batch; ++i) {
      const float e = o[i] - y[i];
      sum += e * e;
      go[i] = 2 * e / batch;
    }
    loss = sum / batch;
  }
  void backward(const Data& d) {
    float *a1 = h1.data(), *a2 = h2.data(), *g1 = d1.data(), *g2 = d2.data();
    linear_backward(batch, hidden, 1, a2, w3.data(), dout.data(), gw3.data(), gb3.data(), g2);
    each(batch * hidden, [&](int k) { g2[k] *= 1 - a2[k] * a2[k]; });
    linear_backward(batch, hidden, hidden, a1, w2.data(), g2, gw2.data(), gb2.data(), g1);
    each(batch * hidden, [&](int k) { g1[k] *= 1 - a1[k] * a1[k]; });
    linear_backward(batch, 2, hidden, d.x.data(), w1.data(), g1, gw1.data(), gb1.data(), nullptr);
  }
  void update() {
    auto sgd = [](std::vector<float>& p, const std::vector<float>& g) {
      float* pv = p.data();
      const float* gv = g.data();
      each(static_cast<int>(p.size()), [&](int k) { pv[k] -= lr * gv[k]; });
    };
    Net::update(sgd);
  }
  void step(const Data& d) {
    forward(d);
    backward(d);
    update();
  }
};

// ---- plain per-sample loops ------------------------------------------------------------------------
struct Hand : Net {
  void step(const Data& d) {
    for (int i = 0; i < batch; ++i) {
      const float* x = &d.x[static_cast<std::size_t>(2 * i)];
      float* a1 = &h1[static_cast<std::size_t>(i * hidden)];
      float* a2 = &h2[static_cast<std::size_t>(i * hidden)];
      for (int j = 0; j < hidden; ++j)
        a1[j] = std::tanh(b1[j] + w1[2 * j] * x[0] + w1[2 * j + 1] * x[1]);
      for (int j = 0; j < hidden; ++j) {
        float s = b2[j];
        for (int k = 0; k < hidden; ++k)
          s += w2[j * hidden + k] * a1[k];
        a2[j] = std::tanh(s);
      }
      float o = b3[0];
      for (int k = 0; k < hidden; ++k)
        o += w3[k] * a2[k];
      out[i] = o;
    }
    // mean squared error and its gradient 2 (out - y) / n
    loss = 0;
    std::fill(gw1.begin(), gw1.end(), 0.0f);
    std::fill(gb1.begin(), gb1.end(), 0.0f);
    std::fill(gw2.begin(), gw2.end(), 0.0f);
    std::fill(gb2.begin(), gb2.end(), 0.0f);
    std::fill(gw3.begin(), gw3.end(), 0.0f);
    gb3[0] = 0;
    for (int i = 0; i < batch; ++i) {
      const float e = out[i] - d.y[static_cast<std::size_t>(i)];
      loss += e * e;
      const float g = 2 * e / batch;
      const float* a1 = &h1[static_cast<std::size_t>(i * hidden)];
      const float* a2 = &h2[static_cast<std::size_t>(i * hidden)];
      float* g2 = &d2[static_cast<std::size_t>(i * hidden)];
      float* g1 = &d1[static_cast<std::size_t>(i * hidden)];
      gb3[0] += g;
      for (int k = 0; k < hidden; ++k) {
        gw3[k] += g * a2[k];
        g2[k] = g * w3[k] * (1 - a2[k] * a2[k]);
      }
      for (int k = 0; k < hidden; ++k)
        g1[k] = 0;
      for (int j = 0; j < hidden; ++j) {
        gb2[j] += g2[j];
        for (int k = 0; k < hidden; ++k) {
          gw2[j * hidden + k] += g2[j] * a1[k];
          g1[k] += g2[j] * w2[j * hidden + k];
        }
      }
      const float* x = &d.x[static_cast<std::size_t>(2 * i)];
      for (int j = 0; j < hidden; ++j) {
        const float gz = g1[j] * (1 - a1[j] * a1[j]);
        gb1[j] += gz;
        gw1[2 * j] += gz * x[0];
        gw1[2 * j + 1] += gz * x[1];
      }
    }
    loss /= batch;
    auto sgd = [](std::vector<float>& p, const std::vector<float>& g) {
      for (std::size_t k = 0; k < p.size(); ++k)
        p[k] -= lr * g[k];
    };
    update(sgd);
  }
};

} // namespace

int main(int argc, char** argv) {
  int rounds = 7, steps = 2000;
  CLI::App app{"Tiny MLP (2-16-16-1, tanh, batch 100) training step: tapegrad vs plain loops vs LibTorch"};
  app.add_option("--rounds", rounds, "interleaved rounds; the fastest of each engine is printed")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  app.add_option("--steps", steps, "steps per round")->check(CLI::Range(1, 10000000))->capture_default_str();
  bool only_tapegrad = false, only_floor = false;
  app.add_flag("--only-tapegrad", only_tapegrad, "run tapegrad's step alone (for a profiler)");
  app.add_flag("--only-floor", only_floor, "run the floor's step alone (for a profiler)")->excludes("--only-tapegrad");
  CLI11_PARSE(app, argc, argv);

  const Data d = make_data();
  std::vector<std::pair<std::string, std::function<void()>>> engines;
  std::vector<std::function<double()>> losses;

  Floor floor;
  engines.emplace_back("floor (sgemm + vector)", [&] { floor.step(d); });
  losses.emplace_back([&] { return double{floor.loss}; });

  autodiff::manual_seed(0);
  auto model = nn::mlp({2, hidden, hidden, 1}, "tanh");
  nn::SGD opt(model->parameters(), {.lr = lr});
  const autodiff::Tensor x = autodiff::from_vector(d.x, {batch, 2}), y = autodiff::from_vector(d.y, {batch, 1});
  autodiff::Tape tape;
  double ours_loss = 0;
  engines.emplace_back("tapegrad", [&] {
    tape.reset();
    const autodiff::Tensor loss = nn::mse_loss((*model)(x), y);
    opt.zero_grad();
    loss.backward();
    opt.step();
    ours_loss = loss.item();
  });
  losses.emplace_back([&] { return ours_loss; });

  Hand hand;
  engines.emplace_back("plain per-sample loops", [&] { hand.step(d); });
  losses.emplace_back([&] { return double{hand.loss}; });

#if TAPEGRAD_HAVE_TORCH
  torch::set_num_threads(1);
  torch::manual_seed(0);
  torch::nn::Sequential net(torch::nn::Linear(2, hidden), torch::nn::Tanh(), torch::nn::Linear(hidden, hidden),
                            torch::nn::Tanh(), torch::nn::Linear(hidden, 1));
  torch::optim::SGD topt(net->parameters(), torch::optim::SGDOptions(lr));
  const auto tx = torch::from_blob(const_cast<float*>(d.x.data()), {batch, 2}).clone();
  const auto ty = torch::from_blob(const_cast<float*>(d.y.data()), {batch, 1}).clone();
  double torch_loss = 0;
  engines.emplace_back("LibTorch", [&] {
    topt.zero_grad();
    auto loss = torch::mse_loss(net->forward(tx), ty);
    loss.backward();
    topt.step();
    torch_loss = loss.item<double>();
  });
  losses.emplace_back([&] { return torch_loss; });
#endif

  autodiff::set_num_threads(1); // tiny ops run on the calling thread anyway; no pool wake-ups
  using clock = std::chrono::steady_clock;
  if (only_floor) { // as --only-tapegrad: the step alone, then its phases
    for (int r = 0; r < rounds; ++r)
      fmt::print("floor {:.2f} us/step\n", us_per_step(engines[0].second, steps));
    double t[3] = {};
    for (int i = 0; i < steps; ++i) {
      const auto t0 = clock::now();
      floor.forward(d);
      const auto t1 = clock::now();
      floor.backward(d);
      const auto t2 = clock::now();
      floor.update();
      const auto t3 = clock::now();
      const std::chrono::duration<double, std::micro> p[3] = {t1 - t0, t2 - t1, t3 - t2};
      for (int k = 0; k < 3; ++k)
        t[k] += p[k].count();
    }
    fmt::print("phases, us/step: forward {:.2f}, backward {:.2f}, step {:.2f}\n", t[0] / steps, t[1] / steps,
               t[2] / steps);
    return 0;
  }
  if (only_tapegrad) { // the step alone, then split into its phases (one clock read between phases)
    for (int r = 0; r < rounds; ++r)
      fmt::print("tapegrad {:.2f} us/step\n", us_per_step(engines[1].second, steps));
    double t[4] = {};
    for (int i = 0; i < steps; ++i) {
      const auto t0 = clock::now();
      tape.reset();
      const autodiff::Tensor loss = nn::mse_loss((*model)(x), y);
      const auto t1 = clock::now();
      opt.zero_grad();
      const auto t2 = clock::now();
      loss.backward();
      const auto t3 = clock::now();
      opt.step();
      const auto t4 = clock::now();
      const std::chrono::duration<double, std::micro> d[4] = {t1 - t0, t2 - t1, t3 - t2, t4 - t3};
      for (int k = 0; k < 4; ++k)
        t[k] += d[k].count();
    }
    fmt::print("phases, us/step: forward {:.2f}, zero_grad {:.2f}, backward {:.2f}, step {:.2f}\n", t[0] / steps,
               t[1] / steps, t[2] / steps, t[3] / steps);
    return 0;
  }
  for (auto& [name, step] : engines)
    for (int i = 0; i < 200; ++i)
      step(); // warm-up: caches, allocator pools
  std::vector<double> best(engines.size(), std::numeric_limits<double>::infinity());
  for (int r = 0; r < rounds; ++r)
    for (std::size_t e = 0; e < engines.size(); ++e)
      best[e] = std::min(best[e], us_per_step(engines[e].second, steps));

  fmt::print("MLP 2-{}-{}-1, tanh, MSE, SGD lr {}, batch {}, float32, 1 thread; fastest of {} rounds of {} steps\n",
             hidden, hidden, lr, batch, rounds, steps);
  for (std::size_t e = 0; e < engines.size(); ++e)
    fmt::print("  {:<24} {:8.2f} us/step  {:5.2f}x the floor   (loss after training {:.4f})\n", engines[e].first,
               best[e], best[e] / best[0], losses[e]());
#if !TAPEGRAD_HAVE_TORCH
  fmt::print("  LibTorch: not found at configure time (install libtorch-dev for the side-by-side figure)\n");
#else
  fmt::print("  tapegrad / LibTorch = {:.2f}\n", best[1] / best[3]);
#endif
}
