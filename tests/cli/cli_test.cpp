// Runs the tapegrad executable (no shell: posix_spawn with an argument vector) and checks its exit
// status, its messages, and the numbers of its --json output against values computed here.

#include <boost/test/unit_test.hpp>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdlib>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <spawn.h>
#include <sstream>
#include <string>
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

// Runs tapegrad with args; `path_env`, if given, replaces PATH (to hide Graphviz).
Result run(std::vector<std::string> args, const std::string* path_env = nullptr, const fs::path& cwd = scratch()) {
  args.insert(args.begin(), TAPEGRAD_EXE);
  std::vector<char*> argv;
  for (auto& a : args)
    argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<std::string> env_storage;
  for (char** e = environ; *e != nullptr; ++e)
    if (path_env == nullptr || std::string_view(*e).substr(0, 5) != "PATH=") env_storage.emplace_back(*e);
  if (path_env != nullptr) env_storage.push_back("PATH=" + *path_env);
  std::vector<char*> envp;
  for (auto& e : env_storage)
    envp.push_back(e.data());
  envp.push_back(nullptr);

  const fs::path out = cwd / "stdout.txt", err = cwd / "stderr.txt";
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&fa, 2, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addchdir_np(&fa, cwd.c_str());
  pid_t pid = 0;
  const int rc = posix_spawn(&pid, argv[0], &fa, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  BOOST_REQUIRE_MESSAGE(rc == 0, "cannot run " << TAPEGRAD_EXE);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
  }
  BOOST_REQUIRE_MESSAGE(WIFEXITED(status), "tapegrad did not exit normally");
  return Result{WEXITSTATUS(status), slurp(out), slurp(err)};
}

bool contains(const std::string& s, std::string_view part) { return s.find(part) != std::string::npos; }

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
  BOOST_TEST(contains(dot, "mul_const \u00d72.5"), dot);
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

BOOST_AUTO_TEST_SUITE_END()
