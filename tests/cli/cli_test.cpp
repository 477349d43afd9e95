// Runs the tapegrad executable (no shell: posix_spawn with an argument vector) and checks its exit
// status, its messages, and the numbers of its --json output against values computed here.

#include <autodiff/expression.hpp>

#include <boost/test/unit_test.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <limits>
#include <spawn.h>
#include <sstream>
#include <string>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

extern char** environ;

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

struct Result {
  int status = -1;
  std::string out, err;
  json parsed() const { return json::parse(out); }
};

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

fs::path scratch() {
  fs::path d(TAPEGRAD_TEST_SCRATCH);
  fs::create_directories(d);
  return d;
}

struct RunOptions {
  const std::string* path_env = nullptr; // replaces PATH (to hide Graphviz)
  fs::path cwd = scratch();
  std::string stdout_path;         // default: a file read back into Result::out
  std::vector<std::string> prefix; // run through this (a shell setting limits) instead of directly
};

Result run_with(std::vector<std::string> args, const RunOptions& o) {
  args.insert(args.begin(), TAPEGRAD_EXE);
  args.insert(args.begin(), o.prefix.begin(), o.prefix.end());
  std::vector<char*> argv;
  for (auto& a : args)
    argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<std::string> env_storage;
  for (char** e = environ; *e != nullptr; ++e)
    if (o.path_env == nullptr || std::string_view(*e).substr(0, 5) != "PATH=") env_storage.emplace_back(*e);
  if (o.path_env != nullptr) env_storage.push_back("PATH=" + *o.path_env);
  std::vector<char*> envp;
  for (auto& e : env_storage)
    envp.push_back(e.data());
  envp.push_back(nullptr);

  const fs::path out = o.stdout_path.empty() ? o.cwd / "stdout.txt" : fs::path(o.stdout_path);
  const fs::path err = o.cwd / "stderr.txt";
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  // A device (/dev/full) is only opened for writing: O_CREAT and O_TRUNC are for the scratch file.
  posix_spawn_file_actions_addopen(&fa, 1, out.c_str(), o.stdout_path.empty() ? O_WRONLY | O_CREAT | O_TRUNC : O_WRONLY,
                                   0644);
  posix_spawn_file_actions_addopen(&fa, 2, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addchdir_np(&fa, o.cwd.c_str());
  pid_t pid = 0;
  const int rc = posix_spawn(&pid, argv[0], &fa, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  BOOST_REQUIRE_MESSAGE(rc == 0, "cannot run " << argv[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
  }
  BOOST_REQUIRE_MESSAGE(WIFEXITED(status), "tapegrad did not exit normally");
  return Result{WEXITSTATUS(status), o.stdout_path.empty() ? slurp(out) : "", slurp(err)};
}

// Runs tapegrad with args; `path_env`, if given, replaces PATH (to hide Graphviz).
Result run(std::vector<std::string> args, const std::string* path_env = nullptr, const fs::path& cwd = scratch()) {
  RunOptions o;
  o.path_env = path_env;
  o.cwd = cwd;
  return run_with(std::move(args), o);
}

bool contains(const std::string& s, std::string_view part) { return s.find(part) != std::string::npos; }

unsigned mode_of(const fs::path& p) {
  struct stat st {};
  BOOST_REQUIRE(::stat(p.c_str(), &st) == 0);
  return st.st_mode & 07777;
}

// A fresh directory under the scratch directory, for tests that look at every file in it.
fs::path fresh_dir(const std::string& name) {
  const fs::path d = scratch() / name;
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

std::vector<std::string> entries(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir))
    names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

bool have_dot() {
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path ? path : "");
  for (std::string d; std::getline(dirs, d, ':');)
    if (!d.empty() && access((fs::path(d) / "dot").c_str(), X_OK) == 0) return true;
  return false;
}

} // namespace

BOOST_AUTO_TEST_SUITE(cli)

BOOST_AUTO_TEST_CASE(value_and_gradient_in_json) {
  const Result r = run({"grad", "x*y+sin(x)", "--at", "x=1.5,y=-2", "--json"});
  BOOST_TEST_REQUIRE(r.status == 0, r.err);
  const json j = r.parsed();
  const double x = 1.5, y = -2;
  BOOST_TEST(j["expression"] == "x*y+sin(x)");
  BOOST_TEST(j["value"].get<double>() == x * y + std::sin(x)); // the same operations, so exactly
  BOOST_TEST(j["gradient"]["x"].get<double>() == y + std::cos(x));
  BOOST_TEST(j["gradient"]["y"].get<double>() == x);
  BOOST_TEST(j["nonfinite"].empty());
  BOOST_TEST(!j.contains("hessian"));
  BOOST_TEST(!j.contains("check"));
}

BOOST_AUTO_TEST_CASE(text_output_has_the_numbers) {
  const Result r = run({"grad", "x*y+sin(x)", "--at", "x=1.5,y=-2"});
  BOOST_TEST_REQUIRE(r.status == 0, r.err);
  BOOST_TEST(contains(r.out, "-2.0025050133959454"), r.out);
  BOOST_TEST(contains(r.out, "d/dy"), r.out);
}

BOOST_AUTO_TEST_CASE(hessian_rows_follow_at_order) {
  // f = x^2 y + y^3: f_yy = 6y, f_yx = 2x, f_xx = 2y. --at lists y first.
  const Result r = run({"grad", "x^2*y + y^3", "--at", "y=-2", "--at", "x=1.5", "--hessian", "--json"});
  BOOST_TEST_REQUIRE(r.status == 0, r.err);
  const json j = r.parsed();
  const double x = 1.5, y = -2;
  BOOST_TEST(j["variables"] == json({"y", "x"}));
  const auto h = j["hessian"].get<std::vector<std::vector<double>>>();
  BOOST_REQUIRE(h.size() == 2u);
  const auto tol = boost::test_tools::tolerance(1e-12);
  BOOST_TEST(h[0][0] == 6 * y, tol);
  BOOST_TEST(h[0][1] == 2 * x, tol);
  BOOST_TEST(h[1][0] == 2 * x, tol);
  BOOST_TEST(h[1][1] == 2 * y, tol);
  BOOST_TEST(j["gradient"]["x"].get<double>() == 2 * x * y, tol);
  BOOST_TEST(j["gradient"]["y"].get<double>() == x * x + 3 * y * y, tol);
}

BOOST_AUTO_TEST_CASE(check_passes_for_smooth_functions) {
  const Result r = run({"grad", "exp(x)*cos(y)", "--at", "x=0.3,y=0.4", "--check", "--json"});
  BOOST_TEST_REQUIRE(r.status == 0, r.err);
  const json j = r.parsed();
  BOOST_TEST(j["check"]["passed"] == true);
  BOOST_TEST(j["check"]["numeric"]["x"].get<double>() == std::exp(0.3) * std::cos(0.4),
             boost::test_tools::tolerance(1e-8));
}

BOOST_AUTO_TEST_CASE(check_fails_at_a_kink_with_exit_1) {
  // relu'(0) is 0 by convention; the central difference sees (eps - 0) / (2 eps) = 0.5.
  const Result r = run({"grad", "relu(x)", "--at", "x=0", "--check", "--json"});
  BOOST_TEST(r.status == 1);
  const json j = r.parsed();
  BOOST_TEST(j["check"]["passed"] == false);
  BOOST_TEST(j["check"]["worst"] == "x");
  BOOST_TEST(j["gradient"]["x"].get<double>() == 0.0);
  BOOST_TEST(j["check"]["numeric"]["x"].get<double>() == 0.5, boost::test_tools::tolerance(1e-9));
  BOOST_TEST(j["check"]["abs_error"].get<double>() == 0.5, boost::test_tools::tolerance(1e-9));
  const Result t = run({"grad", "relu(x)", "--at", "x=0", "--check"});
  BOOST_TEST(t.status == 1);
  BOOST_TEST(contains(t.out, "gradient check FAILED"), t.out);
}

BOOST_AUTO_TEST_CASE(parse_error_exits_2_with_a_caret) {
  const Result r = run({"grad", "x + * y", "--at", "x=1,y=2"});
  BOOST_TEST(r.status == 2);
  BOOST_TEST(r.out.empty());
  BOOST_TEST(contains(r.err, "tapegrad: parse: column 5: expected an operand"), r.err);
  BOOST_TEST(contains(r.err, "\n  x + * y\n      ^"), r.err);
}

BOOST_AUTO_TEST_CASE(missing_extra_and_duplicate_variables_exit_2) {
  const Result missing = run({"grad", "x*y*z", "--at", "x=1"});
  BOOST_TEST(missing.status == 2);
  BOOST_TEST(contains(missing.err, "no value for the variables y, z"), missing.err);
  const Result extra = run({"grad", "x", "--at", "x=1,w=2"});
  BOOST_TEST(extra.status == 2);
  BOOST_TEST(contains(extra.err, "a value for w, which is not a variable"), extra.err);
  const Result dup = run({"grad", "x", "--at", "x=1,x=2"});
  BOOST_TEST(dup.status == 2);
  BOOST_TEST(contains(dup.err, "'x' is given more than once"), dup.err);
  const Result bad = run({"grad", "x", "--at", "x=1.5.2"});
  BOOST_TEST(bad.status == 2);
  BOOST_TEST(contains(bad.err, "the value of 'x' is not a number"), bad.err);
  const Result noeq = run({"grad", "x", "--at", "x"});
  BOOST_TEST(noeq.status == 2);
  BOOST_TEST(contains(noeq.err, "expected name=value"), noeq.err);
}

BOOST_AUTO_TEST_CASE(domain_error_names_the_subexpression) {
  const Result r = run({"grad", "x * log(x - 2)", "--at", "x=1", "--json"});
  BOOST_TEST(r.status == 2);
  const json j = r.parsed();
  BOOST_TEST(j["value"].is_null());
  BOOST_TEST(j["domain_error"]["subexpression"] == "log(x - 2)");
  BOOST_TEST(j["nonfinite"].get<std::vector<std::string>>().front() == "value");
  BOOST_TEST(contains(r.err, "domain error: log(x - 2)"), r.err);
  const Result z = run({"grad", "x/(y-y)", "--at", "x=0,y=1"});
  BOOST_TEST(z.status == 2);
  BOOST_TEST(contains(z.err, "x/(y-y) is"), z.err);
}

BOOST_AUTO_TEST_CASE(nonfinite_gradient_is_null_in_json) {
  const Result r = run({"grad", "sqrt(x)", "--at", "x=0", "--json"});
  BOOST_TEST(r.status == 0, r.err);
  const json j = r.parsed();
  BOOST_TEST(j["value"].get<double>() == 0.0);
  BOOST_TEST(j["gradient"]["x"].is_null());
  BOOST_TEST(j["nonfinite"] == json({"gradient.x"}));
}

BOOST_AUTO_TEST_CASE(expression_starting_with_minus) {
  for (const auto& args : {std::vector<std::string>{"grad", "-x^2", "--at", "x=3", "--json"},
                           std::vector<std::string>{"grad", "--at", "x=3", "--json", "--", "-x^2"}}) {
    const Result r = run(args);
    BOOST_TEST_REQUIRE(r.status == 0, r.err);
    BOOST_TEST(r.parsed()["value"].get<double>() == -9.0);
    BOOST_TEST(r.parsed()["gradient"]["x"].get<double>() == -6.0);
  }
}

// --help lists the functions of the expression language (the parser's table, generated from the
// op list), and the tool takes each of them: a value, or a domain error, never a parse error.
BOOST_AUTO_TEST_CASE(help_lists_every_function_and_each_is_taken) {
  const Result h = run({"--help"});
  BOOST_TEST(h.status == 0);
  BOOST_TEST(contains(h.out, "Functions of one argument: exp log "), h.out);
  BOOST_TEST(contains(h.out, "Functions of two arguments: pow atan2 hypot max min"), h.out);
  BOOST_TEST(autodiff::Expression::functions().size() >= 30u);
  for (const autodiff::ExpressionFunction& f : autodiff::Expression::functions()) {
    const std::string name(f.name);
    BOOST_TEST((contains(h.out, " " + name + " ") || contains(h.out, " " + name + "\n")), name);
    const std::string call = name + (f.arity == 1 ? "(x)" : "(x, y)");
    const Result r = run({"grad", call, "--at", f.arity == 1 ? "x=0.5" : "x=0.5,y=0.25", "--json"});
    const json p = r.parsed();
    BOOST_TEST((r.status == 0 || p.contains("domain_error")), call << ": " << r.out << r.err);
  }
}

BOOST_AUTO_TEST_CASE(help_version_and_usage_errors) {
  BOOST_TEST(run({"--help"}).status == 0);
  BOOST_TEST(contains(run({"grad", "--help"}).out, "--hessian"));
  const Result v = run({"--version"});
  BOOST_TEST(v.status == 0);
  BOOST_TEST(contains(v.out, "tapegrad 0."), v.out);
  BOOST_TEST(run({}).status == 2);
  BOOST_TEST(run({"grad", "x", "--at", "x=1", "--frobnicate"}).status == 2);
  BOOST_TEST(run({"grad", "x", "--at", "x=1", "--eps", "1e-3"}).status == 2); // --eps needs --check
  BOOST_TEST(run({"graph", "x", "--at", "x=1", "-o", "out.pdf"}).status == 2);
}

BOOST_AUTO_TEST_CASE(graph_writes_valid_dot) {
  const fs::path dir = scratch();
  fs::remove(dir / "g.dot");
  const Result r = run({"graph", "x*y + sin(x)*2.5", "--at", "x=1.5,y=-2", "-o", "g.dot"});
  BOOST_TEST_REQUIRE(r.status == 0, r.err);
  const std::string dot = slurp(dir / "g.dot");
  BOOST_TEST(dot.starts_with("digraph"));
  BOOST_TEST(contains(dot, "mul_scalar \u00d72.5"), dot);
  BOOST_TEST(contains(dot, "x (#0 leaf)\\nvalue 1.5\\ngrad -1.82316"), dot); // y + 2.5 cos(x)
  BOOST_TEST(contains(r.out, "dot -Tsvg g.dot -o g.svg"), r.out);
  for (const auto& e : fs::directory_iterator(dir)) // no temporary file left behind
    BOOST_TEST(!contains(e.path().filename().string(), ".tmp-"));
  if (!have_dot()) return;
  // Graphviz itself accepts it.
  const std::string cmd = "dot -Tsvg '" + (dir / "g.dot").string() + "' -o '" + (dir / "check.svg").string() + "'";
  BOOST_TEST(std::system(cmd.c_str()) == 0);
  BOOST_TEST(contains(slurp(dir / "check.svg"), "<svg"));
}

BOOST_AUTO_TEST_CASE(graph_renders_svg_or_falls_back_to_dot) {
  const fs::path dir = scratch();
  if (have_dot()) {
    fs::remove(dir / "r.svg");
    const Result r = run({"graph", "exp(x)/y", "--at", "x=0,y=2", "-o", "r.svg"});
    BOOST_TEST_REQUIRE(r.status == 0, r.err);
    BOOST_TEST(contains(slurp(dir / "r.svg"), "<svg"));
  }
  fs::remove(dir / "s.dot");
  fs::remove(dir / "s.svg");
  const std::string empty_path = (dir / "no-such-dir").string();
  const Result r = run({"graph", "exp(x)/y", "--at", "x=0,y=2", "-o", "s.svg"}, &empty_path);
  BOOST_TEST_REQUIRE(r.status == 0, r.err);
  BOOST_TEST(!fs::exists(dir / "s.svg"));
  BOOST_TEST(slurp(dir / "s.dot").starts_with("digraph"));
  BOOST_TEST(contains(r.err, "not on PATH"), r.err);
  BOOST_TEST(contains(r.out, "dot -Tsvg s.dot -o s.svg"), r.out);
}

// Output that never arrived is a failure: standard output on a full device exits 3, naming it.
BOOST_AUTO_TEST_CASE(unwritable_standard_output_exits_3) {
  RunOptions full;
  full.stdout_path = "/dev/full"; // opened for writing only, never replaced
  for (const auto& args :
       {std::vector<std::string>{"grad", "x^2", "--at", "x=1", "--json"},
        std::vector<std::string>{"grad", "x^2", "--at", "x=1"}, std::vector<std::string>{"graph", "x^2", "--at", "x=1"},
        std::vector<std::string>{"graph", "x^2", "--at", "x=1", "-o", "full.dot"},
        std::vector<std::string>{"grad", "x +", "--at", "x=1", "--json"}, // the error object
        std::vector<std::string>{"--help"}}) {
    const Result r = run_with(args, full);
    BOOST_TEST(r.status == 3, args.front() << " " << args.back());
    BOOST_TEST(contains(r.err, "standard output"), r.err);
  }
}

// docs/cli.md: with --json, exactly one JSON object on standard output, errors included.
BOOST_AUTO_TEST_CASE(json_errors_are_one_json_object) {
  const Result parse = run({"grad", "x + * y", "--at", "x=1,y=2", "--json"});
  BOOST_TEST(parse.status == 2);
  BOOST_TEST_REQUIRE(!parse.out.empty());
  const json p = parse.parsed();
  BOOST_TEST(p["error"]["kind"] == "parse");
  BOOST_TEST(p["error"]["column"] == 5);
  BOOST_TEST(p["error"]["exit_status"] == 2);
  BOOST_TEST(contains(p["error"]["message"].get<std::string>(), "expected an operand"));
  BOOST_TEST(contains(parse.err, "tapegrad: parse: column 5"), parse.err); // and the message as before
  for (const auto& args :
       {std::vector<std::string>{"grad", "x", "--at", "x=1", "--json", "--frobnicate"},
        std::vector<std::string>{"grad", "x*y", "--at", "x=1", "--json"}, std::vector<std::string>{"grad", "--json"}}) {
    const Result r = run(args);
    BOOST_TEST(r.status == 2);
    BOOST_TEST_REQUIRE(!r.out.empty(), args.back());
    BOOST_TEST(r.parsed()["error"]["kind"] == "usage");
  }
}

// Exit 2 is for results that are not finite, not for an infinite intermediate the value survives.
BOOST_AUTO_TEST_CASE(finite_results_with_infinite_intermediates_exit_0_with_a_note) {
  struct Case {
    std::string expr, at, sub;
    double value;
  };
  for (const Case& c : {Case{"exp(-1/x^2)", "x=0", "-1/x^2", 0.0},
                        Case{"atan(1/x)", "x=0", "1/x", std::atan(std::numeric_limits<double>::infinity())},
                        Case{"1/(1+exp(x))", "x=1000", "exp(x)", 0.0}}) {
    const Result r = run({"grad", c.expr, "--at", c.at, "--json"});
    BOOST_TEST(r.status == 0, c.expr << ": " << r.err);
    const json j = r.parsed();
    BOOST_TEST(j["value"].get<double>() == c.value);
    BOOST_TEST(j["gradient"]["x"].get<double>() == 0.0);
    BOOST_TEST(!j.contains("domain_error"));
    BOOST_TEST(j["nonfinite"].empty());
    BOOST_TEST(contains(r.err, "note: " + c.sub + " is"), r.err);
    BOOST_TEST(!contains(r.err, "domain error"), r.err);
  }
}

// A NaN gradient is not a result: exit 2, and the message says it is the gradient, and of what.
BOOST_AUTO_TEST_CASE(nan_gradient_exits_2) {
  const Result r = run({"grad", "sqrt(x-x)", "--at", "x=1", "--json"});
  BOOST_TEST(r.status == 2);
  const json j = r.parsed();
  BOOST_TEST(j["value"].get<double>() == 0.0);
  BOOST_TEST(j["domain_error"]["what"] == "gradient");
  BOOST_TEST(j["nonfinite"] == json({"gradient.x"}));
  BOOST_TEST(contains(r.err, "domain error: the value is 0, but the gradient is NaN for x"), r.err);
  const Result t = run({"grad", "atan2(x, y)", "--at", "x=0,y=0"});
  BOOST_TEST(t.status == 2);
  BOOST_TEST(contains(t.err, "the gradient is NaN for x, y"), t.err);
  BOOST_TEST(!contains(t.out, "-nan"), t.out); // NaN's sign is noise
  BOOST_TEST(contains(t.out, "NaN"), t.out);
  const Result g = run({"graph", "sqrt(x-x)", "--at", "x=1"});
  BOOST_TEST(g.status == 2);
  BOOST_TEST(!contains(g.out, "-nan"), g.out);
  BOOST_TEST(contains(g.out, "grad NaN"), g.out);
}

// The CLI writes files with the library's writer: permissions kept, symbolic links written
// through, FIFOs and other non-regular files refused.
BOOST_AUTO_TEST_CASE(graph_output_keeps_permissions_links_and_fifos) {
  const fs::path dir = fresh_dir("writer");
  { std::ofstream(dir / "g.dot") << "old"; }
  ::chmod((dir / "g.dot").c_str(), 0600);
  RunOptions o;
  o.cwd = dir;
  const Result r = run_with({"graph", "x*y", "--at", "x=1,y=2", "-o", "g.dot"}, o);
  BOOST_TEST_REQUIRE(r.status == 0, r.err);
  BOOST_TEST(slurp(dir / "g.dot").starts_with("digraph"));
  BOOST_TEST(mode_of(dir / "g.dot") == 0600u);

  fs::create_symlink("g.dot", dir / "link.dot");
  const Result l = run_with({"graph", "x+y", "--at", "x=1,y=2", "-o", "link.dot"}, o);
  BOOST_TEST_REQUIRE(l.status == 0, l.err);
  BOOST_TEST(fs::is_symlink(dir / "link.dot"));
  BOOST_TEST(contains(slurp(dir / "g.dot"), "#2 add"), slurp(dir / "g.dot"));
  BOOST_TEST(mode_of(dir / "g.dot") == 0600u);

  BOOST_REQUIRE(::mkfifo((dir / "fifo.dot").c_str(), 0600) == 0);
  const Result f = run_with({"graph", "x", "--at", "x=1", "-o", "fifo.dot"}, o);
  BOOST_TEST(f.status == 3);
  BOOST_TEST(contains(f.err, "fifo.dot: it is a FIFO, not a regular file"), f.err);
  BOOST_TEST(fs::is_fifo(dir / "fifo.dot"));
  BOOST_TEST(entries(dir) == (std::vector<std::string>{"fifo.dot", "g.dot", "link.dot", "stderr.txt", "stdout.txt"}),
             boost::test_tools::per_element());
}

// A write that fails halfway (here: the file size limit, as a full disk would) names the output
// that was asked for, not a hidden temporary file, and leaves nothing behind.
BOOST_AUTO_TEST_CASE(failed_write_names_the_requested_file) {
  const fs::path dir = fresh_dir("efbig");
  std::string expr = "x";
  for (int i = 0; i < 100; ++i)
    expr += "+x";
  RunOptions o;
  o.cwd = dir;
  o.prefix = {"/bin/sh", "-c", "trap '' XFSZ; ulimit -f 4; exec \"$0\" \"$@\""}; // 2 KB at most
  const Result r = run_with({"graph", expr, "--at", "x=1", "-o", "big.dot"}, o);
  BOOST_TEST(r.status == 3);
  BOOST_TEST(contains(r.err, "big.dot"), r.err);
  BOOST_TEST(contains(r.err, "File too large"), r.err);
  BOOST_TEST(!contains(r.err, ".tmp"), r.err);
  BOOST_TEST(entries(dir) == (std::vector<std::string>{"stderr.txt", "stdout.txt"}), boost::test_tools::per_element());
}

// Without Graphviz, -o X.svg writes X.dot instead, but never over an existing X.dot.
BOOST_AUTO_TEST_CASE(graph_fallback_never_overwrites_an_existing_dot) {
  const fs::path dir = fresh_dir("fallback");
  { std::ofstream(dir / "keep.dot") << "precious"; }
  RunOptions o;
  o.cwd = dir;
  const std::string no_dot = (dir / "no-such-dir").string();
  o.path_env = &no_dot;
  const Result r = run_with({"graph", "x*y", "--at", "x=1,y=2", "-o", "keep.svg"}, o);
  BOOST_TEST(r.status == 3);
  BOOST_TEST(slurp(dir / "keep.dot") == "precious");
  BOOST_TEST(contains(r.err, "keep.dot: it already exists"), r.err);
  BOOST_TEST(!fs::exists(dir / "keep.svg"));
}

// Graphviz gets a bounded time: a 'dot' that never finishes is stopped, and the message says how
// to get the drawing anyway.
BOOST_AUTO_TEST_CASE(graphviz_is_stopped_at_the_timeout) {
  const fs::path dir = fresh_dir("slowdot");
  fs::create_directories(dir / "bin");
  {
    std::ofstream script(dir / "bin/dot");
    script << "#!/bin/sh\nexec /bin/sleep 60\n";
  }
  ::chmod((dir / "bin/dot").c_str(), 0755);
  RunOptions o;
  o.cwd = dir;
  const std::string path = (dir / "bin").string();
  o.path_env = &path;
  const auto start = std::chrono::steady_clock::now();
  const Result r = run_with({"graph", "x*y", "--at", "x=1,y=2", "-o", "slow.svg", "--timeout", "0.5"}, o);
  const bool quick = std::chrono::steady_clock::now() - start < std::chrono::seconds(20);
  BOOST_TEST(quick);
  BOOST_TEST(r.status == 3);
  BOOST_TEST(contains(r.err, "did not finish within 0.5 s"), r.err);
  BOOST_TEST(contains(r.err, "-o slow.dot"), r.err);
  BOOST_TEST(entries(dir) == (std::vector<std::string>{"bin", "stderr.txt", "stdout.txt"}),
             boost::test_tools::per_element());
}

// A tiny positive step is a step; the message never prints DBL_MAX in 300 digits.
BOOST_AUTO_TEST_CASE(check_options_have_clear_messages) {
  const Result eps = run({"grad", "x", "--at", "x=1", "--check", "--eps", "5e-324"});
  BOOST_TEST(!contains(eps.err, "17976931348623157"), eps.err);
  BOOST_TEST(eps.status == 1, eps.err);
  const Result zero = run({"grad", "x", "--at", "x=1", "--check", "--eps", "0"});
  BOOST_TEST(zero.status == 2);
  BOOST_TEST(contains(zero.err, "--eps: expected a positive number, found 0"), zero.err);
  const Result nan = run({"grad", "x", "--at", "x=1", "--check", "--rtol", "nan"});
  BOOST_TEST(nan.status == 2);
  BOOST_TEST(contains(nan.err, "--rtol: not a number"), nan.err);
}

// "--" marks the expression wherever it stands (docs/cli.md); options may follow it.
BOOST_AUTO_TEST_CASE(double_dash_then_options) {
  const Result dash = run({"grad", "--", "-x^2", "--at", "x=1", "--json"});
  BOOST_TEST_REQUIRE(dash.status == 0, dash.err);
  BOOST_TEST(dash.parsed()["value"].get<double>() == -1.0);
}

// CLI11 listed unexpected arguments last to first.
BOOST_AUTO_TEST_CASE(unexpected_arguments_in_the_order_typed) {
  const Result extra = run({"grad", "x", "y", "z", "--at", "x=1"});
  BOOST_TEST(extra.status == 2);
  BOOST_TEST(contains(extra.err, "unexpected arguments 'y', 'z'"), extra.err);
  const Result options = run({"grad", "x", "--at", "x=1", "--foo", "--bar"});
  BOOST_TEST(options.status == 2);
  BOOST_TEST(contains(options.err, "unknown options '--foo', '--bar'"), options.err);
}

// Too small for a double rounds (to 0 or a subnormal) alike; too large is an error that quotes a
// long literal by its ends.
BOOST_AUTO_TEST_CASE(number_range_messages) {
  const Result tiny = run({"grad", "x + 1e-400 + 1e-320", "--at", "x=1e-400", "--json"});
  BOOST_TEST_REQUIRE(tiny.status == 0, tiny.err);
  BOOST_TEST(tiny.parsed()["value"].get<double>() == 1e-320);
  // A huge literal is quoted by its ends.
  const Result huge = run({"grad", "x + 1" + std::string(9000, '0'), "--at", "x=1"});
  BOOST_TEST(huge.status == 2);
  BOOST_TEST(contains(huge.err, "(9001 characters) is too large for a double"), huge.err);
  BOOST_TEST(huge.err.size() < 1000u, huge.err);
}

// 0x01 is ASCII; it is a control character. NaN in the text output has no sign.
BOOST_AUTO_TEST_CASE(control_characters_and_nan_text) {
  const Result ctl = run({"grad", "x + \x01", "--at", "x=1"});
  BOOST_TEST(ctl.status == 2);
  BOOST_TEST(contains(ctl.err, "the control character 0x01"), ctl.err);
  BOOST_TEST(!contains(ctl.err, "only ASCII"), ctl.err);
  const Result nan = run({"grad", "log(x)", "--at", "x=-1"});
  BOOST_TEST(!contains(nan.out, "-nan"), nan.out);
  BOOST_TEST(contains(nan.out, "NaN"), nan.out);
}

BOOST_AUTO_TEST_SUITE_END()
