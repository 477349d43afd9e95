// Parsed expressions record what the same C++ code records, and differentiate identically.

#include <autodiff/autodiff.hpp>
#include <autodiff/dot.hpp>
#include <autodiff/expression.hpp>

#include <boost/test/unit_test.hpp>

#include <algorithm>

using namespace autodiff;

namespace {
std::vector<OpCode> ops_of(const Tape& t) {
  std::vector<OpCode> ops;
  for (const NodeInfo& n : t.nodes())
    ops.push_back(n.op);
  return ops;
}

// Gradient of the parsed text at p, on a tape of its own.
std::vector<double> parsed_gradient(std::string_view text, const std::vector<double>& p, double* value = nullptr) {
  const Expression e = Expression::parse(text);
  Tape tape;
  const std::vector<Var> xs(p.begin(), p.end());
  const Var y = e.evaluate<Var>(xs);
  if (value) *value = y.value();
  return gradient(y, xs);
}
} // namespace

BOOST_AUTO_TEST_SUITE(expression_tape)

BOOST_AUTO_TEST_CASE(constant_operand_is_not_a_leaf) {
  const Expression e = Expression::parse("x * 2");
  Tape tape;
  const Var x = 1.5;
  const Var y = e.evaluate<Var>(std::vector{x});
  BOOST_TEST(tape.size() == 2u); // the leaf x and one mul_scalar
  const auto nodes = tape.nodes();
  BOOST_TEST((nodes[1].op == OpCode::MulC));
  BOOST_TEST(nodes[1].constant.value() == 2.0);
  BOOST_TEST(y.value() == 3.0);
}

BOOST_AUTO_TEST_CASE(constant_forms_match_cpp) {
  Tape tape;
  const Var x = 1.5;
  const std::vector<Var> xs{x};
  struct Case {
    const char* text;
    std::vector<OpCode> ops; // after the leaf
  };
  const Case cases[] = {
      {"x^3", {OpCode::PowC}},
      {"x^(1+2)", {OpCode::PowC}}, // folded exponent
      {"2^x", {OpCode::RPowC}},
      {"x + 1", {OpCode::AddC}},
      {"1 + x", {OpCode::AddC}},
      {"x - 1", {OpCode::AddC}},
      {"1 - x", {OpCode::RSubC}},
      {"x / 4", {OpCode::DivC}},
      {"4 / x", {OpCode::RDivC}},
      {"2*pi*x", {OpCode::MulC}}, // 2*pi folds to one constant
      {"max(x, 0)", {OpCode::MaxC}},
      {"min(0, x)", {OpCode::MinC}},
      {"-x", {OpCode::Neg}},
      {"+x", {}},
      {"sin(x)*cos(2)", {OpCode::Sin, OpCode::MulC}},
  };
  for (const Case& c : cases) {
    BOOST_TEST_CONTEXT(c.text) {
      tape.reset();
      const Var xr = 1.5;
      (void)Expression::parse(c.text).evaluate<Var>(std::vector{xr});
      std::vector<OpCode> expected{OpCode::Leaf};
      expected.insert(expected.end(), c.ops.begin(), c.ops.end());
      const auto got = ops_of(tape);
      BOOST_TEST((got == expected));
    }
  }
}

BOOST_AUTO_TEST_CASE(gradients_equal_hand_written_cpp_exactly) {
  const std::vector<double> p{1.5, -2.0, 0.7};
  struct Case {
    const char* text;
    std::function<Var(const Var&, const Var&, const Var&)> cpp;
  };
  const Case cases[] = {
      {"x*y + sin(x)", [](const Var& x, const Var& y, const Var&) { return x * y + sin(x); }},
      {"exp(-x^2) * y / (1 + z^2)",
       [](const Var& x, const Var& y, const Var& z) { return exp(-pow(x, 2.0)) * y / (1.0 + pow(z, 2.0)); }},
      {"atan2(y, x) + hypot(x, z) - max(x, z) * min(y, 0.5)",
       [](const Var& x, const Var& y, const Var& z) { return atan2(y, x) + hypot(x, z) - max(x, z) * min(y, 0.5); }},
      {"pow(z, x) + 2^z - z^-1.5 + sqrt(abs(y))",
       [](const Var& x, const Var& y, const Var& z) { return pow(z, x) + pow(2.0, z) - pow(z, -1.5) + sqrt(abs(y)); }},
      // C++ leaves the order of evaluating operands unspecified (GCC often goes right to left), and
      // the order of recording decides the order adjoints are summed in; these longer ones are
      // therefore written one operation per statement, in the parser's left-to-right order.
      {"sigmoid(x*y) + softplus(z) + relu(y) + log1p(z) + expm1(x) + cbrt(y) + square(z)",
       [](const Var& x, const Var& y, const Var& z) {
         const Var t1 = sigmoid(x * y);
         const Var t2 = softplus(z);
         Var s = t1 + t2;
         const Var t3 = relu(y);
         s = s + t3;
         const Var t4 = log1p(z);
         s = s + t4;
         const Var t5 = expm1(x);
         s = s + t5;
         const Var t6 = cbrt(y);
         s = s + t6;
         const Var t7 = square(z);
         return s + t7;
       }},
      {"tanh(z) * asinh(y) + atan(x) - erf(z) + erfc(x) / cosh(y) + sinh(z) + tan(z) + asin(z) + acos(z) + "
       "atanh(z) + acosh(x)",
       [](const Var& x, const Var& y, const Var& z) {
         const Var t1 = tanh(z);
         const Var t2 = asinh(y);
         Var s = t1 * t2;
         const Var t3 = atan(x);
         s = s + t3;
         const Var t4 = erf(z);
         s = s - t4;
         const Var t5 = erfc(x);
         const Var t6 = cosh(y);
         const Var t7 = t5 / t6;
         s = s + t7;
         const Var t8 = sinh(z);
         s = s + t8;
         const Var t9 = tan(z);
         s = s + t9;
         const Var t10 = asin(z);
         s = s + t10;
         const Var t11 = acos(z);
         s = s + t11;
         const Var t12 = atanh(z);
         s = s + t12;
         const Var t13 = acosh(x);
         return s + t13;
       }},
      {"log(x) * cos(y) - 3/z + z*x*y - (x - y - z)",
       [](const Var& x, const Var& y, const Var& z) {
         const Var t1 = log(x);
         const Var t2 = cos(y);
         Var s = t1 * t2;
         const Var t3 = 3.0 / z;
         s = s - t3;
         const Var t4 = z * x;
         const Var t5 = t4 * y;
         s = s + t5;
         const Var t6 = x - y;
         const Var t7 = t6 - z;
         return s - t7;
       }},
  };
  for (const Case& c : cases) {
    BOOST_TEST_CONTEXT(c.text) {
      const Expression e = Expression::parse(c.text);
      std::vector<double> ordered; // the expression's variable order
      for (const auto& name : e.variables())
        ordered.push_back(p[static_cast<std::size_t>(name[0] - 'x')]);
      double parsed_value = 0;
      const std::vector<double> g = parsed_gradient(c.text, ordered, &parsed_value);

      Tape tape;
      const Var x = p[0], y = p[1], z = p[2];
      const Var f = c.cpp(x, y, z);
      const std::vector<double> want = gradient(f, {x, y, z});
      BOOST_TEST(parsed_value == f.value()); // exactly
      for (std::size_t i = 0; i < e.variables().size(); ++i)
        BOOST_TEST(g[i] == want[static_cast<std::size_t>(e.variables()[i][0] - 'x')]); // exactly
      // And the double evaluation gives the same value as the Var one.
      BOOST_TEST(e.evaluate<double>(ordered) == f.value());
    }
  }
}

BOOST_AUTO_TEST_CASE(gradient_against_analytic_formula) {
  // d/dx (x*y + sin x) = y + cos x, d/dy = x: an independent formula, not the engine.
  const auto g = parsed_gradient("x*y + sin(x)", {1.5, -2.0});
  BOOST_TEST(g[0] == -2.0 + std::cos(1.5), boost::test_tools::tolerance(1e-15));
  BOOST_TEST(g[1] == 1.5);
}

BOOST_AUTO_TEST_CASE(constant_expression_is_one_leaf) {
  Tape tape;
  const Var y = Expression::parse("2^10 - 24").evaluate<Var>(std::vector<Var>{});
  BOOST_TEST(y.value() == 1000.0);
  BOOST_TEST(tape.size() == 1u);
}

BOOST_AUTO_TEST_CASE(to_dot_draws_the_recorded_nodes) {
  Tape tape;
  const Var x = 1.5, y = -2.0;
  const Var unused = x * 7.0;
  const Var f = Expression::parse("x*y + x*2.5").evaluate<Var>(std::vector{x, y});
  f.backward();
  DotOptions o;
  o.names[x.index()] = "x";
  o.names[y.index()] = "y\"quoted\\";
  const std::string dot = to_dot(f, o);
  BOOST_TEST(dot.starts_with("digraph \"tape\" {"));
  BOOST_TEST(dot.find("x (#0 leaf)\\nvalue 1.5\\ngrad 0.5") != std::string::npos, dot); // y + 2.5
  BOOST_TEST(dot.find("y\\\"quoted\\\\ (#1 leaf)") != std::string::npos, dot);
  BOOST_TEST(dot.find("mul_scalar \u00d72.5") != std::string::npos, dot);
  BOOST_TEST(dot.find("n0 -> n3 [label=\"a\"]") != std::string::npos, dot);
  BOOST_TEST(dot.find(fmt::format("n{} ", unused.index())) == std::string::npos, dot); // not a dependency
  // The whole-tape overload draws it.
  BOOST_TEST(to_dot(tape).find(fmt::format("n{} ", unused.index())) != std::string::npos);
  tape.reset();
  BOOST_CHECK_THROW(to_dot(f), Error); // recorded before the reset
}

BOOST_AUTO_TEST_SUITE_END()
