// One SGD training step of an MLP on a Fashion-MNIST-sized batch, three ways, in one run:
// tapegrad (nn + autodiff), the same step written by hand with cblas_sgemm, and LibTorch when it
// was found at configure time. Prints milliseconds per step and the ratios.
//
//   mlp_step_compare [--hidden 256,256] [--batch 128] [--threads 1] [--steps 200]

#include "../examples/common/openblas.hpp"

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
#include <chrono>
#include <cmath>
#include <memory>
#include <random>
#include <string>
#include <vector>

namespace {

using clock_type = std::chrono::steady_clock;

struct Problem {
  std::vector<std::int64_t> sizes; // 784, hidden..., 10
  std::int64_t batch;
  std::vector<float> x;        // batch x 784
  std::vector<std::int64_t> y; // batch
};

Problem make_problem(const std::vector<std::int64_t>& hidden, std::int64_t batch) {
  Problem p{{784}, batch, {}, {}};
  p.sizes.insert(p.sizes.end(), hidden.begin(), hidden.end());
  p.sizes.push_back(10);
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(0, 1);
  p.x.resize(static_cast<std::size_t>(batch * 784));
  for (auto& v : p.x)
    v = u(rng);
  for (std::int64_t i = 0; i < batch; ++i)
    p.y.push_back(static_cast<std::int64_t>(rng() % 10));
  return p;
}

template <class Step> double ms_per_step(Step&& step, int steps) {
  for (int i = 0; i < 10; ++i)
    step(); // warm-up: caches, allocator pools, BLAS buffers
  const auto t0 = clock_type::now();
  for (int i = 0; i < steps; ++i)
    step();
  return std::chrono::duration<double, std::milli>(clock_type::now() - t0).count() / steps;
}

// ---- tapegrad ----------------------------------------------------------------------------------
double run_tapegrad(const Problem& p, int steps, bool adam) {
  autodiff::manual_seed(0);
  auto model = nn::mlp(p.sizes, "relu");
  std::unique_ptr<nn::Optimizer> optimizer;
  if (adam)
    optimizer = std::make_unique<nn::Adam>(model->parameters(), nn::AdamOptions{.lr = 1e-3});
  else
    optimizer = std::make_unique<nn::SGD>(model->parameters(), nn::SGDOptions{.lr = 0.01});
  nn::Optimizer& opt = *optimizer;
  const autodiff::Tensor x = autodiff::from_vector(p.x, {p.batch, 784});
  const autodiff::Tensor y = autodiff::from_vector(p.y, {p.batch});
  autodiff::Tape tape;
  return ms_per_step(
      [&] {
        tape.reset();
        const autodiff::Tensor loss = nn::cross_entropy((*model)(x), y);
        opt.zero_grad();
        loss.backward();
        opt.step();
      },
      steps);
}

// ---- by hand with OpenBLAS ---------------------------------------------------------------------
// Linear layers y = x W^T + b (W [out, in]), relu between them, mean cross-entropy, plain SGD.
double run_by_hand(const Problem& p, int steps) {
  const std::size_t layers = p.sizes.size() - 1;
  const int n = static_cast<int>(p.batch);
  std::mt19937 rng(0);
  std::vector<std::vector<float>> w(layers), b(layers), gw(layers), gb(layers), act(layers + 1), grad(layers + 1);
  for (std::size_t l = 0; l < layers; ++l) {
    const auto in = p.sizes[l], out = p.sizes[l + 1];
    std::uniform_real_distribution<float> u(-1 / std::sqrt(float(in)), 1 / std::sqrt(float(in)));
    w[l].resize(static_cast<std::size_t>(in * out));
    for (auto& v : w[l])
      v = u(rng);
    b[l].assign(static_cast<std::size_t>(out), 0.01f);
    gw[l].resize(w[l].size());
    gb[l].resize(b[l].size());
  }
  for (std::size_t l = 0; l <= layers; ++l) {
    act[l].resize(static_cast<std::size_t>(n * p.sizes[l]));
    grad[l].resize(act[l].size());
  }
  act[0] = p.x;
  const float lr = 0.01f;
  auto step = [&] {
    for (std::size_t l = 0; l < layers; ++l) {
      const int in = static_cast<int>(p.sizes[l]), out = static_cast<int>(p.sizes[l + 1]);
      float* a = act[l + 1].data();
      for (int i = 0; i < n; ++i)
        std::copy(b[l].begin(), b[l].end(), a + static_cast<std::ptrdiff_t>(i) * out);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, out, in, 1.0f, act[l].data(), in, w[l].data(), in, 1.0f,
                  a, out);
      if (l + 1 < layers)
        for (std::size_t k = 0; k < act[l + 1].size(); ++k)
          a[k] = std::max(a[k], 0.0f);
    }
    // softmax cross-entropy: dlogits = (softmax - onehot) / n
    float* z = act[layers].data();
    float* dz = grad[layers].data();
    for (int i = 0; i < n; ++i) {
      float* row = z + i * 10;
      const float m = *std::max_element(row, row + 10);
      float s = 0;
      for (int c = 0; c < 10; ++c)
        s += std::exp(row[c] - m);
      for (int c = 0; c < 10; ++c)
        dz[i * 10 + c] = std::exp(row[c] - m) / s / static_cast<float>(n);
      dz[i * 10 + p.y[static_cast<std::size_t>(i)]] -= 1.0f / static_cast<float>(n);
    }
    for (std::size_t l = layers; l-- > 0;) {
      const int in = static_cast<int>(p.sizes[l]), out = static_cast<int>(p.sizes[l + 1]);
      const float* d = grad[l + 1].data();
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out, in, n, 1.0f, d, out, act[l].data(), in, 0.0f,
                  gw[l].data(), in);
      std::fill(gb[l].begin(), gb[l].end(), 0.0f);
      for (int i = 0; i < n; ++i)
        for (int o = 0; o < out; ++o)
          gb[l][static_cast<std::size_t>(o)] += d[i * out + o];
      if (l > 0) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, in, out, 1.0f, d, out, w[l].data(), in, 0.0f,
                    grad[l].data(), in);
        for (std::size_t k = 0; k < grad[l].size(); ++k)
          if (act[l][k] <= 0) grad[l][k] = 0;
      }
      for (std::size_t k = 0; k < w[l].size(); ++k)
        w[l][k] -= lr * gw[l][k];
      for (std::size_t k = 0; k < b[l].size(); ++k)
        b[l][k] -= lr * gb[l][k];
    }
  };
  return ms_per_step(step, steps);
}

#if TAPEGRAD_HAVE_TORCH
double run_torch(const Problem& p, int steps, bool adam) {
  torch::manual_seed(0);
  torch::nn::Sequential model;
  for (std::size_t l = 0; l + 1 < p.sizes.size(); ++l) {
    model->push_back(torch::nn::Linear(p.sizes[l], p.sizes[l + 1]));
    if (l + 2 < p.sizes.size()) model->push_back(torch::nn::ReLU());
  }
  std::unique_ptr<torch::optim::Optimizer> optimizer;
  if (adam)
    optimizer = std::make_unique<torch::optim::Adam>(model->parameters(), torch::optim::AdamOptions(1e-3));
  else
    optimizer = std::make_unique<torch::optim::SGD>(model->parameters(), torch::optim::SGDOptions(0.01));
  torch::optim::Optimizer& opt = *optimizer;
  const auto x = torch::from_blob(const_cast<float*>(p.x.data()), {p.batch, 784}).clone();
  const auto y = torch::from_blob(const_cast<std::int64_t*>(p.y.data()), {p.batch}, torch::kInt64).clone();
  return ms_per_step(
      [&] {
        opt.zero_grad();
        auto loss = torch::nn::functional::cross_entropy(model->forward(x), y);
        loss.backward();
        opt.step();
      },
      steps);
}
#endif

} // namespace

int main(int argc, char** argv) {
  std::vector<std::int64_t> hidden{256, 256};
  std::int64_t batch = 128;
  int threads = 1, steps = 200;
  std::string optimizer = "sgd";
  CLI::App app{"MLP training step: tapegrad vs hand-written OpenBLAS vs LibTorch"};
  app.add_option("--hidden", hidden, "hidden sizes")->delimiter(',')->capture_default_str();
  app.add_option("--batch", batch, "batch size")->check(CLI::Range(1, 100000))->capture_default_str();
  app.add_option("--threads", threads, "threads (tapegrad's pool and OpenBLAS; LibTorch's intra-op)")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  app.add_option("--steps", steps, "timed steps")->check(CLI::Range(1, 1000000))->capture_default_str();
  app.add_option("--optimizer", optimizer, "sgd or adam (the hand-written version is SGD only)")
      ->check(CLI::IsMember({"sgd", "adam"}))
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  const bool adam = optimizer == "adam";

  autodiff::set_num_threads(threads); // tapegrad's pool and OpenBLAS
  const Problem p = make_problem(hidden, batch);
  fmt::print("MLP {} at batch {}, {}, {} thread(s), {} steps\n", fmt::join(p.sizes, "-"), batch, optimizer, threads,
             steps);
  fmt::print("{}\n", examples::describe_blas_kernel());
  const double hand = run_by_hand(p, steps);
  const double ours = run_tapegrad(p, steps, adam);
  fmt::print("  {:<22} {:8.3f} ms/step (SGD)\n", "hand-written OpenBLAS", hand);
  fmt::print("  {:<22} {:8.3f} ms/step   {:.2f}x hand-written\n", "tapegrad", ours, ours / hand);
#if TAPEGRAD_HAVE_TORCH
  torch::set_num_threads(threads);
  const double torch_ms = run_torch(p, steps, adam);
  fmt::print("  {:<22} {:8.3f} ms/step   {:.2f}x hand-written; tapegrad / LibTorch = {:.2f}\n", "LibTorch", torch_ms,
             torch_ms / hand, ours / torch_ms);
#else
  fmt::print("  LibTorch: not found at configure time (install libtorch-dev for the side-by-side figure)\n");
#endif
}
