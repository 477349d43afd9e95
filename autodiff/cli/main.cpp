// tapegrad: gradients, Hessians, gradient checks and tape drawings of expressions typed on the
// command line. Usage and exit statuses: docs/cli.md.

#include "output.hpp"

#include <autodiff/autodiff.hpp>
#include <autodiff/dot.hpp>
#include <autodiff/expression.hpp>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

namespace {

namespace fs = std::filesystem;
using autodiff::Expression;
using autodiff::Var;
using json = nlohmann::ordered_json;
using tapegrad_cli::IoError;

// Exit statuses (docs/cli.md).
constexpr int exit_ok = 0;
constexpr int exit_check_failed = 1;
constexpr int exit_input_error = 2; // usage, parse error, bad --at, domain error
constexpr int exit_io_error = 3;    // cannot write the output, Graphviz failed

// Bad command-line input found after CLI11 parsing (exit 2).
class UsageError : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

// Library messages start with "autodiff: "; the tool speaks as itself.
std::string strip_prefix(std::string_view what) {
  constexpr std::string_view prefix = "autodiff: ";
  if (what.starts_with(prefix)) what.remove_prefix(prefix.size());
  return std::string(what);
}

std::string join(const std::vector<std::string>& v, std::string_view sep = ", ") {
  std::string out;
  for (const auto& s : v) {
    if (!out.empty()) out.append(sep);
    out.append(s);
  }
  return out;
}

// The values of --at, in the order given, and where each expression variable finds its value.
struct Point {
  std::vector<std::string> names;
  std::vector<double> values;
  std::vector<std::size_t> slot_of_variable; // expression variable i -> index into names/values
};

Point parse_point(const std::vector<std::string>& at, const Expression& expr) {
  Point p;
  for (const std::string& arg : at) {
    std::string_view rest(arg);
    while (true) {
      const std::size_t comma = rest.find(',');
      const std::string_view item = rest.substr(0, comma);
      const std::size_t eq = item.find('=');
      if (eq == std::string_view::npos || eq == 0)
        throw UsageError(fmt::format("--at: expected name=value, found '{}' (e.g. --at x=1.5,y=-2)", item));
      const std::string name(item.substr(0, eq));
      if (std::find(p.names.begin(), p.names.end(), name) != p.names.end())
        throw UsageError(fmt::format("--at: '{}' is given more than once", name));
      double v = 0;
      try {
        v = Expression::parse_number(item.substr(eq + 1));
      } catch (const autodiff::ParseError& e) {
        throw UsageError(fmt::format("--at: the value of '{}' is not a number: {}", name, strip_prefix(e.what())));
      }
      p.names.push_back(name);
      p.values.push_back(v);
      if (comma == std::string_view::npos) break;
      rest.remove_prefix(comma + 1);
    }
  }
  const auto& vars = expr.variables();
  std::vector<std::string> missing, extra;
  for (const auto& v : vars) {
    const auto it = std::find(p.names.begin(), p.names.end(), v);
    if (it == p.names.end())
      missing.push_back(v);
    else
      p.slot_of_variable.push_back(static_cast<std::size_t>(it - p.names.begin()));
  }
  for (const auto& n : p.names)
    if (std::find(vars.begin(), vars.end(), n) == vars.end()) extra.push_back(n);
  if (!missing.empty())
    throw UsageError(fmt::format("--at gives no value for the variable{} {} of the expression (add e.g. --at {}=1)",
                                 missing.size() == 1 ? "" : "s", join(missing), missing.front()));
  if (!extra.empty())
    throw UsageError(fmt::format("--at gives a value for {}, which {} not a variable of the expression (its variables: "
                                 "{})",
                                 join(extra), extra.size() == 1 ? "is" : "are", vars.empty() ? "none" : join(vars)));
  return p;
}

// The expression's variables in its own order, from values in --at order.
template <class T> std::vector<T> in_expression_order(const Point& p, const std::vector<T>& at_order) {
  std::vector<T> out;
  out.reserve(p.slot_of_variable.size());
  for (std::size_t slot : p.slot_of_variable)
    out.push_back(at_order[slot]);
  return out;
}

Expression parse_expression(const std::string& text) { return Expression::parse(text); }

// "  x*log(x - 2)\n    ^^^^^^^^^^" under a sub-expression.
std::string underline(const Expression& e, autodiff::SourceSpan s) {
  std::string line;
  for (char c : e.text())
    line += (c == '\t' || c == '\n' || c == '\r') ? ' ' : c;
  return fmt::format("  {}\n  {}{}", line, std::string(s.begin, ' '),
                     std::string(std::max<std::size_t>(1, s.end - s.begin), '^'));
}

struct DomainError {
  autodiff::SourceSpan span;
  double value;
};

std::optional<DomainError> domain_error(const Expression& expr, const Point& p) {
  const auto found = expr.first_nonfinite(in_expression_order(p, p.values));
  if (!found) return std::nullopt;
  return DomainError{found->span, found->value};
}

// NaN's sign is noise; "-nan" would only confuse.
std::string show(double v) { return std::isnan(v) ? "NaN" : fmt::format("{}", v); }

void report_domain_error(const Expression& expr, const DomainError& d, double value) {
  fmt::print(stderr, "tapegrad: domain error: {} is {} at this point, so the value is {}\n{}\n", expr.source(d.span),
             show(d.value), show(value), underline(expr, d.span));
}

// JSON has no NaN or infinity: such numbers become null and their paths are listed.
struct JsonNumbers {
  std::vector<std::string> nonfinite;
  json operator()(double v, std::string path) {
    if (std::isfinite(v)) return v;
    nonfinite.push_back(std::move(path));
    return nullptr;
  }
};

struct GradArgs {
  std::string expression;
  std::vector<std::string> at;
  bool hessian = false;
  bool check = false;
  bool json = false;
  autodiff::GradcheckOptions options;
};

int run_grad(const GradArgs& a) {
  const Expression expr = parse_expression(a.expression);
  const Point p = parse_point(a.at, expr);
  const std::size_t n = p.names.size();
  const autodiff::ScalarFunction f = [&](const std::vector<Var>& xs) {
    return expr.evaluate<Var>(in_expression_order(p, xs));
  };

  double value = 0;
  std::vector<double> gradient;
  {
    autodiff::Tape tape;
    const std::vector<Var> xs(p.values.begin(), p.values.end());
    const Var y = f(xs);
    value = y.value();
    gradient = autodiff::gradient(y, xs);
  }
  const std::optional<DomainError> domain = domain_error(expr, p);
  autodiff::Matrix hessian;
  if (a.hessian) hessian = autodiff::hessian(f, p.values);
  std::optional<autodiff::GradcheckReport> check;
  if (a.check) check = autodiff::gradcheck(f, p.values, a.options);

  int status = exit_ok;
  if (check && !check->passed) status = exit_check_failed;
  if (domain) status = exit_input_error;

  if (a.json) {
    JsonNumbers num;
    json out;
    out["expression"] = expr.text();
    out["variables"] = p.names;
    json point = json::object(), grad = json::object();
    const json value_json = num(value, "value");
    for (std::size_t i = 0; i < n; ++i) {
      point[p.names[i]] = p.values[i];
      grad[p.names[i]] = num(gradient[i], fmt::format("gradient.{}", p.names[i]));
    }
    out["point"] = point;
    out["value"] = value_json;
    out["gradient"] = grad;
    if (a.hessian) {
      json rows = json::array();
      for (std::size_t i = 0; i < n; ++i) {
        json row = json::array();
        for (std::size_t j = 0; j < n; ++j)
          row.push_back(num(hessian[i][j], fmt::format("hessian[{}][{}]", i, j)));
        rows.push_back(row);
      }
      out["hessian"] = rows;
    }
    if (check) {
      json c;
      c["passed"] = check->passed;
      c["worst"] = n == 0 ? json(nullptr) : json(p.names[check->worst]);
      c["abs_error"] = num(check->abs_error, "check.abs_error");
      c["rel_error"] = num(check->rel_error, "check.rel_error");
      json numeric = json::object();
      for (std::size_t i = 0; i < n; ++i)
        numeric[p.names[i]] = num(check->numeric[i], fmt::format("check.numeric.{}", p.names[i]));
      c["numeric"] = numeric;
      c["eps"] = a.options.eps;
      c["rtol"] = a.options.rtol;
      c["atol"] = a.options.atol;
      out["check"] = c;
    }
    if (domain) {
      json d;
      d["subexpression"] = std::string(expr.source(domain->span));
      d["begin"] = domain->span.begin;
      d["end"] = domain->span.end;
      d["value"] = show(domain->value);
      out["domain_error"] = d;
    }
    out["nonfinite"] = num.nonfinite;
    fmt::print("{}\n", out.dump(2));
  } else {
    std::size_t w = 8;
    for (const auto& name : p.names)
      w = std::max(w, name.size() + 2);
    fmt::print("{:<{}}{}\n", "f", w + 2, expr.text());
    if (n > 0) {
      std::vector<std::string> at;
      for (std::size_t i = 0; i < n; ++i)
        at.push_back(fmt::format("{} = {}", p.names[i], p.values[i]));
      fmt::print("{:<{}}{}\n", "at", w + 2, join(at));
    }
    fmt::print("{:<{}}{}\n", "value", w + 2, value);
    if (n > 0) {
      fmt::print("\ngradient\n");
      for (std::size_t i = 0; i < n; ++i)
        fmt::print("  {:<{}}{:>24}\n", fmt::format("d/d{}", p.names[i]), w + 2, gradient[i]);
    }
    if (a.hessian && n > 0) {
      fmt::print("\nhessian\n  {:<{}}", "", w);
      for (const auto& name : p.names)
        fmt::print("{:>24}", name);
      fmt::print("\n");
      for (std::size_t i = 0; i < n; ++i) {
        fmt::print("  {:<{}}", p.names[i], w);
        for (std::size_t j = 0; j < n; ++j)
          fmt::print("{:>24}", hessian[i][j]);
        fmt::print("\n");
      }
    }
    if (check) {
      fmt::print("\ngradient check {} (central differences, eps {}; a component passes when |analytic - numeric| "
                 "<= {} + {} |numeric|)\n",
                 check->passed ? "PASSED" : "FAILED", a.options.eps, a.options.atol, a.options.rtol);
      fmt::print("  {:<{}}{:>24}{:>24}{:>12}\n", "", w, "analytic", "numeric", "abs error");
      for (std::size_t i = 0; i < n; ++i)
        fmt::print("{} {:<{}}{:>24}{:>24}{:>12.3g}\n", i == check->worst ? '>' : ' ', p.names[i], w, check->analytic[i],
                   check->numeric[i], std::fabs(check->analytic[i] - check->numeric[i]));
      if (n > 0)
        fmt::print("  worst component {}: abs error {:.3g}, rel error {:.3g}\n", p.names[check->worst],
                   check->abs_error, check->rel_error);
    }
  }
  std::fflush(stdout);
  if (domain) report_domain_error(expr, *domain, value);
  return status;
}

struct GraphArgs {
  std::string expression;
  std::vector<std::string> at;
  std::string output;
  int precision = 6;
};

int run_graph(const GraphArgs& a) {
  const Expression expr = parse_expression(a.expression);
  const Point p = parse_point(a.at, expr);
  std::string dot;
  double value = 0;
  {
    autodiff::Tape tape;
    const std::vector<Var> xs(p.values.begin(), p.values.end());
    const Var y = expr.evaluate<Var>(in_expression_order(p, xs));
    value = y.value();
    y.backward();
    autodiff::DotOptions options;
    options.precision = a.precision;
    options.graph_name = expr.text();
    for (std::size_t i = 0; i < xs.size(); ++i)
      options.names[xs[i].index()] = p.names[i];
    dot = autodiff::to_dot(tape, y, options);
  }
  const std::optional<DomainError> domain = domain_error(expr, p);
  const int status = domain ? exit_input_error : exit_ok;

  if (a.output.empty() || a.output == "-") {
    fmt::print("{}", dot);
    std::fflush(stdout);
    if (domain) report_domain_error(expr, *domain, value);
    return status;
  }
  const fs::path out(a.output);
  const std::string ext = out.extension().string();
  if (ext != ".dot" && ext != ".svg" && ext != ".png")
    throw UsageError(fmt::format("-o {}: the output must end in .svg, .png or .dot", a.output));
  fs::path dot_path = out;
  dot_path.replace_extension(".dot");
  const std::string render_hint = fmt::format(
      "dot -T{} {} -o {}", ext == ".png" ? "png" : "svg", tapegrad_cli::shell_quote(dot_path.string()),
      tapegrad_cli::shell_quote(ext == ".dot" ? fs::path(out).replace_extension(".svg").string() : out.string()));
  if (ext == ".dot") {
    tapegrad_cli::write_atomically(out, dot);
    fmt::print("wrote {}; render it with: {}\n", out.string(), render_hint);
  } else if (const auto graphviz = tapegrad_cli::find_on_path("dot")) {
    tapegrad_cli::TempFile input(out);
    input.write_all(dot);
    tapegrad_cli::TempFile rendered(out);
    const int rc = tapegrad_cli::run_program(
        *graphviz, {fmt::format("-T{}", ext.substr(1)), "-o", rendered.path().string(), input.path().string()});
    if (rc != 0)
      throw IoError(fmt::format("{} exited with status {} while rendering {}", graphviz->string(), rc, a.output));
    rendered.rename_to(out);
    fmt::print("wrote {}\n", out.string());
  } else {
    tapegrad_cli::write_atomically(dot_path, dot);
    fmt::print(stderr, "tapegrad: Graphviz 'dot' is not on PATH, so {} was not rendered\n", out.string());
    fmt::print("wrote {}; render it with: {}\n", dot_path.string(), render_hint);
  }
  std::fflush(stdout);
  if (domain) report_domain_error(expr, *domain, value);
  return status;
}

// An expression that starts with '-' ('-x^2') looks like a short option to CLI11. Such arguments
// (one dash, not a known option, not the value of an option) are moved after a "--", where
// CLI11 takes them as positional; an explicit "--" works as usual.
std::vector<std::string> normalize_args(int argc, char** argv) {
  const std::vector<std::string_view> with_value = {"--at", "--eps",    "--rtol",     "--atol",
                                                    "-o",   "--output", "--precision"};
  std::vector<std::string> out, moved;
  for (int i = 0; i < argc; ++i) {
    const std::string_view arg(argv[i]);
    if (i == 0) {
      out.emplace_back(arg);
    } else if (arg == "--") {
      for (++i; i < argc; ++i)
        moved.emplace_back(argv[i]);
    } else if (std::find(with_value.begin(), with_value.end(), arg) != with_value.end()) {
      out.emplace_back(arg);
      if (i + 1 < argc) out.emplace_back(argv[++i]);
    } else if (arg.size() > 1 && arg[0] == '-' && arg[1] != '-' && arg != "-h" && !arg.starts_with("-o")) {
      moved.emplace_back(arg);
    } else {
      out.emplace_back(arg);
    }
  }
  if (!moved.empty()) {
    out.emplace_back("--");
    out.insert(out.end(), moved.begin(), moved.end());
  }
  return out;
}

int run(int argc, char** argv) {
  CLI::App app{"tapegrad: values, gradients, Hessians, gradient checks and tape graphs of scalar expressions.\n"
               "Expression syntax, examples and exit statuses: docs/cli.md"};
  app.set_version_flag("--version", fmt::format("tapegrad {}", TAPEGRAD_VERSION));
  app.require_subcommand(1);

  GradArgs g;
  CLI::App* grad = app.add_subcommand("grad", "Value and gradient of an expression at a point");
  grad->add_option("expression", g.expression, "The expression, e.g. 'x*y + sin(x)'")->required();
  grad->add_option("--at", g.at, "Values of the variables: --at x=1.5,y=-2 (may be repeated)")->allow_extra_args(false);
  grad->add_flag("--hessian", g.hessian, "Also print the Hessian (rows and columns in --at order)");
  CLI::Option* check = grad->add_flag("--check", g.check, "Compare the gradient with central finite differences");
  grad->add_option("--eps", g.options.eps, "Finite-difference step")
      ->capture_default_str()
      ->needs(check)
      ->check(CLI::PositiveNumber);
  grad->add_option("--rtol", g.options.rtol, "Relative tolerance of the check")
      ->capture_default_str()
      ->needs(check)
      ->check(CLI::NonNegativeNumber);
  grad->add_option("--atol", g.options.atol, "Absolute tolerance of the check")
      ->capture_default_str()
      ->needs(check)
      ->check(CLI::NonNegativeNumber);
  grad->add_flag("--json", g.json, "Print one JSON object instead of tables");

  GraphArgs d;
  CLI::App* graph = app.add_subcommand("graph", "Draw the tape of an expression (with gradients) with Graphviz");
  graph->add_option("expression", d.expression, "The expression")->required();
  graph->add_option("--at", d.at, "Values of the variables: --at x=1.5,y=-2 (may be repeated)")
      ->allow_extra_args(false);
  graph->add_option("-o,--output", d.output,
                    "Output file: .svg or .png (rendered with Graphviz dot if it is on PATH) or .dot; "
                    "default: DOT text on standard output");
  graph->add_option("--precision", d.precision, "Significant digits in the labels")
      ->capture_default_str()
      ->check(CLI::Range(1, 17));

  try {
    std::vector<std::string> args = normalize_args(argc, argv);
    std::reverse(args.begin(), args.end()); // CLI11 takes them last to first
    args.pop_back();                        // the program name
    app.parse(args);
  } catch (const CLI::ParseError& e) {
    // --help and --version are "errors" with status 0; every real one is a usage error.
    return app.exit(e) == 0 ? exit_ok : exit_input_error;
  }
  if (grad->parsed()) return run_grad(g);
  return run_graph(d);
}

} // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const UsageError& e) {
    fmt::print(stderr, "tapegrad: {}\n", e.what());
    return exit_input_error;
  } catch (const autodiff::Error& e) { // parse errors and invalid options
    fmt::print(stderr, "tapegrad: {}\n", strip_prefix(e.what()));
    return exit_input_error;
  } catch (const IoError& e) {
    fmt::print(stderr, "tapegrad: {}\n", e.what());
    return exit_io_error;
  } catch (const std::exception& e) {
    fmt::print(stderr, "tapegrad: {}\n", e.what());
    return exit_io_error;
  }
}
