#pragma once
// Scalar expressions parsed at run time ("x*y + sin(x)^2"), evaluated with double or with Var.
//
// The text is parsed once into a flat postfix program; evaluation is a loop over it with an
// explicit stack, so neither parsing (depth-limited) nor evaluation can overflow the C++ stack.
// Sub-expressions without variables are folded to one double while parsing, and an operator with
// one constant operand records the engine's constant form: `x * 2` is one mul_scalar node and
// `x ^ 3` one pow_scalar node, exactly what the same C++ code with Var records. The grammar is
// described in docs/cli.md.

#include <autodiff/error.hpp>
#include <autodiff/var.hpp>

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace autodiff {

// A syntax error. what() reads
//   autodiff: parse: column 5: expected an operand (...), found '*'
//     x + * y
//         ^
class ParseError : public Error {
public:
  ParseError(std::string_view text, std::size_t position, std::string expected, std::string message);
  std::size_t position; // byte offset into the text (the caret's position)
  std::string expected; // what would have been accepted there
};

// A range of bytes [begin, end) of an expression's text.
struct SourceSpan {
  std::size_t begin = 0;
  std::size_t end = 0;
};

// What an expression evaluates with: double, or Var to record it.
template <class T>
concept ExpressionScalar = std::same_as<T, double> || std::same_as<T, Var>;

// A function of the expression language: the scalar ops C++ code calls as functions (exp, pow,
// ...), generated from the op list (TAPEGRAD_SCALAR_OPS); Expression::functions() lists them.
struct ExpressionFunction {
  std::string_view name;
  int arity; // 1 or 2
};

namespace detail {
struct ExprInstruction; // one step of the postfix program (expression.cpp)
} // namespace detail

class Expression {
public:
  static constexpr std::size_t max_length = 10000; // bytes of text
  static constexpr std::size_t max_depth = 200;    // nested parentheses, calls, signs and exponents

  // Throws ParseError.
  static Expression parse(std::string_view text);

  // A signed number in the expression syntax ("-2.5e3", "+.5"): what tools accept for values.
  // Throws ParseError for anything else, or for a number outside the range of double.
  static double parse_number(std::string_view text);

  // The functions the syntax knows, in the op list's order.
  static std::span<const ExpressionFunction> functions();

  // The program's steps are defined in expression.cpp, so these are too.
  Expression(const Expression&);
  Expression(Expression&&) noexcept;
  Expression& operator=(const Expression&);
  Expression& operator=(Expression&&) noexcept;
  ~Expression();

  const std::string& text() const { return text_; }
  std::string_view source(SourceSpan s) const { return std::string_view(text_).substr(s.begin, s.end - s.begin); }

  // Variable names, in order of first appearance. `pi` and `e` are constants, not variables.
  const std::vector<std::string>& variables() const { return variables_; }

  // The value at `values` (one per variables(), in that order). With T = Var the operations are
  // recorded on the active tape; constants never become leaves (except a whole expression without
  // variables, which evaluates to one leaf, and the constant operand of atan2/hypot, which the
  // engine records as a leaf).
  template <ExpressionScalar T> T evaluate(std::span<const T> values) const;
  template <ExpressionScalar T> T evaluate(const std::vector<T>& values) const {
    return evaluate(std::span<const T>(values));
  }

  // Evaluates with doubles and calls visit(span, value) for every operation in evaluation order
  // (variables and folded constants included). Returns the value.
  double trace(std::span<const double> values, const std::function<void(SourceSpan, double)>& visit) const;

  // The first sub-expression whose value is NaN or infinite although its operands are finite:
  // where a domain error (log of a negative number, 0/0, overflow) entered the computation.
  struct NonFinite {
    SourceSpan span;
    double value;
  };
  std::optional<NonFinite> first_nonfinite(std::span<const double> values) const;

  // Number of instructions of the postfix program (one per recorded operation, roughly).
  std::size_t program_size() const;

private:
  Expression();
  friend class ExpressionParser;
  void check_arity(std::size_t given) const;

  std::string text_;
  std::vector<std::string> variables_;
  std::vector<detail::ExprInstruction> program_;
  std::size_t max_stack_ = 0;
};

extern template double Expression::evaluate<double>(std::span<const double>) const;
extern template Var Expression::evaluate<Var>(std::span<const Var>) const;

} // namespace autodiff
