// The expression language is generated from the op list (TAPEGRAD_SCALAR_OPS): every op in the list
// can be written in an expression, and the parsed expression records that very op. A new op fails
// here until it parses: an op C++ calls (one with a value f) becomes a function of its name by
// itself; an op written otherwise needs a spelling in `written_as` below.

#include <autodiff/autodiff.hpp>
#include <autodiff/expression.hpp>

#include <boost/test/unit_test.hpp>
#include <fmt/format.h>

#include <cmath>
#include <map>
#include <optional>
#include <set>
#include <string>

using namespace autodiff;

namespace {
// Ops the grammar writes with an operator, or that C++ records for an operand that is a constant.
const std::map<std::string, std::string, std::less<>> written_as{
    {"add", "x + y"},
    {"sub", "x - y"},
    {"mul", "x * y"},
    {"div", "x / y"},
    {"neg", "-x"},
    {"add_scalar", "x + 2"},
    {"rsub_scalar", "2 - x"},
    {"mul_scalar", "x * 2"},
    {"div_scalar", "x / 2"},
    {"rdiv_scalar", "2 / x"},
    {"pow_scalar", "x ^ 2.5"},
    {"rpow_scalar", "2 ^ x"},
    {"max_scalar", "max(x, 2)"},
    {"min_scalar", "min(x, 2)"},
};

template <class R> constexpr bool has_one = requires(double a) { R::f(a); };
template <class R> constexpr bool has_two = requires(double a) { R::f(a, a); };
template <class R> constexpr bool has_value = has_one<R> || has_two<R>;

struct OpRow {
  OpCode op;
  std::string_view name;
  bool called; // rules::Name::f exists: an op C++ code calls
  int arity;
};

std::vector<OpRow> op_list() {
  std::vector<OpRow> out;
#define TAPEGRAD_X(Name)                                                                                               \
  if (OpCode::Name != OpCode::Leaf)                                                                                    \
    out.push_back(                                                                                                     \
        {OpCode::Name, rules::Name::name, has_value<rules::Name>, rules::Name::form == rules::Form::binary ? 2 : 1});
  TAPEGRAD_SCALAR_OPS(TAPEGRAD_X)
#undef TAPEGRAD_X
  return out;
}

// How a row is written: its spelling above, else a call of its name.
std::optional<std::string> spelling(const OpRow& r) {
  if (const auto it = written_as.find(r.name); it != written_as.end()) return it->second;
  if (!r.called) return std::nullopt;
  return fmt::format("{}({})", r.name, r.arity == 1 ? "x" : "x, y");
}
} // namespace

BOOST_AUTO_TEST_SUITE(expression_op_list)

BOOST_AUTO_TEST_CASE(every_op_in_the_list_parses_and_records_itself) {
  for (const OpRow& r : op_list()) {
    BOOST_TEST_CONTEXT(r.name) {
      const std::optional<std::string> text = spelling(r);
      BOOST_TEST_REQUIRE(text.has_value(), r.name << " has no expression spelling");
      std::optional<Expression> e;
      try {
        e = Expression::parse(*text);
      } catch (const ParseError& err) {
        BOOST_ERROR(*text << " does not parse: " << err.what());
        continue;
      }
      Tape tape;
      std::vector<Var> at;
      for (std::size_t k = 0; k < e->variables().size(); ++k)
        at.emplace_back(0.5 + 0.25 * static_cast<double>(k));
      const Var y = e->evaluate<Var>(at);
      BOOST_TEST((tape.nodes().back().op == r.op), *text << " records " << op_name(tape.nodes().back().op));
      // The double evaluator computes the same value as the recorded one (NaN included).
      std::vector<double> values;
      for (const Var& v : at)
        values.push_back(v.value());
      const double d = e->evaluate<double>(values);
      BOOST_TEST(((d == y.value()) || (std::isnan(d) && std::isnan(y.value()))), *text);
    }
  }
}

BOOST_AUTO_TEST_CASE(the_functions_are_the_ops_cxx_calls_by_name) {
  // Expression::functions() holds exactly the ops with a value that no operator spells.
  std::set<std::string> want, have;
  for (const OpRow& r : op_list())
    if (r.called && !written_as.contains(r.name)) want.emplace(r.name);
  for (const ExpressionFunction& f : Expression::functions()) {
    BOOST_TEST(have.emplace(f.name).second, "twice: " << f.name);
    BOOST_TEST((f.arity == 1 || f.arity == 2), f.name);
  }
  BOOST_TEST(want == have);
  BOOST_TEST(have.count("sigmoid") == 1u); // an independent anchor: a list built wrongly from nothing fails
  BOOST_TEST(have.count("atan2") == 1u);
  // The error for an unknown function names them all.
  try {
    (void)Expression::parse("frobnicate(x)");
    BOOST_ERROR("frobnicate(x) parsed");
  } catch (const ParseError& e) {
    for (const std::string& name : have)
      BOOST_TEST(std::string(e.what()).find(" " + name) != std::string::npos, name);
  }
}

BOOST_AUTO_TEST_SUITE_END()
