// The post's missing figure: gradient descent paths on a function with two minima, from two
// starting points, over its contour plot; and the univariate quadratic for learning rates that
// converge slowly, oscillate, and diverge (docs/backprop.md, "The learning rate: too small, too
// large"). Gradients come from tapegrad's reverse mode; the picture is drawn by gnuplot.

#include "common/files.hpp"

#include <autodiff/autodiff.hpp>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

using namespace autodiff;
using namespace examples;
namespace fs = std::filesystem;

namespace {

// Two wells at (-1, 0) and (1, 0), a saddle at the origin; generic so doubles draw the contours and
// Vars give the gradients.
template <class T> T two_wells(const T& x, const T& y) { return square(square(x) - 1.0) + square(y); }

struct Point {
  double x, y, f;
};

std::vector<Point> descend(double x, double y, double eps, int max_steps, double gtol) {
  Tape tape;
  std::vector<Point> path;
  for (int k = 0;; ++k) {
    tape.reset();
    Var vx = x, vy = y;
    Var f = two_wells(vx, vy);
    f.backward();
    path.push_back({x, y, f.value()});
    const double gx = vx.grad(), gy = vy.grad();
    if (std::hypot(gx, gy) < gtol || k == max_steps) return path;
    x -= eps * gx;
    y -= eps * gy;
  }
}

// x_{k+1} = x_k - eps f'(x_k) for f(x) = a/2 x^2, with f' from reverse mode.
std::vector<double> quadratic_iterates(double a, double eps, double x0, int steps) {
  Tape tape;
  std::vector<double> xs{x0};
  for (int k = 0; k < steps; ++k) {
    tape.reset();
    Var x = xs.back();
    Var f = 0.5 * a * square(x);
    f.backward();
    xs.push_back(xs.back() - eps * x.grad());
  }
  return xs;
}

struct Rate {
  double eps;
  std::string regime;
};

} // namespace

int main(int argc, char** argv) try {
  CLI::App app{"Gradient descent paths on f(x, y) = (x^2 - 1)^2 + y^2 and on f(x) = a/2 x^2, drawn with gnuplot"};
  std::string out_dir = ".";
  std::string gnuplot = "gnuplot";
  app.add_option("--out", out_dir, "directory for gradient_descent_paths.png (default: current directory)");
  app.add_option("--gnuplot", gnuplot, "the gnuplot program to run");
  CLI11_PARSE(app, argc, argv);

  const fs::path out = out_dir;
  std::error_code ec;
  fs::create_directories(out, ec);
  if (!fs::is_directory(out)) throw Error(fmt::format("gradient_descent_paths: --out {} is not a directory", out_dir));

  // ---- the two-dimensional paths --------------------------------------------------------------
  constexpr double eps2 = 0.05;
  const std::array<std::array<double, 2>, 2> starts{{{0.12, 1.7}, {-1.75, -1.2}}};
  std::vector<std::vector<Point>> paths;
  for (const auto& s : starts)
    paths.push_back(descend(s[0], s[1], eps2, 1000, 1e-6));

  fmt::print("f(x, y) = (x^2 - 1)^2 + y^2, minima at (-1, 0) and (1, 0); gradient descent, eps = {}\n", eps2);
  for (std::size_t p = 0; p < paths.size(); ++p) {
    const auto& path = paths[p];
    fmt::print("\npath {} from ({}, {}): {} steps\n", p + 1, starts[p][0], starts[p][1], path.size() - 1);
    fmt::print("  {:>5} {:>11} {:>11} {:>12}\n  {:->5} {:->11} {:->11} {:->12}\n", "k", "x", "y", "f", "", "", "", "");
    for (std::size_t k = 0; k < path.size(); ++k)
      if (k < 10 || k % 20 == 0 || k + 1 == path.size())
        fmt::print("  {:>5} {:>11.6f} {:>11.6f} {:>12.4e}\n", k, path[k].x, path[k].y, path[k].f);
  }

  // ---- the univariate quadratic -------------------------------------------------------------
  constexpr double a = 2.0, x0 = 1.0;
  constexpr int steps = 25;
  const std::vector<Rate> rates{{0.05, "ε < 1/a: slow, monotone"},
                                {0.35, "ε < 1/a: monotone"},
                                {0.85, "1/a < ε < 2/a: oscillates, converges"},
                                {1.08, "ε > 2/a: oscillates, diverges"}};
  std::vector<std::vector<double>> iterates;
  for (const Rate& r : rates)
    iterates.push_back(quadratic_iterates(a, r.eps, x0, steps));

  fmt::print("\nf(x) = a/2 x^2 with a = {}: x_(k+1) = x_k - eps f'(x_k) = (1 - eps a) x_k; 1/a = {}, 2/a = {}\n", a,
             1 / a, 2 / a);
  fmt::print("  {:>3}", "k");
  for (const Rate& r : rates)
    fmt::print(" {:>14}", fmt::format("eps = {}", r.eps));
  fmt::print("\n  {:->3}", "");
  for (std::size_t i = 0; i < rates.size(); ++i)
    fmt::print(" {:->14}", "");
  fmt::print("\n");
  for (int k = 0; k <= steps; ++k) {
    if (k > 8 && k % 4 != 0 && k != steps) continue;
    fmt::print("  {:>3}", k);
    for (const auto& xs : iterates)
      fmt::print(" {:>14.6g}", xs[static_cast<std::size_t>(k)]);
    fmt::print("\n");
  }
  fmt::print("  factor 1 - eps a:");
  for (const Rate& r : rates)
    fmt::print("  {:g} ({})", 1 - r.eps * a, r.regime);
  fmt::print("\n");

  // ---- data files and the gnuplot script ----------------------------------------------------
  std::string grid;
  constexpr int n = 161;
  for (int i = 0; i < n; ++i) {
    const double x = -2.0 + 4.0 * i / (n - 1);
    for (int j = 0; j < n; ++j) {
      const double y = -2.0 + 4.0 * j / (n - 1);
      grid += fmt::format("{:.5f} {:.5f} {:.6g}\n", x, y, two_wells(x, y));
    }
    grid += "\n";
  }
  std::array<std::string, 2> path_data;
  for (std::size_t p = 0; p < paths.size(); ++p)
    for (const Point& q : paths[p])
      path_data[p] += fmt::format("{:.9g} {:.9g} {:.9g}\n", q.x, q.y, q.f);
  std::string quad;
  for (std::size_t r = 0; r < rates.size(); ++r) {
    for (std::size_t k = 0; k < iterates[r].size(); ++k)
      quad += fmt::format("{} {:.9g}\n", k, iterates[r][k]);
    quad += "\n\n"; // gnuplot: a new data set, selected with `index`
  }

  // Built by concatenation: gnuplot's enhanced-text braces would clash with fmt's.
  std::string script = "# gradient_descent_paths: render with `gnuplot gradient_descent_paths.gp` in this directory.\n";
  script += fmt::format("eps = {}\na = {}\n", eps2, a);
  script += R"gp(if (!exists("dir")) dir = '.'
set encoding utf8
set terminal pngcairo size 1500,650 font 'DejaVu Sans,11'
set output dir.'/gradient_descent_paths.png'
set multiplot layout 1,2 title "Gradient descent (gradients by tapegrad's reverse mode)" font ',14'

# Contour lines of f into a datablock, then a 2-D plot.
set contour base
set cntrparam levels discrete 0.02, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 4, 6, 9
unset surface
set view map
set table $contours
splot dir.'/grid.dat' using 1:2:3 with lines notitle
unset table
unset contour
set surface

set title sprintf("f(x, y) = (x^2 - 1)^2 + y^2,   step (x, y) ← (x, y) − ε ∇f,   ε = %g", eps)
set xlabel 'x'
set ylabel 'y'
set xrange [-2:2]
set yrange [-2:2]
set size ratio -1
set cblabel 'f(x, y)'
set cbrange [0:9]
set palette defined (0 '#f7fbff', 1 '#c6dbef', 3 '#6baed6', 9 '#08306b')
set key bottom right box opaque
)gp";
  script += "plot dir.'/grid.dat' using 1:2:3 with image notitle, \\\n"
            "     $contours using 1:2 with lines lc rgb '#555555' lw 0.8 title 'contours of f', \\\n";
  const std::array<const char*, 2> styles{"lc rgb '#d62728' pt 7", "lc rgb '#ff7f0e' pt 5"};
  for (std::size_t p = 0; p < paths.size(); ++p)
    script += fmt::format("     dir.'/path{}.dat' using 1:2 with linespoints {} ps 0.6 lw 2 title 'path from ({}, {}), "
                          "{} steps', \\\n",
                          p + 1, styles[p], starts[p][0], starts[p][1], paths[p].size() - 1);
  script += "     '-' using 1:2 with points pt 3 ps 2.5 lw 2 lc rgb '#2ca02c' title 'minima (±1, 0)'\n-1 0\n1 0\ne\n";
  script += R"gp(
set size noratio
set title sprintf("f(x) = a/2 x^2, a = %g:   x_{k+1} = x_k − ε f'(x_k) = (1 − εa) x_k", a)
set xlabel 'iteration k'
set ylabel 'x_k  (clipped to |x_k| ≤ 3)'
set xrange [0:*]
set yrange [-3:3]
set key bottom left box opaque
set grid
)gp";
  script += "plot ";
  for (std::size_t r = 0; r < rates.size(); ++r)
    script += fmt::format("{}dir.'/quadratic.dat' index {} using 1:2 with linespoints pt 7 ps 0.7 lw 2 title 'ε = {} "
                          "({})'",
                          r == 0 ? "" : ", \\\n     ", r, rates[r].eps, rates[r].regime);
  script += "\nunset multiplot\n";

  const std::vector<std::pair<std::string, const std::string*>> files{{"grid.dat", &grid},
                                                                      {"path1.dat", &path_data[0]},
                                                                      {"path2.dat", &path_data[1]},
                                                                      {"quadratic.dat", &quad},
                                                                      {"gradient_descent_paths.gp", &script}};
  TempDir tmp("gd_paths");
  if (tmp.path.string().find('\'') != std::string::npos)
    throw Error(fmt::format("gradient_descent_paths: temp dir {} contains a quote", tmp.path.string()));
  for (const auto& [name, content] : files)
    write_atomically(tmp.path / name, *content);

  int status = 0;
  const Spawn s = run(
      {gnuplot, "-e", fmt::format("dir='{}'", tmp.path.string()), (tmp.path / "gradient_descent_paths.gp").string()},
      status);
  if (s == Spawn::ok) {
    const fs::path png = out / "gradient_descent_paths.png";
    write_atomically(png, read_file(tmp.path / "gradient_descent_paths.png"));
    fmt::print("\nwrote {}\n", png.string());
    return 0;
  }
  for (const auto& [name, content] : files)
    write_atomically(out / name, *content);
  if (s == Spawn::not_found) {
    fmt::print("\n{} not found: wrote the data and the script to {}; render with\n  cd {} && gnuplot "
               "gradient_descent_paths.gp\n",
               gnuplot, out.string(), out.string());
    return 0;
  }
  throw Error(fmt::format("gradient_descent_paths: {} failed (status {}); data and script are in {}", gnuplot, status,
                          out.string()));
} catch (const std::exception& e) {
  fmt::print(stderr, "{}\n", e.what());
  return 1;
}
