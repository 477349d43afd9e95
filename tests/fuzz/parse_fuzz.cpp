// Fuzzes the expression parser with arbitrary bytes. What parses is evaluated with double and with
// Var (recorded, differentiated and drawn), and the two values must agree bit for bit.

#include <autodiff/autodiff.hpp>
#include <autodiff/dot.hpp>
#include <autodiff/expression.hpp>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string_view>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  std::optional<autodiff::Expression> parsed;
  try {
    parsed = autodiff::Expression::parse(text);
  } catch (const autodiff::ParseError& e) {
    if (e.position > text.size() || std::strlen(e.what()) == 0) std::abort();
    return 0;
  }
  const autodiff::Expression& expr = *parsed;
  std::vector<double> point;
  for (std::size_t i = 0; i < expr.variables().size(); ++i)
    point.push_back(0.5 + 0.25 * static_cast<double>(i));

  const double plain = expr.evaluate<double>(point);
  const auto nonfinite = expr.first_nonfinite(point);
  // A non-finite result has a first non-finite sub-expression (a finite one may have one too, if
  // it recovered: exp(-inf) = 0).
  if (!std::isfinite(plain) && !nonfinite) std::abort();
  if (nonfinite && nonfinite->span.end > expr.text().size()) std::abort();

  static autodiff::Tape tape; // reset every run: the memory is reused, nothing accumulates
  tape.reset();
  const std::vector<autodiff::Var> xs(point.begin(), point.end());
  const autodiff::Var y = expr.evaluate<autodiff::Var>(xs);
  const double recorded = y.value();
  if (!(recorded == plain || (std::isnan(recorded) && std::isnan(plain)))) std::abort();
  y.backward();
  for (const auto& x : xs)
    (void)x.grad();
  autodiff::DotOptions options;
  for (std::size_t i = 0; i < xs.size(); ++i)
    options.names[xs[i].index()] = expr.variables()[i];
  if (autodiff::to_dot(tape, y, options).empty()) std::abort();
  return 0;
}
