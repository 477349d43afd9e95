// Note [Zero adjoints] (docs/design.md): a create_graph gradient has the first-order gradient's
// value exactly, NaN and inf included, where a partial derivative is infinite and the adjoint is 0;
// and it stays differentiable there, in the operands and in the adjoint.

#include "op_table.hpp"

#include <autodiff/autodiff.hpp>

#include <boost/test/unit_test.hpp>
#include <fmt/format.h>

using namespace autodiff;
using tapegrad_test::op_table;

namespace {
bool same_value(double a, double b) { return (std::isnan(a) && std::isnan(b)) || a == b; }

// The op's own points and those built from tapegrad_test::edges.
std::vector<std::vector<double>> points_of(const tapegrad_test::OpInfo& op, bool finite_only = false) {
  std::vector<std::vector<double>> out = op.points;
  for (auto& p : tapegrad_test::edge_points(op, finite_only))
    out.push_back(std::move(p));
  return out;
}

std::string where(const tapegrad_test::OpInfo& op, const std::vector<double>& p) {
  return fmt::format("{} at ({})", op.name, fmt::join(p, ", "));
}
} // namespace

BOOST_AUTO_TEST_SUITE(zero_adjoints)

BOOST_AUTO_TEST_CASE(sqrt_times_zero_plus_x_at_zero) {
  // The example: y = x wherever sqrt(x) is defined, and dy/dx = 1 at 0 as well.
  auto f = [](const std::vector<Var>& x) { return sqrt(x[0]) * 0.0 + x[0]; };
  {
    Tape tape;
    Var x = 0.0;
    const Var y = f({x});
    BOOST_TEST(gradient(y, {x})[0] == 1.0);
    const Var g = grad(y, {x}, {.create_graph = true})[0];
    BOOST_TEST(g.value() == 1.0);
    BOOST_TEST(gradient(g, {x})[0] == 0.0);
  }
  const std::vector<double> at{0.0};
  BOOST_TEST(hessian(f, at)[0][0] == 0.0);
  BOOST_TEST(hvp(f, at, std::vector<double>{1.0})[0] == 0.0);
  const GradcheckReport r = gradgradcheck(f, at);
  BOOST_TEST(r.passed, fmt::format("{}", r));
}

BOOST_AUTO_TEST_CASE(create_graph_gradient_equals_first_order_gradient_everywhere) {
  // For every op and point: y = op(x) (the op's adjoint is 1) and y = op(x) * 0 + sum x (its
  // adjoint is 0). The create_graph gradient must have the first-order value, NaN for NaN.
  std::size_t checked = 0;
  for (const auto& op : op_table()) {
    for (const auto& p : points_of(op)) {
      for (const bool zero : {false, true}) {
        Tape tape;
        const std::vector<Var> x(p.begin(), p.end());
        Var y = op.f(x);
        if (zero) {
          y = y * 0.0;
          for (const Var& xi : x)
            y = y + xi;
        }
        const std::vector<double> first = gradient(y, x);
        const std::vector<Var> second = grad(y, x, {.create_graph = true});
        for (std::size_t i = 0; i < x.size(); ++i)
          BOOST_TEST(same_value(second[i].value(), first[i]), where(op, p) << (zero ? " times 0" : "") << ", d/dx" << i
                                                                           << ": create_graph " << second[i].value()
                                                                           << ", first order " << first[i]);
        ++checked;
      }
    }
  }
  BOOST_TEST(checked >= 1000u);
}

BOOST_AUTO_TEST_CASE(a_zero_adjoint_keeps_its_derivative) {
  // y = z * op(x) at z = 0: the op's adjoint is z, of value 0 but not constant. dy/dx = z op'(x)
  // is 0 (first order), and d/dz of it is op'(x) wherever that is finite: a zero adjoint must not
  // be dropped where the partial derivative is finite (a JVP taken as the derivative of a VJP in
  // its seed relies on it).
  for (const auto& op : op_table()) {
    for (const auto& p : points_of(op)) {
      Tape tape;
      const std::vector<Var> x(p.begin(), p.end());
      Var z = 0.0;
      const Var fx = op.f(x);
      const std::vector<double> partial = gradient(fx, x);
      const Var y = z * fx;
      const std::vector<double> first = gradient(y, x);
      const std::vector<Var> g = grad(y, x, {.create_graph = true});
      for (std::size_t i = 0; i < x.size(); ++i) {
        BOOST_TEST_CONTEXT(where(op, p) << ", d/dx" << i) {
          BOOST_TEST(same_value(g[i].value(), first[i]), "create_graph " << g[i].value() << ", first " << first[i]);
          if (!std::isfinite(partial[i])) continue;
          const double dz = gradient(g[i], {z})[0];
          BOOST_TEST(std::fabs(dz - partial[i]) <= 1e-14 * std::fabs(partial[i]),
                     "d/dz " << dz << ", partial " << partial[i]);
        }
      }
    }
  }
}

BOOST_AUTO_TEST_CASE(second_derivatives_through_a_zero_adjoint) {
  // y = op(x) * 0 + sum x is sum x wherever op is defined: its Hessian is 0, and no NaN of the
  // op's partial derivative may leak into it, by hessian, hvp or gradgradcheck.
  for (const auto& op : op_table()) {
    auto f = [&](const std::vector<Var>& x) {
      Var y = op.f(x) * 0.0;
      for (const Var& xi : x)
        y = y + xi;
      return y;
    };
    for (const auto& p : points_of(op, true)) {
      BOOST_TEST_CONTEXT(where(op, p)) {
        const Matrix h = hessian(f, p);
        for (const auto& row : h)
          for (double v : row)
            BOOST_TEST(v == 0.0);
        const std::vector<double> ones(p.size(), 1.0);
        for (double v : hvp(f, p, ones))
          BOOST_TEST(v == 0.0);
        const GradcheckReport r = gradgradcheck(f, p);
        BOOST_TEST(r.passed, fmt::format("{}", r));
      }
    }
  }
}

BOOST_AUTO_TEST_SUITE_END()
