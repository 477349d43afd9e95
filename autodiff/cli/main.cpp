// tapegrad: gradients, Hessians, gradient checks and tape drawings of expressions typed on the
// command line. Usage and exit statuses: docs/cli.md.

#include "output.hpp"

#include <autodiff/atomic_file.hpp>
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
#include <iostream>
#include <iterator>
#include <string>
#include <vector>

#include <sys/mman.h>
#include <unistd.h>

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
std::string show_short(double v) { return std::isnan(v) ? "NaN" : fmt::format("{:.3g}", v); }

// Output is collected here and written once with write_stdout, which checks that it arrived.
template <class... T> void put(std::string& out, fmt::format_string<T...> f, T&&... args) {
  fmt::format_to(std::back_inserter(out), f, std::forward<T>(args)...);
}

// What is not finite, and whether that makes the result unusable (exit 2). Only the results
// count: an infinite intermediate with a finite value (exp(-1/x^2) at 0) is a note, while a NaN
// gradient (sqrt(x-x) at 1) is an error although every intermediate value is finite.
struct Diagnosis {
  std::string what;                 // "value", "gradient" or "hessian" when exit 2, else empty
  std::string summary;              // the error's one line
  std::vector<std::string> notes;   // remarks that do not change the exit status
  std::optional<DomainError> first; // where the first NaN or infinity entered the forward pass
  bool error() const { return !what.empty(); }
};

Diagnosis diagnose(const Expression& expr, const Point& p, double value, const std::vector<double>& gradient,
                   const autodiff::Matrix* hessian) {
  Diagnosis d;
  d.first = domain_error(expr, p);
  const std::size_t n = p.names.size();
  std::vector<std::string> nan_grad, inf_grad, nan_hess;
  for (std::size_t i = 0; i < n; ++i) {
    if (std::isnan(gradient[i])) nan_grad.push_back(p.names[i]);
    if (std::isinf(gradient[i])) inf_grad.push_back(p.names[i]);
  }
  if (hessian)
    for (std::size_t i = 0; i < n; ++i)
      for (std::size_t j = 0; j < n; ++j)
        if (std::isnan((*hessian)[i][j])) nan_hess.push_back(fmt::format("d2/d{}d{}", p.names[i], p.names[j]));
  if (!std::isfinite(value)) {
    d.what = "value";
    d.summary = d.first ? fmt::format("{} is {} at this point, so the value is {}", expr.source(d.first->span),
                                      show(d.first->value), show(value))
                        : fmt::format("the value is {}", show(value));
  } else if (!nan_grad.empty()) {
    d.what = "gradient";
    d.summary = fmt::format("the value is {}, but the gradient is NaN for {}: the derivative is not defined at this "
                            "point",
                            show(value), join(nan_grad));
  } else if (!nan_hess.empty()) {
    d.what = "hessian";
    d.summary = fmt::format("the value and gradient are finite, but the Hessian is NaN at {}", join(nan_hess));
  }
  if (!inf_grad.empty()) d.notes.push_back(fmt::format("the gradient is infinite for {}", join(inf_grad)));
  if (d.first && d.what != "value")
    d.notes.push_back(
        fmt::format("{} is {} at this point; the value is finite", expr.source(d.first->span), show(d.first->value)));
  return d;
}

// On standard error, after the output: the error (if any), then the notes. The sub-expression
// where a NaN or infinity entered is underlined once.
void report(const Expression& expr, const Diagnosis& d) {
  if (d.error()) fmt::print(stderr, "tapegrad: domain error: {}\n", d.summary);
  for (const auto& note : d.notes)
    fmt::print(stderr, "tapegrad: note: {}\n", note);
  if (d.first && (d.error() || !d.notes.empty())) fmt::print(stderr, "{}\n", underline(expr, d.first->span));
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
  std::string eps = "1e-6", rtol = "1e-3", atol = "1e-5";
};

// --eps, --rtol, --atol and --timeout take numbers in the syntax of --at, with a clear message
// (CLI11's range check printed DBL_MAX in 300 digits).
double option_number(std::string_view option, const std::string& text, bool zero_allowed) {
  double v = 0;
  try {
    v = Expression::parse_number(text);
  } catch (const autodiff::ParseError& e) {
    throw UsageError(fmt::format("{}: not a number: {}", option, strip_prefix(e.what())));
  }
  if (zero_allowed ? v < 0 : v <= 0)
    throw UsageError(
        fmt::format("{}: expected a {} number, found {}", option, zero_allowed ? "non-negative" : "positive", text));
  return v;
}

int run_grad(const GradArgs& a) {
  autodiff::GradcheckOptions options;
  if (a.check) {
    options.eps = option_number("--eps", a.eps, false);
    options.rtol = option_number("--rtol", a.rtol, true);
    options.atol = option_number("--atol", a.atol, true);
  }
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
  autodiff::Matrix hessian;
  if (a.hessian) hessian = autodiff::hessian(f, p.values);
  const Diagnosis diagnosis = diagnose(expr, p, value, gradient, a.hessian ? &hessian : nullptr);
  std::optional<autodiff::GradcheckReport> check;
  if (a.check) check = autodiff::gradcheck(f, p.values, options);

  int status = exit_ok;
  if (check && !check->passed) status = exit_check_failed;
  if (diagnosis.error()) status = exit_input_error;

  std::string text;
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
      c["eps"] = options.eps;
      c["rtol"] = options.rtol;
      c["atol"] = options.atol;
      out["check"] = c;
    }
    if (diagnosis.error()) {
      json d;
      d["what"] = diagnosis.what;
      d["message"] = diagnosis.summary;
      if (diagnosis.first) {
        d["subexpression"] = std::string(expr.source(diagnosis.first->span));
        d["begin"] = diagnosis.first->span.begin;
        d["end"] = diagnosis.first->span.end;
        d["value"] = show(diagnosis.first->value);
      }
      out["domain_error"] = d;
    }
    out["notes"] = diagnosis.notes;
    out["nonfinite"] = num.nonfinite;
    put(text, "{}\n", out.dump(2));
  } else {
    std::size_t w = 8;
    for (const auto& name : p.names)
      w = std::max(w, name.size() + 2);
    put(text, "{:<{}}{}\n", "f", w + 2, expr.text());
    if (n > 0) {
      std::vector<std::string> at;
      for (std::size_t i = 0; i < n; ++i)
        at.push_back(fmt::format("{} = {}", p.names[i], show(p.values[i])));
      put(text, "{:<{}}{}\n", "at", w + 2, join(at));
    }
    put(text, "{:<{}}{}\n", "value", w + 2, show(value));
    if (n > 0) {
      put(text, "\ngradient\n");
      for (std::size_t i = 0; i < n; ++i)
        put(text, "  {:<{}}{:>24}\n", fmt::format("d/d{}", p.names[i]), w + 2, show(gradient[i]));
    }
    if (a.hessian && n > 0) {
      put(text, "\nhessian\n  {:<{}}", "", w);
      for (const auto& name : p.names)
        put(text, "{:>24}", name);
      put(text, "\n");
      for (std::size_t i = 0; i < n; ++i) {
        put(text, "  {:<{}}", p.names[i], w);
        for (std::size_t j = 0; j < n; ++j)
          put(text, "{:>24}", show(hessian[i][j]));
        put(text, "\n");
      }
    }
    if (check) {
      put(text,
          "\ngradient check {} (central differences, eps {}; a component passes when |analytic - numeric| "
          "<= {} + {} |numeric|)\n",
          check->passed ? "PASSED" : "FAILED", options.eps, options.atol, options.rtol);
      put(text, "  {:<{}}{:>24}{:>24}{:>12}\n", "", w, "analytic", "numeric", "abs error");
      for (std::size_t i = 0; i < n; ++i)
        put(text, "{} {:<{}}{:>24}{:>24}{:>12}\n", i == check->worst ? '>' : ' ', p.names[i], w,
            show(check->analytic[i]), show(check->numeric[i]),
            show_short(std::fabs(check->analytic[i] - check->numeric[i])));
      if (n > 0)
        put(text, "  worst component {}: abs error {}, rel error {}\n", p.names[check->worst],
            show_short(check->abs_error), show_short(check->rel_error));
    }
  }
  tapegrad_cli::write_stdout(text);
  report(expr, diagnosis);
  return status;
}

struct GraphArgs {
  std::string expression;
  std::vector<std::string> at;
  std::string output;
  int precision = 6;
  std::string timeout = "60";
};

// The DOT text as Graphviz's standard input: an anonymous in-memory file, so nothing is written
// beside the output and nothing can be left behind.
class DotInput {
public:
  explicit DotInput(const std::string& dot) : fd_(::memfd_create("tapegrad-dot", MFD_CLOEXEC)) {
    if (fd_ < 0) throw IoError(fmt::format("cannot hold the DOT text for Graphviz: {}", std::strerror(errno)));
    std::string_view rest(dot);
    while (!rest.empty()) {
      const ssize_t k = ::write(fd_, rest.data(), rest.size());
      if (k < 0 && errno == EINTR) continue;
      if (k < 0) throw IoError(fmt::format("cannot hold the DOT text for Graphviz: {}", std::strerror(errno)));
      rest.remove_prefix(static_cast<std::size_t>(k));
    }
    ::lseek(fd_, 0, SEEK_SET);
  }
  ~DotInput() { ::close(fd_); }
  DotInput(const DotInput&) = delete;
  DotInput& operator=(const DotInput&) = delete;
  int fd() const { return fd_; }

private:
  int fd_;
};

int run_graph(const GraphArgs& a) {
  const double timeout = option_number("--timeout", a.timeout, false);
  const Expression expr = parse_expression(a.expression);
  const Point p = parse_point(a.at, expr);
  std::string dot;
  double value = 0;
  std::vector<double> gradient;
  std::size_t nodes = 0;
  {
    autodiff::Tape tape;
    const std::vector<Var> xs(p.values.begin(), p.values.end());
    const Var y = expr.evaluate<Var>(in_expression_order(p, xs));
    value = y.value();
    y.backward();
    for (const Var& x : xs)
      gradient.push_back(x.grad());
    autodiff::DotOptions options;
    options.precision = a.precision;
    options.graph_name = expr.text();
    for (std::size_t i = 0; i < xs.size(); ++i)
      options.names[xs[i].index()] = p.names[i];
    dot = autodiff::to_dot(tape, y, options);
    nodes = tape.size();
  }
  const Diagnosis diagnosis = diagnose(expr, p, value, gradient, nullptr);
  const int status = diagnosis.error() ? exit_input_error : exit_ok;

  if (a.output.empty() || a.output == "-") {
    tapegrad_cli::write_stdout(dot);
    report(expr, diagnosis);
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
  const auto write_dot = [&](const fs::path& path, autodiff::WriteOptions options) {
    autodiff::write_file_atomically(
        path, [&](autodiff::FileSink& sink) { sink.write(dot); }, options);
  };
  std::string text;
  if (ext == ".dot") {
    write_dot(out, {});
    put(text, "wrote {}; render it with: {}\n", out.string(), render_hint);
  } else if (const auto graphviz = tapegrad_cli::find_on_path("dot")) {
    const DotInput input(dot);
    // Graphviz writes straight into the new file; the file replaces `out` only if it succeeded.
    autodiff::write_file_atomically(out, [&](autodiff::FileSink& sink) {
      int rc = 0;
      try {
        rc = tapegrad_cli::run_program(*graphviz, {fmt::format("-T{}", ext.substr(1))}, input.fd(), sink.descriptor(),
                                       timeout);
      } catch (const IoError& e) {
        throw IoError(fmt::format("{} while rendering {} ({} tape nodes); write the DOT text with -o {} (or raise "
                                  "--timeout)",
                                  e.what(), a.output, nodes, tapegrad_cli::shell_quote(dot_path.string())));
      }
      if (rc != 0)
        throw IoError(fmt::format("{} exited with status {} while rendering {}", graphviz->string(), rc, a.output));
    });
    put(text, "wrote {}\n", out.string());
  } else {
    // The fallback writes a file that was not asked for: never over an existing one.
    try {
      write_dot(dot_path, {.replace = false});
    } catch (const autodiff::FileError& e) {
      throw IoError(fmt::format("Graphviz 'dot' is not on PATH, so {} was not rendered, and the DOT text was not "
                                "written to {}: {} (use -o {} to replace it)",
                                out.string(), dot_path.string(), e.reason,
                                tapegrad_cli::shell_quote(dot_path.string())));
    }
    fmt::print(stderr, "tapegrad: Graphviz 'dot' is not on PATH, so {} was not rendered\n", out.string());
    put(text, "wrote {}; render it with: {}\n", dot_path.string(), render_hint);
  }
  tapegrad_cli::write_stdout(text);
  report(expr, diagnosis);
  return status;
}

// An expression that starts with '-' ('-x^2') looks like a short option to CLI11. Such arguments
// (one dash, not a known option, not the value of an option) are moved after a "--", where
// CLI11 takes them as positional. An explicit "--" does the same for the one argument after it,
// wherever it is: options may still follow ('grad -- -x^2 --at x=1').
std::vector<std::string> normalize_args(int argc, char** argv) {
  const std::vector<std::string_view> with_value = {"--at", "--eps",    "--rtol",      "--atol",
                                                    "-o",   "--output", "--precision", "--timeout"};
  std::vector<std::string> out, moved;
  for (int i = 0; i < argc; ++i) {
    const std::string_view arg(argv[i]);
    if (i == 0) {
      out.emplace_back(arg);
    } else if (arg == "--") {
      if (i + 1 < argc) moved.emplace_back(argv[++i]);
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

// CLI11 reports unexpected arguments last to first; they are collected (allow_extras) and
// reported here in the order they were typed.
void check_extras(const std::vector<std::string>& typed, std::vector<std::string> extras) {
  std::erase(extras, "--");
  if (extras.empty()) return;
  std::vector<std::string> ordered;
  for (std::size_t i = 1; i < typed.size(); ++i) {
    const auto it = std::find(extras.begin(), extras.end(), typed[i]);
    if (it == extras.end()) continue;
    ordered.push_back(fmt::format("'{}'", typed[i]));
    extras.erase(it);
  }
  for (const auto& e : extras)
    ordered.push_back(fmt::format("'{}'", e));
  const bool options = std::all_of(ordered.begin(), ordered.end(), [](const std::string& e) { return e[1] == '-'; });
  throw UsageError(options ? fmt::format("unknown option{} {} (run with --help for the options)",
                                         ordered.size() == 1 ? "" : "s", join(ordered))
                           : fmt::format("unexpected argument{} {} (the expression is one argument: quote it; run with "
                                         "--help for the options)",
                                         ordered.size() == 1 ? "" : "s", join(ordered)));
}

// The functions an expression may call, from the parser's table (which the op list generates).
std::string functions_help() {
  std::vector<std::string> of[2];
  for (const autodiff::ExpressionFunction& f : Expression::functions())
    of[f.arity == 1 ? 0 : 1].emplace_back(f.name);
  return fmt::format("Functions of one argument: {}\nFunctions of two arguments: {}", join(of[0], " "),
                     join(of[1], " "));
}

int run(int argc, char** argv) {
  CLI::App app{"tapegrad: values, gradients, Hessians, gradient checks and tape graphs of scalar expressions.\n"
               "Expression syntax, examples and exit statuses: docs/cli.md"};
  app.set_version_flag("--version", fmt::format("tapegrad {}", TAPEGRAD_VERSION));
  app.footer(functions_help());
  app.require_subcommand(1);

  GradArgs g;
  CLI::App* grad = app.add_subcommand("grad", "Value and gradient of an expression at a point");
  grad->allow_extras();
  grad->add_option("expression", g.expression, "The expression, e.g. 'x*y + sin(x)'")->required();
  grad->add_option("--at", g.at, "Values of the variables: --at x=1.5,y=-2 (may be repeated)")->allow_extra_args(false);
  grad->add_flag("--hessian", g.hessian, "Also print the Hessian (rows and columns in --at order)");
  CLI::Option* check = grad->add_flag("--check", g.check, "Compare the gradient with central finite differences");
  grad->add_option("--eps", g.eps, "Finite-difference step (positive)")
      ->type_name("NUMBER")
      ->capture_default_str()
      ->needs(check);
  grad->add_option("--rtol", g.rtol, "Relative tolerance of the check")
      ->type_name("NUMBER")
      ->capture_default_str()
      ->needs(check);
  grad->add_option("--atol", g.atol, "Absolute tolerance of the check")
      ->type_name("NUMBER")
      ->capture_default_str()
      ->needs(check);
  grad->add_flag("--json", g.json, "Print one JSON object instead of tables (also for errors)");

  GraphArgs d;
  CLI::App* graph = app.add_subcommand("graph", "Draw the tape of an expression (with gradients) with Graphviz");
  graph->allow_extras();
  graph->add_option("expression", d.expression, "The expression")->required();
  graph->add_option("--at", d.at, "Values of the variables: --at x=1.5,y=-2 (may be repeated)")
      ->allow_extra_args(false);
  graph->add_option("-o,--output", d.output,
                    "Output file: .svg or .png (rendered with Graphviz dot if it is on PATH) or .dot; "
                    "default: DOT text on standard output");
  graph->add_option("--precision", d.precision, "Significant digits in the labels")
      ->capture_default_str()
      ->check(CLI::Range(1, 17));
  graph->add_option("--timeout", d.timeout, "Seconds Graphviz may take to render .svg or .png")
      ->type_name("SECONDS")
      ->capture_default_str();

  const std::vector<std::string> typed = normalize_args(argc, argv);
  try {
    std::vector<std::string> args = typed;
    std::reverse(args.begin(), args.end()); // CLI11 takes them last to first
    args.pop_back();                        // the program name
    app.parse(args);
  } catch (const CLI::ParseError& e) {
    // --help and --version are "errors" with status 0, printed on standard output (checked here);
    // every real one is a usage error.
    if (e.get_exit_code() == 0) {
      app.exit(e);
      std::cout.flush();
      if (!std::cout) throw IoError("cannot write standard output");
      return exit_ok;
    }
    throw UsageError(e.what());
  }
  check_extras(typed, grad->parsed() ? grad->remaining() : graph->remaining());
  if (grad->parsed()) return run_grad(g);
  return run_graph(d);
}

// With --json, errors are one JSON object on standard output too (and a message on standard error).
bool json_requested(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg(argv[i]);
    if (arg == "--json") return true;
    if (arg == "--") ++i; // the next argument is the expression, even if it is "--json"
  }
  return false;
}

int fail(bool as_json, int status, std::string_view kind, std::string_view message, json details = json::object()) {
  fmt::print(stderr, "tapegrad: {}\n", message);
  if (!as_json) return status;
  json error = {{"kind", kind}, {"message", std::string(message.substr(0, message.find('\n')))}};
  error.update(details);
  error["exit_status"] = status;
  try {
    tapegrad_cli::write_stdout(json{{"error", error}}.dump(2) + "\n");
  } catch (const IoError& e) {
    fmt::print(stderr, "tapegrad: {}\n", e.what());
    return exit_io_error;
  }
  return status;
}

} // namespace

int main(int argc, char** argv) {
  const bool as_json = json_requested(argc, argv);
  try {
    return run(argc, argv);
  } catch (const UsageError& e) {
    return fail(as_json, exit_input_error, "usage", e.what());
  } catch (const autodiff::ParseError& e) {
    return fail(as_json, exit_input_error, "parse", strip_prefix(e.what()),
                {{"column", e.position + 1}, {"expected", e.expected}});
  } catch (const autodiff::FileError& e) { // before autodiff::Error, which it is
    fmt::print(stderr, "tapegrad: {}: {}\n", e.path.string(), e.reason);
    return exit_io_error;
  } catch (const autodiff::Error& e) { // invalid options, a tape too large to draw
    return fail(as_json, exit_input_error, "input", strip_prefix(e.what()));
  } catch (const IoError& e) { // standard output or Graphviz: no JSON, its channel is what failed
    fmt::print(stderr, "tapegrad: {}\n", e.what());
    return exit_io_error;
  } catch (const std::exception& e) {
    fmt::print(stderr, "tapegrad: {}\n", e.what());
    return exit_io_error;
  }
}
