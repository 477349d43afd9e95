// nn::parallel_backward (docs/design.md, Note [Data-parallel steps]): with one shard it is the plain
// step, bit for bit; with several it gives the batch's loss, outputs and gradients (float64, to
// rounding), for mean and sum losses and uneven shards; random numbers are reproducible per thread
// count; bad input and a throwing shard give clear errors. Run under ThreadSanitizer by
// scripts/test.sh, where the shards share the model's parameters across threads.

#include <autodiff/error.hpp>
#include <autodiff/parallel.hpp>
#include <autodiff/tensor.hpp>
#include <nn/layers.hpp>
#include <nn/loss.hpp>
#include <nn/parallel.hpp>

#include <boost/test/unit_test.hpp>

#include <atomic>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "restore_threads.hpp"

namespace {

using tapegrad_test::RestoreThreads;

using autodiff::DType;
using autodiff::Tensor;

struct Setup {
  std::shared_ptr<nn::Sequential> model;
  Tensor x, y;
  explicit Setup(std::int64_t rows, double dropout = 0) {
    autodiff::manual_seed(7);
    model = std::make_shared<nn::Sequential>();
    model->push_back(std::make_shared<nn::Linear>(5, 8, true, DType::float64));
    model->push_back(std::make_shared<nn::Tanh>());
    if (dropout > 0) model->push_back(std::make_shared<nn::Dropout>(dropout));
    model->push_back(std::make_shared<nn::Linear>(8, 3, true, DType::float64));
    x = autodiff::randn({rows, 5}, DType::float64);
    std::vector<std::int64_t> t;
    for (std::int64_t i = 0; i < rows; ++i)
      t.push_back((i * 7) % 3);
    y = autodiff::from_vector(t, {rows});
  }
  nn::ShardFn fn(autodiff::Reduction r = autodiff::Reduction::mean) {
    return [this, r](const Tensor& xs, const Tensor& ys) -> nn::ShardResult {
      const Tensor logits = (*model)(xs);
      return {nn::cross_entropy(logits, ys, r), logits};
    };
  }
  std::vector<std::vector<double>> grads() const {
    std::vector<std::vector<double>> g;
    for (const Tensor& p : model->parameters())
      g.push_back(p.grad().to_vector());
    return g;
  }
  void zero_grad() {
    for (Tensor p : model->parameters())
      p.zero_grad();
  }
};

double max_rel_diff(const std::vector<std::vector<double>>& a, const std::vector<std::vector<double>>& b) {
  double worst = 0;
  for (std::size_t i = 0; i < a.size(); ++i)
    for (std::size_t j = 0; j < a[i].size(); ++j)
      worst = std::max(worst, std::fabs(a[i][j] - b[i][j]) / std::max(1e-300, std::fabs(b[i][j])));
  return worst;
}

} // namespace

BOOST_AUTO_TEST_SUITE(parallel_backward)

BOOST_AUTO_TEST_CASE(one_shard_is_the_plain_step_bit_for_bit) {
  const RestoreThreads restore;
  autodiff::set_num_threads(1);
  Setup s(40);
  const Tensor logits = (*s.model)(s.x);
  const Tensor loss = nn::cross_entropy(logits, s.y);
  loss.backward();
  const auto want = s.grads();
  s.zero_grad();
  const nn::ShardResult r = nn::parallel_backward(s.x, s.y, s.fn());
  BOOST_TEST(s.grads() == want);
  BOOST_TEST(r.loss.item() == loss.item());
  BOOST_TEST(r.output.to_vector() == logits.to_vector());
  BOOST_TEST(!r.loss.requires_grad());
}

BOOST_AUTO_TEST_CASE(shards_give_the_batch_gradient) {
  const RestoreThreads restore;
  for (const auto red : {autodiff::Reduction::mean, autodiff::Reduction::sum}) {
    Setup s(100); // 3 shards of 33, 33, 34 rows: uneven, so a wrong weight shows
    const Tensor logits = (*s.model)(s.x);
    const Tensor loss = nn::cross_entropy(logits, s.y, red);
    loss.backward();
    const auto want = s.grads();
    for (const int threads : {2, 3}) {
      autodiff::set_num_threads(threads);
      s.zero_grad();
      const nn::ShardResult r = nn::parallel_backward(s.x, s.y, s.fn(red), {.reduction = red, .min_rows = 8});
      BOOST_TEST(max_rel_diff(s.grads(), want) < 1e-12);
      BOOST_TEST(std::fabs(r.loss.item() - loss.item()) < 1e-13 * std::fabs(loss.item()));
      BOOST_TEST((r.loss.dtype() == DType::float64));
      BOOST_TEST((r.output.shape() == logits.shape()));
      BOOST_TEST(max_rel_diff({r.output.to_vector()}, {logits.to_vector()}) < 1e-13);
      // Accumulates as backward() does: a second call without zero_grad doubles the gradient.
      nn::parallel_backward(s.x, s.y, s.fn(red), {.reduction = red, .min_rows = 8});
      auto twice = want;
      for (auto& g : twice)
        for (double& v : g)
          v *= 2;
      BOOST_TEST(max_rel_diff(s.grads(), twice) < 1e-12);
    }
    autodiff::set_num_threads(1);
  }
}

BOOST_AUTO_TEST_CASE(small_batches_stay_on_one_shard) {
  const RestoreThreads restore;
  autodiff::set_num_threads(2);
  Setup s(40); // 40 / 32 = 1 shard at the default min_rows: the plain step, bit for bit
  const Tensor loss = nn::cross_entropy((*s.model)(s.x), s.y);
  loss.backward();
  const auto want = s.grads();
  s.zero_grad();
  nn::parallel_backward(s.x, s.y, s.fn());
  BOOST_TEST(s.grads() == want);
}

BOOST_AUTO_TEST_CASE(random_numbers_are_reproducible_per_thread_count) {
  const RestoreThreads restore;
  autodiff::set_num_threads(2);
  std::vector<std::vector<double>> first;
  for (int run = 0; run < 2; ++run) {
    Setup s(64, 0.5);
    autodiff::manual_seed(11);
    nn::parallel_backward(s.x, s.y, s.fn(), {.min_rows = 8});
    if (run == 0)
      first = s.grads();
    else
      BOOST_TEST(s.grads() == first);
  }
}

// Every range sees OpenBLAS at one thread, the worker's included, and the count is back afterwards.
// The calls come back to back, so the worker is polling and starts its range the moment the job is
// posted: OpenBLAS must be at one thread before that, not after. (It was set just after posting,
// and a polling worker's range then sometimes ran its products on OpenBLAS's two threads, whose
// sgemm rounds the demo's 128x784x256 product differently: the demo's 2-thread runs differed from
// each other in the last bits, once the pool polled fast enough to win that race.)
BOOST_AUTO_TEST_CASE(blas_runs_one_thread_per_range) {
  const RestoreThreads restore;
  autodiff::set_num_threads(2);
  std::atomic<int> wrong{0}, ran{0};
  for (int call = 0; call < 20000; ++call) {
    autodiff::parallel_for(2, 1, [&](std::int64_t b, std::int64_t e) {
      for (std::int64_t i = b; i < e; ++i) {
        wrong += openblas_get_num_threads() != 1;
        ++ran;
      }
    });
    if (openblas_get_num_threads() != 2) ++wrong;
  }
  BOOST_TEST(ran.load() == 40000);
  BOOST_TEST(wrong.load() == 0);
}

BOOST_AUTO_TEST_CASE(bad_input_and_failing_shards_give_clear_errors) {
  const RestoreThreads restore;
  autodiff::set_num_threads(2);
  Setup s(64);
  const auto message = [&](auto&& call) -> std::string {
    try {
      call();
    } catch (const autodiff::Error& e) {
      return e.what();
    }
    return "(no error)";
  };
  BOOST_TEST(message([&] {
               nn::parallel_backward(s.x, autodiff::slice(s.y, 0, 0, 10), s.fn());
             }).find("nn: parallel_backward: inputs [64,5] and targets [10]") == 0);
  BOOST_TEST(message([&] {
               nn::parallel_backward(s.x, s.y, s.fn(), {.reduction = autodiff::Reduction::none});
             }).find("reduction none") != std::string::npos);
  BOOST_TEST(message([&] {
               const autodiff::NoGradGuard off;
               nn::parallel_backward(s.x, s.y, s.fn(), {.min_rows = 8});
             }).find("gradients disabled") != std::string::npos);
  BOOST_TEST(message([&] { nn::parallel_backward(s.x, s.y, s.fn(), {.min_rows = 0}); }).find("min_rows") !=
             std::string::npos);
  const nn::ShardFn per_row = [&](const Tensor& xs, const Tensor& ys) -> nn::ShardResult {
    return {nn::cross_entropy((*s.model)(xs), ys, autodiff::Reduction::none), {}};
  };
  BOOST_TEST(message([&] {
               nn::parallel_backward(s.x, s.y, per_row, {.min_rows = 8});
             }).find("returned a loss of shape [32]; it must be a scalar") != std::string::npos);
  const nn::ShardFn throws = [&](const Tensor& xs, const Tensor&) -> nn::ShardResult {
    if (xs.size(0) > 0) throw std::runtime_error("shard failed");
    return {};
  };
  BOOST_CHECK_THROW(nn::parallel_backward(s.x, s.y, throws, {.min_rows = 8}), std::runtime_error);
  // The pool and the engine stay usable.
  s.zero_grad();
  nn::parallel_backward(s.x, s.y, s.fn(), {.min_rows = 8});
  BOOST_TEST(s.model->parameters()[0].grad().defined());
}

BOOST_AUTO_TEST_SUITE_END()
