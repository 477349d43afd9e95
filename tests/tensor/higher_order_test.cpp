// Gradients of gradients for tensors (grad(..., {.create_graph = true})): every op of the table
// differentiated twice, known Hessians, Hessian-vector products, Jacobians and vector-Jacobian
// products, a third derivative, custom functions, memory in a loop, errors, and float32.
// Every expected number comes from a hand-derived formula or from finite differences.

#include "op_table.hpp"

#include <autodiff/tensor_derivatives.hpp>

#include <fmt/format.h>

#include <limits>
#include <set>

using namespace autodiff;
using namespace tapegrad_test;

namespace {

// Leaves for the float inputs; int64 inputs (indices, targets) stay constants.
std::vector<Tensor> as_leaves(const std::vector<Tensor>& xs) {
  std::vector<Tensor> out;
  for (const Tensor& x : xs) {
    if (x.dtype() == DType::int64) {
      out.push_back(x);
    } else {
      Tensor l = x.detach();
      l.requires_grad(true);
      out.push_back(l);
    }
  }
  return out;
}

// df/dx for the float inputs of f (in order), as values, by a first-order sweep or a create_graph one.
std::vector<std::vector<double>> gradient_values(const TensorFunction& f, const std::vector<Tensor>& xs,
                                                 bool create_graph) {
  Tape tape;
  const std::vector<Tensor> leaves = as_leaves(xs);
  std::vector<Tensor> wrt;
  for (const Tensor& l : leaves)
    if (l.dtype() != DType::int64) wrt.push_back(l);
  const Tensor y = f(leaves);
  std::vector<std::vector<double>> out;
  if (!y.requires_grad()) {
    for (const Tensor& l : wrt)
      out.emplace_back(static_cast<std::size_t>(l.numel()), 0.0);
    return out;
  }
  const std::vector<Tensor> g = grad(y, wrt, {.create_graph = create_graph});
  for (std::size_t k = 0; k < g.size(); ++k) {
    BOOST_TEST((g[k].shape() == wrt[k].shape()));
    BOOST_TEST((g[k].dtype() == wrt[k].dtype()));
    out.push_back(g[k].to_vector());
  }
  return out;
}

// xs + h vs, elementwise per input (not recorded: nothing here requires grad).
std::vector<Tensor> shifted(const std::vector<Tensor>& xs, const std::vector<Tensor>& vs, double h) {
  std::vector<Tensor> out;
  for (std::size_t k = 0; k < xs.size(); ++k)
    out.push_back(xs[k] + vs[k] * h);
  return out;
}

// (grad f(x + h v) - grad f(x - h v)) / 2h: H v by central differences of first-order gradients.
std::vector<std::vector<double>> fd_hvp(const TensorFunction& f, const std::vector<Tensor>& xs,
                                        const std::vector<Tensor>& vs, double h = 1e-5) {
  const auto up = gradient_values(f, shifted(xs, vs, h), false);
  const auto down = gradient_values(f, shifted(xs, vs, -h), false);
  std::vector<std::vector<double>> out(up.size());
  for (std::size_t k = 0; k < up.size(); ++k)
    for (std::size_t i = 0; i < up[k].size(); ++i)
      out[k].push_back((up[k][i] - down[k][i]) / (2 * h));
  return out;
}

// The largest magnitude of a list of values (at least 1): the scale of absolute tolerances.
double scale_of(const std::vector<double>& v) {
  double m = 1;
  for (double x : v)
    m = std::max(m, std::fabs(x));
  return m;
}

// got and want elementwise within tol * scale_of(want).
bool within(const std::vector<double>& got, const std::vector<double>& want, double tol) {
  const double s = scale_of(want);
  if (got.size() != want.size()) return false;
  for (std::size_t i = 0; i < got.size(); ++i)
    if (!(std::fabs(got[i] - want[i]) <= tol * s)) return false;
  return true;
}
void check_scaled(const std::vector<double>& got, const std::vector<double>& want, double tol,
                  const std::string& what) {
  const double s = scale_of(want);
  BOOST_TEST_CONTEXT(what) {
    BOOST_TEST_REQUIRE(got.size() == want.size());
    for (std::size_t i = 0; i < got.size(); ++i)
      BOOST_TEST_CONTEXT("element " << i << ": got " << got[i] << ", want " << want[i]) {
        BOOST_TEST(std::fabs(got[i] - want[i]) <= tol * s);
      }
  }
}

Tensor randn64(const Shape& s) { return randn(s, DType::float64); }

// A random reduction weight of op(xs)'s shape, so that sum(w * op(x)) sees every output element.
Tensor weights_for(const TensorOpInfo& op, const std::vector<Tensor>& xs) {
  NoGradGuard ng;
  return randn64(op.f(xs).shape());
}

// The ops with dedicated double-backward tests below, rather than rows of the op table.
const std::vector<std::string> covered_here{"custom", "to"};

} // namespace

BOOST_AUTO_TEST_SUITE(tensor_higher_order)

// ---- the op table -------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(create_graph_gradients_equal_first_order_gradients) {
  manual_seed(31);
  std::set<std::string> failed;
  for (const auto& op : tensor_op_table()) {
    for (const auto& shapes : op.shapes) {
      BOOST_TEST_CONTEXT(op.name << " on " << describe(shapes)) {
        const std::vector<Tensor> xs = inputs_for(op, shapes);
        const Tensor w = weights_for(op, xs);
        const TensorFunction f = [&](const std::vector<Tensor>& x) { return sum(w * op.f(x)); };
        const auto plain = gradient_values(f, xs, false);
        std::vector<std::vector<double>> graph;
        const std::string e = error_of([&] { graph = gradient_values(f, xs, true); });
        BOOST_TEST(e.empty(), e);
        if (!e.empty()) {
          failed.insert(op.name);
          continue;
        }
        BOOST_TEST_REQUIRE(graph.size() == plain.size());
        for (std::size_t k = 0; k < plain.size(); ++k) {
          if (!within(graph[k], plain[k], 1e-12)) failed.insert(op.name);
          check_scaled(graph[k], plain[k], 1e-12, fmt::format("input {}", k));
        }
      }
    }
  }
  BOOST_TEST(failed.empty(), fmt::format("create_graph gradients differ or fail for: {}", fmt::join(failed, ", ")));
}

BOOST_AUTO_TEST_CASE(every_op_passes_gradgradcheck) {
  manual_seed(32);
  std::set<std::string> failed;
  std::size_t cases = 0;
  for (const auto& op : tensor_op_table()) {
    for (const auto& shapes : op.shapes) {
      BOOST_TEST_CONTEXT(op.name << " on " << describe(shapes)) {
        const std::vector<Tensor> xs = inputs_for(op, shapes);
        const Tensor w = weights_for(op, xs);
        // The square term sends the second derivative through the op's rule twice: as the adjoint
        // g (which depends on x) and through the values the rule saved.
        const TensorFunction f = [&](const std::vector<Tensor>& x) {
          const Tensor y = op.f(x);
          return sum(w * y) + 0.5 * sum(square(y));
        };
        std::size_t elements = 0; // every element of every float input is checked
        for (const Tensor& x : xs)
          if (x.dtype() != DType::int64) elements += static_cast<std::size_t>(x.numel());
        // two random projections of the second derivative (the seed picks the direction)
        for (const std::uint64_t seed : {1u, 2u}) {
          TensorGradcheckReport r;
          const std::string e = error_of([&] { r = gradgradcheck(f, xs, {.atol = op.gradcheck_atol, .seed = seed}); });
          BOOST_TEST(e.empty(), e);
          BOOST_TEST(r.passed, fmt::format("{}", r));
          BOOST_TEST((!e.empty() || r.checked == elements));
          if (!e.empty() || !r.passed) failed.insert(op.name);
        }
        ++cases;
      }
    }
  }
  BOOST_TEST(cases >= 150u);
  BOOST_TEST(failed.empty(), fmt::format("gradgradcheck failed for: {}", fmt::join(failed, ", ")));
}

BOOST_AUTO_TEST_CASE(every_op_has_a_double_backward_test) {
  // Each row of the table is gradgradchecked above, so an op is covered when a row records it;
  // "leaf" has no rule, and the ops in covered_here have tests below.
  std::vector<std::string> elsewhere = covered_here;
  elsewhere.push_back("leaf");
  const std::vector<std::string> missing = ops_without_row(tensor_op_table(), elsewhere);
  BOOST_TEST(missing.empty(), "no double-backward test covers " << fmt::format("{}", fmt::join(missing, ", ")));
}

BOOST_AUTO_TEST_CASE(create_graph_gradients_equal_first_order_ones_at_infinite_partials) {
  // Note [Zero adjoints] (docs/design.md): where a partial derivative is infinite, the create_graph
  // gradient has the first-order value; and where a rule takes a partial as 0 (d/db pow(a, b) at
  // a <= 0), so does its create_graph form, although r = pow(0, -1) is infinite there.
  const TensorFunction sqrt_times_zero = [](const std::vector<Tensor>& x) { return sum(sqrt(x[0]) * 0.0 + x[0]); };
  const TensorFunction power = [](const std::vector<Tensor>& x) { return sum(pow(x[0], x[1])); };
  const TensorFunction power_times_zero = [](const std::vector<Tensor>& x) {
    return sum(pow(x[0], x[1]) * 0.0 + x[0] + x[1]);
  };
  const std::vector<Tensor> zero{tensor({0.0, 4.0}, DType::float64)};
  const std::vector<Tensor> ab{tensor({0.0, 0.0, 2.0}, DType::float64), tensor({-1.0, 0.5, -1.0}, DType::float64)};
  for (const auto& [f, xs] :
       {std::pair{sqrt_times_zero, zero}, std::pair{power, ab}, std::pair{power_times_zero, ab}}) {
    const auto plain = gradient_values(f, xs, false);
    const auto graph = gradient_values(f, xs, true);
    BOOST_TEST_REQUIRE(graph.size() == plain.size());
    for (std::size_t k = 0; k < plain.size(); ++k)
      for (std::size_t i = 0; i < plain[k].size(); ++i)
        BOOST_TEST(((std::isnan(graph[k][i]) && std::isnan(plain[k][i])) || graph[k][i] == plain[k][i]),
                   "input " << k << " element " << i << ": create_graph " << graph[k][i] << ", first order "
                            << plain[k][i]);
  }
  BOOST_TEST(
      hessian([](const Tensor& x) { return sum(sqrt(x) * 0.0 + x); }, tensor({0.0}, DType::float64)).to_vector() ==
      std::vector<double>{0.0});
}

BOOST_AUTO_TEST_CASE(every_op_follows_the_zero_adjoint_policy_at_edge_values) {
  // Note [Zero adjoints] across the op table: with every float input filled with an edge value
  // (where partial derivatives are infinite or NaN), the create_graph gradient has the first-order
  // value, NaN for NaN, both for y = sum(op(x)) and for y = sum(op(x) * 0) + sum(x) (the op's
  // adjoint is 0 there).
  const double inf = std::numeric_limits<double>::infinity(), nan = std::numeric_limits<double>::quiet_NaN();
  auto same = [](double a, double b) {
    if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b);
    return a == b || std::fabs(a - b) <= 1e-12 * std::max(1.0, std::fabs(b));
  };
  manual_seed(33);
  std::set<std::string> failed;
  for (const auto& op : tensor_op_table()) {
    for (const double v : {0.0, -0.0, 1.0, -1.0, 0.5, -2.0, inf, -inf, nan}) {
      std::vector<Tensor> xs = inputs_for(op, op.shapes[0]);
      for (Tensor& x : xs)
        if (x.dtype() != DType::int64) x = full(x.shape(), v, DType::float64);
      for (const bool zero : {false, true}) {
        const TensorFunction f = [&](const std::vector<Tensor>& x) {
          if (!zero) return sum(op.f(x));
          Tensor y = sum(op.f(x) * 0.0);
          for (const Tensor& xi : x)
            if (xi.dtype() != DType::int64) y = y + sum(xi);
          return y;
        };
        std::vector<std::vector<double>> plain, graph;
        const std::string e = error_of([&] {
          plain = gradient_values(f, xs, false);
          graph = gradient_values(f, xs, true);
        });
        BOOST_TEST_CONTEXT(op.name << " at " << v << (zero ? " times 0" : "")) {
          BOOST_TEST(e.empty(), e);
          if (!e.empty()) continue;
          BOOST_TEST_REQUIRE(graph.size() == plain.size());
          for (std::size_t k = 0; k < plain.size(); ++k)
            for (std::size_t i = 0; i < plain[k].size(); ++i)
              if (!same(graph[k][i], plain[k][i])) {
                failed.insert(op.name);
                BOOST_TEST(false, "input " << k << " element " << i << ": create_graph " << graph[k][i]
                                           << ", first order " << plain[k][i]);
                break;
              }
        }
      }
    }
  }
  BOOST_TEST(failed.empty(),
             fmt::format("create_graph gradients differ at edge values for: {}", fmt::join(failed, ", ")));
}

// ---- known Hessians -----------------------------------------------------------------------------

namespace {
Tensor rosenbrock(const Tensor& x) {
  const std::int64_t n = x.size(0);
  const Tensor a = slice(x, 0, 0, n - 1), b = slice(x, 0, 1, n);
  return sum(100.0 * square(b - square(a)) + square(1.0 - a));
}
// Its Hessian, by hand: tridiagonal.
std::vector<double> rosenbrock_hessian(const std::vector<double>& x) {
  const std::size_t n = x.size();
  std::vector<double> h(n * n, 0.0);
  for (std::size_t i = 0; i + 1 < n; ++i) {
    h[i * n + i] += 1200 * x[i] * x[i] - 400 * x[i + 1] + 2;
    h[i * n + i + 1] += -400 * x[i];
    h[(i + 1) * n + i] += -400 * x[i];
    h[(i + 1) * n + i + 1] += 200;
  }
  return h;
}
std::vector<double> softmax_of(const std::vector<double>& x) {
  double m = *std::max_element(x.begin(), x.end()), z = 0;
  for (double v : x)
    z += std::exp(v - m);
  std::vector<double> s;
  for (double v : x)
    s.push_back(std::exp(v - m) / z);
  return s;
}
// diag(s) - s s^T
std::vector<double> softmax_jacobian(const std::vector<double>& s) {
  const std::size_t n = s.size();
  std::vector<double> h(n * n);
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t j = 0; j < n; ++j)
      h[i * n + j] = (i == j ? s[i] : 0.0) - s[i] * s[j];
  return h;
}
} // namespace

BOOST_AUTO_TEST_CASE(rosenbrock_hessian_is_exact) {
  manual_seed(41);
  for (std::int64_t n : {2, 5, 50}) {
    BOOST_TEST_CONTEXT("n = " << n) {
      const Tensor x = random_in({n}, 0.0, 2.0, true, DType::float64);
      const Tensor h = hessian(rosenbrock, x);
      BOOST_TEST(h.shape().vec() == (std::vector<std::int64_t>{n, n}));
      BOOST_TEST((h.dtype() == DType::float64));
      const std::vector<double> want = rosenbrock_hessian(x.to_vector());
      check_scaled(h.to_vector(), want, 1e-13, "hessian");
    }
  }
}

// The tensor form of tests/scalar/higher_order_test.cpp's pow case: the same rule, run with masks.
// At b == 0, d/da is 0 but its derivative in b is 1/a; dropping d/da there made the Hessian
// [[0, 0], [1/a, log(a)^2]].
BOOST_AUTO_TEST_CASE(pow_hessian_at_a_zero_exponent_is_symmetric) {
  const UnaryTensorFunction f = [](const Tensor& x) { return sum(pow(slice(x, 0, 0, 3), slice(x, 0, 3, 6))); };
  const std::vector<double> a{2.0, 0.5, 4.0};
  const Tensor x = tensor({a[0], a[1], a[2], 0.0, 0.0, 0.0}, DType::float64);
  const std::vector<double> h = hessian(f, x).to_vector();
  for (std::size_t i = 0; i < 3; ++i) {
    const double l = std::log(a[i]);
    const std::size_t n = 6, ia = i, ib = i + 3;
    BOOST_TEST(std::fabs(h[ia * n + ib] - 1.0 / a[i]) < 1e-15,
               fmt::format("a = {}: d2/da db {}", a[i], h[ia * n + ib]));
    BOOST_TEST(std::fabs(h[ib * n + ia] - 1.0 / a[i]) < 1e-15,
               fmt::format("a = {}: d2/db da {}", a[i], h[ib * n + ia]));
    BOOST_TEST(std::fabs(h[ib * n + ib] - l * l) < 1e-15);
    BOOST_TEST(h[ia * n + ia] == 0.0);
  }
}

BOOST_AUTO_TEST_CASE(quadratic_form_hessian_is_a_plus_a_transpose) {
  manual_seed(42);
  const std::int64_t n = 4;
  const Tensor a = randn64({n, n});
  const auto av = a.to_vector();
  BOOST_TEST(av[1] != av[static_cast<std::size_t>(n)]); // not symmetric
  const auto f = [&](const Tensor& x) { return matmul(x, matmul(a, x)); };
  const Tensor h = hessian(f, randn64({n}));
  std::vector<double> want(av.size());
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t j = 0; j < n; ++j)
      want[static_cast<std::size_t>(i * n + j)] =
          av[static_cast<std::size_t>(i * n + j)] + av[static_cast<std::size_t>(j * n + i)];
  check_scaled(h.to_vector(), want, 1e-14, "x^T A x");
  // the same through a sum of elementwise products, and with x as a [1, n] row
  const Tensor h2 = hessian([&](const Tensor& x) { return sum(x * matmul(x, transpose(a))); }, randn64({1, n}));
  BOOST_TEST(h2.shape().vec() == (std::vector<std::int64_t>{1, n, 1, n}));
  check_scaled(h2.to_vector(), want, 1e-14, "row x A^T . x");
}

BOOST_AUTO_TEST_CASE(logsumexp_hessian_is_the_softmax_jacobian) {
  manual_seed(43);
  const Tensor x = randn64({5});
  const Tensor h = hessian([](const Tensor& v) { return logsumexp(v); }, x);
  check_scaled(h.to_vector(), softmax_jacobian(softmax_of(x.to_vector())), 1e-14, "logsumexp");
  // over dim 1 of a [2, 3] tensor, summed: block diagonal, one softmax Jacobian per row
  const Tensor x2 = randn64({2, 3});
  const Tensor h2 = hessian([](const Tensor& v) { return sum(logsumexp(v, 1)); }, x2);
  BOOST_TEST(h2.shape().vec() == (std::vector<std::int64_t>{2, 3, 2, 3}));
  const auto xv = x2.to_vector();
  std::vector<double> want(36, 0.0);
  for (std::size_t r = 0; r < 2; ++r) {
    const auto blk = softmax_jacobian(softmax_of({xv.begin() + 3 * r, xv.begin() + 3 * r + 3}));
    for (std::size_t i = 0; i < 3; ++i)
      for (std::size_t j = 0; j < 3; ++j)
        want[(r * 3 + i) * 6 + r * 3 + j] = blk[i * 3 + j];
  }
  check_scaled(h2.to_vector(), want, 1e-14, "logsumexp dim 1");
}

BOOST_AUTO_TEST_CASE(cross_entropy_hessian_in_the_logits) {
  manual_seed(44);
  // one row: diag(p) - p p^T, whatever the target
  const Tensor x = randn64({1, 4});
  const Tensor t = from_vector(std::vector<std::int64_t>{2}, {1});
  const Tensor h = hessian([&](const Tensor& v) { return cross_entropy(v, t); }, x);
  BOOST_TEST(h.shape().vec() == (std::vector<std::int64_t>{1, 4, 1, 4}));
  check_scaled(h.to_vector(), softmax_jacobian(softmax_of(x.to_vector())), 1e-14, "one row");
  // three rows, mean reduction: block diagonal, each block divided by 3
  const Tensor x3 = randn64({3, 4}) * 2.0;
  const Tensor t3 = from_vector(std::vector<std::int64_t>{0, 3, 1}, {3});
  const Tensor h3 = hessian([&](const Tensor& v) { return cross_entropy(v, t3); }, x3);
  const auto xv = x3.to_vector();
  std::vector<double> want(144, 0.0);
  for (std::size_t r = 0; r < 3; ++r) {
    const auto blk = softmax_jacobian(softmax_of({xv.begin() + 4 * r, xv.begin() + 4 * r + 4}));
    for (std::size_t i = 0; i < 4; ++i)
      for (std::size_t j = 0; j < 4; ++j)
        want[(r * 4 + i) * 12 + r * 4 + j] = blk[i * 4 + j] / 3;
  }
  check_scaled(h3.to_vector(), want, 1e-14, "three rows, mean");
}

// ---- Hessian-vector products --------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(hvp_matches_differences_of_gradients_and_the_hessian) {
  manual_seed(51);
  const Tensor w = randn64({4, 5}) * 0.5, c = randn64({3, 5}), c2 = randn64({3, 4});
  const Tensor t = from_vector(std::vector<std::int64_t>{4, 0, 2}, {3});
  const std::vector<std::pair<std::string, UnaryTensorFunction>> fs{
      {"tanh(x W) squared, softmax",
       [&](const Tensor& x) { return sum(square(tanh(matmul(x, w)))) + sum(softmax(matmul(x, w), -1) * c); }},
      {"log softmax, sigmoid",
       [&](const Tensor& x) { return sum(log(softmax(matmul(x, w), 1)) * c) + sum(sigmoid(x) * x * c2); }},
      {"logsumexp of sin, exp", [&](const Tensor& x) { return logsumexp(sin(x) * 2.0) + mean(exp(x * 0.3) * x); }},
      {"norm times cos, division",
       [&](const Tensor& x) { return norm(x) * sum(cos(x) * c2) + sum(x / (square(x) + 1.0)); }},
      {"cross entropy, var, prod",
       [&](const Tensor& x) {
         return cross_entropy(tanh(matmul(x, w)) * 3.0, t) + var(x) + sum(prod(x * 0.5 + 1.0, 1));
       }},
      {"pow, sqrt, log_softmax, max",
       [&](const Tensor& x) {
         return sum(pow(square(x) + 0.5, 1.5)) + sum(sqrt(exp(x) + x * x)) + sum(log_softmax(x, 0) * c2) +
                sum(max(x * c2, 1));
       }},
  };
  for (const auto& [name, f] : fs) {
    BOOST_TEST_CONTEXT(name) {
      const Tensor x = randn64({3, 4}), v = randn64({3, 4});
      // &f = f: clang 14 cannot capture a structured binding.
      const TensorFunction fv = [&f = f](const std::vector<Tensor>& xs) { return f(xs[0]); };
      const Tensor hv = hvp(f, x, v);
      BOOST_TEST(hv.shape().vec() == x.shape().vec());
      BOOST_TEST((hv.dtype() == DType::float64));
      BOOST_TEST(!hv.requires_grad());
      check_scaled(hv.to_vector(), fd_hvp(fv, {x}, {v})[0], 1e-7, "against differences of gradients");
      // H v with H from hessian(): H reshaped [12, 12] times v flattened
      const Tensor h = hessian(f, x);
      const Tensor hv2 = reshape(matmul(reshape(h, {12, 12}), flatten(v)), {3, 4});
      check_scaled(hv.to_vector(), hv2.to_vector(), 1e-12, "against hessian(f, x) v");
      // H is symmetric
      const auto hm = h.to_vector();
      std::vector<double> ht(hm.size());
      for (std::size_t i = 0; i < 12; ++i)
        for (std::size_t j = 0; j < 12; ++j)
          ht[i * 12 + j] = hm[j * 12 + i];
      check_scaled(hm, ht, 1e-12, "symmetry");
    }
  }
}

BOOST_AUTO_TEST_CASE(hvp_of_a_small_mlp_in_its_parameters) {
  manual_seed(52);
  const Tensor x = randn64({6, 3});
  const Tensor t = from_vector(std::vector<std::int64_t>{0, 3, 1, 2, 3, 0}, {6});
  const std::vector<Tensor> params{randn64({5, 3}), randn64({5}) * 0.1, randn64({4, 5}), randn64({4}) * 0.1};
  const std::vector<Tensor> dirs{randn64({5, 3}), randn64({5}), randn64({4, 5}), randn64({4})};
  for (const bool use_relu : {false, true}) {
    BOOST_TEST_CONTEXT((use_relu ? "relu" : "tanh")) {
      const TensorFunctionN loss = [&](const std::vector<Tensor>& p) {
        const Tensor pre = linear(x, p[0], p[1]);
        const Tensor h = use_relu ? relu(pre) : tanh(pre);
        return cross_entropy(linear(h, p[2], p[3]), t) + 1e-2 * sum(square(p[0]));
      };
      if (use_relu) { // the differences of gradients must not step over relu's kink: pre-activations
        // move by h * linear(x, v1, v2) for a step h along the directions
        NoGradGuard ng;
        const auto pre = linear(x, params[0], params[1]).to_vector();
        const auto moves = linear(x, dirs[0], dirs[1]).to_vector();
        for (std::size_t i = 0; i < pre.size(); ++i)
          BOOST_TEST_REQUIRE(std::fabs(pre[i]) > 10 * 1e-5 * std::fabs(moves[i]));
      }
      const std::vector<Tensor> hv = hvp(loss, params, dirs);
      BOOST_TEST_REQUIRE(hv.size() == 4u);
      const auto want = fd_hvp(loss, params, dirs);
      for (std::size_t k = 0; k < 4; ++k) {
        BOOST_TEST(hv[k].shape().vec() == params[k].shape().vec());
        check_scaled(hv[k].to_vector(), want[k], 1e-7, fmt::format("parameter {}", k));
      }
    }
  }
}

// ---- Jacobians and vector-Jacobian products -----------------------------------------------------

namespace {
// The Jacobian of f at x by central differences, laid out as f(x).shape ++ x.shape.
std::vector<double> fd_jacobian(const UnaryTensorFunction& f, const Tensor& x, double h = 1e-6) {
  const std::vector<double> xv = x.to_vector();
  const std::size_t n = xv.size();
  std::vector<std::vector<double>> cols;
  for (std::size_t j = 0; j < n; ++j) {
    std::vector<double> up = xv, down = xv;
    up[j] += h;
    down[j] -= h;
    const auto fu = f(from_vector(up, x.shape(), DType::float64)).to_vector();
    const auto fd = f(from_vector(down, x.shape(), DType::float64)).to_vector();
    std::vector<double> col;
    for (std::size_t i = 0; i < fu.size(); ++i)
      col.push_back((fu[i] - fd[i]) / (2 * h));
    cols.push_back(col);
  }
  const std::size_t m = cols.empty() ? 0 : cols[0].size();
  std::vector<double> j(m * n);
  for (std::size_t i = 0; i < m; ++i)
    for (std::size_t k = 0; k < n; ++k)
      j[i * n + k] = cols[k][i];
  return j;
}
} // namespace

BOOST_AUTO_TEST_CASE(jacobian_and_vjp_agree_with_differences_and_each_other) {
  manual_seed(61);
  const Tensor w = randn64({3, 3}), w2 = randn64({3, 4}), w3 = randn64({7, 2});
  struct Case {
    std::string name;
    UnaryTensorFunction f;
    Shape x;
    Shape y;
  };
  const std::vector<Case> cases{
      {"softmax(x W) * x", [&](const Tensor& x) { return softmax(matmul(x, w), -1) * x; }, {2, 3}, {2, 3}},
      {"tanh(W2 x)", [&](const Tensor& x) { return tanh(matmul(w2, x)); }, {4}, {3}},
      {"sum(exp(x))", [](const Tensor& x) { return sum(exp(x)); }, {4}, {}},
      {"log_softmax over dim 0", [](const Tensor& x) { return log_softmax(square(x), 0); }, {3, 2}, {3, 2}},
      // more outputs than inputs: built column by column
      {"sin(W3 x) (columns)", [&](const Tensor& x) { return sin(matmul(w3, x)) * sum(x); }, {2}, {7}},
      {"outer product (columns)", [](const Tensor& x) { return exp(unsqueeze(x, 1) * unsqueeze(x, 0)); }, {3}, {3, 3}},
  };
  for (const Case& c : cases) {
    BOOST_TEST_CONTEXT(c.name) {
      const Tensor x = randn64(c.x);
      const Tensor j = jacobian(c.f, x);
      std::vector<std::int64_t> shape = c.y.vec();
      for (auto d : c.x)
        shape.push_back(d);
      BOOST_TEST(j.shape().vec() == shape);
      const auto jv = j.to_vector();
      check_scaled(jv, fd_jacobian(c.f, x), 1e-8, "against differences");
      // u^T J == vjp(f, x, u)
      const Tensor u = randn64(c.y);
      const auto uv = u.to_vector();
      const std::size_t m = uv.size(), n = static_cast<std::size_t>(x.numel());
      std::vector<double> ut_j(n, 0.0);
      for (std::size_t i = 0; i < m; ++i)
        for (std::size_t k = 0; k < n; ++k)
          ut_j[k] += uv[i] * jv[i * n + k];
      const Tensor vj = vjp(c.f, x, u);
      BOOST_TEST(vj.shape().vec() == c.x.vec());
      BOOST_TEST(!vj.requires_grad());
      check_scaled(vj.to_vector(), ut_j, 1e-13, "u^T J");
    }
  }
  // the list form: C = A B has dA = U B^T and dB = A^T U
  const Tensor a = randn64({2, 3}), b = randn64({3, 4}), u = randn64({2, 4});
  const auto g = vjp([](const std::vector<Tensor>& v) { return matmul(v[0], v[1]); }, {a, b}, u);
  BOOST_TEST_REQUIRE(g.size() == 2u);
  const auto av = a.to_vector(), bv = b.to_vector(), uv = u.to_vector();
  std::vector<double> da(6, 0.0), db(12, 0.0);
  for (std::size_t i = 0; i < 2; ++i)
    for (std::size_t k = 0; k < 3; ++k)
      for (std::size_t j = 0; j < 4; ++j) {
        da[i * 3 + k] += uv[i * 4 + j] * bv[k * 4 + j];
        db[k * 4 + j] += av[i * 3 + k] * uv[i * 4 + j];
      }
  check_scaled(g[0].to_vector(), da, 1e-14, "dA");
  check_scaled(g[1].to_vector(), db, 1e-14, "dB");
}

BOOST_AUTO_TEST_CASE(jvp_by_differentiating_a_vjp_in_its_seed) {
  // g(u) = J^T u is linear in the seed u, so d <g(u), v> / du = J v: a seed that requires grad makes
  // the create_graph gradient depend on it. At u = 0 too (the guarded rules of log and sqrt must
  // keep their derivative in g where g is 0).
  manual_seed(62);
  const Tensor w = randn64({3, 4});
  const auto f = [&](const Tensor& x) {
    return tanh(matmul(w, x)) * sum(log(square(x) + 1.0)) + sqrt(exp(matmul(w, x)));
  };
  const Tensor x0 = randn64({4}), v = randn64({4});
  const auto jm = jacobian(f, x0).to_vector();
  const auto vv = v.to_vector();
  std::vector<double> jv(3, 0.0);
  for (std::size_t i = 0; i < 3; ++i)
    for (std::size_t k = 0; k < 4; ++k)
      jv[i] += jm[i * 4 + k] * vv[k];
  for (const bool zero_seed : {true, false}) {
    BOOST_TEST_CONTEXT((zero_seed ? "u = 0" : "random u")) {
      Tape tape;
      Tensor x = x0.detach(), u = zero_seed ? zeros({3}, DType::float64) : randn64({3});
      x.requires_grad(true);
      u.requires_grad(true);
      const Tensor g = grad({f(x)}, {x}, {u}, {.create_graph = true})[0];
      BOOST_TEST_REQUIRE(g.requires_grad());
      const Tensor jv_graph = grad({g}, {u}, {v})[0];
      check_scaled(jv_graph.to_vector(), jv, 1e-13, "J v");
    }
  }
}

// ---- third order --------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(third_derivative_of_sin_x_squared) {
  Tape tape;
  const std::vector<double> xv{-1.3, -0.2, 0.4, 1.1, 2.2};
  Tensor x = from_vector(xv, {5}, DType::float64);
  x.requires_grad(true);
  // elementwise, so the derivative of sum(d_k) is the next derivative of each element
  const Tensor d1 = grad(sum(sin(square(x))), {x}, {.create_graph = true})[0];
  const Tensor d2 = grad(sum(d1), {x}, {.create_graph = true})[0];
  const Tensor d3 = grad(sum(d2), {x}, {.create_graph = true})[0];
  BOOST_TEST(d3.requires_grad()); // still differentiable: the fourth order is not zero
  std::vector<double> w1, w2, w3;
  for (double v : xv) {
    const double s = std::sin(v * v), c = std::cos(v * v);
    w1.push_back(2 * v * c);
    w2.push_back(2 * c - 4 * v * v * s);
    w3.push_back(-12 * v * s - 8 * v * v * v * c);
  }
  check_scaled(d1.to_vector(), w1, 1e-14, "first");
  check_scaled(d2.to_vector(), w2, 1e-13, "second");
  check_scaled(d3.to_vector(), w3, 1e-13, "third");
  // x * x instead of square(x): the same numbers through mul's rule, where both operands are x
  const Tensor e1 = grad(sum(sin(x * x)), {x}, {.create_graph = true})[0];
  const Tensor e2 = grad(sum(e1), {x}, {.create_graph = true})[0];
  const Tensor e3 = grad(sum(e2), {x})[0];
  check_scaled(e3.to_vector(), w3, 1e-13, "third, x * x");
}

BOOST_AUTO_TEST_CASE(backward_through_a_gradient_penalty) {
  // loss = sum((df/dx)^2) for f = sum(x sin x): df/dx = g = sin x + x cos x, and
  // d loss / dx = 2 g g' with g' = 2 cos x - x sin x. backward() accumulates it into x.grad().
  Tape tape;
  const std::vector<double> xv{-1.5, 0.3, 0.9, 2.0};
  Tensor x = from_vector(xv, {4}, DType::float64);
  x.requires_grad(true);
  const Tensor g = grad(sum(x * sin(x)), {x}, {.create_graph = true})[0];
  BOOST_TEST(!x.grad().defined()); // the functional grad leaves grad() alone
  sum(square(g)).backward();
  std::vector<double> want;
  for (double v : xv) {
    const double gv = std::sin(v) + v * std::cos(v), dg = 2 * std::cos(v) - v * std::sin(v);
    want.push_back(2 * gv * dg);
  }
  BOOST_TEST_REQUIRE(x.grad().defined());
  check_scaled(x.grad().to_vector(), want, 1e-14, "x.grad()");
}

// ---- custom functions ---------------------------------------------------------------------------

namespace {
// Backwards written with tensor ops: they record under create_graph, so they differentiate again.
const CustomFunction cube{"cube", [](const std::vector<Tensor>& x) { return x[0] * x[0] * x[0]; },
                          [](const Tensor& g, const std::vector<Tensor>& x, const Tensor&) {
                            return std::vector<Tensor>{g * 3.0 * square(x[0])};
                          },
                          true};
// Uses its output in the backward.
const CustomFunction my_exp{
    "my_exp", [](const std::vector<Tensor>& x) { return exp(x[0]); },
    [](const Tensor& g, const std::vector<Tensor>&, const Tensor& out) { return std::vector<Tensor>{g * out}; }, true};
// Two inputs, broadcast: the engine sums the gradient of b back to its shape.
const CustomFunction my_mul{"my_mul", [](const std::vector<Tensor>& x) { return x[0] * x[1]; },
                            [](const Tensor& g, const std::vector<Tensor>& x, const Tensor&) {
                              return std::vector<Tensor>{g * x[1], g * x[0]};
                            },
                            true};
} // namespace

BOOST_AUTO_TEST_CASE(create_graph_refuses_a_custom_function_not_marked_differentiable) {
  CustomFunction raw = cube;
  raw.name = "raw_cube";
  raw.differentiable_backward = false;
  Tape tape;
  Tensor x = tensor({0.5, -1.5}, DType::float64);
  x.requires_grad(true);
  const Tensor y = sum(apply(raw, {x}));
  const std::string e = error_of([&] { grad(y, {x}, {.create_graph = true}); });
  BOOST_TEST(starts_with(e, "autodiff: raw_cube: create_graph needs a backward that can be differentiated again"), e);
  // First order is unaffected: 3 x^2.
  const Tensor g = grad(y, {x})[0];
  BOOST_TEST(g.to_vector() == std::vector<double>({0.75, 6.75}), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(custom_functions_support_double_backward) {
  manual_seed(71);
  const Tensor x = random_in({3, 2}, 0.2, 1.5, true, DType::float64);
  const Tensor b = random_in({2}, 0.2, 1.5, true, DType::float64);
  const std::vector<std::pair<std::string, TensorFunction>> fs{
      {"cube", [](const std::vector<Tensor>& v) { return sum(sin(apply(cube, {v[0]}))); }},
      {"my_exp", [](const std::vector<Tensor>& v) { return sum(square(apply(my_exp, {v[0] * 0.5}))); }},
      {"my_mul",
       [](const std::vector<Tensor>& v) {
         return sum(tanh(apply(my_mul, {v[0], v[1]})));
       }},
  };
  for (const auto& [name, f] : fs) {
    BOOST_TEST_CONTEXT(name) {
      TensorGradcheckReport r;
      // &f = f: clang 14 cannot capture a structured binding.
      const std::string e = error_of([&, &f = f] { r = gradgradcheck(f, {x, b}); });
      BOOST_TEST(e.empty(), e);
      BOOST_TEST(r.passed, fmt::format("{}", r));
    }
  }
  // the Hessian of sum(cube(x)) is diag(6 x)
  const Tensor v = tensor({0.5, -1.25, 2.0}, DType::float64);
  Tensor h;
  const std::string e = error_of([&] { h = hessian([](const Tensor& t) { return sum(apply(cube, {t})); }, v); });
  BOOST_TEST_REQUIRE(e.empty(), e);
  check_scaled(h.to_vector(), {3.0, 0, 0, 0, -7.5, 0, 0, 0, 12.0}, 1e-15, "diag(6 x)");
}

BOOST_AUTO_TEST_CASE(dtype_conversion_supports_double_backward) {
  // f = sum(to_float64(to_float32(x)^3)): H = diag(6 x), to float32 precision; both directions of
  // "to" are differentiated twice.
  const Tensor x = tensor({0.5, -1.25, 2.0}, DType::float64);
  Tensor h;
  const std::string e = error_of(
      [&] { h = hessian([](const Tensor& t) { return sum(pow(t.to(DType::float32), 3.0).to(DType::float64)); }, x); });
  BOOST_TEST_REQUIRE(e.empty(), e);
  BOOST_TEST((h.dtype() == DType::float64));
  check_scaled(h.to_vector(), {3.0, 0, 0, 0, -7.5, 0, 0, 0, 12.0}, 1e-5, "diag(6 x)");
}

// ---- memory ---------------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(second_order_graphs_in_a_loop_allocate_nothing_after_warm_up) {
  manual_seed(81);
  Tape tape;
  std::vector<Tensor> params{randn64({8, 4}), randn64({8}), randn64({3, 8}), randn64({3})};
  for (Tensor& p : params)
    p.requires_grad(true);
  const std::vector<Tensor> dirs{randn64({8, 4}), randn64({8}), randn64({3, 8}), randn64({3})};
  const Tensor x = randn64({5, 4});
  const Tensor t = from_vector(std::vector<std::int64_t>{0, 2, 1, 1, 0}, {5});
  const auto loss = [&](const std::vector<Tensor>& p) {
    return cross_entropy(linear(tanh(linear(x, p[0], p[1])), p[2], p[3]), t) + 1e-3 * sum(square(p[2]));
  };
  std::size_t allocations = 0, cached = 0, reserved = 0;
  std::uint32_t last_node = 0;
  std::vector<double> first_hv;
  for (int step = 0; step < 10; ++step) {
    if (step == 3) {
      allocations = tensor_memory_stats().heap_allocations;
      cached = tensor_memory_stats().cached_bytes;
      reserved = tape.bytes_reserved();
    }
    tape.reset();
    const std::vector<Tensor> g = grad(loss(params), params, {.create_graph = true});
    const std::vector<Tensor> hv = grad(g, params, dirs);
    // the record starts over each step: the gradient is the same node every time
    BOOST_TEST_REQUIRE(g[0].requires_grad());
    if (step == 0) last_node = g[0].node();
    BOOST_TEST(g[0].node() == last_node);
    if (step == 0) first_hv = hv[0].to_vector();
    BOOST_TEST(hv[0].to_vector() == first_hv);
  }
  BOOST_TEST(allocations > 0u);
  BOOST_TEST(tensor_memory_stats().heap_allocations == allocations);
  BOOST_TEST(tensor_memory_stats().cached_bytes == cached);
  BOOST_TEST(tape.bytes_reserved() == reserved);
  // the same through hvp(), which records on a tape of its own
  for (Tensor& p : params)
    p = p.detach();
  for (int step = 0; step < 8; ++step) {
    if (step == 3) allocations = tensor_memory_stats().heap_allocations;
    const std::vector<Tensor> hv = hvp(loss, params, dirs);
    const auto h2 = hv[2].to_vector();
    BOOST_TEST(std::any_of(h2.begin(), h2.end(), [](double e) { return e != 0.0; }));
  }
  BOOST_TEST(tensor_memory_stats().heap_allocations == allocations);
}

// ---- errors and linear functions ----------------------------------------------------------------

BOOST_AUTO_TEST_CASE(a_create_graph_gradient_dies_with_its_tape) {
  Tape tape;
  Tensor x = tensor({0.5, 2.0}, DType::float64);
  x.requires_grad(true);
  const Tensor g = grad(sum(exp(x) * x), {x}, {.create_graph = true})[0];
  BOOST_TEST_REQUIRE(g.requires_grad());
  tape.reset();
  const std::string e = error_of([&] { (void)grad({g}, {x}, {ones({2}, DType::float64)}); });
  BOOST_TEST(starts_with(e, "autodiff: grad: tensor of shape [2]"), e);
  BOOST_TEST(contains(e, "before the tape was reset"), e);
  const std::string e2 = error_of([&] { (void)sum(g); });
  BOOST_TEST(starts_with(e2, "autodiff: sum: tensor of shape [2]"), e2);
  // the values stay readable
  BOOST_TEST(std::fabs(g.at<double>({1}) - 3 * std::exp(2.0)) < 1e-12);
}

BOOST_AUTO_TEST_CASE(the_gradient_of_a_linear_function_is_a_constant) {
  Tape tape;
  Tensor x = tensor({0.5, -2.0, 1.0}, DType::float64);
  x.requires_grad(true);
  const Tensor c = tensor({1.0, 2.0, 3.0}, DType::float64);
  const Tensor g = grad(sum(x * c) + sum(x) * 2.0 - 4.0, {x}, {.create_graph = true})[0];
  BOOST_TEST(g.to_vector() == (std::vector<double>{3, 4, 5}));
  BOOST_TEST(!g.requires_grad()); // nothing of x is left in it
  // differentiating it again is the error of any output that does not require grad
  const std::string e = error_of([&] { (void)grad({g}, {x}, {ones({3}, DType::float64)}); });
  BOOST_TEST(starts_with(e, "autodiff: grad: output 0 (shape [3]) does not require grad"), e);
  // hessian and hvp of a linear (or constant) function are zeros of the right shape
  const auto linear_f = [&](const Tensor& v) { return sum(v * c) + sum(v) * 2.0 - 4.0; };
  const Tensor h = hessian(linear_f, x.detach());
  BOOST_TEST(h.shape().vec() == (std::vector<std::int64_t>{3, 3}));
  BOOST_TEST(h.to_vector() == std::vector<double>(9, 0.0));
  BOOST_TEST(hvp(linear_f, x.detach(), c).to_vector() == std::vector<double>(3, 0.0));
  const Tensor h0 = hessian([&](const Tensor&) { return sum(c); }, x.detach());
  BOOST_TEST(h0.to_vector() == std::vector<double>(9, 0.0));
  // a mixed case: linear in x, times a constant matrix product
  const Tensor m = tensor({{1.0, 2.0, 0.0}, {0.5, -1.0, 3.0}}, DType::float64);
  BOOST_TEST(hessian([&](const Tensor& v) { return sum(exp(matmul(m, c)) * matmul(m, v)); }, x.detach()).to_vector() ==
             std::vector<double>(9, 0.0));
}

// ---- float32 --------------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(create_graph_works_in_float32) {
  manual_seed(91);
  // H of logsumexp(x) + sum(x^3) / 3 is diag(s) - s s^T + diag(2 x)
  const std::vector<double> xv{0.3, -1.2, 0.8, 1.5};
  const Tensor x = from_vector(xv, {4}, DType::float32);
  const Tensor h = hessian([](const Tensor& v) { return logsumexp(v) + sum(v * v * v) / 3.0; }, x);
  BOOST_TEST((h.dtype() == DType::float32));
  const auto x32 = x.to_vector(); // the float32 values, exactly
  std::vector<double> want = softmax_jacobian(softmax_of(x32));
  for (std::size_t i = 0; i < 4; ++i)
    want[i * 4 + i] += 2 * x32[i];
  check_scaled(h.to_vector(), want, 1e-5, "float32 hessian");
  // hvp in float32 against the same matrix
  const Tensor v = from_vector(std::vector<double>{1.0, -0.5, 2.0, 0.25}, {4}, DType::float32);
  const Tensor hv = hvp([](const Tensor& t) { return logsumexp(t) + sum(t * t * t) / 3.0; }, x, v);
  BOOST_TEST((hv.dtype() == DType::float32));
  const auto vv = v.to_vector();
  std::vector<double> want_hv(4, 0.0);
  for (std::size_t i = 0; i < 4; ++i)
    for (std::size_t j = 0; j < 4; ++j)
      want_hv[i] += want[i * 4 + j] * vv[j];
  check_scaled(hv.to_vector(), want_hv, 1e-5, "float32 hvp");
}

BOOST_AUTO_TEST_CASE(derivative_helpers_name_the_bad_input) {
  const Tensor x = tensor({1.0, 2.0, 3.0}, DType::float64);
  const auto cube_sum = [](const Tensor& t) { return sum(t * t * t); };
  BOOST_TEST(starts_with(error_of([&] {
                           hvp(cube_sum, x, tensor({1.0, 2.0}, DType::float64));
                         }),
                         "autodiff: hvp: direction 0 has shape [2] and dtype float64, but must match [3] and float64"));
  BOOST_TEST(starts_with(error_of([&] { hvp([](const Tensor& t) { return t * 2.0; }, x, x); }),
                         "autodiff: hvp: f must return a one-element tensor, got shape [3]"));
  BOOST_TEST(starts_with(error_of([&] {
                           hvp([](const std::vector<Tensor>& t) { return sum(t[0]); }, std::vector<Tensor>{x, x}, {x});
                         }),
                         "autodiff: hvp: 1 directions given for 2 inputs"));
  BOOST_TEST(starts_with(error_of([&] {
                           hessian(cube_sum, from_vector(std::vector<std::int64_t>{1, 2}, {2}));
                         }),
                         "autodiff: hessian: input 0 (shape [2]) is int64, which is never differentiable"));
  BOOST_TEST(
      starts_with(error_of([&] {
                    hessian([](const Tensor& t) { return sum(t); }, zeros({1, 1, 1, 1, 1}));
                  }),
                  "autodiff: hessian: the result would have shape [1,1,1,1,1] ++ [1,1,1,1,1], more than 8 dimensions"));
  BOOST_TEST(starts_with(error_of([&] { vjp([](const Tensor& t) { return t * 2.0; }, x, ones({2}, DType::float64)); }),
                         "autodiff: vjp: u has shape [2] and dtype float64, but must match [3] and float64"));
  BOOST_TEST(starts_with(error_of([&] { jacobian([](const Tensor& t) { return t.to(DType::float32); }, x); }),
                         "autodiff: jacobian: f returns float32 for a float64 input"));
  BOOST_TEST(starts_with(error_of([&] { gradgradcheck([](const std::vector<Tensor>& t) { return t[0] * 2.0; }, {x}); }),
                         "autodiff: gradgradcheck: f must return a one-element tensor, got shape [3]"));
}

BOOST_AUTO_TEST_SUITE_END()
