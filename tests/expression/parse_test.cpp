// Values of parsed expressions against the same arithmetic written in C++.

#include <autodiff/autodiff.hpp>
#include <autodiff/expression.hpp>

#include <boost/test/unit_test.hpp>

#include <cmath>
#include <numbers>

using autodiff::Expression;

namespace {
double eval(std::string_view text, std::vector<double> values = {}) {
  return Expression::parse(text).evaluate<double>(values);
}
} // namespace

BOOST_AUTO_TEST_SUITE(parse)

BOOST_AUTO_TEST_CASE(precedence_and_associativity) {
  BOOST_TEST(eval("2^3^2") == 512.0);
  BOOST_TEST(eval("(2^3)^2") == 64.0);
  BOOST_TEST(eval("-2^2") == -4.0);
  BOOST_TEST(eval("(-2)^2") == 4.0);
  BOOST_TEST(eval("2*3+4") == 10.0);
  BOOST_TEST(eval("2+3*4") == 14.0);
  BOOST_TEST(eval("8/4/2") == 1.0);
  BOOST_TEST(eval("2-3-4") == -5.0);
  BOOST_TEST(eval("2*3^2") == 18.0);
  BOOST_TEST(eval("(2+3)*4") == 20.0);
  BOOST_TEST(eval("2^-1") == 0.5);
  BOOST_TEST(eval("2^-1^2") == 0.5); // 2^(-(1^2))
  BOOST_TEST(eval("4^+0.5") == 2.0);
  BOOST_TEST(eval("2^3*2") == 16.0); // ^ binds tighter than *
  BOOST_TEST(eval("x^-1", {4.0}) == 0.25);
  BOOST_TEST(eval("x^(-1)", {4.0}) == 0.25);
}

BOOST_AUTO_TEST_CASE(unary_signs_everywhere) {
  BOOST_TEST(eval("-3") == -3.0);
  BOOST_TEST(eval("--3") == 3.0);
  BOOST_TEST(eval("+-+3") == -3.0);
  BOOST_TEST(eval("2*-3") == -6.0);
  BOOST_TEST(eval("2--3") == 5.0);
  BOOST_TEST(eval("2/-4") == -0.5);
  BOOST_TEST(eval("-(2+3)") == -5.0);
  BOOST_TEST(eval("sin(-x)", {0.5}) == std::sin(-0.5));
  BOOST_TEST(eval("pow(-x, -2)", {2.0}) == 0.25);
  BOOST_TEST(eval("-x^2", {3.0}) == -9.0);
  BOOST_TEST(eval("-x*-y", {3.0, 2.0}) == 6.0);
}

BOOST_AUTO_TEST_CASE(numbers) {
  BOOST_TEST(eval("3") == 3.0);
  BOOST_TEST(eval("2.5") == 2.5);
  BOOST_TEST(eval(".5") == 0.5);
  BOOST_TEST(eval("5.") == 5.0);
  BOOST_TEST(eval("1e-3") == 1e-3);
  BOOST_TEST(eval("2.5E+4") == 2.5e4);
  BOOST_TEST(eval("  7 \t") == 7.0);
  BOOST_TEST(eval("4.9e-324") == 4.9e-324); // the smallest subnormal is in range
  BOOST_TEST(Expression::parse_number("-2.5e3") == -2500.0);
  BOOST_TEST(Expression::parse_number("+.5") == 0.5);
}

BOOST_AUTO_TEST_CASE(constants) {
  BOOST_TEST(eval("pi") == std::numbers::pi);
  BOOST_TEST(eval("e") == std::numbers::e);
  BOOST_TEST(eval("2*pi*r", {0.5}) == 2 * std::numbers::pi * 0.5);
  BOOST_TEST(Expression::parse("pi*e + x").variables() == std::vector<std::string>{"x"});
}

BOOST_AUTO_TEST_CASE(variables_in_order_of_first_appearance) {
  const Expression e = Expression::parse("b*a + c_1 - a/b + _z + sin(c_1)");
  BOOST_TEST(e.variables() == (std::vector<std::string>{"b", "a", "c_1", "_z"}));
  const double b = 1.5, a = -0.25, c = 3, z = 7;
  BOOST_TEST(e.evaluate<double>(std::vector{b, a, c, z}) == b * a + c - a / b + z + std::sin(c));
  // Names that merely start like a function or constant are variables.
  BOOST_TEST(Expression::parse("pi2 + exp_ + e1").variables() == (std::vector<std::string>{"pi2", "exp_", "e1"}));
}

BOOST_AUTO_TEST_CASE(every_function_matches_cmath) {
  struct Case {
    const char* text;
    double x;
    double expected;
  };
  const double x = 0.3;
  const Case cases[] = {
      {"exp(x)", x, std::exp(x)},
      {"log(x)", x, std::log(x)},
      {"log1p(x)", x, std::log1p(x)},
      {"expm1(x)", x, std::expm1(x)},
      {"sqrt(x)", x, std::sqrt(x)},
      {"cbrt(x)", x, std::cbrt(x)},
      {"square(x)", x, x * x},
      {"sin(x)", x, std::sin(x)},
      {"cos(x)", x, std::cos(x)},
      {"tan(x)", x, std::tan(x)},
      {"asin(x)", x, std::asin(x)},
      {"acos(x)", x, std::acos(x)},
      {"atan(x)", x, std::atan(x)},
      {"sinh(x)", x, std::sinh(x)},
      {"cosh(x)", x, std::cosh(x)},
      {"tanh(x)", x, std::tanh(x)},
      {"asinh(x)", x, std::asinh(x)},
      {"acosh(x)", 1 + x, std::acosh(1 + x)},
      {"atanh(x)", x, std::atanh(x)},
      {"sigmoid(x)", x, 1 / (1 + std::exp(-x))},
      {"relu(x)", -x, 0.0},
      {"relu(x)", x, x},
      {"softplus(x)", x, std::log(1 + std::exp(x))},
      {"abs(x)", -x, x},
      {"erf(x)", x, std::erf(x)},
      {"erfc(x)", x, std::erfc(x)},
      {"pow(x, 2.5)", x, std::pow(x, 2.5)},
      {"atan2(x, -1)", x, std::atan2(x, -1.0)},
      {"hypot(x, 0.4)", x, std::hypot(x, 0.4)},
      {"max(x, 0.2)", x, x},
      {"max(x, 0.4)", x, 0.4},
      {"min(x, 0.2)", x, 0.2},
      {"min(x, 0.4)", x, x},
  };
  for (const Case& c : cases) {
    BOOST_TEST_CONTEXT(c.text) {
      // sigmoid and softplus are computed in stable forms, so allow rounding there.
      BOOST_TEST(eval(c.text, {c.x}) == c.expected, boost::test_tools::tolerance(1e-15));
    }
  }
}

BOOST_AUTO_TEST_CASE(evaluate_checks_the_number_of_values) {
  const Expression e = Expression::parse("x + y");
  BOOST_CHECK_THROW(e.evaluate<double>(std::vector{1.0}), autodiff::Error);
  try {
    e.evaluate<double>(std::vector{1.0, 2.0, 3.0});
    BOOST_FAIL("no exception");
  } catch (const autodiff::Error& err) {
    BOOST_TEST(std::string(err.what()).find("2 variables (x, y) but 3 values") != std::string::npos);
  }
}

BOOST_AUTO_TEST_CASE(first_nonfinite_names_the_subexpression) {
  const Expression e = Expression::parse("x * log(x - 2) + 1");
  const auto nf = e.first_nonfinite(std::vector{1.0});
  BOOST_REQUIRE(nf.has_value());
  BOOST_TEST(e.source(nf->span) == "log(x - 2)");
  BOOST_TEST(std::isnan(nf->value));
  BOOST_TEST(!e.first_nonfinite(std::vector{3.0}).has_value());

  const Expression d = Expression::parse("(x - x) / (y - y) + 1");
  const auto nd = d.first_nonfinite(std::vector{1.0, 2.0});
  BOOST_REQUIRE(nd.has_value());
  BOOST_TEST(d.source(nd->span) == "(x - x) / (y - y)");

  // Inside a folded constant: the innermost part that went non-finite.
  const Expression c = Expression::parse("x + 2 * log(-1)");
  const auto nc = c.first_nonfinite(std::vector{1.0});
  BOOST_REQUIRE(nc.has_value());
  BOOST_TEST(c.source(nc->span) == "log(-1)");

  const Expression o = Expression::parse("exp(x) - exp(x)");
  const auto no = o.first_nonfinite(std::vector{1000.0});
  BOOST_REQUIRE(no.has_value());
  BOOST_TEST(o.source(no->span) == "exp(x)");
  BOOST_TEST(no->value == HUGE_VAL);
}

BOOST_AUTO_TEST_CASE(trace_visits_every_operation) {
  const Expression e = Expression::parse("x*y + 2");
  std::vector<std::pair<std::string, double>> seen;
  const double v = e.trace(std::vector{3.0, 4.0}, [&](autodiff::SourceSpan s, double value) {
    seen.emplace_back(std::string(e.source(s)), value);
  });
  BOOST_TEST(v == 14.0);
  BOOST_REQUIRE(seen.size() == 4u);
  BOOST_TEST(seen[0].first == "x");
  BOOST_TEST(seen[2].first == "x*y");
  BOOST_TEST(seen[2].second == 12.0);
  BOOST_TEST(seen[3].first == "x*y + 2");
}

BOOST_AUTO_TEST_CASE(deep_but_legal_nesting_and_long_chains) {
  std::string text;
  for (int i = 0; i < 150; ++i)
    text += "(";
  text += "x";
  for (int i = 0; i < 150; ++i)
    text += ")";
  BOOST_TEST(eval(text, {2.0}) == 2.0);
  // Left-associative chains are loops, not nesting: 3000 terms are fine.
  std::string sum = "x";
  for (int i = 0; i < 3000; ++i)
    sum += "+x";
  BOOST_TEST(eval(sum, {1.0}) == 3001.0);
}

BOOST_AUTO_TEST_SUITE_END()
