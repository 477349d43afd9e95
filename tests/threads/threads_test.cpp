// The thread-safety contract (docs/design.md, Note [Threads]): one model evaluated and
// differentiated from several threads, each on its own tape; shared leaves accumulating into one
// .grad(); scalar and tensor second-order derivatives in threads. Run under ThreadSanitizer by
// scripts/test.sh; in Release, every result is compared with the same computation on one thread.

#include <autodiff/autodiff.hpp>
#include <autodiff/tensor.hpp>
#include <autodiff/tensor_derivatives.hpp>
#include <nn/layers.hpp>
#include <nn/loss.hpp>
#include <nn/optim.hpp>

#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <thread>
#include <vector>

using namespace autodiff;

namespace {
constexpr int threads = 4;

// Runs body(k) on `threads` threads at once (started together, so their work overlaps). Bodies
// count failures in atomics instead of using BOOST_TEST, which is not thread-safe.
template <class F> void on_threads(F&& body) {
  std::atomic<int> ready{0};
  std::vector<std::thread> pool;
  for (int k = 0; k < threads; ++k)
    pool.emplace_back([&, k] {
      ready.fetch_add(1);
      while (ready.load() < threads) {
      }
      body(k);
    });
  for (auto& t : pool)
    t.join();
}

struct Batch {
  Tensor x, y;
};
Batch batch(int k) {
  manual_seed(100 + static_cast<std::uint64_t>(k));
  return {randn({16, 6}, DType::float64), (rand({16}, DType::float64) * 3.0).to(DType::int64)};
}
// One batch's loss through the shared model, on the calling thread's tape.
Tensor loss_of(nn::Module& model, const Batch& b) { return nn::cross_entropy(model(b.x), b.y); }
} // namespace

BOOST_AUTO_TEST_SUITE(threads_contract)

BOOST_AUTO_TEST_CASE(one_model_many_threads_functional_grad) {
  manual_seed(1);
  auto model = nn::mlp({6, 12, 12, 3}, "tanh", DType::float64);
  const std::vector<Tensor> params = model->parameters();
  // References, one batch at a time on this thread.
  std::vector<std::vector<std::vector<double>>> want(threads);
  for (int k = 0; k < threads; ++k) {
    Tape tape;
    for (const Tensor& g : grad(loss_of(*model, batch(k)), params))
      want[static_cast<std::size_t>(k)].push_back(g.to_vector());
  }
  std::atomic<int> wrong{0};
  on_threads([&](int k) {
    const Batch b = batch(k);
    for (int rep = 0; rep < 20; ++rep) {
      Tape tape; // each thread records on its own tape
      const std::vector<Tensor> g = grad(loss_of(*model, b), params);
      for (std::size_t j = 0; j < g.size(); ++j)
        if (g[j].to_vector() != want[static_cast<std::size_t>(k)][j]) wrong.fetch_add(1);
    }
  });
  BOOST_TEST(wrong.load() == 0); // was up to 889 of 8,000 gradients wrong
  for (const Tensor& p : params)
    BOOST_TEST(!p.grad().defined()); // grad() never touches .grad()
}

BOOST_AUTO_TEST_CASE(threads_accumulate_into_one_shared_grad) {
  manual_seed(2);
  auto model = nn::mlp({6, 8, 3}, "relu", DType::float64);
  const std::vector<Tensor> params = model->parameters();
  // The sum of every thread's gradients, computed on this thread.
  std::vector<std::vector<double>> want;
  for (int k = 0; k < threads; ++k) {
    const std::vector<Tensor> g = grad(loss_of(*model, batch(k)), params);
    for (std::size_t j = 0; j < g.size(); ++j) {
      const std::vector<double> v = g[j].to_vector();
      if (k == 0) want.push_back(std::vector<double>(v.size(), 0.0));
      for (std::size_t i = 0; i < v.size(); ++i)
        want[j][i] += 10 * v[i];
    }
  }
  on_threads([&](int k) {
    const Batch b = batch(k);
    for (int rep = 0; rep < 10; ++rep)
      loss_of(*model, b).backward(); // on the thread's default tape, into the shared slots
  });
  for (std::size_t j = 0; j < params.size(); ++j) {
    const std::vector<double> got = params[j].grad().to_vector();
    for (std::size_t i = 0; i < got.size(); ++i) // the order of the additions differs by thread
      BOOST_TEST(std::abs(got[i] - want[j][i]) <= 1e-12 * (1 + std::abs(want[j][i])));
  }
}

// The slot's lock under contention: every thread adds into one leaf's .grad() many times, with
// gradients large enough that an unguarded read-add-write or handle swap would lose updates (with the
// lock made a no-op, TSan reports the race and this test fails). Whole numbers in float64: every
// partial sum is exact, so any order of the additions gives the same bits.
BOOST_AUTO_TEST_CASE(threads_add_into_one_leaf_without_losing_an_update) {
  constexpr int reps = 1000;
  constexpr std::int64_t n = 4096;
  Tensor w = zeros({n}, DType::float64);
  w.requires_grad(true);
  on_threads([&](int k) {
    const Tensor c = full({n}, static_cast<double>(k + 1), DType::float64);
    for (int rep = 0; rep < reps; ++rep) {
      // A tape per pass; the first passes find .grad() undefined, and one of them installs it.
      Tape tape;
      sum(w * c).backward();
    }
  });
  const double want = reps * (threads * (threads + 1) / 2);
  const std::vector<double> got = w.grad().to_vector();
  BOOST_TEST(std::count(got.begin(), got.end(), want) == n);
}

BOOST_AUTO_TEST_CASE(threads_train_their_own_copies_while_sharing_nothing_else) {
  std::atomic<int> not_learning{0}; // Boost.Test's assertions are not thread-safe: count, check after
  on_threads([&](int k) {
    manual_seed(50); // the generator is per thread: every thread builds the same model
    auto model = nn::mlp({6, 8, 3}, "relu", DType::float64);
    nn::SGD opt(model->parameters(), {.lr = 0.1});
    const Batch b = batch(k);
    double first = 0, last = 0;
    for (int step = 0; step < 30; ++step) {
      opt.zero_grad();
      const Tensor loss = loss_of(*model, b);
      loss.backward();
      opt.step();
      (step == 0 ? first : last) = loss.item();
    }
    if (!(last < first)) not_learning.fetch_add(1);
  });
  BOOST_TEST(not_learning.load() == 0);
}

BOOST_AUTO_TEST_CASE(tensor_second_order_in_threads) {
  const Tensor a = tensor({{2, 1}, {1, 3}}, DType::float64);
  auto f = [&](const Tensor& x) { return sum(x * matmul(a, x)) + sum(exp(x)); };
  const Tensor x0 = tensor({0.5, -0.25}, DType::float64);
  const std::vector<double> want = hessian(f, x0).to_vector();
  std::atomic<int> wrong{0};
  on_threads([&](int) {
    for (int rep = 0; rep < 20; ++rep) {
      if (hessian(f, x0).to_vector() != want) wrong.fetch_add(1);
      const Tensor v = tensor({1, 0}, DType::float64);
      const std::vector<double> hv = hvp(f, x0, v).to_vector();
      if (hv[0] != want[0] || hv[1] != want[2]) wrong.fetch_add(1);
    }
  });
  BOOST_TEST(wrong.load() == 0);
}

BOOST_AUTO_TEST_CASE(scalar_hessians_and_gradients_in_threads) {
  auto f = [](const std::vector<Var>& x) { return x[0] * x[0] * sin(x[1]) + exp(x[0] * x[1]); };
  const std::vector<double> x0{0.7, -1.2};
  const Matrix want = hessian(f, x0);
  std::atomic<int> wrong{0};
  on_threads([&](int k) {
    for (int rep = 0; rep < 50; ++rep) {
      if (hessian(f, x0) != want) wrong.fetch_add(1);
      Tape tape;
      Var a = 1.0 + k, b = 2.0;
      const std::vector<double> g = gradient(a * b + sin(a), {a, b});
      if (g[0] != 2.0 + std::cos(1.0 + k) || g[1] != 1.0 + k) wrong.fetch_add(1);
      // A first-order tape (Note [First-order tapes]) above it on the same thread: the same gradient.
      Tape first_order({.higher_order = false});
      Var c = 1.0 + k, d = 2.0;
      if (gradient(c * d + sin(c), {c, d}) != g) wrong.fetch_add(1);
    }
  });
  BOOST_TEST(wrong.load() == 0);
}

BOOST_AUTO_TEST_SUITE_END()
