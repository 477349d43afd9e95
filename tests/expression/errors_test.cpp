// Every kind of syntax error: its position, what was expected, and the caret under the text.

#include <autodiff/expression.hpp>

#include <boost/test/unit_test.hpp>

#include <cmath>
#include <string>
#include <vector>

using autodiff::Expression;
using autodiff::ParseError;

namespace {
struct Caught {
  std::size_t position;
  std::string expected;
  std::string what;
};

Caught error_of(std::string_view text) {
  try {
    (void)Expression::parse(text);
  } catch (const ParseError& e) {
    return {e.position, e.expected, e.what()};
  }
  BOOST_FAIL("no ParseError for '" << text << "'");
  return {};
}

// The caret line is the last line; its '^' sits under column `position` of the echoed text.
std::size_t caret_column(const std::string& what) {
  const std::size_t last = what.rfind('\n');
  return what.find('^', last) - last - 1 - 2; // two spaces of indent
}

void expect(std::string_view text, std::size_t position, std::string_view in_message) {
  BOOST_TEST_CONTEXT("'" << text << "'") {
    const Caught c = error_of(text);
    BOOST_TEST(c.position == position);
    BOOST_TEST(caret_column(c.what) == position);
    BOOST_TEST(c.what.find(in_message) != std::string::npos, c.what);
    BOOST_TEST(c.what.starts_with("autodiff: parse: column " + std::to_string(position + 1) + ": "), c.what);
  }
}
} // namespace

BOOST_AUTO_TEST_SUITE(parse_errors)

BOOST_AUTO_TEST_CASE(each_kind_with_its_caret) {
  expect("", 0, "expected an expression, found end of input");
  expect("   ", 3, "found end of input");
  expect("x + # y", 4, "found '#'");
  expect("x y", 2, "found 'y' (multiplication is written with '*')");
  expect("2x", 1, "multiplication is written with '*'");
  expect("x + 1)", 5, "unmatched ')'");
  expect("(x + 1", 6, "expected ')' to close the '(' at column 1, found end of input");
  expect("sin(x", 5, "expected ',' or ')' in the arguments of sin");
  expect("*", 0, "expected an operand");
  expect("+", 1, "found end of input");
  expect("x +", 3, "found end of input");
  expect("x * / y", 4, "found '/'");
  expect("x ^", 3, "found end of input");
  expect("()", 1, "found ')'");
  expect("1e", 2, "expected the digits of the exponent after '1e'");
  expect("2.5e+x", 5, "digits of the exponent");
  expect("1e999", 0, "the number 1e999 is too large for a double");
  expect("foo(x)", 0, "unknown function 'foo'");
  expect("sin x", 4, "expected '(' after the function name 'sin'");
  expect("sin", 3, "expected '(' after the function name 'sin', found end of input");
  expect("pow(x)", 5, "pow takes 2 arguments, found 1");
  expect("sin()", 4, "sin takes 1 argument, found 0");
  expect("sin(x, y)", 5, "sin takes 1 argument, found more");
  expect("max(1, 2, 3)", 8, "max takes 2 arguments, found more");
  expect("x + \xCF\x80", 4, "byte 0xCF (not ASCII; only ASCII is accepted)");
  expect("x .", 2, "found '.'");
}

BOOST_AUTO_TEST_CASE(expected_field) {
  BOOST_TEST(error_of("pow(x)").expected == "2 arguments");
  BOOST_TEST(error_of("(x").expected == "')'");
  BOOST_TEST(error_of("x +").expected.starts_with("an operand"));
}

BOOST_AUTO_TEST_CASE(caret_line_shows_the_text) {
  const Caught c = error_of("x + * y");
  BOOST_TEST(c.what == "autodiff: parse: column 5: expected an operand (a number, a variable, a function call or '('), "
                       "found '*'\n  x + * y\n      ^");
  // Tabs and non-ASCII bytes take one column each, so the caret still lines up.
  const Caught t = error_of("x\t+\t\x01");
  BOOST_TEST(t.position == 4u);
  BOOST_TEST(t.what.ends_with("\n  x + ?\n      ^"), t.what);
}

BOOST_AUTO_TEST_CASE(depth_limit) {
  std::string deep(Expression::max_depth + 1, '(');
  deep += "x";
  const Caught c = error_of(deep);
  BOOST_TEST(c.position == Expression::max_depth);
  BOOST_TEST(c.what.find("nests deeper than 200 levels") != std::string::npos);
  // Signs, exponents and calls count as nesting too.
  BOOST_TEST(error_of(std::string(1000, '-') + "x").what.find("nests deeper") != std::string::npos);
  std::string tower = "x";
  for (int i = 0; i < 1000; ++i)
    tower += "^x";
  BOOST_TEST(error_of(tower).what.find("nests deeper") != std::string::npos);
  std::string calls;
  for (int i = 0; i < 300; ++i)
    calls += "sin(";
  BOOST_TEST(error_of(calls + "x").what.find("nests deeper") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(length_limit) {
  std::string long_text = "x";
  while (long_text.size() <= Expression::max_length)
    long_text += "+x";
  const Caught c = error_of(long_text);
  BOOST_TEST(c.what.find("the limit is 10000") != std::string::npos);
  BOOST_TEST(c.what.size() < 500u); // the echo is a window, not the whole text
}

// 0x01 is ASCII: it is named as the control character it is.
BOOST_AUTO_TEST_CASE(control_characters_are_named_as_such) {
  expect("x + \x01", 4, "found the control character 0x01");
  expect("x\x7f", 1, "the control character 0x7F");
  BOOST_TEST(error_of("x + \x01").what.find("only ASCII") == std::string::npos);
}

// Numbers too small for a double round to 0 as 1e-320 rounds to a subnormal: no error for one and
// not the other. Too large ones are errors that quote a long literal by its ends.
BOOST_AUTO_TEST_CASE(number_range) {
  BOOST_TEST(Expression::parse_number("1e-320") == 1e-320);
  BOOST_TEST(Expression::parse_number("1e-400") == 0.0);
  BOOST_TEST(std::signbit(Expression::parse_number("-1e-400")));
  BOOST_TEST(Expression::parse_number("0.00001e-320") == 0.0);
  BOOST_TEST(Expression::parse_number("123e306") == 1.23e308);
  BOOST_TEST(Expression::parse_number("0.001e311") == 1e308);
  BOOST_CHECK_THROW(Expression::parse_number("1000e306"), ParseError);
  BOOST_CHECK_THROW(Expression::parse_number("1e99999999999999999999"), ParseError);
  BOOST_TEST(Expression::parse_number("1e-99999999999999999999") == 0.0);
  BOOST_TEST(Expression::parse("x * 1e-400").evaluate<double>(std::vector<double>{2.0}) == 0.0);
  const Caught huge = error_of("x + 1" + std::string(9000, '0'));
  BOOST_TEST(huge.position == 4u);
  BOOST_TEST(huge.what.find("the number 10000000000000000000...0000000000 (9001 characters) is too large") !=
                 std::string::npos,
             huge.what);
  BOOST_TEST(huge.what.size() < 500u);
}

BOOST_AUTO_TEST_CASE(parse_number_errors) {
  BOOST_CHECK_THROW(Expression::parse_number(""), ParseError);
  BOOST_CHECK_THROW(Expression::parse_number("x"), ParseError);
  BOOST_CHECK_THROW(Expression::parse_number("1.5x"), ParseError);
  BOOST_CHECK_THROW(Expression::parse_number("--1"), ParseError);
  BOOST_CHECK_THROW(Expression::parse_number("1e400"), ParseError);
  BOOST_CHECK_THROW(Expression::parse_number("nan"), ParseError);
  BOOST_CHECK_THROW(Expression::parse_number("inf"), ParseError);
  try {
    Expression::parse_number("1.5x");
  } catch (const ParseError& e) {
    BOOST_TEST(e.position == 3u);
  }
}

BOOST_AUTO_TEST_SUITE_END()
