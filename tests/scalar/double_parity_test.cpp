// Var code computes what the same code computes with double: every scalar op, in every operand
// order, at NaN, +-inf, +-0 and ordinary values, bit for bit (NaN equals NaN; the sign of zero
// counts). The parsed-expression evaluator is held to the same.

#include <autodiff/autodiff.hpp>
#include <autodiff/expression.hpp>

#include <boost/test/unit_test.hpp>
#include <fmt/format.h>

#include <cmath>
#include <functional>
#include <limits>
#include <set>
#include <string>

using namespace autodiff;

namespace {
constexpr double inf = std::numeric_limits<double>::infinity();
constexpr double NaN = std::numeric_limits<double>::quiet_NaN();
const std::vector<double> values{NaN, inf, -inf, 0.0, -0.0, 0.5, -0.5, 1.0, -1.0, 2.5, -3.0};

bool identical(double a, double b) {
  if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b);
  return a == b && std::signbit(a) == std::signbit(b);
}

// One way to write an op in generic code, instantiated with double and with Var (unary: one
// operand; binary: (Var, Var), (Var, double) and (double, Var), each against (double, double)).
struct Spelling {
  std::string name;
  std::function<double(double)> d1;
  std::function<Var(const Var&)> v1;
  std::function<double(double, double)> dd;
  std::function<Var(const Var&, const Var&)> vv;
  std::function<Var(const Var&, double)> vd;
  std::function<Var(double, const Var&)> dv;
};

template <class F> Spelling unary(std::string name, F f) { return {std::move(name), f, f, {}, {}, {}, {}}; }
template <class F> Spelling binary(std::string name, F f) { return {std::move(name), {}, {}, f, f, f, f}; }
// a op= b: no (double, Var) form, as in C++ code.
template <class F> Spelling compound(std::string name, F f) { return {std::move(name), {}, {}, f, f, f, {}}; }

// Unqualified calls, as generic user code writes them: <cmath> for double, autodiff:: for Var.
std::vector<Spelling> spellings() {
  // clang-format off
  return {
    binary("a + b", [](auto a, auto b) { return a + b; }),
    binary("a - b", [](auto a, auto b) { return a - b; }),
    binary("a * b", [](auto a, auto b) { return a * b; }),
    binary("a / b", [](auto a, auto b) { return a / b; }),
    binary("pow",   [](auto a, auto b) { using std::pow; return pow(a, b); }),
    binary("atan2", [](auto a, auto b) { using std::atan2; return atan2(a, b); }),
    binary("hypot", [](auto a, auto b) { using std::hypot; return hypot(a, b); }),
    binary("max",   [](auto a, auto b) { return max(a, b); }),
    binary("min",   [](auto a, auto b) { return min(a, b); }),
    compound("a += b", [](auto a, auto b) { a += b; return a; }),
    compound("a -= b", [](auto a, auto b) { a -= b; return a; }),
    compound("a *= b", [](auto a, auto b) { a *= b; return a; }),
    compound("a /= b", [](auto a, auto b) { a /= b; return a; }),
    unary("-a",       [](auto a) { return -a; }),
    unary("+a",       [](auto a) { return +a; }),
    unary("exp",      [](auto a) { using std::exp; return exp(a); }),
    unary("log",      [](auto a) { using std::log; return log(a); }),
    unary("log1p",    [](auto a) { using std::log1p; return log1p(a); }),
    unary("expm1",    [](auto a) { using std::expm1; return expm1(a); }),
    unary("sqrt",     [](auto a) { using std::sqrt; return sqrt(a); }),
    unary("cbrt",     [](auto a) { using std::cbrt; return cbrt(a); }),
    unary("square",   [](auto a) { return square(a); }),
    unary("sin",      [](auto a) { using std::sin; return sin(a); }),
    unary("cos",      [](auto a) { using std::cos; return cos(a); }),
    unary("tan",      [](auto a) { using std::tan; return tan(a); }),
    unary("asin",     [](auto a) { using std::asin; return asin(a); }),
    unary("acos",     [](auto a) { using std::acos; return acos(a); }),
    unary("atan",     [](auto a) { using std::atan; return atan(a); }),
    unary("sinh",     [](auto a) { using std::sinh; return sinh(a); }),
    unary("cosh",     [](auto a) { using std::cosh; return cosh(a); }),
    unary("tanh",     [](auto a) { using std::tanh; return tanh(a); }),
    unary("asinh",    [](auto a) { using std::asinh; return asinh(a); }),
    unary("acosh",    [](auto a) { using std::acosh; return acosh(a); }),
    unary("atanh",    [](auto a) { using std::atanh; return atanh(a); }),
    unary("sigmoid",  [](auto a) { return sigmoid(a); }),
    unary("relu",     [](auto a) { return relu(a); }),
    unary("softplus", [](auto a) { return softplus(a); }),
    unary("abs",      [](auto a) { return abs(a); }),
    unary("fabs",     [](auto a) { using std::fabs; return fabs(a); }),
    unary("erf",      [](auto a) { using std::erf; return erf(a); }),
    unary("erfc",     [](auto a) { using std::erfc; return erfc(a); }),
  };
  // clang-format on
}

// The op codes of TAPEGRAD_SCALAR_OPS, leaves aside.
std::vector<OpCode> all_ops() {
  std::vector<OpCode> out;
#define TAPEGRAD_X(Name)                                                                                               \
  if (OpCode::Name != OpCode::Leaf) out.push_back(OpCode::Name);
  TAPEGRAD_SCALAR_OPS(TAPEGRAD_X)
#undef TAPEGRAD_X
  return out;
}

// Every mismatch between the Var and the double forms of the spellings, one line each.
std::vector<std::string> mismatches(const std::vector<Spelling>& table) {
  std::vector<std::string> out;
  auto check = [&](const std::string& what, double var, double dbl) {
    if (!identical(var, dbl)) out.push_back(fmt::format("{}: Var {} but double {}", what, var, dbl));
  };
  for (const Spelling& s : table) {
    for (double a : values) {
      if (s.d1) {
        Tape tape;
        check(fmt::format("{} at {}", s.name, a), s.v1(Var(a)).value(), s.d1(a));
        continue;
      }
      for (double b : values) {
        Tape tape;
        const double want = s.dd(a, b);
        check(fmt::format("{} at (Var {}, Var {})", s.name, a, b), s.vv(Var(a), Var(b)).value(), want);
        check(fmt::format("{} at (Var {}, {})", s.name, a, b), s.vd(Var(a), b).value(), want);
        if (s.dv) check(fmt::format("{} at ({}, Var {})", s.name, a, b), s.dv(a, Var(b)).value(), want);
      }
    }
  }
  return out;
}
} // namespace

BOOST_AUTO_TEST_SUITE(double_parity)

BOOST_AUTO_TEST_CASE(every_op_code_has_a_spelling) {
  // A new op in TAPEGRAD_SCALAR_OPS fails here until it has a spelling above.
  std::set<OpCode> seen;
  {
    Tape tape;
    for (const Spelling& s : spellings()) {
      if (s.v1) {
        s.v1(Var(0.5));
      } else {
        s.vv(Var(0.5), Var(2.0));
        s.vd(Var(0.5), 2.0);
        if (s.dv) s.dv(0.5, Var(2.0));
      }
    }
    for (const NodeInfo& n : tape.nodes())
      seen.insert(n.op);
  }
  for (OpCode op : all_ops())
    BOOST_TEST(seen.count(op) == 1u, "no spelling records " << op_name(op));
}

BOOST_AUTO_TEST_CASE(var_computes_what_double_computes) {
  const std::vector<std::string> bad = mismatches(spellings());
  BOOST_TEST(bad.empty(), bad.size() << " mismatches:\n" << fmt::format("{}", fmt::join(bad, "\n")));
}

BOOST_AUTO_TEST_CASE(the_check_reports_a_mismatch) {
  // A spelling whose Var form swaps the operands of a NaN-sensitive op is caught.
  Spelling swapped = binary("max", [](auto a, auto b) { return max(a, b); });
  swapped.dv = [](double a, const Var& b) { return Var(b.value() >= a ? b.value() : a); };
  const std::vector<std::string> bad = mismatches({swapped});
  BOOST_TEST(!bad.empty());
}

BOOST_AUTO_TEST_CASE(max_and_min_propagate_nan) {
  // As PyTorch's maximum and minimum, in every operand order and form.
  Tape tape;
  for (double c : {0.0, -inf, inf}) {
    BOOST_TEST(std::isnan(max(c, NaN)));
    BOOST_TEST(std::isnan(max(NaN, c)));
    BOOST_TEST(std::isnan(min(c, NaN)));
    BOOST_TEST(std::isnan(min(NaN, c)));
    BOOST_TEST(std::isnan(max(c, Var(NaN)).value()));
    BOOST_TEST(std::isnan(max(Var(NaN), c).value()));
    BOOST_TEST(std::isnan(min(c, Var(NaN)).value()));
    BOOST_TEST(std::isnan(min(Var(NaN), c).value()));
    BOOST_TEST(std::isnan(max(Var(c), Var(NaN)).value()));
    BOOST_TEST(std::isnan(min(Var(NaN), Var(c)).value()));
  }
}

BOOST_AUTO_TEST_CASE(parsed_expressions_compute_what_double_computes) {
  // Constant operands are folded into the instruction (constant_left / constant_right), the
  // evaluator's own path to the mixed overloads.
  std::vector<std::string> texts;
  for (const std::string_view f : {"max", "min", "pow", "atan2", "hypot"}) {
    texts.push_back(fmt::format("{}(x, y)", f));
    for (const std::string_view c : {"0", "1", "2.5", "-3"}) {
      texts.push_back(fmt::format("{}({}, x)", f, c));
      texts.push_back(fmt::format("{}(x, {})", f, c));
    }
  }
  for (const std::string_view op : {"+", "-", "*", "/", "^"})
    for (const std::string_view form : {"2 {} x", "x {} 2", "x {} y"})
      texts.push_back(fmt::format(fmt::runtime(form), op));
  for (const std::string_view f : {"exp",   "log",     "log1p", "expm1",    "sqrt", "cbrt", "square", "sin",   "cos",
                                   "tan",   "asin",    "acos",  "atan",     "sinh", "cosh", "tanh",   "asinh", "acosh",
                                   "atanh", "sigmoid", "relu",  "softplus", "abs",  "erf",  "erfc"})
    texts.push_back(fmt::format("{}(x)", f));
  texts.emplace_back("-x");
  std::vector<std::string> bad;
  for (const std::string& text : texts) {
    const Expression e = Expression::parse(text);
    for (double x : values)
      for (double y : values) {
        std::vector<double> dv{x, y};
        dv.resize(e.variables().size());
        Tape tape;
        const std::vector<Var> vv(dv.begin(), dv.end());
        const double want = e.evaluate(dv), got = e.evaluate(vv).value();
        if (!identical(got, want))
          bad.push_back(fmt::format("{} at ({}): Var {} but double {}", text, fmt::join(dv, ", "), got, want));
      }
  }
  BOOST_TEST(bad.empty(), bad.size() << " mismatches:\n" << fmt::format("{}", fmt::join(bad, "\n")));
}

BOOST_AUTO_TEST_SUITE_END()
