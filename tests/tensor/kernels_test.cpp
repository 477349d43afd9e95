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
#include <random>
#include <span>
#include <string>
#include <type_traits>

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

template <class F> void dispatch_test(DType d, F&& f) {
  if (d == DType::float32)
    f(float{});
  else if (d == DType::float64)
    f(double{});
  else
    f(std::int64_t{});
}

// The one-pass rule for max and min (what they computed before lanes, and PyTorch's): the first
// element that beats every one before it, the first NaN if there is one. Line k of a: a[b + k s].
template <class T> bool nan_of(T v) {
  if constexpr (std::is_floating_point_v<T>)
    return std::isnan(v);
  else
    return false;
}
template <class T>
std::pair<T, std::int64_t> one_pass(std::span<const T> a, std::int64_t b, std::int64_t n, std::int64_t s, bool is_max) {
  T best = a[static_cast<std::size_t>(b)];
  std::int64_t at = 0;
  for (std::int64_t k = 1; k < n && !nan_of(best); ++k) {
    const T v = a[static_cast<std::size_t>(b + k * s)];
    if ((is_max ? v > best : v < best) || nan_of(v)) best = v, at = k;
  }
  return {best, at};
}
// Checks max/min and argmax/argmin of t along dim (-1: everything) against one_pass, the values bit
// for bit (so -0 and +0, and which NaN).
template <class T> void check_extrema(const Tensor& t, int dim, const std::string& what) {
  const auto a = t.data<T>();
  const std::int64_t rank = t.dim();
  std::int64_t outer = 1, n = t.numel(), inner = 1;
  if (dim >= 0) {
    n = t.shape()[dim];
    for (int d = 0; d < dim; ++d)
      outer *= t.shape()[d];
    for (std::int64_t d = dim + 1; d < rank; ++d)
      inner *= t.shape()[static_cast<int>(d)];
  }
  for (const bool is_max : {true, false}) {
    const Tensor v = dim < 0 ? (is_max ? max(t) : min(t)) : (is_max ? max(t, dim) : min(t, dim));
    const Tensor i = dim < 0 ? (is_max ? argmax(t) : argmin(t)) : (is_max ? argmax(t, dim) : argmin(t, dim));
    const auto vv = v.data<T>();
    const auto iv = i.data<std::int64_t>();
    int wrong = 0;
    for (std::int64_t q = 0; q < outer; ++q)
      for (std::int64_t c = 0; c < inner; ++c) {
        const auto [want, at] = one_pass<T>(a, q * n * inner + c, n, inner, is_max);
        const std::size_t j = static_cast<std::size_t>(q * inner + c);
        if (std::memcmp(&vv[j], &want, sizeof(T)) != 0 || iv[j] != at) ++wrong;
      }
    BOOST_TEST(wrong == 0, what << (is_max ? " max" : " min") << " along " << dim << ": " << wrong << " lines differ");
  }
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
  // rows: tails in every loop; cols: rows of whole cache lines, so that sum(cols, 0) splits its columns.
  const Tensor xv = randn({300007}), yv = randn({300007}), rows = randn({3, 100003}), cols = randn({3, 100000});
  same_bits_at_every_thread_count([&] {
    Tensor x = xv.detach(), y = yv.detach();
    x.requires_grad(true);
    y.requires_grad(true);
    const Tensor z = tanh(x) * y + sigmoid(x - 0.5) * exp(y * 0.1);
    const Tensor s = sum(z) + mean(z) + sum(sum(rows, 1)) + sum(max(rows, 1));
    s.backward();
    return std::vector<Tensor>{z, s, x.grad(), y.grad(), sum(rows, 0), sum(cols, 0)};
  });
  // Equal bits could hide an element no thread wrote (a recycled buffer keeps the last run's value):
  // the split column sums against plain loops too.
  const auto r = cols.to_vector();
  const int saved = get_num_threads();
  std::vector<Tensor> kept; // each count's output stays alive: no recycled buffer holds a right value
  for (int threads : {1, 2, 3}) {
    set_num_threads(threads);
    kept.push_back(sum(cols, 0));
    const auto got = kept.back().to_vector();
    double worst = 0;
    for (std::size_t i = 0; i < got.size(); ++i) {
      const double want = r[i] + r[i + got.size()] + r[i + 2 * got.size()];
      worst = std::max(worst, std::fabs(got[i] - want));
    }
    BOOST_TEST(worst < 1e-5, "sum(cols, 0) at " << threads << " threads: off by " << worst);
  }
  set_num_threads(saved);
}

// max, min, argmax and argmin in lanes (kernels.hpp's line_extremum along the last dim, extremum_row
// along an inner dim, long_line_extremum for everything) against the one-pass loop, bit for bit, in
// every dtype: lines of every length around the 16 lanes and the 64-element search blocks, full of
// ties (small whole numbers, -0 and +0), with NaNs before and after the extremum, and infinities.
BOOST_AUTO_TEST_CASE(extrema_match_the_one_pass_loop) {
  const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
  std::mt19937 rng(5);
  for (const std::int64_t n : {1, 2, 15, 16, 17, 31, 63, 64, 65, 129, 1000}) {
    constexpr std::int64_t rows = 6;
    std::vector<double> v(static_cast<std::size_t>(rows * n));
    for (std::int64_t r = 0; r < rows; ++r)
      for (std::int64_t k = 0; k < n; ++k) {
        const int w = static_cast<int>(rng() % 7) - 3;
        v[static_cast<std::size_t>(r * n + k)] = w == 0 && rng() % 2 == 0 ? -0.0 : w; // ties, -0 and +0
      }
    const auto at = [&](std::int64_t r, std::int64_t k) -> double& { return v[static_cast<std::size_t>(r * n + k)]; };
    at(1, n / 2) = nan; // row 1: a NaN in the middle; row 2: two, the first at the start of a block
    at(2, std::min<std::int64_t>(64, n - 1)) = nan;
    at(2, n - 1) = nan;
    at(3, n - 1) = inf; // row 3: the infinities, last and first
    at(3, 0) = -inf;
    for (std::int64_t k = 0; k < n; ++k) // row 4: all equal; row 5: the extremum late, in the tail
      at(4, k) = 2, at(5, k) = k == n - 1 ? 9 : -static_cast<double>(k % 5);
    std::vector<double> tv(v.size()); // the same lines as columns: [n, rows]
    for (std::int64_t r = 0; r < rows; ++r)
      for (std::int64_t k = 0; k < n; ++k)
        tv[static_cast<std::size_t>(k * rows + r)] = at(r, k);
    for (const DType d : {DType::float32, DType::float64, DType::int64}) {
      std::vector<double> vd = v, tvd = tv;
      if (d == DType::int64)
        for (auto* w : {&vd, &tvd})
          for (double& x : *w)
            x = std::isfinite(x) ? x : 5;
      const Tensor lines = from_vector(vd, {rows, n}, d), columns = from_vector(tvd, {n, rows}, d);
      const std::string what = fmt::format("{} n={}", dtype_name(d), n);
      dispatch_test(d, [&](auto tag) {
        using T = decltype(tag);
        check_extrema<T>(lines, 1, what + " rows");
        check_extrema<T>(columns, 0, what + " columns");
        check_extrema<T>(lines, -1, what + " everything");
        check_extrema<T>(from_vector(vd, {2, rows * n / 2, 1}, d), 1, what + " [2, m, 1]");
      });
    }
  }
}

// A full max or min of 2 x 65536 elements and more splits into ranges on the pool: at 1, 2 and 3
// threads the first of equal extrema, across the ranges, and the first NaN win as in one pass.
BOOST_AUTO_TEST_CASE(a_long_extremum_joins_its_ranges_in_order) {
  const int saved = get_num_threads();
  const std::int64_t n = 300017;
  std::vector<double> v(static_cast<std::size_t>(n));
  for (std::int64_t k = 0; k < n; ++k)
    v[static_cast<std::size_t>(k)] = static_cast<double>((k * 7919) % 1000) - 500;
  for (const std::int64_t k : {std::int64_t{40}, std::int64_t{150001}, n - 3}) // three equal maxima and minima
    v[static_cast<std::size_t>(k)] = 1e6, v[static_cast<std::size_t>(k + 1)] = -1e6;
  std::vector<double> with_nan = v;
  with_nan[250000] = std::numeric_limits<double>::quiet_NaN();
  for (int threads : {1, 2, 3}) {
    set_num_threads(threads);
    for (const DType d : {DType::float32, DType::float64, DType::int64}) {
      dispatch_test(d, [&](auto tag) {
        using T = decltype(tag);
        const std::string what = fmt::format("{} at {} threads", dtype_name(d), threads);
        check_extrema<T>(from_vector(v, {n}, d), -1, what);
        if (d != DType::int64) check_extrema<T>(from_vector(with_nan, {n}, d), -1, what + " with a NaN");
      });
    }
  }
  set_num_threads(saved);
}

// logsumexp and norm along the last dim in lanes (the max in 16 lanes, float32's exps through
// libmvec, the sums in run_sum's fixed blocks), and norm along an inner dim in lanes across the
// columns, against long double loops: rows of lengths around the lanes and past a 4096-element
// block, special rows (all -inf, a +inf, a NaN), forward and the backward rule.
BOOST_AUTO_TEST_CASE(logsumexp_and_norm_lines_match_plain_loops) {
  const double inf = std::numeric_limits<double>::infinity(), nan = std::numeric_limits<double>::quiet_NaN();
  // A NaN makes the line NaN even when its max is infinite (it returned the max: -inf, inf), in the
  // lanes (rows) and in the strided loop (columns).
  for (const DType d : {DType::float32, DType::float64}) {
    const Tensor t = from_vector(std::vector<double>{nan, -inf, inf, nan, nan, nan}, {3, 2}, d);
    for (const double r : logsumexp(t, 1).to_vector())
      BOOST_TEST(std::isnan(r), dtype_name(d) << " logsumexp of a row with a NaN: " << r);
    for (const double r : logsumexp(transpose(t, 0, 1), 0).to_vector())
      BOOST_TEST(std::isnan(r), dtype_name(d) << " logsumexp of a column with a NaN: " << r);
    BOOST_TEST(logsumexp(from_vector(std::vector<double>{-inf, -inf}, {2}, d)).item() == -inf);
    BOOST_TEST(logsumexp(from_vector(std::vector<double>{1, inf}, {2}, d)).item() == inf);
  }
  manual_seed(9);
  for (const std::int64_t n : {1, 15, 16, 17, 1000, 5000}) {
    constexpr std::int64_t rows = 5;
    std::vector<double> v = (randn({rows, n}, DType::float64) * 20.0).to_vector();
    const auto at = [&](std::int64_t r, std::int64_t k) -> double& { return v[static_cast<std::size_t>(r * n + k)]; };
    for (std::int64_t k = 0; k < n; ++k)
      at(1, k) = -inf; // all -inf: logsumexp -inf, gradient 0 (g exp(-inf + inf) is NaN: see the rule)
    at(2, n - 1) = inf;
    at(3, n / 2) = nan;
    for (const DType d : {DType::float32, DType::float64}) {
      Tensor x = from_vector(v, {rows, n}, d);
      const auto xs = x.to_vector(); // the values as the dtype holds them
      x.requires_grad(true);
      Tape tape;
      const Tensor lse = logsumexp(x, 1), nrm = norm(x, 2, 1), ncol = norm(transpose(x, 0, 1), 2, 0);
      const auto lv = lse.to_vector(), nv = nrm.to_vector(), cv = ncol.to_vector();
      const auto lcv = logsumexp(transpose(x, 0, 1), 0).to_vector(); // the strided loop
      const double tol = d == DType::float32 ? 4e-7 : 1e-14;
      for (std::int64_t r = 0; r < rows; ++r) {
        long double m = -inf, s = 0, q = 0;
        for (std::int64_t k = 0; k < n; ++k)
          m = std::max<long double>(m, xs[static_cast<std::size_t>(r * n + k)]);
        for (std::int64_t k = 0; k < n; ++k) {
          const long double e = xs[static_cast<std::size_t>(r * n + k)];
          s += std::isfinite(static_cast<double>(m)) ? std::exp(e - m) : 0;
          q += e * e;
        }
        const double want_l =
            std::isfinite(static_cast<double>(m)) ? static_cast<double>(m + std::log(s)) : static_cast<double>(m);
        const double want_n = static_cast<double>(std::sqrt(q));
        const auto close = [&](double got, double want) {
          if (std::isnan(want) || std::isinf(want)) return std::isnan(want) ? std::isnan(got) : got == want;
          return std::fabs(got - want) <= tol * std::max(1.0, std::fabs(want));
        };
        const bool has_nan = r == 3;
        BOOST_TEST(close(lv[static_cast<std::size_t>(r)], has_nan ? nan : want_l),
                   dtype_name(d) << " n=" << n << " logsumexp row " << r << ": " << lv[static_cast<std::size_t>(r)]
                                 << ", not " << want_l);
        BOOST_TEST(close(nv[static_cast<std::size_t>(r)], has_nan ? nan : want_n),
                   dtype_name(d) << " n=" << n << " norm row " << r << ": " << nv[static_cast<std::size_t>(r)]
                                 << ", not " << want_n);
        BOOST_TEST(close(cv[static_cast<std::size_t>(r)], has_nan ? nan : want_n),
                   dtype_name(d) << " n=" << n << " norm column " << r);
        BOOST_TEST(close(lcv[static_cast<std::size_t>(r)], has_nan ? nan : want_l),
                   dtype_name(d) << " n=" << n << " logsumexp column " << r);
      }
      // The backward rule of the finite rows: g exp(x - lse) with g = 1, and x / |x| times 2.
      (sum(lse * 1.0) + sum(nrm * 2.0)).backward();
      const auto gx = x.grad().to_vector();
      double worst = 0;
      for (const std::int64_t r : {std::int64_t{0}, std::int64_t{4}})
        for (std::int64_t k = 0; k < n; ++k) {
          const std::size_t e = static_cast<std::size_t>(r * n + k);
          const double want =
              std::exp(xs[e] - lv[static_cast<std::size_t>(r)]) + 2 * xs[e] / nv[static_cast<std::size_t>(r)];
          worst = std::max(worst, std::fabs(gx[e] - want) / std::max(1.0, std::fabs(want)));
        }
      BOOST_TEST(worst <= (d == DType::float32 ? 2e-6 : 1e-13), dtype_name(d)
                                                                    << " n=" << n << " gradient off by " << worst);
    }
  }
}

// softmax, log_softmax and logsumexp along an inner dim (a row at a time, in lanes across the
// columns) against the same ops on the transpose along the last dim (the row kernels), forward and
// backward: equal within rounding (the row kernels sum in blocks), the same NaNs and infinities, for
// column counts around the lanes and columns that are all -inf, hold a +inf, or a NaN.
BOOST_AUTO_TEST_CASE(inner_dim_lines_match_the_rows) {
  const double inf = std::numeric_limits<double>::infinity(), nan = std::numeric_limits<double>::quiet_NaN();
  manual_seed(10);
  for (const std::int64_t n : {1, 5, 300})
    for (const std::int64_t c : {1, 2, 17, 40})
      for (const DType d : {DType::float32, DType::float64}) {
        std::vector<double> v = (randn({n, c}, DType::float64) * 10.0).to_vector();
        const auto at = [&](std::int64_t k, std::int64_t i) -> double& {
          return v[static_cast<std::size_t>(k * c + i)];
        };
        for (std::int64_t k = 0; k < n && c > 3; ++k)
          at(k, 1) = -inf;
        if (c > 3) at(n - 1, 2) = inf, at(n / 2, 3) = nan;
        const Tensor gv = randn({n, c}, d);
        const Tensor xv = from_vector(v, {n, c}, d);
        const auto run = [&](bool by_rows) {
          Tensor x = xv.detach();
          x.requires_grad(true);
          Tape tape;
          const auto along = [&](const Tensor& y) { return by_rows ? transpose(y, 0, 1) : y; };
          const Tensor xt = along(x);
          const int dim = by_rows ? 1 : 0;
          const std::vector<Tensor> outs{along(softmax(xt, dim)), along(log_softmax(xt, dim)), logsumexp(xt, dim)};
          (sum(outs[0] * gv) + sum(outs[1] * gv * 0.5) + sum(logsumexp(xt, dim) * 0.25)).backward();
          std::vector<std::vector<double>> r;
          for (const Tensor& t : outs)
            r.push_back(t.to_vector());
          r.push_back(x.grad().to_vector());
          return r;
        };
        const auto cols = run(false), rows = run(true);
        const double tol = d == DType::float32 ? 2e-6 : 1e-13;
        for (std::size_t j = 0; j < cols.size(); ++j) {
          int wrong = 0;
          for (std::size_t e = 0; e < cols[j].size(); ++e) {
            const double a = cols[j][e], b = rows[j][e];
            if (std::isnan(a) || std::isnan(b) || std::isinf(a) || std::isinf(b))
              wrong += !(std::isnan(a) && std::isnan(b)) && a != b;
            else
              wrong += std::fabs(a - b) > tol * std::max(1.0, std::fabs(b));
          }
          BOOST_TEST(wrong == 0, dtype_name(d) << " [" << n << ", " << c << "] result " << j << ": " << wrong
                                               << " elements differ from the rows'");
        }
      }
}

// The ops that work a line at a time (softmax and log_softmax, logsumexp, norm, max, min, prod,
// the fused cross-entropy; kernels.hpp's each_line) split their lines across the pool above 2 x
// 65536 elements, and compute each line alone: 1, 2 and 3 threads give the same bits, forward and
// backward, along the last dim (rows) and along the first (columns: lines of stride 701).
BOOST_AUTO_TEST_CASE(line_ops_do_not_depend_on_the_thread_count) {
  manual_seed(8);
  // 281,600 elements; rows of 704 floats are whole cache lines, so the ops along dim 0 split their
  // columns (split_columns in reduce.cpp keeps rows that are not on one thread).
  const std::int64_t n = 400, c = 704;
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
                             cross_entropy(m, targets, Reduction::none),
                             logsumexp(m),
                             norm(m),
                             max(m),
                             argmin(m).to(DType::float32),
                             norm(m, 2, 1)};
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
// three gradients match plain loops in double; x has two leading dims (M = 2 x 32 rows). Every run's
// tensors are kept alive, so a block no range wrote cannot pass by holding an earlier run's value
// (the allocator hands buffers back).
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
  std::vector<Tensor> kept;
  for (int threads : {1, 2, 3}) {
    set_num_threads(threads);
    const Tensor x = xv.detach().requires_grad(true), w = wv.detach().requires_grad(true),
                 b = bv.detach().requires_grad(true);
    Tape tape;
    const Tensor yt = linear(x, w, b);
    sum(yt * cv).backward();
    kept.insert(kept.end(), {x, w, b, yt, x.grad(), w.grad(), b.grad()});
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
