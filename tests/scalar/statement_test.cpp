// Statements (docs/design.md, "Note [Statements]"): an expression of Vars records all its nodes when
// it becomes a Var, exactly the nodes the ops recorded one at a time, and an expression kept with
// `auto` is safe.

#include <autodiff/autodiff.hpp>

#include <boost/test/unit_test.hpp>

#include <cmath>
#include <functional>
#include <string>
#include <type_traits>
#include <vector>

using namespace autodiff;

namespace {
// The op names of the nodes from `first` on.
std::vector<std::string> ops_after(const Tape& t, std::size_t first) {
  std::vector<std::string> ops;
  const auto nodes = t.nodes();
  for (std::size_t i = first; i < nodes.size(); ++i)
    ops.emplace_back(op_name(nodes[i].op));
  return ops;
}

// Generic user code that keeps an intermediate with `auto`: with Var it is an expression, used twice.
template <class T> T twice_used(const T& a, const T& b) {
  auto t = a * b - 1.0;
  return t * t + sin(t) / b;
}
} // namespace

BOOST_AUTO_TEST_SUITE(statements)

BOOST_AUTO_TEST_CASE(a_statement_records_its_nodes_in_reading_order) {
  Tape tape;
  const Var a = 1.5, b = -2.0, c = 0.25, d = 4.0;
  const Var y = a * b + exp(c * d) * 2.0;
  const auto nodes = tape.nodes();
  BOOST_TEST(tape.size() == 9u);
  const std::vector<std::string> expected{"mul", "mul", "exp", "mul_scalar", "add"};
  BOOST_TEST(ops_after(tape, 4) == expected, boost::test_tools::per_element());
  BOOST_TEST(nodes[4].operands[0] == a.index());
  BOOST_TEST(nodes[4].operands[1] == b.index());
  BOOST_TEST(nodes[5].operands[0] == c.index());
  BOOST_TEST(nodes[5].operands[1] == d.index());
  BOOST_TEST(nodes[6].operands[0] == 5u);
  BOOST_TEST(nodes[7].operands[0] == 6u);
  BOOST_TEST(*nodes[7].constant == 2.0);
  BOOST_TEST(nodes[8].operands[0] == 4u);
  BOOST_TEST(nodes[8].operands[1] == 7u);
  BOOST_TEST(y.index() == 8u);
  // Every node holds its own value, as when each op recorded itself.
  BOOST_TEST(nodes[4].value == -3.0);
  BOOST_TEST(nodes[6].value == std::exp(1.0));
  BOOST_TEST(y.value() == -3.0 + std::exp(1.0) * 2.0);
  const auto g = gradient(y, {a, b, c, d});
  BOOST_TEST(g[0] == -2.0);
  BOOST_TEST(g[1] == 1.5);
  BOOST_TEST(g[2] == 2.0 * std::exp(1.0) * 4.0);
  BOOST_TEST(g[3] == 2.0 * std::exp(1.0) * 0.25);
}

BOOST_AUTO_TEST_CASE(every_op_builds_the_statement_that_reads_it) {
  // An op of one Var (and a constant) and a function of two are expressions too, so that
  // `z + p * 2.0` is one statement, as it is for the peers' expression templates.
  static_assert(VarExpression<decltype(exp(std::declval<const Var&>()))>);
  static_assert(VarExpression<decltype(std::declval<const Var&>() * 2.0)>);
  static_assert(VarExpression<decltype(-std::declval<const Var&>())>);
  static_assert(VarExpression<decltype(pow(std::declval<const Var&>(), std::declval<const Var&>()))>);
  static_assert(VarExpression<decltype(exp(std::declval<const Var&>() * std::declval<const Var&>()))>);
  static_assert(!std::is_convertible_v<decltype([](const Var& a) { return exp(a); }), Var (*)(const Var&)>);
  // A lambda that should be a function of Var says so: `-> Var` records the statement at its return.
  Var (*f)(const Var&) = [](const Var& a) -> Var { return exp(a); };
  const std::function<Var(const Var&)> g = [](const Var& a) { return exp(a); };
  Tape tape;
  const Var x = 0.5, z = 2.0;
  BOOST_TEST(f(x).value() == std::exp(0.5));
  BOOST_TEST(g(x).value() == std::exp(0.5));
  const std::size_t before = tape.size();
  const Var y = z + x * 2.0 - exp(x) / -z;
  const std::vector<std::string> expected{"mul_scalar", "add", "exp", "neg", "div", "sub"};
  BOOST_TEST(ops_after(tape, before) == expected, boost::test_tools::per_element());
  BOOST_TEST(y.value() == 2.0 + 1.0 + std::exp(0.5) / 2.0);
}

BOOST_AUTO_TEST_CASE(an_expression_kept_with_auto_records_where_it_becomes_a_var) {
  Tape tape;
  const Var x = 3.0, y = 0.5;
  auto e = x * y + x; // nothing recorded yet
  BOOST_TEST(tape.size() == 2u);
  BOOST_TEST(e.value() == 4.5);
  const Var first = e;
  const Var second = e; // recorded again: two nodes more, same values
  BOOST_TEST(tape.size() == 6u);
  BOOST_TEST(first.value() == second.value());
  const auto g1 = gradient(first, {x, y});
  const auto g2 = gradient(second, {x, y});
  BOOST_TEST(g1 == g2, boost::test_tools::per_element());
  BOOST_TEST(g1[0] == 1.5);
  BOOST_TEST(g1[1] == 3.0);
}

BOOST_AUTO_TEST_CASE(generic_code_with_auto_gives_the_double_values_and_the_gradient) {
  const double a = 0.7, b = -1.3;
  Tape tape;
  const Var va = a, vb = b;
  const Var y = twice_used(va, vb);
  // The same operations on the same values (not bit for bit: the compiler may contract the double
  // version's t * t + ... into a fused multiply-add).
  BOOST_TEST(y.value() == twice_used(a, b), boost::test_tools::tolerance(1e-15));
  const auto g = gradient(y, {va, vb});
  const double t = a * b - 1.0;
  const double dt = 2.0 * t + std::cos(t) / b; // d/dt of t^2 + sin(t)/b
  BOOST_TEST(g[0] == dt * b, boost::test_tools::tolerance(1e-14));
  BOOST_TEST(g[1] == dt * a - std::sin(t) / (b * b), boost::test_tools::tolerance(1e-14));
}

BOOST_AUTO_TEST_CASE(an_expression_recorded_on_another_tape_throws_naming_the_op) {
  Tape first;
  const Var x = 2.0, y = 3.0;
  auto e = exp(x * y) + 1.0;
  Tape second; // now active: x and y are not on it
  BOOST_CHECK_EXCEPTION((void)Var(e), Error,
                        [](const Error& err) { return std::string(err.what()).find("mul") != std::string::npos; });
  BOOST_TEST(second.size() == 0u);
}

BOOST_AUTO_TEST_CASE(a_statement_that_does_not_fit_grows_the_tape) {
  // Each statement tests the capacity once for all its nodes (and constants): fill the tape and the
  // constant stream to just below their first capacity, then record statements that straddle it.
  for (std::size_t fill = 1018; fill < 1030; ++fill) {
    Tape tape;
    Var x = 1.25;
    Var s = x * 1.0;
    while (tape.size() < fill)
      s = s * 1.0; // one mul_scalar node and one constant each
    // s equals x, so y = exp(x^2 / 2) / 4 + 0; every op takes an expression or two operands, so
    // y is one statement of 9 nodes and 3 constants.
    const Var y = exp((s * x) * 0.5) / 4.0 + (s + x) * (x - s) * 3.0;
    BOOST_TEST(y.value() == std::exp(1.25 * 1.25 * 0.5) / 4.0);
    const auto g = gradient(y, {x});
    BOOST_TEST(g[0] == 1.25 * std::exp(1.25 * 1.25 * 0.5) / 4.0, boost::test_tools::tolerance(1e-14));
    const auto nodes = tape.nodes();
    BOOST_TEST(nodes.size() == fill + 9);
    const std::vector<std::string> expected{"mul", "mul_scalar", "exp",        "div_scalar", "add",
                                            "sub", "mul",        "mul_scalar", "add"};
    BOOST_TEST(ops_after(tape, fill) == expected, boost::test_tools::per_element());
    // The constant stream kept its order across the growth.
    BOOST_TEST(*nodes[fill - 1].constant == 1.0);
    BOOST_TEST(*nodes[fill + 1].constant == 0.5);
    BOOST_TEST(*nodes[fill + 3].constant == 4.0);
    BOOST_TEST(*nodes[fill + 7].constant == 3.0);
  }
}

BOOST_AUTO_TEST_CASE(a_rule_records_a_value_it_uses_twice_once) {
  // div's rule uses g / b for both operands (rules::once): a create_graph sweep of a / b records the
  // seed, g / b, (g / b) * r and its negation, 4 nodes; recording g / b at each use would make 5.
  Tape tape;
  const Var a = 3.0, b = 2.0;
  const Var y = a / b;
  const std::size_t before = tape.size();
  const std::vector<Var> g = grad(y, {a, b}, {.create_graph = true});
  BOOST_TEST(tape.size() - before == 4u);
  BOOST_TEST(g[0].value() == 0.5);
  BOOST_TEST(g[1].value() == -0.75);
}

BOOST_AUTO_TEST_SUITE_END()
