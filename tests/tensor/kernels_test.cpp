// The vectorised, threaded element loops (docs/design.md, Note [Vectorised kernels]): float32
// transcendentals within the stated ulp bound of the correctly rounded value, special values through
// the vector body (not only the scalar tail), and results that do not depend on the thread count.

#include "helpers.hpp"

#include <autodiff/parallel.hpp>
#include <autodiff/rules.hpp>

#include <bit>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <string>

using namespace autodiff;
using namespace tapegrad_test;

namespace {

// The distance in representable floats (0 and -0 are one apart; both NaN: 0).
std::int64_t ulps(float a, float b) {
  if (std::isnan(a) && std::isnan(b)) return 0;
  if (std::isnan(a) || std::isnan(b)) return std::numeric_limits<std::int64_t>::max();
  auto key = [](float f) {
    const auto i = static_cast<std::int64_t>(std::bit_cast<std::int32_t>(f));
    return i < 0 ? -(i & 0x7fffffff) : i;
  };
  const std::int64_t d = key(a) - key(b);
  return d < 0 ? -d : d;
}

// The largest distance between op in float32 and op in float64 rounded to float, over n points
// spread over [lo, hi]. n is odd and large: vector bodies, tails and split ranges all get points.
std::int64_t max_ulps(const std::function<Tensor(const Tensor&)>& op, double lo, double hi, float* worst) {
  const std::int64_t n = 200003;
  const Tensor x32 = linspace(lo, hi, n);
  const Tensor r32 = op(x32);
  const Tensor r64 = op(x32.to(DType::float64));
  const auto a = r32.data<float>();
  const auto b = r64.data<double>();
  std::int64_t m = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    const std::int64_t d = ulps(a[i], static_cast<float>(b[i]));
    if (d > m) {
      m = d;
      *worst = x32.data<float>()[i];
    }
  }
  return m;
}

// Runs `results` at 1, 2 and 3 threads and checks that every tensor it returns has, at 2 and 3, the
// bits it had at 1 (float32). Every run's results are kept alive until the end, so that no run gets
// an earlier run's output buffers back from the allocator's cache: an element a split left unwritten
// would otherwise still hold the right value.
void same_bits_at_every_thread_count(const std::function<std::vector<Tensor>()>& results) {
  const int saved = get_num_threads();
  std::vector<std::vector<float>> first;
  std::vector<std::vector<Tensor>> kept;
  for (int threads : {1, 2, 3}) {
    set_num_threads(threads);
    std::vector<std::vector<float>> got;
    kept.push_back(results());
    for (const Tensor& t : kept.back()) {
      const auto d = t.data<float>();
      got.emplace_back(d.begin(), d.end());
    }
    if (first.empty())
      first = got;
    else
      for (std::size_t k = 0; k < got.size(); ++k)
        BOOST_TEST((std::memcmp(got[k].data(), first[k].data(), got[k].size() * sizeof(float)) == 0),
                   "result " << k << " differs at " << threads << " threads");
  }
  set_num_threads(saved);
}

} // namespace

BOOST_AUTO_TEST_SUITE(kernels)

// The bound of Note [Vectorised kernels]: 4 ulp for libmvec's functions and the formulas on them.
BOOST_AUTO_TEST_CASE(float32_results_within_4_ulp_of_the_rounded_float64_result) {
  struct Case {
    const char* name;
    std::function<Tensor(const Tensor&)> op;
    double lo, hi;
  };
  const Case cases[] = {
      {"exp", [](const Tensor& t) { return exp(t); }, -80, 80},
      {"log", [](const Tensor& t) { return log(t); }, 1e-30, 1e30},
      {"log1p", [](const Tensor& t) { return log1p(t); }, -0.999, 1e6},
      {"expm1", [](const Tensor& t) { return expm1(t); }, -20, 20},
      {"sin", [](const Tensor& t) { return sin(t); }, -100, 100},
      {"cos", [](const Tensor& t) { return cos(t); }, -100, 100},
      {"tan", [](const Tensor& t) { return tan(t); }, -1.5, 1.5},
      {"tanh", [](const Tensor& t) { return tanh(t); }, -12, 12},
      {"sigmoid", [](const Tensor& t) { return sigmoid(t); }, -80, 80},
      {"softplus", [](const Tensor& t) { return softplus(t); }, -80, 80},
      {"erf", [](const Tensor& t) { return erf(t); }, -5, 5},
      {"sqrt", [](const Tensor& t) { return sqrt(t); }, 0, 1e6},
      {"pow_scalar", [](const Tensor& t) { return pow(t, 2.5); }, 0, 1000},
      // gelu's 1 + erf(a / sqrt 2) cancels for a < -1 in any precision: the bound holds above.
      {"gelu", [](const Tensor& t) { return gelu(t); }, -1, 10},
  };
  for (const Case& c : cases) {
    float worst = 0;
    const std::int64_t m = max_ulps(c.op, c.lo, c.hi, &worst);
    BOOST_TEST_MESSAGE(c.name << ": at most " << m << " ulp");
    BOOST_TEST(m <= 4, c.name << ": " << m << " ulp at " << worst);
  }
}

// The special values sit inside a long tensor, so they go through the vector loop.
BOOST_AUTO_TEST_CASE(special_values_in_the_vector_body) {
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> v(1000, 0.5f);
  const std::vector<float> special = {inf, -inf, nan, 0.0f, -0.0f, 100.0f, -100.0f, 1e-40f};
  for (std::size_t k = 0; k < special.size(); ++k)
    v[37 + 61 * k] = special[k];
  const Tensor x = from_vector(v, {1000});
  auto at = [&](const Tensor& r, std::size_t k) { return r.data<float>()[37 + 61 * k]; };
  auto check = [&](const char* name, const Tensor& r, const std::vector<float>& want) {
    for (std::size_t k = 0; k < want.size(); ++k)
      BOOST_TEST(ulps(at(r, k), want[k]) == 0, name << "(" << special[k] << ") = " << at(r, k) << ", not " << want[k]);
  };
  check("tanh", tanh(x), {1, -1, nan, 0, -0.0f, 1, -1, 1e-40f});
  check("exp", exp(x), {inf, 0, nan, 1, 1, inf, static_cast<float>(std::exp(-100.0)), 1});
  check("sigmoid", sigmoid(x), {1, 0, nan, 0.5f, 0.5f, 1, rules::sigmoid_value(-100.0f), 0.5f});
  // relu(NaN) is NaN, as PyTorch (Relu::f in rules.hpp), the same in every loop.
  check("relu", relu(x), {inf, 0, nan, 0, 0, 100, 0, 1e-40f});
  const Tensor l = log(x);
  BOOST_TEST(at(l, 0) == inf);
  BOOST_TEST(std::isnan(at(l, 1)));
  BOOST_TEST(at(l, 3) == -inf);
  BOOST_TEST(std::isnan(at(l, 6)));
}

// Note [Vectorised kernels]: the loops split above a size threshold, and every element (and every
// partial sum of a reduction) is computed the same way for any split: 1, 2 and 3 threads give the
// same bits, forward and backward.
BOOST_AUTO_TEST_CASE(results_do_not_depend_on_the_thread_count) {
  manual_seed(7);
  const Tensor xv = randn({300007}), yv = randn({300007}), rows = randn({3, 100003});
  same_bits_at_every_thread_count([&] {
    Tensor x = xv.detach(), y = yv.detach();
    x.requires_grad(true);
    y.requires_grad(true);
    const Tensor z = tanh(x) * y + sigmoid(x - 0.5) * exp(y * 0.1);
    const Tensor s = sum(z) + mean(z) + sum(sum(rows, 1)) + sum(max(rows, 1));
    s.backward();
    return std::vector<Tensor>{z, s, x.grad(), y.grad(), sum(rows, 0)};
  });
  // Equal bits could hide an element no thread wrote (a recycled buffer keeps the last run's value):
  // the split column sums against plain loops too.
  const auto r = rows.to_vector();
  const int saved = get_num_threads();
  for (int threads : {1, 2, 3}) {
    set_num_threads(threads);
    const auto got = sum(rows, 0).to_vector();
    double worst = 0;
    for (std::size_t i = 0; i < got.size(); ++i) {
      const double want = r[i] + r[i + got.size()] + r[i + 2 * got.size()];
      worst = std::max(worst, std::fabs(got[i] - want));
    }
    BOOST_TEST(worst < 1e-5, "sum(rows, 0) at " << threads << " threads: off by " << worst);
  }
  set_num_threads(saved);
}

// The ops that work a line at a time (softmax and log_softmax, logsumexp, norm, max, min, prod,
// the fused cross-entropy; kernels.hpp's each_line) split their lines across the pool above 2 x
// 65536 elements, and compute each line alone: 1, 2 and 3 threads give the same bits, forward and
// backward, along the last dim (rows) and along the first (columns: lines of stride 701).
BOOST_AUTO_TEST_CASE(line_ops_do_not_depend_on_the_thread_count) {
  manual_seed(8);
  const std::int64_t n = 400, c = 701; // 280,400 elements
  const Tensor mv = randn({n, c}), w = randn({n, c});
  std::vector<double> tv(static_cast<std::size_t>(n));
  for (std::size_t i = 0; i < tv.size(); ++i)
    tv[i] = static_cast<double>((i * 37) % static_cast<std::size_t>(c));
  const Tensor targets = from_vector(tv, {n}, DType::int64);
  same_bits_at_every_thread_count([&] {
    Tensor m = mv.detach();
    m.requires_grad(true);
    Tape tape;
    std::vector<Tensor> outs{softmax(m, 1),
                             log_softmax(m, 1),
                             softmax(m, 0),
                             log_softmax(m, 0),
                             logsumexp(m, 1),
                             logsumexp(m, 0),
                             norm(m, 2, 0),
                             max(m, 1),
                             min(m, 0),
                             prod(m * 0.01 + 1.0, 1),
                             cross_entropy(m, targets),
                             cross_entropy(m, targets, Reduction::none)};
    Tensor loss = sum(outs[0] * w) + sum(outs[1] * w) + sum(outs[2] * w) + sum(outs[3] * w);
    for (std::size_t k = 4; k < outs.size(); ++k)
      loss = loss + sum(outs[k] * 0.5);
    loss.backward();
    outs.push_back(m.grad());
    return outs;
  });
}

// Note [Owned rows]: linear splits a large product by rows of the weight (output features). At 1, 2
// and 3 threads (three ranges, so two partial products of dx added in row order) the value and the
// three gradients match plain loops in double; x has two leading dims (M = 2 x 32 rows).
BOOST_AUTO_TEST_CASE(linear_split_by_output_features_matches_plain_loops) {
  const int saved = get_num_threads();
  manual_seed(11);
  const std::int64_t b0 = 2, b1 = 32, m = b0 * b1, in = 256, out = 200; // 64 x 256 per row of w: 3 ranges
  const Tensor xv = randn({b0, b1, in}, DType::float64), wv = randn({out, in}, DType::float64),
               bv = randn({out}, DType::float64), cv = randn({b0, b1, out}, DType::float64);
  const auto X = xv.to_vector(), W = wv.to_vector(), B = bv.to_vector(), Cm = cv.to_vector();
  const auto at = [](const std::vector<double>& v, std::int64_t i, std::int64_t j, std::int64_t cols) {
    return v[static_cast<std::size_t>(i * cols + j)];
  };
  std::vector<double> y(static_cast<std::size_t>(m * out)), gx(static_cast<std::size_t>(m * in)),
      gw(static_cast<std::size_t>(out * in)), gb(static_cast<std::size_t>(out));
  for (std::int64_t i = 0; i < m; ++i)
    for (std::int64_t o = 0; o < out; ++o) {
      double acc = B[static_cast<std::size_t>(o)];
      for (std::int64_t k = 0; k < in; ++k)
        acc += at(X, i, k, in) * at(W, o, k, in);
      y[static_cast<std::size_t>(i * out + o)] = acc;
      // loss = sum(y * c): dy = c
      const double g = at(Cm, i, o, out);
      gb[static_cast<std::size_t>(o)] += g;
      for (std::int64_t k = 0; k < in; ++k) {
        gx[static_cast<std::size_t>(i * in + k)] += g * at(W, o, k, in);
        gw[static_cast<std::size_t>(o * in + k)] += g * at(X, i, k, in);
      }
    }
  const auto close = [](const std::vector<double>& got, const std::vector<double>& want, const char* what, int t) {
    BOOST_TEST_REQUIRE(got.size() == want.size());
    double worst = 0;
    for (std::size_t i = 0; i < got.size(); ++i)
      worst = std::max(worst, std::fabs(got[i] - want[i]) / (1 + std::fabs(want[i])));
    BOOST_TEST(worst < 1e-12, what << " at " << t << " threads: off by " << worst);
  };
  for (int threads : {1, 2, 3}) {
    set_num_threads(threads);
    const Tensor x = xv.detach().requires_grad(true), w = wv.detach().requires_grad(true),
                 b = bv.detach().requires_grad(true);
    Tape tape;
    const Tensor yt = linear(x, w, b);
    sum(yt * cv).backward();
    close(yt.to_vector(), y, "y", threads);
    close(x.grad().to_vector(), gx, "dx", threads);
    close(w.grad().to_vector(), gw, "dw", threads);
    close(b.grad().to_vector(), gb, "db", threads);
    // And against central differences (float64, one random projection of the whole Jacobian), through
    // a nonlinearity so that the check depends on every gradient's scale.
    const auto f = [&](const std::vector<Tensor>& in) { return sum(tanh(linear(in[0], in[1], in[2]) * 0.1) * cv); };
    const TensorGradcheckReport r = gradcheck(f, {xv, wv, bv}, {.fast = true});
    BOOST_TEST(r.passed,
               "gradcheck at " << threads << " threads: analytic " << r.analytic << " vs numeric " << r.numeric);
  }
  set_num_threads(saved);
}

BOOST_AUTO_TEST_SUITE_END()
