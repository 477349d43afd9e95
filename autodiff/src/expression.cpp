// The expression parser (recursive descent, depth-limited) and the postfix evaluator.

#include <autodiff/expression.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <numbers>

namespace autodiff {

namespace detail {
// Which operands of a binary instruction come from the stack.
enum class ExprOperands : std::uint8_t { both, constant_left, constant_right };
enum class ExprKind : std::uint8_t { variable, constant, op };

struct ExprInstruction {
  ExprKind kind;
  OpCode op = OpCode::Leaf; // for ExprKind::op
  ExprOperands operands = ExprOperands::both;
  std::uint32_t variable = 0; // for ExprKind::variable
  double constant = 0;        // ExprKind::constant, or the constant operand of a binary op
  SourceSpan span;            // the text this instruction computes
  // Where a folded constant first became NaN or infinite, if it did (for domain reports).
  std::optional<SourceSpan> constant_nonfinite;
};
} // namespace detail

using detail::ExprInstruction;
using detail::ExprKind;
using detail::ExprOperands;

namespace {

// ---- the ops, generated from TAPEGRAD_SCALAR_OPS ------------------------------------------------
// An op C++ code calls (it has a value `f` and a C++ spelling `call`, see rules.hpp) can appear in
// an expression. Those C++ writes as operators (+ - * / and unary -) are the grammar's operators
// too; every other one is a function under its name. Nothing below names a particular op except
// the grammar's operators, so a new op in the list is a new function of the language.

// Whether R has a C++ spelling `call` of one or of two operands (and so a value f of as many). The
// constant forms have an f of the operand and the constant, but no call: C++ reaches them through
// the operators (x * 2 records mul_scalar), and so does the parser.
template <class R> constexpr bool has_one = requires(const Var& a) { R::call(a); };
template <class R> constexpr bool has_two = requires(const Var& a) { R::call(a, a); };
template <class R>
concept callable = has_one<R> || has_two<R>;

template <class R> constexpr int arity = R::form == rules::Form::binary ? 2 : 1;

template <class R> constexpr bool is_operator = std::same_as<R, rules::Add> || std::same_as<R, rules::Sub> ||
                                                std::same_as<R, rules::Mul> || std::same_as<R, rules::Div> ||
                                                std::same_as<R, rules::Neg>;

template <class R> constexpr bool is_function = callable<R> && !is_operator<R>;

constexpr std::size_t function_count = 0
#define TAPEGRAD_X(Name) +(is_function<rules::Name> ? 1 : 0)
    TAPEGRAD_SCALAR_OPS(TAPEGRAD_X)
#undef TAPEGRAD_X
    ;

struct Function {
  ExpressionFunction info;
  OpCode op = OpCode::Leaf;
};

constexpr std::array<Function, function_count> functions = [] {
  std::array<Function, function_count> out{};
  std::size_t i = 0;
#define TAPEGRAD_X(Name)                                                                                               \
  if constexpr (is_function<rules::Name>) out[i++] = Function{{rules::Name::name, arity<rules::Name>}, OpCode::Name};
  TAPEGRAD_SCALAR_OPS(TAPEGRAD_X)
#undef TAPEGRAD_X
  return out;
}();

constexpr std::array<ExpressionFunction, function_count> function_infos = [] {
  std::array<ExpressionFunction, function_count> out{};
  for (std::size_t i = 0; i < function_count; ++i)
    out[i] = functions[i].info;
  return out;
}();

const Function* find_function(std::string_view name) {
  for (const Function& f : functions)
    if (f.info.name == name) return &f;
  return nullptr;
}

// "exp log ... erfc pow atan2 ... min": the functions of one argument, then those of two.
std::string known_functions() {
  std::string out;
  for (int n : {1, 2})
    for (const Function& f : functions)
      if (f.info.arity == n) out.append(out.empty() ? "" : " ").append(f.info.name);
  return out;
}

std::optional<double> find_constant(std::string_view name) {
  if (name == "pi") return std::numbers::pi;
  if (name == "e") return std::numbers::e;
  return std::nullopt;
}

bool is_binary(OpCode op) {
  switch (op) {
#define TAPEGRAD_X(Name)                                                                                               \
  case OpCode::Name:                                                                                                   \
    return rules::Name::form == rules::Form::binary;
    TAPEGRAD_SCALAR_OPS(TAPEGRAD_X)
#undef TAPEGRAD_X
  }
  return false;
}

// Op R applied to the operands: f with doubles; otherwise the call C++ code makes (rules.hpp), so a
// parsed expression records (and computes) exactly what the hand-written one does.
template <class T, class R, class... A> T apply_rule(const A&... a) {
  if constexpr ((std::same_as<A, double> && ...))
    return R::f(a...);
  else
    return R::call(a...);
}

// Op `op` applied to one or two operands, each T or double (a folded constant); at most one of
// them is double unless T is.
template <class T, class... A> T apply(OpCode op, const A&... a) {
  switch (op) {
#define TAPEGRAD_X(Name)                                                                                               \
  case OpCode::Name:                                                                                                   \
    if constexpr (callable<rules::Name> && arity<rules::Name> == sizeof...(A))                                         \
      return apply_rule<T, rules::Name>(a...);                                                                         \
    break;
    TAPEGRAD_SCALAR_OPS(TAPEGRAD_X)
#undef TAPEGRAD_X
  }
  throw Error(fmt::format("autodiff: expression: internal error: {} is not an operation of {} operand{}", op_name(op),
                          sizeof...(A), sizeof...(A) == 1 ? "" : "s"));
}

std::string describe(std::string_view text, std::size_t p) {
  if (p >= text.size()) return "end of input";
  const auto c = static_cast<unsigned char>(text[p]);
  if (c >= 0x20 && c < 0x7f) return fmt::format("'{}'", static_cast<char>(c));
  if (c == '\t' || c == '\n' || c == '\r') return "whitespace";
  if (c < 0x80) return fmt::format("the control character 0x{:02X}", c);
  return fmt::format("byte 0x{:02X} (not ASCII; only ASCII is accepted)", c);
}

// A number as quoted in a message: a 9000-digit literal is shown by its ends and its length.
std::string excerpt(std::string_view number) {
  if (number.size() <= 40) return std::string(number);
  return fmt::format("{}...{} ({} characters)", number.substr(0, 20), number.substr(number.size() - 10), number.size());
}

// The text with one display column per byte (so the caret lines up), windowed around `p`.
std::string caret_lines(std::string_view text, std::size_t p) {
  constexpr std::size_t half = 50;
  std::size_t begin = 0, end = text.size();
  if (text.size() > 2 * half) {
    begin = p > half ? p - half : 0;
    end = std::min(text.size(), begin + 2 * half);
  }
  std::string line = begin > 0 ? "..." : "";
  const std::size_t offset = line.size();
  for (std::size_t i = begin; i < end; ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    line += (c >= 0x20 && c < 0x7f) ? static_cast<char>(c) : (c == '\t' || c == '\n' || c == '\r') ? ' ' : '?';
  }
  if (end < text.size()) line += "...";
  return fmt::format("  {}\n  {}^", line, std::string(offset + std::min(p, text.size()) - begin, ' '));
}

} // namespace

ParseError::ParseError(std::string_view text, std::size_t position_, std::string expected_, std::string message)
    : Error(fmt::format("autodiff: parse: column {}: {}\n{}", position_ + 1, message, caret_lines(text, position_))),
      position(position_), expected(std::move(expected_)) {}

// Recursive descent over the grammar in docs/cli.md. Each parse_* returns a Piece: either a folded
// constant (nothing emitted) or a value whose postfix code has already been appended.
class ExpressionParser {
public:
  ExpressionParser(std::string_view text, Expression& out) : s_(text), out_(out) {}

  void run() {
    if (s_.size() > Expression::max_length)
      fail(Expression::max_length, fmt::format("at most {} bytes", Expression::max_length),
           fmt::format("the expression is {} bytes long; the limit is {}", s_.size(), Expression::max_length));
    skip_ws();
    if (p_ == s_.size()) fail(p_, std::string(operand_expected), "expected an expression, found end of input");
    const Piece root = parse_expr();
    skip_ws();
    if (p_ < s_.size()) {
      const char c = s_[p_];
      const bool starts_operand = is_ident_start(c) || is_digit(c) || c == '(' || c == '.';
      if (c == ')') fail(p_, "an operator or the end of the expression", "unmatched ')'");
      fail(p_, "an operator (+ - * / ^) or the end of the expression",
           fmt::format("expected an operator (+ - * / ^) or the end of the expression, found {}{}", describe(s_, p_),
                       starts_operand ? " (multiplication is written with '*')" : ""));
    }
    if (root.constant) {
      push(ExprInstruction{ExprKind::constant, OpCode::Leaf, ExprOperands::both, 0, root.value, root.span,
                           root.nonfinite},
           +1);
    }
    out_.max_stack_ = max_stack_;
  }

  // A number literal at p_ (the caller checked it starts with a digit or '.' + digit).
  double number() {
    const std::size_t start = p_;
    std::size_t digits = 0;
    while (p_ < s_.size() && is_digit(s_[p_]))
      ++p_, ++digits;
    if (p_ < s_.size() && s_[p_] == '.') {
      ++p_;
      while (p_ < s_.size() && is_digit(s_[p_]))
        ++p_, ++digits;
    }
    if (digits == 0) fail(start, "a digit", fmt::format("expected a digit, found {}", describe(s_, start)));
    if (p_ < s_.size() && (s_[p_] == 'e' || s_[p_] == 'E')) {
      ++p_;
      if (p_ < s_.size() && (s_[p_] == '+' || s_[p_] == '-')) ++p_;
      if (p_ >= s_.size() || !is_digit(s_[p_]))
        fail(p_, "the digits of the exponent",
             fmt::format("expected the digits of the exponent after '{}', found {}", s_.substr(start, p_ - start),
                         describe(s_, p_)));
      while (p_ < s_.size() && is_digit(s_[p_]))
        ++p_;
    }
    double v = 0;
    const auto [ptr, ec] = std::from_chars(s_.data() + start, s_.data() + p_, v, std::chars_format::general);
    if (ec == std::errc::result_out_of_range && !too_large(s_.substr(start, p_ - start))) {
      // Too small for a double: it rounds to 0, as 1e-320 rounds to the nearest subnormal.
      v = 0;
    } else if (ec != std::errc() || ptr != s_.data() + p_ || !std::isfinite(v)) {
      fail(start, "a number within the range of double",
           fmt::format("the number {} is too large for a double (the largest is about 1.8e308)",
                       excerpt(s_.substr(start, p_ - start))));
    }
    return v;
  }

  // Whether a literal that from_chars finds out of range overflows (rather than underflows): the
  // decimal exponent of its first significant digit is positive.
  static bool too_large(std::string_view t) {
    long long digit_exponent = 0; // of the first significant digit, before the exponent part
    bool seen_point = false, found = false;
    long long int_digits = 0, leading_fraction_zeros = 0;
    std::size_t i = 0;
    for (; i < t.size() && t[i] != 'e' && t[i] != 'E'; ++i) {
      if (t[i] == '.') {
        seen_point = true;
      } else if (!found && t[i] == '0') {
        if (seen_point) ++leading_fraction_zeros;
      } else if (!found) {
        found = true;
        if (!seen_point) ++int_digits;
      } else if (!seen_point) {
        ++int_digits;
      }
    }
    if (!found) return false; // zero is never out of range
    digit_exponent = int_digits > 0 ? int_digits - 1 : -(leading_fraction_zeros + 1);
    long long exponent = 0;
    if (i < t.size()) {
      bool negative = false;
      ++i;
      if (i < t.size() && (t[i] == '+' || t[i] == '-')) negative = t[i++] == '-';
      for (; i < t.size(); ++i)
        exponent = std::min<long long>(exponent * 10 + (t[i] - '0'), 1'000'000'000);
      if (negative) exponent = -exponent;
    }
    return digit_exponent + exponent > 0;
  }

  std::size_t position() const { return p_; }
  void skip_ws() {
    while (p_ < s_.size() && (s_[p_] == ' ' || s_[p_] == '\t' || s_[p_] == '\n' || s_[p_] == '\r'))
      ++p_;
  }
  static bool is_digit(char c) { return c >= '0' && c <= '9'; }

  [[noreturn]] void fail(std::size_t at, std::string expected, std::string message) const {
    throw ParseError(s_, at, std::move(expected), std::move(message));
  }

private:
  static constexpr std::string_view operand_expected = "an operand (a number, a variable, a function call or '(')";

  struct Piece {
    bool constant = false;
    double value = 0;
    SourceSpan span;
    std::optional<SourceSpan> nonfinite; // constants only: where the folded value first went non-finite
  };

  // Counts one level of nesting for as long as it lives.
  struct Nest {
    ExpressionParser& p;
    explicit Nest(ExpressionParser& parser, std::size_t at) : p(parser) {
      if (++p.depth_ > Expression::max_depth)
        p.fail(at, fmt::format("at most {} levels of nesting", Expression::max_depth),
               fmt::format("the expression nests deeper than {} levels (parentheses, calls, signs and exponents)",
                           Expression::max_depth));
    }
    ~Nest() { --p.depth_; }
    Nest(const Nest&) = delete;
    Nest& operator=(const Nest&) = delete;
  };

  static bool is_ident_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
  static bool is_ident(char c) { return is_ident_start(c) || is_digit(c); }
  char peek() {
    skip_ws();
    return p_ < s_.size() ? s_[p_] : '\0';
  }
  bool at_end() {
    skip_ws();
    return p_ >= s_.size();
  }

  void push(const ExprInstruction& in, int stack_change) {
    out_.program_.push_back(in);
    stack_ = static_cast<std::size_t>(static_cast<std::ptrdiff_t>(stack_) + stack_change);
    max_stack_ = std::max(max_stack_, stack_);
  }

  Piece unary(OpCode code, const Piece& a, SourceSpan span) {
    if (a.constant) {
      Piece r{true, apply<double>(code, a.value), span, a.nonfinite};
      if (!r.nonfinite && !std::isfinite(r.value)) r.nonfinite = span;
      return r;
    }
    push(ExprInstruction{ExprKind::op, code, ExprOperands::both, 0, 0, span, std::nullopt}, 0);
    return Piece{false, 0, span, std::nullopt};
  }

  Piece binary(OpCode code, const Piece& a, const Piece& b, SourceSpan span) {
    if (a.constant && b.constant) {
      Piece r{true, apply<double>(code, a.value, b.value), span, a.nonfinite ? a.nonfinite : b.nonfinite};
      if (!r.nonfinite && !std::isfinite(r.value)) r.nonfinite = span;
      return r;
    }
    ExprInstruction in{ExprKind::op, code, ExprOperands::both, 0, 0, span, std::nullopt};
    int change = -1;
    if (a.constant || b.constant) {
      const Piece& c = a.constant ? a : b;
      in.operands = a.constant ? ExprOperands::constant_left : ExprOperands::constant_right;
      in.constant = c.value;
      in.constant_nonfinite = c.nonfinite;
      change = 0;
    }
    push(in, change);
    return Piece{false, 0, span, std::nullopt};
  }

  Piece parse_expr() {
    Piece l = parse_term();
    for (char c = peek(); c == '+' || c == '-'; c = peek()) {
      ++p_;
      const Piece r = parse_term();
      l = binary(c == '+' ? OpCode::Add : OpCode::Sub, l, r, {l.span.begin, r.span.end});
    }
    return l;
  }

  Piece parse_term() {
    Piece l = parse_unary();
    for (char c = peek(); c == '*' || c == '/'; c = peek()) {
      ++p_;
      const Piece r = parse_unary();
      l = binary(c == '*' ? OpCode::Mul : OpCode::Div, l, r, {l.span.begin, r.span.end});
    }
    return l;
  }

  // Signs bind looser than '^': -x^2 is -(x^2).
  Piece parse_unary() {
    const char c = peek();
    if (c == '-' || c == '+') {
      const std::size_t start = p_++;
      const Nest nest(*this, start);
      Piece a = parse_unary();
      if (c == '+') {
        a.span.begin = start;
        return a;
      }
      return unary(OpCode::Neg, a, {start, a.span.end});
    }
    return parse_power();
  }

  // '^' is right-associative, and its exponent may carry signs: x^-2 is x^(-2), 2^-x^2 is 2^(-(x^2)).
  Piece parse_power() {
    const Piece base = parse_primary();
    if (peek() != '^') return base;
    const Nest nest(*this, p_);
    ++p_;
    const Piece exponent = parse_exponent();
    return binary(OpCode::Pow, base, exponent, {base.span.begin, exponent.span.end});
  }

  Piece parse_exponent() {
    const char c = peek();
    if (c == '-' || c == '+') {
      const std::size_t start = p_++;
      const Nest nest(*this, start);
      Piece a = parse_exponent();
      if (c == '+') {
        a.span.begin = start;
        return a;
      }
      return unary(OpCode::Neg, a, {start, a.span.end});
    }
    return parse_power();
  }

  Piece parse_primary() {
    if (at_end())
      fail(p_, std::string(operand_expected), fmt::format("expected {}, found end of input", operand_expected));
    const std::size_t start = p_;
    const char c = s_[p_];
    if (is_digit(c) || (c == '.' && p_ + 1 < s_.size() && is_digit(s_[p_ + 1]))) {
      const double v = number();
      return Piece{true, v, {start, p_}, std::nullopt};
    }
    if (is_ident_start(c)) {
      while (p_ < s_.size() && is_ident(s_[p_]))
        ++p_;
      const std::string_view name = s_.substr(start, p_ - start);
      if (const Function* f = find_function(name)) return call(*f, start);
      if (const auto k = find_constant(name)) return Piece{true, *k, {start, p_}, std::nullopt};
      if (peek() == '(')
        fail(start, "a known function", fmt::format("unknown function '{}' (known: {})", name, known_functions()));
      auto& vars = out_.variables_;
      auto it = std::find(vars.begin(), vars.end(), name);
      if (it == vars.end()) it = vars.insert(vars.end(), std::string(name));
      push(ExprInstruction{ExprKind::variable, OpCode::Leaf, ExprOperands::both,
                           static_cast<std::uint32_t>(it - vars.begin()), 0, SourceSpan{start, start + name.size()},
                           std::nullopt},
           +1);
      return Piece{false, 0, {start, start + name.size()}, std::nullopt};
    }
    if (c == '(') {
      const Nest nest(*this, start);
      ++p_;
      Piece inner = parse_expr();
      if (peek() != ')')
        fail(p_, "')'",
             fmt::format("expected ')' to close the '(' at column {}, found {}", start + 1, describe(s_, p_)));
      ++p_;
      inner.span = {start, p_};
      return inner;
    }
    fail(start, std::string(operand_expected),
         fmt::format("expected {}, found {}", operand_expected, describe(s_, start)));
  }

  Piece call(const Function& f, std::size_t start) {
    if (peek() != '(')
      fail(p_, "'('",
           fmt::format("expected '(' after the function name '{}', found {}", f.info.name, describe(s_, p_)));
    const Nest nest(*this, p_);
    ++p_;
    std::vector<Piece> args;
    if (peek() != ')') {
      while (true) {
        if (static_cast<int>(args.size()) == f.info.arity)
          fail(p_ - 1, fmt::format("{} argument{}", f.info.arity, f.info.arity == 1 ? "" : "s"),
               fmt::format("{} takes {} argument{}, found more", f.info.name, f.info.arity,
                           f.info.arity == 1 ? "" : "s"));
        args.push_back(parse_expr());
        const char c = peek();
        if (c == ')') break;
        if (c != ',')
          fail(p_, "',' or ')'",
               fmt::format("expected ',' or ')' in the arguments of {}, found {}", f.info.name, describe(s_, p_)));
        ++p_;
      }
    }
    if (static_cast<int>(args.size()) != f.info.arity)
      fail(p_, fmt::format("{} argument{}", f.info.arity, f.info.arity == 1 ? "" : "s"),
           fmt::format("{} takes {} argument{}, found {}", f.info.name, f.info.arity, f.info.arity == 1 ? "" : "s",
                       args.size()));
    ++p_;
    const SourceSpan span{start, p_};
    if (f.info.arity == 1) return unary(f.op, args[0], span);
    return binary(f.op, args[0], args[1], span);
  }

  std::string_view s_;
  Expression& out_;
  std::size_t p_ = 0;
  std::size_t depth_ = 0;
  std::size_t stack_ = 0;
  std::size_t max_stack_ = 0;
};

Expression::Expression() = default;
Expression::Expression(const Expression&) = default;
Expression::Expression(Expression&&) noexcept = default;
Expression& Expression::operator=(const Expression&) = default;
Expression& Expression::operator=(Expression&&) noexcept = default;
Expression::~Expression() = default;

std::size_t Expression::program_size() const { return program_.size(); }

std::span<const ExpressionFunction> Expression::functions() { return function_infos; }

Expression Expression::parse(std::string_view text) {
  Expression e;
  e.text_ = std::string(text.substr(0, std::min(text.size(), max_length + 1)));
  ExpressionParser(text, e).run();
  return e;
}

double Expression::parse_number(std::string_view text) {
  Expression dummy;
  ExpressionParser p(text, dummy);
  if (text.size() > 64) p.fail(64, "a number of at most 64 characters", "the number is too long");
  bool negative = false;
  std::size_t at = 0;
  if (!text.empty() && (text[0] == '+' || text[0] == '-')) negative = text[0] == '-', at = 1;
  if (at >= text.size() || !(ExpressionParser::is_digit(text[at]) ||
                             (text[at] == '.' && at + 1 < text.size() && ExpressionParser::is_digit(text[at + 1]))))
    p.fail(at, "a number", fmt::format("expected a number, found {}", describe(text, at)));
  ExpressionParser q(text.substr(at), dummy);
  double v = 0;
  try {
    v = q.number();
  } catch (const ParseError& e) {
    throw ParseError(text, e.position + at, e.expected,
                     fmt::format("expected {} in the number '{}'", e.expected, text));
  }
  if (q.position() != text.size() - at)
    p.fail(q.position() + at, "the end of the number",
           fmt::format("expected the end of the number, found {}", describe(text, q.position() + at)));
  return negative ? -v : v;
}

void Expression::check_arity(std::size_t given) const {
  if (given != variables_.size()) {
    std::string names;
    for (const auto& v : variables_) {
      if (!names.empty()) names.append(", ");
      names.append(v);
    }
    throw Error(fmt::format("autodiff: expression: '{}' has {} variable{} ({}) but {} value{} were given", text_,
                            variables_.size(), variables_.size() == 1 ? "" : "s", names, given, given == 1 ? "" : "s"));
  }
}

template <ExpressionScalar T> T Expression::evaluate(std::span<const T> values) const {
  check_arity(values.size());
  if (program_.size() == 1 && program_[0].kind == ExprKind::constant) return T(program_[0].constant);
  std::vector<T> stack;
  stack.reserve(max_stack_);
  for (const ExprInstruction& in : program_) {
    if (in.kind == ExprKind::variable) {
      stack.push_back(values[in.variable]);
    } else if (!is_binary(in.op)) {
      stack.back() = apply<T>(in.op, stack.back());
    } else if (in.operands == ExprOperands::constant_left) {
      stack.back() = apply<T>(in.op, in.constant, stack.back());
    } else if (in.operands == ExprOperands::constant_right) {
      stack.back() = apply<T>(in.op, stack.back(), in.constant);
    } else {
      const T b = stack.back();
      stack.pop_back();
      stack.back() = apply<T>(in.op, stack.back(), b);
    }
  }
  return stack.back();
}

template double Expression::evaluate<double>(std::span<const double>) const;
template Var Expression::evaluate<Var>(std::span<const Var>) const;

namespace {
// The double evaluator with a hook per instruction; trace and first_nonfinite share it.
template <class Visit> double run_double(const std::vector<ExprInstruction>& program, std::size_t max_stack,
                                         std::span<const double> values, Visit&& visit) {
  std::vector<double> stack;
  stack.reserve(max_stack);
  for (const ExprInstruction& in : program) {
    if (in.kind == ExprKind::variable) {
      stack.push_back(values[in.variable]);
    } else if (in.kind == ExprKind::constant) {
      stack.push_back(in.constant);
    } else if (!is_binary(in.op)) {
      stack.back() = apply<double>(in.op, stack.back());
    } else if (in.operands == ExprOperands::constant_left) {
      stack.back() = apply<double>(in.op, in.constant, stack.back());
    } else if (in.operands == ExprOperands::constant_right) {
      stack.back() = apply<double>(in.op, stack.back(), in.constant);
    } else {
      const double b = stack.back();
      stack.pop_back();
      stack.back() = apply<double>(in.op, stack.back(), b);
    }
    if (!visit(in, stack.back())) break;
  }
  return stack.back();
}
} // namespace

double Expression::trace(std::span<const double> values, const std::function<void(SourceSpan, double)>& visit) const {
  check_arity(values.size());
  return run_double(program_, max_stack_, values, [&](const ExprInstruction& in, double v) {
    visit(in.span, v);
    return true;
  });
}

std::optional<Expression::NonFinite> Expression::first_nonfinite(std::span<const double> values) const {
  check_arity(values.size());
  // Every value before the first non-finite one is finite, so the first instruction whose result
  // (or folded constant operand) is NaN or inf is where the domain error entered.
  std::optional<NonFinite> found;
  run_double(program_, max_stack_, values, [&](const ExprInstruction& in, double v) {
    if (in.constant_nonfinite)
      found = NonFinite{*in.constant_nonfinite, in.constant};
    else if (!std::isfinite(v))
      found = NonFinite{in.span, v};
    return !found;
  });
  return found;
}

} // namespace autodiff
