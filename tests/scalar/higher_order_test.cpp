// Gradients of gradients: known Hessians, HVPs, third order, every op of the table twice.

#include "op_table.hpp"

#include <autodiff/autodiff.hpp>

#include <boost/test/unit_test.hpp>
#include <fmt/format.h>

#include <random>

using namespace autodiff;

namespace {
template <class T> T rosenbrock(const std::vector<T>& x) {
  T s = x[0] * 0.0;
  for (std::size_t i = 0; i + 1 < x.size(); ++i)
    s = s + 100.0 * square(x[i + 1] - square(x[i])) + square(1.0 - x[i]);
  return s;
}
// Its Hessian, by hand.
Matrix rosenbrock_hessian(const std::vector<double>& x) {
  const std::size_t n = x.size();
  Matrix h(n, std::vector<double>(n, 0.0));
  for (std::size_t i = 0; i + 1 < n; ++i) {
    h[i][i] += 1200 * x[i] * x[i] - 400 * x[i + 1] + 2;
    h[i][i + 1] += -400 * x[i];
    h[i + 1][i] += -400 * x[i];
    h[i + 1][i + 1] += 200;
  }
  return h;
}
} // namespace

BOOST_AUTO_TEST_SUITE(higher_order)

BOOST_AUTO_TEST_CASE(rosenbrock_hessian_is_exact) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<double> u(-2, 2);
  for (std::size_t n : {2u, 5u, 12u}) {
    std::vector<double> x(n);
    for (auto& v : x)
      v = u(rng);
    const Matrix h = hessian([](const std::vector<Var>& v) { return rosenbrock(v); }, x);
    const Matrix want = rosenbrock_hessian(x);
    for (std::size_t i = 0; i < n; ++i)
      for (std::size_t j = 0; j < n; ++j)
        BOOST_TEST(std::fabs(h[i][j] - want[i][j]) <= 1e-12 * (1 + std::fabs(want[i][j])));
  }
}

BOOST_AUTO_TEST_CASE(quadratic_form_hessian_is_a_plus_a_transpose) {
  const Matrix a{{1.0, 2.0, -0.5}, {0.3, -4.0, 1.5}, {2.5, 0.0, 0.7}};
  auto f = [&](const std::vector<Var>& x) {
    Var s = x[0] * 0.0;
    for (std::size_t i = 0; i < 3; ++i)
      for (std::size_t j = 0; j < 3; ++j)
        s = s + x[i] * a[i][j] * x[j];
    return s;
  };
  const Matrix h = hessian(f, std::vector<double>{0.2, -1.0, 3.0});
  for (std::size_t i = 0; i < 3; ++i)
    for (std::size_t j = 0; j < 3; ++j)
      BOOST_TEST(h[i][j] == a[i][j] + a[j][i]);
}

BOOST_AUTO_TEST_CASE(logsumexp_hessian_is_the_softmax_jacobian) {
  const std::vector<double> x{0.5, -1.0, 2.0, 0.1};
  auto lse = [](const std::vector<Var>& v) {
    Var s = exp(v[0]);
    for (std::size_t i = 1; i < v.size(); ++i)
      s = s + exp(v[i]);
    return log(s);
  };
  double z = 0;
  for (double v : x)
    z += std::exp(v);
  const Matrix h = hessian(lse, x);
  for (std::size_t i = 0; i < x.size(); ++i)
    for (std::size_t j = 0; j < x.size(); ++j) {
      const double pi = std::exp(x[i]) / z, pj = std::exp(x[j]) / z;
      BOOST_TEST(std::fabs(h[i][j] - ((i == j ? pi : 0.0) - pi * pj)) < 1e-15);
    }
}

BOOST_AUTO_TEST_CASE(third_derivative_of_sin_x_squared) {
  for (double x0 : {-1.3, 0.4, 2.2}) {
    Tape tape;
    Var x = x0;
    const Var d1 = grad(sin(x * x), {x}, {.create_graph = true})[0];
    const Var d2 = grad(d1, {x}, {.create_graph = true})[0];
    const Var d3 = grad(d2, {x}, {.create_graph = true})[0];
    const double s = std::sin(x0 * x0), c = std::cos(x0 * x0);
    BOOST_TEST(std::fabs(d1.value() - 2 * x0 * c) < 1e-13);
    BOOST_TEST(std::fabs(d2.value() - (2 * c - 4 * x0 * x0 * s)) < 1e-12);
    BOOST_TEST(std::fabs(d3.value() - (-12 * x0 * s - 8 * x0 * x0 * x0 * c)) < 1e-11);
  }
}

// pow(a, b) at b == 0: d/da is 0 there but not in a neighbourhood, so its derivative in b (1/a) must
// survive. Dropping d/da at b == 0 gave d2/da db = 0 against d2/db da = 1/a, from create_graph,
// hessian and hvp alike. Only a == 0, where a^(b-1) is infinite, keeps it dropped. (Where a < 0,
// d/db is taken as 0, as PyTorch does, so only d2/da db = 1/a is left.)
BOOST_AUTO_TEST_CASE(pow_hessian_at_a_zero_exponent_is_symmetric) {
  const auto f = [](const std::vector<Var>& v) -> Var { return pow(v[0], v[1]); };
  for (double a : {2.0, 0.5, -3.0}) {
    const double l = a > 0 ? std::log(a) : 0.0; // d/db is taken as 0 where a <= 0
    const Matrix want = {{0.0, 1.0 / a}, {a > 0 ? 1.0 / a : 0.0, l * l}};
    const Matrix h = hessian(f, std::vector<double>{a, 0.0});
    Tape tape;
    Var x = a, y = 0.0;
    const std::vector<Var> g = grad(pow(x, y), {x, y}, {.create_graph = true});
    const std::vector<double> row0 = gradient(g[0], {x, y}), row1 = gradient(g[1], {x, y});
    const std::vector<double> hv0 = hvp(f, std::vector<double>{a, 0.0}, std::vector<double>{1.0, 0.0});
    for (std::size_t i = 0; i < 2; ++i)
      for (std::size_t j = 0; j < 2; ++j) {
        const double created = i == 0 ? row0[j] : row1[j];
        BOOST_TEST(std::fabs(h[i][j] - want[i][j]) < 1e-15,
                   fmt::format("a = {}: hessian[{}][{}] {}", a, i, j, h[i][j]));
        BOOST_TEST(std::fabs(created - want[i][j]) < 1e-15,
                   fmt::format("a = {}: create_graph [{}][{}] {}", a, i, j, created));
      }
    BOOST_TEST(std::fabs(hv0[1] - want[1][0]) < 1e-15, fmt::format("a = {}: hvp {}", a, hv0[1]));
  }
  // At a == 0 the first derivative in a stays 0 (not 0 * inf) and nothing is NaN.
  for (const auto& row : hessian(f, std::vector<double>{0.0, 0.0}))
    for (double v : row)
      BOOST_TEST(!std::isnan(v));
  Tape tape;
  Var x = 0.0, y = 0.0;
  BOOST_TEST(gradient(pow(x, y), {x, y}) == (std::vector<double>{0.0, 0.0}));
  Var n = std::nan(""), z = 0.0; // pow(NaN, 0) is 1 for every a: its derivative in a is 0
  BOOST_TEST(gradient(pow(n, z), {n})[0] == 0.0);
}

BOOST_AUTO_TEST_CASE(every_op_has_a_correct_second_derivative) {
  std::size_t checked = 0;
  for (const auto& op : tapegrad_test::op_table()) {
    for (const auto& p : op.points) {
      const GradcheckReport r = gradgradcheck(op.f, p, {.order = 4});
      BOOST_TEST_CONTEXT(fmt::format("{} at ({})\n{}", op.name, fmt::join(p, ", "), r)) { BOOST_TEST(r.passed); }
      ++checked;
    }
  }
  BOOST_TEST(checked >= 200u);
}

BOOST_AUTO_TEST_CASE(hvp_matches_differences_of_gradients) {
  auto f = [](const std::vector<Var>& x) { return rosenbrock(x) + sin(x[0] * x[2]) * exp(0.1 * x[1]); };
  const std::vector<double> x{0.3, -0.8, 1.1, 0.5};
  const std::vector<double> v{1.0, -2.0, 0.5, 0.25};
  const std::vector<double> hv = hvp(f, x, v);
  // (grad f(x + h v) - grad f(x - h v)) / 2h
  auto grad_at = [&](double h) {
    Tape tape;
    std::vector<Var> xs;
    for (std::size_t i = 0; i < x.size(); ++i)
      xs.push_back(x[i] + h * v[i]);
    return gradient(f(xs), xs);
  };
  const double h = 1e-5;
  const auto gp = grad_at(h), gm = grad_at(-h);
  for (std::size_t i = 0; i < x.size(); ++i)
    BOOST_TEST(std::fabs(hv[i] - (gp[i] - gm[i]) / (2 * h)) < 1e-5 * (1 + std::fabs(hv[i])));
  // and against the full Hessian
  const Matrix hm = hessian(f, x);
  for (std::size_t i = 0; i < x.size(); ++i) {
    double s = 0;
    for (std::size_t j = 0; j < x.size(); ++j)
      s += hm[i][j] * v[j];
    BOOST_TEST(std::fabs(hv[i] - s) < 1e-11 * (1 + std::fabs(s)));
  }
}

BOOST_AUTO_TEST_CASE(jacobian_and_vjp) {
  auto f = [](const std::vector<Var>& x) { return std::vector<Var>{x[0] * x[1], sin(x[1]), x[0] + 2.0 * x[1]}; };
  const std::vector<double> x{1.5, -0.5};
  const Matrix j = jacobian(f, x);
  const Matrix want{{-0.5, 1.5}, {0.0, std::cos(-0.5)}, {1.0, 2.0}};
  for (std::size_t r = 0; r < 3; ++r)
    for (std::size_t c = 0; c < 2; ++c)
      BOOST_TEST(j[r][c] == want[r][c]);
  const std::vector<double> u{2.0, -1.0, 0.5};
  const auto g = vjp(f, x, u);
  BOOST_TEST(std::fabs(g[0] - (2 * -0.5 + 0.5)) < 1e-15);
  BOOST_TEST(std::fabs(g[1] - (2 * 1.5 - std::cos(-0.5) + 1.0)) < 1e-15);
}

BOOST_AUTO_TEST_CASE(second_order_graphs_do_not_grow_memory) {
  Tape tape;
  std::size_t reserved = 0;
  for (int k = 0; k < 50; ++k) {
    tape.reset();
    Var x = 0.5 + 0.01 * k, y = -0.3;
    const auto g = grad(exp(x * y) + x * x * y, {x, y}, {.create_graph = true});
    const auto h = gradient(g[0] * g[1], {x, y});
    BOOST_TEST(std::isfinite(h[0]));
    if (k == 1) reserved = tape.bytes_reserved();
    if (k > 1) BOOST_TEST(tape.bytes_reserved() == reserved);
  }
}

BOOST_AUTO_TEST_CASE(grad_without_create_graph_returns_values) {
  Tape tape;
  Var x = 3.0;
  const auto g = grad(x * x, {x});
  BOOST_TEST(g[0].value() == 6.0);
  // g is a plain leaf: its own gradient with respect to x is 0
  BOOST_TEST(gradient(g[0], {x})[0] == 0.0);
}

BOOST_AUTO_TEST_CASE(helpers_nest_and_leave_the_callers_tape_active) {
  // hessian/hvp run on the thread's scratch tape; called from inside a function that gradcheck is
  // recording on that same scratch tape, they must use a fresh one and hand the scratch back.
  auto inner = [](const std::vector<Var>& v) { return v[0] * v[0] * v[1]; };
  auto f = [&](const std::vector<Var>& x) {
    const double c = hvp(inner, std::vector<double>{1.0, 2.0}, std::vector<double>{1.0, 0.0})[0]; // 2 x1 = 4
    return c * x[0] * x[1] + sin(x[1]);
  };
  const GradcheckReport r = gradcheck(f, std::vector<double>{0.5, -1.0});
  BOOST_TEST(r.passed);
  BOOST_TEST(std::fabs(r.analytic[0] - 4 * -1.0) < 1e-15);
  Tape tape;
  Var x = 3.0;
  const Matrix h = hessian(inner, std::vector<double>{1.0, 2.0});
  BOOST_TEST(h[0][0] == 4.0);
  BOOST_TEST(&Tape::active() == &tape);
  Var y = x * x; // still records on the caller's tape
  BOOST_TEST(gradient(y, {x})[0] == 6.0);
}

BOOST_AUTO_TEST_SUITE_END()
