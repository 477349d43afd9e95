// The tensor op table's rows and their references (declared in op_table.hpp).

#include "op_table.hpp"

#include <cmath>

namespace tapegrad_test {

namespace {

// The elements of x (dims xd) along dim k through the index idx (whose k-th entry is ignored).
std::vector<double> slice_along(const std::vector<double>& x, const std::vector<std::int64_t>& xd, std::size_t k,
                                std::vector<std::int64_t> idx) {
  std::vector<double> slice;
  for (std::int64_t j = 0; j < xd[k]; ++j) {
    idx[k] = j;
    slice.push_back(x[static_cast<std::size_t>(flat(idx, xd))]);
  }
  return slice;
}

// A reduction over `dim` (or everything when dim is none), written as loops over the slice.
constexpr int all_dims = 99;
RefFn reduce_ref(int dim, bool keepdim, std::function<double(const std::vector<double>&)> fn) {
  return [=](const Vals& x, const Dims& d, std::vector<std::int64_t>& out) {
    const auto& xd = d[0];
    if (dim == all_dims) {
      out = {};
      return std::vector<double>{fn(x[0])};
    }
    const std::size_t k = static_cast<std::size_t>(dim < 0 ? dim + static_cast<int>(xd.size()) : dim);
    std::vector<std::int64_t> kd = xd;
    kd[k] = 1;
    std::vector<double> res(static_cast<std::size_t>(count(kd)));
    for (std::int64_t p = 0; p < count(kd); ++p) {
      auto idx = unflat(p, kd);
      const std::vector<double> slice = slice_along(x[0], xd, k, idx);
      res[static_cast<std::size_t>(p)] = fn(slice);
    }
    out = kd;
    if (!keepdim) out.erase(out.begin() + static_cast<std::ptrdiff_t>(k));
    return res;
  };
}
// Applies fn to each slice along dim, giving a slice of the same length (softmax, log_softmax).
RefFn along_ref(int dim, std::function<std::vector<double>(const std::vector<double>&)> fn) {
  return [=](const Vals& x, const Dims& d, std::vector<std::int64_t>& out) {
    const auto& xd = d[0];
    const std::size_t k = static_cast<std::size_t>(dim < 0 ? dim + static_cast<int>(xd.size()) : dim);
    std::vector<std::int64_t> kd = xd;
    kd[k] = 1;
    std::vector<double> res(x[0].size());
    for (std::int64_t p = 0; p < count(kd); ++p) {
      auto idx = unflat(p, kd);
      const std::vector<double> slice = slice_along(x[0], xd, k, idx);
      const auto r = fn(slice);
      for (std::int64_t j = 0; j < xd[k]; ++j) {
        idx[k] = j;
        res[static_cast<std::size_t>(flat(idx, xd))] = r[static_cast<std::size_t>(j)];
      }
    }
    out = xd;
    return res;
  };
}
double sum_of(const std::vector<double>& v) { return std::accumulate(v.begin(), v.end(), 0.0); }
double lse_of(const std::vector<double>& v) {
  if (v.empty()) return -std::numeric_limits<double>::infinity(); // log of an empty sum
  double m = *std::max_element(v.begin(), v.end()), s = 0;
  for (double x : v)
    s += std::exp(x - m);
  return m + std::log(s);
}
// Matrix product of a [b?, m, k] (or [k]) and b [b?, k, n] (or [k]), by the definition.
RefFn matmul_ref() {
  return [](const Vals& x, const Dims& d, std::vector<std::int64_t>& out) {
    auto da = d[0], db = d[1];
    const bool a1 = da.size() == 1, b1 = db.size() == 1;
    if (a1) da = {1, da[0]};
    if (b1) db = {db[0], 1};
    const std::int64_t ba = da.size() == 3 ? da[0] : 1, bb = db.size() == 3 ? db[0] : 1, B = ba == 1 ? bb : ba;
    const std::int64_t m = da[da.size() - 2], k = da.back(), n = db.back();
    std::vector<double> r(static_cast<std::size_t>(B * m * n), 0.0);
    for (std::int64_t q = 0; q < B; ++q)
      for (std::int64_t i = 0; i < m; ++i)
        for (std::int64_t j = 0; j < n; ++j) {
          double s = 0;
          for (std::int64_t l = 0; l < k; ++l)
            s += x[0][static_cast<std::size_t>((ba == 1 ? 0 : q) * m * k + i * k + l)] *
                 x[1][static_cast<std::size_t>((bb == 1 ? 0 : q) * k * n + l * n + j)];
          r[static_cast<std::size_t>((q * m + i) * n + j)] = s;
        }
    out.clear();
    if (d[0].size() == 3 || d[1].size() == 3) out.push_back(B);
    if (!a1) out.push_back(m);
    if (!b1) out.push_back(n);
    return r;
  };
}

} // namespace

std::vector<TensorOpInfo> tensor_op_table() {
  using T = const std::vector<Tensor>&;
  std::vector<TensorOpInfo> t;
  const std::vector<std::vector<Shape>> unary_shapes{
      {Shape{}}, {Shape{5}}, {Shape{3, 4}}, {Shape{2, 1, 3}}, {Shape{2, 0, 3}}};
  const std::vector<std::vector<Shape>> binary_shapes{
      {Shape{3, 4}, Shape{3, 4}}, {Shape{3, 4}, Shape{4}},       {Shape{4}, Shape{3, 4}},
      {Shape{3, 1}, Shape{1, 4}}, {Shape{2, 3, 4}, Shape{3, 1}}, {Shape{}, Shape{2, 3}},
      {Shape{2, 3}, Shape{}},     {Shape{0, 3}, Shape{3}},       {Shape{1}, Shape{1}}};
  auto unary = [&](std::string name, std::function<Tensor(const Tensor&)> f, std::function<double(double)> ref,
                   double lo = 0.2, double hi = 2.0, bool signs = true) {
    t.push_back({name, unary_shapes, [f](T x) { return f(x[0]); },
                 [ref](const Vals& x, const Dims& d, std::vector<std::int64_t>& out) {
                   out = d[0];
                   std::vector<double> r;
                   for (double v : x[0])
                     r.push_back(ref(v));
                   return r;
                 },
                 lo, hi, signs});
  };
  auto binary = [&](std::string name, std::function<Tensor(const Tensor&, const Tensor&)> f,
                    std::function<double(double, double)> ref, double lo = 0.2, double hi = 2.0, bool signs = true) {
    t.push_back({name, binary_shapes, [f](T x) { return f(x[0], x[1]); },
                 [ref](const Vals& x, const Dims& d, std::vector<std::int64_t>& out) {
                   out = broadcast_dims(d[0], d[1]);
                   std::vector<double> r;
                   for (std::int64_t p = 0; p < count(out); ++p) {
                     const auto oi = unflat(p, out);
                     r.push_back(ref(read_broadcast(x[0], d[0], oi), read_broadcast(x[1], d[1], oi)));
                   }
                   return r;
                 },
                 lo, hi, signs});
  };
  // clang-format off
  unary("neg",        [](const Tensor& a) { return -a; },                        [](double a) { return -a; });
  unary("exp",        [](const Tensor& a) { return exp(a); },                    [](double a) { return std::exp(a); });
  unary("log",        [](const Tensor& a) { return log(a); },                    [](double a) { return std::log(a); }, 0.1, 3.0, false);
  unary("log1p",      [](const Tensor& a) { return log1p(a); },                  [](double a) { return std::log1p(a); }, 0.0, 0.9);
  unary("expm1",      [](const Tensor& a) { return expm1(a); },                  [](double a) { return std::expm1(a); });
  unary("sqrt",       [](const Tensor& a) { return sqrt(a); },                   [](double a) { return std::sqrt(a); }, 0.1, 3.0, false);
  unary("rsqrt",      [](const Tensor& a) { return rsqrt(a); },                  [](double a) { return 1 / std::sqrt(a); }, 0.1, 3.0, false);
  unary("square",     [](const Tensor& a) { return square(a); },                 [](double a) { return a * a; });
  unary("abs",        [](const Tensor& a) { return abs(a); },                    [](double a) { return std::fabs(a); });
  unary("sign",       [](const Tensor& a) { return sign(a); },                   [](double a) { return a > 0 ? 1.0 : -1.0; });
  unary("sin",        [](const Tensor& a) { return sin(a); },                    [](double a) { return std::sin(a); });
  unary("cos",        [](const Tensor& a) { return cos(a); },                    [](double a) { return std::cos(a); });
  unary("tan",        [](const Tensor& a) { return tan(a); },                    [](double a) { return std::tan(a); }, 0.0, 1.2);
  unary("tanh",       [](const Tensor& a) { return tanh(a); },                   [](double a) { return std::tanh(a); });
  unary("sigmoid",    [](const Tensor& a) { return sigmoid(a); },                [](double a) { return 1 / (1 + std::exp(-a)); }, 0.0, 6.0);
  unary("relu",       [](const Tensor& a) { return relu(a); },                   [](double a) { return a > 0 ? a : 0.0; });
  unary("leaky_relu", [](const Tensor& a) { return leaky_relu(a, 0.1); },        [](double a) { return a > 0 ? a : 0.1 * a; });
  unary("elu",        [](const Tensor& a) { return elu(a, 1.5); },               [](double a) { return a > 0 ? a : 1.5 * (std::exp(a) - 1); });
  unary("erf",        [](const Tensor& a) { return erf(a); },                    [](double a) { return 1 - std::erfc(a); }, 0.0, 3.0);
  unary("gelu",       [](const Tensor& a) { return gelu(a); },                   [](double a) { return a * 0.5 * std::erfc(-a / std::sqrt(2.0)); }, 0.0, 3.0);
  unary("softplus",   [](const Tensor& a) { return softplus(a); },               [](double a) { return std::log(1 + std::exp(a)); }, 0.0, 8.0);
  unary("clamp",      [](const Tensor& a) { return clamp(a, -1.0, 0.5); },       [](double a) { return std::min(std::max(a, -1.0), 0.5); }, 0.0, 2.0);
  unary("add_scalar", [](const Tensor& a) { return a + 2.5; },                   [](double a) { return a + 2.5; });
  unary("sub_scalar", [](const Tensor& a) { return a - 2.5; },                   [](double a) { return a - 2.5; });
  unary("rsub_scalar",[](const Tensor& a) { return 2.5 - a; },                   [](double a) { return 2.5 - a; });
  unary("mul_scalar", [](const Tensor& a) { return -1.75 * a; },                 [](double a) { return -1.75 * a; });
  unary("div_scalar", [](const Tensor& a) { return a / 0.3; },                   [](double a) { return a / 0.3; });
  unary("rdiv_scalar",[](const Tensor& a) { return 0.3 / a; },                   [](double a) { return 0.3 / a; });
  unary("pow_scalar", [](const Tensor& a) { return pow(a, 2.7); },               [](double a) { return std::pow(a, 2.7); }, 0.1, 2.0, false);
  unary("pow_scalar2",[](const Tensor& a) { return pow(a, 2.0); },               [](double a) { return a * a; });
  unary("maximum_scalar", [](const Tensor& a) { return maximum(a, 0.5); },       [](double a) { return std::max(a, 0.5); });
  unary("minimum_scalar", [](const Tensor& a) { return minimum(a, 0.5); },       [](double a) { return std::min(a, 0.5); });
  unary("clone",      [](const Tensor& a) { return a.clone(); },                  [](double a) { return a; });
  binary("add",     [](const Tensor& a, const Tensor& b) { return a + b; },       [](double a, double b) { return a + b; });
  binary("sub",     [](const Tensor& a, const Tensor& b) { return a - b; },       [](double a, double b) { return a - b; });
  binary("mul",     [](const Tensor& a, const Tensor& b) { return a * b; },       [](double a, double b) { return a * b; });
  binary("div",     [](const Tensor& a, const Tensor& b) { return a / b; },       [](double a, double b) { return a / b; });
  binary("pow",     [](const Tensor& a, const Tensor& b) { return pow(a, b); },   [](double a, double b) { return std::pow(a, b); }, 0.2, 2.0, false);
  binary("maximum", [](const Tensor& a, const Tensor& b) { return maximum(a, b); }, [](double a, double b) { return std::max(a, b); });
  binary("minimum", [](const Tensor& a, const Tensor& b) { return minimum(a, b); }, [](double a, double b) { return std::min(a, b); });
  binary("max_of_two", [](const Tensor& a, const Tensor& b) { return max(a, b); }, [](double a, double b) { return std::max(a, b); });
  binary("min_of_two", [](const Tensor& a, const Tensor& b) { return min(a, b); }, [](double a, double b) { return std::min(a, b); });
  binary("where",   [](const Tensor& a, const Tensor& b) { return where(a > b, a * b, a - b); },
                    [](double a, double b) { return a > b ? a * b : a - b; });
  binary("binary_cross_entropy_with_logits_none", [](const Tensor& a, const Tensor& b) { return binary_cross_entropy_with_logits(a, sigmoid(b), autodiff::Reduction::none); },
                    [](double a, double b) { const double y = 1 / (1 + std::exp(-b)); const double p = 1 / (1 + std::exp(-a)); return -(y * std::log(p) + (1 - y) * std::log(1 - p)); });
  // clang-format on

  auto row = [&](std::string name, std::vector<std::vector<Shape>> shapes, std::function<Tensor(T)> f, RefFn ref,
                 double lo = 0.2, double hi = 2.0, bool signs = true) {
    t.push_back({std::move(name), std::move(shapes), std::move(f), std::move(ref), lo, hi, signs});
  };
  const std::vector<std::vector<Shape>> red_shapes{{Shape{3, 4, 5}}, {Shape{1, 4, 2}}, {Shape{2, 3, 1}}};
  // Zero-size cases: an empty dim before, at (for the ops that accept an empty reduction) and after
  // the reduced one, as PyTorch accepts them.
  const std::vector<std::vector<Shape>> red_shapes_empty{{Shape{3, 4, 5}}, {Shape{1, 4, 2}}, {Shape{2, 3, 1}},
                                                         {Shape{0, 4, 2}}, {Shape{2, 0, 3}}, {Shape{2, 3, 0}}};
  // max and min: an empty reduced dim is an error (as in PyTorch); empty other dims are not.
  const std::vector<std::vector<Shape>> red_shapes_nonempty_dim1{
      {Shape{3, 4, 5}}, {Shape{1, 4, 2}}, {Shape{2, 3, 1}}, {Shape{0, 4, 2}}, {Shape{2, 3, 0}}};
  auto mx = [](const std::vector<double>& v) { return *std::max_element(v.begin(), v.end()); };
  auto mn = [](const std::vector<double>& v) { return *std::min_element(v.begin(), v.end()); };
  auto mean_of = [](const std::vector<double>& v) { return sum_of(v) / static_cast<double>(v.size()); }; // 0/0: NaN
  auto var_of = [=](const std::vector<double>& v) {
    const double m = mean_of(v);
    double s = 0;
    for (double x : v)
      s += (x - m) * (x - m);
    return s / std::max(0.0, static_cast<double>(v.size()) - 1); // PyTorch: max(0, N - correction)
  };
  auto prod_of = [](const std::vector<double>& v) {
    double p = 1;
    for (double x : v)
      p *= x;
    return p;
  };
  auto norm_of = [](const std::vector<double>& v) {
    double s = 0;
    for (double x : v)
      s += x * x;
    return std::sqrt(s);
  };
  row(
      "sum", {{Shape{3, 4}}, {Shape{0, 3}}, {Shape{}}}, [](T x) { return sum(x[0]); },
      reduce_ref(all_dims, false, sum_of));
  row(
      "sum_dim1", red_shapes_empty, [](T x) { return sum(x[0], 1); }, reduce_ref(1, false, sum_of));
  row(
      "sum_dim-1_keep", red_shapes_empty, [](T x) { return sum(x[0], -1, true); }, reduce_ref(-1, true, sum_of));
  row(
      "sum_dim0_empty", {{Shape{0, 3}}}, [](T x) { return sum(x[0], 0); }, reduce_ref(0, false, sum_of));
  row(
      "mean", {{Shape{3, 4}}, {Shape{}}, {Shape{0, 3}}}, [](T x) { return mean(x[0]); },
      reduce_ref(all_dims, false, mean_of));
  row(
      "mean_dim0", red_shapes_empty, [](T x) { return mean(x[0], 0); }, reduce_ref(0, false, mean_of));
  row(
      "mean_dim2_keep", red_shapes_empty, [](T x) { return mean(x[0], 2, true); }, reduce_ref(2, true, mean_of));
  row(
      "max", {{Shape{3, 4}}, {Shape{7}}}, [](T x) { return max(x[0]); }, reduce_ref(all_dims, false, mx));
  row(
      "max_dim1", red_shapes_nonempty_dim1, [](T x) { return max(x[0], 1); }, reduce_ref(1, false, mx));
  row(
      "min", {{Shape{3, 4}}}, [](T x) { return min(x[0]); }, reduce_ref(all_dims, false, mn));
  row(
      "min_dim0_keep", {{Shape{3, 4, 5}}, {Shape{1, 4, 2}}, {Shape{2, 0, 3}}, {Shape{2, 3, 0}}},
      [](T x) { return min(x[0], 0, true); }, reduce_ref(0, true, mn));
  row(
      "prod", {{Shape{3, 2}}, {Shape{5}}, {Shape{0, 3}}}, [](T x) { return prod(x[0]); },
      reduce_ref(all_dims, false, prod_of));
  row(
      "prod_dim1", red_shapes_empty, [](T x) { return prod(x[0], 1); }, reduce_ref(1, false, prod_of));
  row(
      "var", {{Shape{3, 4}}, {Shape{0, 3}}}, [](T x) { return var(x[0]); }, reduce_ref(all_dims, false, var_of));
  row(
      "var_dim1", red_shapes_empty, [](T x) { return var(x[0], 1, false); }, reduce_ref(1, false, var_of));
  auto var0_of = [=](const std::vector<double>& v) {
    const double m = mean_of(v);
    double s = 0;
    for (double x : v)
      s += (x - m) * (x - m);
    return s / static_cast<double>(v.size());
  };
  row(
      "var_correction0", {{Shape{3, 4}}, {Shape{1}}}, [](T x) { return var(x[0], autodiff::Correction{0}); },
      reduce_ref(all_dims, false, var0_of));
  row(
      "var_dim0_keep_correction0", red_shapes, [](T x) { return var(x[0], 0, true, autodiff::Correction{0}); },
      reduce_ref(0, true, var0_of));
  row(
      "stddev_dim0_keep", {{Shape{3, 4}}, {Shape{0, 4}}, {Shape{3, 0}}}, [](T x) { return stddev(x[0], 0, true); },
      reduce_ref(0, true, [=](const std::vector<double>& v) { return std::sqrt(var_of(v)); }));
  row(
      "logsumexp", {{Shape{3, 4}}, {Shape{0, 3}}}, [](T x) { return logsumexp(x[0]); },
      reduce_ref(all_dims, false, lse_of));
  row(
      "logsumexp_dim1", red_shapes_empty, [](T x) { return logsumexp(x[0], 1); }, reduce_ref(1, false, lse_of));
  row(
      "norm", {{Shape{3, 4}}, {Shape{0, 3}}}, [](T x) { return norm(x[0]); }, reduce_ref(all_dims, false, norm_of));
  row(
      "norm_dim-1_keep", red_shapes_empty, [](T x) { return norm(x[0], 2, -1, true); }, reduce_ref(-1, true, norm_of));
  auto p_norm_of = [](double p) {
    return [=](const std::vector<double>& v) {
      double s = 0, m = 0;
      for (double x : v) {
        s += std::pow(std::fabs(x), p);
        m = std::max(m, std::fabs(x));
      }
      return std::isinf(p) ? m : std::pow(s, 1 / p);
    };
  };
  row(
      "norm_p1", {{Shape{3, 4}}, {Shape{0, 3}}}, [](T x) { return norm(x[0], 1); },
      reduce_ref(all_dims, false, p_norm_of(1)));
  row(
      "norm_p3_dim1", red_shapes_empty, [](T x) { return norm(x[0], 3, 1); }, reduce_ref(1, false, p_norm_of(3)));
  row(
      "norm_inf_dim0_keep", {{Shape{3, 4}}, {Shape{2, 0}}},
      [](T x) { return norm(x[0], std::numeric_limits<double>::infinity(), 0, true); },
      reduce_ref(0, true, p_norm_of(std::numeric_limits<double>::infinity())));
  auto softmax_of = [](const std::vector<double>& v) {
    const double l = lse_of(v);
    std::vector<double> r;
    for (double x : v)
      r.push_back(std::exp(x - l));
    return r;
  };
  auto log_softmax_of = [](const std::vector<double>& v) {
    const double l = lse_of(v);
    std::vector<double> r;
    for (double x : v)
      r.push_back(x - l);
    return r;
  };
  row(
      "softmax_last", red_shapes_empty, [](T x) { return softmax(x[0], -1); }, along_ref(-1, softmax_of));
  row(
      "softmax_dim1", red_shapes_empty, [](T x) { return softmax(x[0], 1); }, along_ref(1, softmax_of));
  row(
      "log_softmax_last", red_shapes_empty, [](T x) { return log_softmax(x[0], -1); }, along_ref(-1, log_softmax_of));
  row(
      "log_softmax_dim0", red_shapes_empty, [](T x) { return log_softmax(x[0], 0); }, along_ref(0, log_softmax_of));
  row(
      "matmul",
      {{Shape{3, 4}, Shape{4, 2}},
       {Shape{1, 4}, Shape{4, 1}},
       {Shape{4}, Shape{4, 3}},
       {Shape{3, 4}, Shape{4}},
       {Shape{4}, Shape{4}},
       {Shape{2, 3, 4}, Shape{4, 5}},
       {Shape{2, 3, 4}, Shape{2, 4, 5}},
       {Shape{3, 4}, Shape{2, 4, 5}},
       {Shape{3, 0}, Shape{0, 2}},
       {Shape{0, 4}, Shape{4, 2}},
       {Shape{3, 4}, Shape{4, 0}},
       {Shape{0}, Shape{0}},
       {Shape{0}, Shape{0, 3}},
       {Shape{0, 3, 4}, Shape{4, 5}},
       {Shape{2, 3, 0}, Shape{2, 0, 5}},
       {Shape{0, 3, 4}, Shape{0, 4, 5}},
       {Shape{3, 4}, Shape{0, 4, 5}}},
      [](T x) { return matmul(x[0], x[1]); }, matmul_ref());
  auto linear_ref = [](bool bias) {
    return [=](const Vals& x, const Dims& d, std::vector<std::int64_t>& out) {
      const std::int64_t in = d[1][1], of = d[1][0];
      const std::int64_t m = count(std::vector<std::int64_t>(d[0].begin(), d[0].end() - 1));
      std::vector<double> r;
      for (std::int64_t i = 0; i < m; ++i)
        for (std::int64_t o = 0; o < of; ++o) {
          double s = bias ? x[2][static_cast<std::size_t>(o)] : 0.0;
          for (std::int64_t k = 0; k < in; ++k)
            s += x[0][static_cast<std::size_t>(i * in + k)] * x[1][static_cast<std::size_t>(o * in + k)];
          r.push_back(s);
        }
      out = d[0];
      out.back() = of;
      return r;
    };
  };
  row(
      "linear",
      {{Shape{4, 3}, Shape{5, 3}, Shape{5}},
       {Shape{2, 4, 3}, Shape{2, 3}, Shape{2}},
       {Shape{3}, Shape{1, 3}, Shape{1}},
       {Shape{2, 0}, Shape{3, 0}, Shape{3}}, // no input features: the bias alone
       {Shape{0, 3}, Shape{5, 3}, Shape{5}},
       {Shape{4, 3}, Shape{0, 3}, Shape{0}},
       {Shape{2, 0, 3}, Shape{2, 3}, Shape{2}}},
      [](T x) { return linear(x[0], x[1], x[2]); }, linear_ref(true));
  row(
      "linear_no_bias", {{Shape{4, 3}, Shape{5, 3}}, {Shape{0, 3}, Shape{2, 3}}, {Shape{2, 0}, Shape{3, 0}}},
      [](T x) { return linear(x[0], x[1]); }, linear_ref(false));
  // reshape(x, {2, -1, 3}) has x's elements in x's order, in the shape `dims`.
  const auto same_elements = [](std::vector<std::int64_t> dims) -> RefFn {
    return [dims](const Vals& x, const Dims&, std::vector<std::int64_t>& out) {
      out = dims;
      return x[0];
    };
  };
  row(
      "reshape", {{Shape{3, 4}}},
      [](T x) {
        return reshape(x[0], {2, -1, 3}) * 1.0;
      },
      same_elements({2, 2, 3}));
  row(
      "reshape_empty", {{Shape{0, 6}}, {Shape{3, 0, 2}}},
      [](T x) {
        return reshape(x[0], {2, -1, 3}) * 1.0;
      },
      same_elements({2, 0, 3}));
  row(
      "transpose", {{Shape{3, 4}}, {Shape{1, 5}}, {Shape{0, 5}}}, [](T x) { return transpose(x[0]); },
      [](const Vals& x, const Dims& d, std::vector<std::int64_t>& out) {
        out = {d[0][1], d[0][0]};
        std::vector<double> r;
        for (std::int64_t j = 0; j < d[0][1]; ++j)
          for (std::int64_t i = 0; i < d[0][0]; ++i)
            r.push_back(x[0][static_cast<std::size_t>(i * d[0][1] + j)]);
        return r;
      });
  row(
      "permute", {{Shape{2, 3, 4}}, {Shape{2, 0, 4}}},
      [](T x) {
        return permute(x[0], {2, 0, 1});
      },
      [](const Vals& x, const Dims& d, std::vector<std::int64_t>& out) {
        out = {d[0][2], d[0][0], d[0][1]};
        std::vector<double> r;
        for (std::int64_t k = 0; k < d[0][2]; ++k)
          for (std::int64_t i = 0; i < d[0][0]; ++i)
            for (std::int64_t j = 0; j < d[0][1]; ++j)
              r.push_back(x[0][static_cast<std::size_t>((i * d[0][1] + j) * d[0][2] + k)]);
        return r;
      });
  row(
      "expand", {{Shape{3, 1}}, {Shape{4}}, {Shape{}}},
      [](T x) {
        return expand(x[0], {2, 3, 4});
      },
      [](const Vals& x, const Dims& d, std::vector<std::int64_t>& out) {
        out = {2, 3, 4};
        std::vector<double> r;
        for (std::int64_t p = 0; p < 24; ++p)
          r.push_back(read_broadcast(x[0], d[0], unflat(p, out)));
        return r;
      });
  row(
      "expand_empty", {{Shape{1, 4}}, {Shape{0, 1}}, {Shape{0, 4}}},
      [](T x) {
        return expand(x[0], {2, 0, 4});
      },
      [](const Vals&, const Dims&, std::vector<std::int64_t>& out) {
        out = {2, 0, 4};
        return std::vector<double>{};
      });
  row(
      "slice", {{Shape{3, 7}}, {Shape{0, 7}}}, [](T x) { return slice(x[0], 1, 1, -1, 2); },
      [](const Vals& x, const Dims& d, std::vector<std::int64_t>& out) {
        out = {d[0][0], 3};
        std::vector<double> r;
        for (std::int64_t i = 0; i < d[0][0]; ++i)
          for (std::int64_t j = 1; j < 6; j += 2)
            r.push_back(x[0][static_cast<std::size_t>(i * 7 + j)]);
        return r;
      });
  row(
      "slice_empty", {{Shape{3, 7}}, {Shape{3, 0}}}, [](T x) { return slice(x[0], 1, 5, 2); },
      [](const Vals&, const Dims& d, std::vector<std::int64_t>& out) {
        out = {d[0][0], 0};
        return std::vector<double>{};
      });
  row(
      "index_select_empty", {{Shape{4, 3}}, {Shape{4, 0}}},
      [](T x) { return index_select(x[0], 0, autodiff::from_vector(std::vector<std::int64_t>{}, {0})); },
      [](const Vals&, const Dims& d, std::vector<std::int64_t>& out) {
        out = {0, d[0][1]};
        return std::vector<double>{};
      });
  row(
      "gather_empty", {{Shape{3, 4}}, {Shape{3, 0}}},
      [](T x) {
        return gather(x[0], 1, autodiff::from_vector(std::vector<std::int64_t>{}, {3, 0}));
      },
      [](const Vals&, const Dims&, std::vector<std::int64_t>& out) {
        out = {3, 0};
        return std::vector<double>{};
      });
  row(
      "index_select", {{Shape{4, 3}}},
      [](T x) {
        return index_select(x[0], 0, autodiff::from_vector(std::vector<std::int64_t>{2, 0, 2, 3, 2}, {5}));
      },
      [](const Vals& x, const Dims&, std::vector<std::int64_t>& out) {
        out = {5, 3};
        std::vector<double> r;
        for (std::int64_t i : {2, 0, 2, 3, 2})
          for (std::int64_t j = 0; j < 3; ++j)
            r.push_back(x[0][static_cast<std::size_t>(i * 3 + j)]);
        return r;
      });
  row(
      "gather", {{Shape{3, 4}}},
      [](T x) {
        return gather(x[0], 1, autodiff::from_vector(std::vector<std::int64_t>{3, 3, 0, 1, 2, 1}, {3, 2}));
      },
      [](const Vals& x, const Dims&, std::vector<std::int64_t>& out) {
        out = {3, 2};
        const std::int64_t idx[6] = {3, 3, 0, 1, 2, 1};
        std::vector<double> r;
        for (std::int64_t i = 0; i < 3; ++i)
          for (std::int64_t j = 0; j < 2; ++j)
            r.push_back(x[0][static_cast<std::size_t>(i * 4 + idx[i * 2 + j])]);
        return r;
      });
  // The adjoints of slice, index_select and gather. The slice bounds and the indices are fixed
  // formulas of the shapes, so that one row covers several cases: repeated indices, an index longer
  // or shorter than a along dim, empty selections. The references write each element of src to
  // where it goes, one at a time.
  auto slice_scatter_ref = [](int dim, std::int64_t start, std::int64_t step) {
    return [=](const Vals& x, const Dims& d, std::vector<std::int64_t>& out) {
      const auto k = static_cast<std::size_t>(dim);
      const std::int64_t n = d[0][k];
      const std::int64_t b = std::clamp<std::int64_t>(start < 0 ? start + n : start, 0, n);
      out = d[0];
      std::vector<double> r = x[0];
      for (std::int64_t p = 0; p < count(d[1]); ++p) {
        auto idx = unflat(p, d[1]);
        idx[k] = b + idx[k] * step;
        r[static_cast<std::size_t>(flat(idx, d[0]))] = x[1][static_cast<std::size_t>(p)];
      }
      return r;
    };
  };
  row(
      "slice_scatter",
      {{Shape{3, 7}, Shape{3, 3}}, {Shape{1, 7}, Shape{1, 3}}, {Shape{3, 2}, Shape{3, 0}}, {Shape{0, 7}, Shape{0, 3}}},
      [](T x) { return slice_scatter(x[0], x[1], 1, 1, -1, 2); }, slice_scatter_ref(1, 1, 2));
  row(
      "slice_scatter_dim0_clamped",
      {{Shape{4, 3}, Shape{2, 3}}, {Shape{2, 2, 3}, Shape{2, 2, 3}}, {Shape{1, 3}, Shape{1, 3}}},
      [](T x) { return slice_scatter(x[0], x[1], 0, -2, 100); }, slice_scatter_ref(0, -2, 1));
  // index_add: src row j goes to row (3 j + 1) mod n along dim.
  auto index_of = [](std::int64_t len, std::int64_t n) {
    std::vector<std::int64_t> v;
    for (std::int64_t j = 0; j < len; ++j)
      v.push_back((3 * j + 1) % n);
    return autodiff::from_vector(v, {len});
  };
  // x[0] with each element p of x[1] added where target(p, its index) says along dim.
  auto add_at_ref = [](int dim, bool by_flat_position) {
    return [=](const Vals& x, const Dims& d, std::vector<std::int64_t>& out) {
      const auto k = static_cast<std::size_t>(dim);
      out = d[0];
      std::vector<double> r = x[0];
      for (std::int64_t p = 0; p < count(d[1]); ++p) {
        auto idx = unflat(p, d[1]);
        idx[k] = (3 * (by_flat_position ? p : idx[k]) + 1) % d[0][k];
        r[static_cast<std::size_t>(flat(idx, d[0]))] += x[1][static_cast<std::size_t>(p)];
      }
      return r;
    };
  };
  auto index_add_ref = [=](int dim) { return add_at_ref(dim, false); };
  row(
      "index_add",
      {{Shape{4, 3}, Shape{5, 3}},
       {Shape{4, 3}, Shape{0, 3}},
       {Shape{1, 2}, Shape{3, 2}},
       {Shape{4}, Shape{6}},
       {Shape{2, 0}, Shape{3, 0}}},
      [=](T x) { return index_add(x[0], 0, index_of(x[1].size(0), x[0].size(0)), x[1]); }, index_add_ref(0));
  row(
      "index_add_dim1", {{Shape{2, 4, 3}, Shape{2, 6, 3}}, {Shape{2, 1, 3}, Shape{2, 2, 3}}},
      [=](T x) { return index_add(x[0], 1, index_of(x[1].size(1), x[0].size(1)), x[1]); }, index_add_ref(1));
  // scatter_add: element p of src (flat position) goes to (3 p + 1) mod n along dim; the index has
  // src's shape.
  auto scatter_index = [](const Shape& s, std::int64_t n) {
    std::vector<std::int64_t> v;
    for (std::int64_t p = 0; p < s.numel(); ++p)
      v.push_back((3 * p + 1) % n);
    return autodiff::from_vector(v, s);
  };
  auto scatter_add_ref = [=](int dim) { return add_at_ref(dim, true); };
  row(
      "scatter_add",
      {{Shape{3, 4}, Shape{3, 6}}, {Shape{3, 4}, Shape{2, 2}}, {Shape{3, 4}, Shape{3, 0}}, {Shape{1, 1}, Shape{1, 3}}},
      [=](T x) { return scatter_add(x[0], 1, scatter_index(x[1].shape(), x[0].size(1)), x[1]); }, scatter_add_ref(1));
  row(
      "scatter_add_dim0", {{Shape{3, 2, 2}, Shape{4, 2, 1}}, {Shape{2, 3}, Shape{2, 3}}},
      [=](T x) { return scatter_add(x[0], 0, scatter_index(x[1].shape(), x[0].size(0)), x[1]); }, scatter_add_ref(0));
  row(
      "concat", {{Shape{2, 3}, Shape{2, 1}}, {Shape{2, 0}, Shape{2, 2}}, {Shape{0, 3}, Shape{0, 1}}},
      [](T x) {
        return autodiff::concat({x[0], x[1]}, 1);
      },
      [](const Vals& x, const Dims& d, std::vector<std::int64_t>& out) {
        const std::int64_t r0 = d[0][0], c0 = d[0][1], c1 = d[1][1];
        out = {r0, c0 + c1};
        std::vector<double> r;
        for (std::int64_t i = 0; i < r0; ++i) {
          for (std::int64_t j = 0; j < c0; ++j)
            r.push_back(x[0][static_cast<std::size_t>(i * c0 + j)]);
          for (std::int64_t j = 0; j < c1; ++j)
            r.push_back(x[1][static_cast<std::size_t>(i * c1 + j)]);
        }
        return r;
      });
  row(
      "stack", {{Shape{2, 3}, Shape{2, 3}}, {Shape{2, 0}, Shape{2, 0}}, {Shape{0, 3}, Shape{0, 3}}},
      [](T x) {
        return autodiff::stack({x[0], x[1]}, 1);
      },
      [](const Vals& x, const Dims& d, std::vector<std::int64_t>& out) {
        const std::int64_t r0 = d[0][0], c = d[0][1];
        out = {r0, 2, c};
        std::vector<double> r;
        for (std::int64_t i = 0; i < r0; ++i)
          for (std::size_t k = 0; k < 2; ++k)
            for (std::int64_t j = 0; j < c; ++j)
              r.push_back(x[k][static_cast<std::size_t>(i * c + j)]);
        return r;
      });
  row(
      "squeeze_unsqueeze_flatten", {{Shape{2, 1, 3}}, {Shape{2, 1, 0}}, {Shape{0, 1, 3}}},
      [](T x) { return flatten(unsqueeze(squeeze(x[0], 1), 0)) * 1.0; },
      [](const Vals& x, const Dims& d, std::vector<std::int64_t>& out) {
        out = {count(d[0])};
        return x[0];
      });
  auto ce_ref = [](bool mean_red) {
    return [=](const Vals& x, const Dims& d, std::vector<std::int64_t>& out) {
      const std::int64_t n = d[0][0], c = d[0][1];
      double total = 0;
      for (std::int64_t i = 0; i < n; ++i) {
        std::vector<double> rowv(x[0].begin() + i * c, x[0].begin() + (i + 1) * c);
        total += lse_of(rowv) - rowv[static_cast<std::size_t>(i % c)];
      }
      out = {};
      return std::vector<double>{mean_red ? total / static_cast<double>(n) : total}; // an empty mean is NaN
    };
  };
  auto targets = [](std::int64_t n, std::int64_t c) {
    std::vector<std::int64_t> t;
    for (std::int64_t i = 0; i < n; ++i)
      t.push_back(i % c);
    return autodiff::from_vector(t, {n});
  };
  row(
      "cross_entropy_mean", {{Shape{5, 3}}, {Shape{1, 4}}, {Shape{0, 3}}},
      [=](T x) { return cross_entropy(x[0], targets(x[0].size(0), x[0].size(1))); }, ce_ref(true));
  row(
      "cross_entropy_sum", {{Shape{5, 3}}, {Shape{0, 3}}},
      [=](T x) { return cross_entropy(x[0], targets(x[0].size(0), 3), autodiff::Reduction::sum); }, ce_ref(false));
  row(
      "nll_loss", {{Shape{5, 3}}, {Shape{0, 3}}},
      [=](T x) { return nll_loss(log_softmax(x[0], 1), targets(x[0].size(0), 3)); }, ce_ref(true));
  row(
      "mse_loss", {{Shape{3, 4}, Shape{3, 4}}, {Shape{0, 4}, Shape{0, 4}}}, [](T x) { return mse_loss(x[0], x[1]); },
      [](const Vals& x, const Dims&, std::vector<std::int64_t>& out) {
        double s = 0;
        for (std::size_t i = 0; i < x[0].size(); ++i)
          s += (x[0][i] - x[1][i]) * (x[0][i] - x[1][i]);
        out = {};
        return std::vector<double>{s / static_cast<double>(x[0].size())};
      });
  // The compositions in loss.cpp (their nodes are the ops above; the rows check the formulas).
  row(
      "l1_loss", {{Shape{3, 4}, Shape{3, 4}}, {Shape{0, 4}, Shape{0, 4}}},
      [](T x) { return l1_loss(x[0], x[1], autodiff::Reduction::sum); },
      [](const Vals& x, const Dims&, std::vector<std::int64_t>& out) {
        double s = 0;
        for (std::size_t i = 0; i < x[0].size(); ++i)
          s += std::fabs(x[0][i] - x[1][i]);
        out = {};
        return std::vector<double>{s};
      });
  row(
      "huber_loss", {{Shape{3, 4}, Shape{3, 4}}, {Shape{0, 4}, Shape{0, 4}}},
      [](T x) { return huber_loss(x[0], x[1], autodiff::Reduction::none, 0.7); },
      [](const Vals& x, const Dims& d, std::vector<std::int64_t>& out) {
        std::vector<double> r;
        for (std::size_t i = 0; i < x[0].size(); ++i) {
          const double e = std::fabs(x[0][i] - x[1][i]);
          r.push_back(e < 0.7 ? 0.5 * e * e : 0.7 * (e - 0.35));
        }
        out = d[0];
        return r;
      });
  row(
      "cross_entropy_label_smoothing", {{Shape{5, 3}}, {Shape{1, 4}}},
      [=](T x) { return cross_entropy(x[0], targets(x[0].size(0), x[0].size(1)), autodiff::Reduction::mean, 0.2); },
      [](const Vals& x, const Dims& d, std::vector<std::int64_t>& out) {
        const std::int64_t n = d[0][0], c = d[0][1];
        double total = 0;
        for (std::int64_t i = 0; i < n; ++i) {
          std::vector<double> rowv(x[0].begin() + i * c, x[0].begin() + (i + 1) * c);
          const double lse = lse_of(rowv);
          double smooth = 0;
          for (double v : rowv)
            smooth += (lse - v) / static_cast<double>(c);
          total += 0.8 * (lse - rowv[static_cast<std::size_t>(i % c)]) + 0.2 * smooth;
        }
        out = {};
        return std::vector<double>{total / static_cast<double>(n)};
      });
  row(
      "mse_loss_none", {{Shape{3, 4}, Shape{3, 4}}, {Shape{0, 4}, Shape{0, 4}}},
      [](T x) { return mse_loss(x[0], x[1], autodiff::Reduction::none); },
      [](const Vals& x, const Dims& d, std::vector<std::int64_t>& out) {
        std::vector<double> r;
        for (std::size_t i = 0; i < x[0].size(); ++i)
          r.push_back((x[0][i] - x[1][i]) * (x[0][i] - x[1][i]));
        out = d[0];
        return r;
      });
  // The view itself as the output (the rows above copy it with `* 1.0`).
  row(
      "reshape_view", {{Shape{3, 4}}},
      [](T x) {
        return reshape(x[0], {2, -1, 3});
      },
      same_elements({2, 2, 3}));
  return t;
}

} // namespace tapegrad_test
