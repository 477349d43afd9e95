// Every op of the table: forward value against <cmath>, gradient against finite differences.

#include "op_table.hpp"

#include <boost/test/unit_test.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <string>

using namespace autodiff;
using tapegrad_test::op_table;

namespace {
// The op codes of TAPEGRAD_SCALAR_OPS (leaves aside) that no row of `table` records, by name.
std::vector<std::string> ops_missing_from(const std::vector<tapegrad_test::OpInfo>& table) {
  std::vector<OpCode> seen;
  for (const auto& op : table) {
    Tape tape;
    const std::vector<Var> x(op.points[0].begin(), op.points[0].end());
    op.f(x);
    for (const NodeInfo& n : tape.nodes())
      seen.push_back(n.op);
  }
  std::vector<std::string> missing;
#define TAPEGRAD_X(Name)                                                                                               \
  if (OpCode::Name != OpCode::Leaf && std::find(seen.begin(), seen.end(), OpCode::Name) == seen.end())                 \
    missing.emplace_back(op_name(OpCode::Name));
  TAPEGRAD_SCALAR_OPS(TAPEGRAD_X)
#undef TAPEGRAD_X
  return missing;
}
} // namespace

BOOST_AUTO_TEST_SUITE(ops)

BOOST_AUTO_TEST_CASE(forward_values_match_cmath) {
  for (const auto& op : op_table()) {
    for (const auto& p : op.points) {
      Tape tape;
      const std::vector<Var> x(p.begin(), p.end());
      const double got = op.f(x).value();
      const double want = op.reference(p);
      BOOST_TEST_CONTEXT(fmt::format("{} at ({})", op.name, fmt::join(p, ", "))) {
        BOOST_TEST(std::fabs(got - want) <= 1e-14 * std::fmax(1.0, std::fabs(want)));
      }
    }
  }
}

BOOST_AUTO_TEST_CASE(gradients_match_finite_differences) {
  std::size_t checked = 0;
  for (const auto& op : op_table()) {
    for (const auto& p : op.points) {
      const GradcheckReport r = gradcheck(op.f, p);
      BOOST_TEST_CONTEXT(fmt::format("{} at ({})\n{}", op.name, fmt::join(p, ", "), r)) { BOOST_TEST(r.passed); }
      ++checked;
    }
  }
  BOOST_TEST(checked >= 200u);
}

BOOST_AUTO_TEST_CASE(every_op_code_is_in_the_table) {
  const std::vector<std::string> missing = ops_missing_from(op_table());
  BOOST_TEST(missing.empty(), "no row of the op table records " << fmt::format("{}", fmt::join(missing, ", ")));
}

BOOST_AUTO_TEST_CASE(the_completeness_check_reports_a_missing_op) {
  // Without its rows the check names the op: the last op code (erfc), and max, whose max_scalar
  // row records a different op code.
  auto table = op_table();
  std::erase_if(table, [](const auto& op) { return op.name == "erfc" || op.name == "max"; });
  BOOST_TEST((ops_missing_from(table) == std::vector<std::string>{"max", "erfc"}));
}

BOOST_AUTO_TEST_CASE(stable_at_large_magnitudes) {
  Tape tape;
  for (double a : {-1000.0, -700.0, -40.0, 40.0, 700.0, 1000.0}) {
    Var x = a;
    Var s = sigmoid(x), sp = softplus(x);
    BOOST_TEST(std::isfinite(s.value()));
    BOOST_TEST(std::isfinite(sp.value()));
    const auto gs = gradient(s, {x});
    const auto gsp = gradient(sp, {x});
    // sigmoid'(a) = e^-|a| / (1 + e^-|a|)^2 and softplus'(a) = sigmoid(a), from closed forms.
    const double e = std::exp(-std::fabs(a));
    BOOST_TEST(std::fabs(gs[0] - e / ((1 + e) * (1 + e))) <= 1e-15 * std::fmax(e, 1e-300) + 1e-300);
    const double sig = a > 0 ? 1 / (1 + e) : e / (1 + e);
    BOOST_TEST(std::fabs(gsp[0] - sig) <= 1e-15 * sig + 1e-300);
    BOOST_TEST(sp.value() == (a > 0 ? a + std::log1p(e) : std::log1p(e)));
  }
  // The sigmoid derivative stays accurate where s is close to 1: relative error near 1 ulp.
  Var x = 30.0;
  const double want = std::exp(-30.0) / std::pow(1 + std::exp(-30.0), 2);
  BOOST_TEST(std::fabs(gradient(sigmoid(x), {x})[0] - want) <= 1e-15 * want);
}

BOOST_AUTO_TEST_CASE(pow_edge_cases_give_no_nan) {
  Tape tape;
  Var a = 0.0, b = 2.0;
  const auto g = gradient(pow(a, b), {a, b});
  BOOST_TEST(g[0] == 0.0);
  BOOST_TEST(g[1] == 0.0);
  Var c = 3.0, zero = 0.0;
  const auto g2 = gradient(pow(c, zero), {c, zero});
  BOOST_TEST(g2[0] == 0.0);
  BOOST_TEST(g2[1] == std::log(3.0));
  Var n = -2.0, three = 3.0;
  const auto g3 = gradient(pow(n, three), {n, three});
  BOOST_TEST(g3[0] == 12.0);
  BOOST_TEST(g3[1] == 0.0);
}

BOOST_AUTO_TEST_CASE(ties_split_the_gradient) {
  Tape tape;
  Var a = 1.0, b = 1.0;
  const auto g = gradient(max(a, b), {a, b});
  BOOST_TEST(g[0] == 0.5);
  BOOST_TEST(g[1] == 0.5);
  const auto h = gradient(relu(Var(0.0)) + abs(a - b), {a, b});
  BOOST_TEST(h[0] == 0.0);
  BOOST_TEST(h[1] == 0.0);
}

BOOST_AUTO_TEST_SUITE_END()
