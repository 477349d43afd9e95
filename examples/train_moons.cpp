// micrograd's demo, in milliseconds: a small MLP learns the two-moons data, and its decision
// boundary is drawn over the points with gnuplot.

#include "common/files.hpp"

#include <autodiff/tensor.hpp>
#include <nn/data.hpp>
#include <nn/layers.hpp>
#include <nn/loss.hpp>
#include <nn/optim.hpp>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <chrono>

using autodiff::Tensor;
namespace fs = std::filesystem;

namespace {

double accuracy(nn::Module& model, const nn::TensorDataset& data) {
  autodiff::NoGradGuard no_grad;
  const Tensor pred = autodiff::argmax(model(data.inputs()), 1);
  const auto p = pred.data<std::int64_t>(), y = data.targets().data<std::int64_t>();
  std::int64_t correct = 0;
  for (std::size_t i = 0; i < p.size(); ++i)
    correct += p[i] == y[i];
  return static_cast<double>(correct) / static_cast<double>(p.size());
}

void draw(nn::Module& model, const nn::TensorDataset& data, const fs::path& out) {
  // Class-1 probability on a grid, then the points over it.
  constexpr int n = 120;
  const double x0 = -1.6, x1 = 2.6, y0 = -1.2, y1 = 1.7;
  std::vector<float> grid;
  for (int j = 0; j < n; ++j)
    for (int i = 0; i < n; ++i) {
      grid.push_back(static_cast<float>(x0 + (x1 - x0) * i / (n - 1)));
      grid.push_back(static_cast<float>(y0 + (y1 - y0) * j / (n - 1)));
    }
  std::vector<double> prob;
  {
    autodiff::NoGradGuard no_grad;
    prob = autodiff::softmax(model(autodiff::from_vector(grid, {n * n, 2})), 1).to_vector();
  }
  std::string surface;
  for (int j = 0; j < n; ++j) {
    for (int i = 0; i < n; ++i) {
      const auto k = static_cast<std::size_t>(j * n + i);
      surface += fmt::format("{} {} {}\n", grid[2 * k], grid[2 * k + 1], prob[2 * k + 1]);
    }
    surface += "\n";
  }
  std::string points;
  const auto xy = data.inputs().to_vector();
  const auto labels = data.targets().data<std::int64_t>();
  for (std::size_t k = 0; k < labels.size(); ++k)
    points += fmt::format("{} {} {}\n", xy[2 * k], xy[2 * k + 1], labels[k]);

  examples::TempDir tmp("moons");
  examples::write_atomically(tmp.path / "surface.dat", surface);
  examples::write_atomically(tmp.path / "points.dat", points);
  const std::string script = R"gp(set terminal pngcairo size 800,600 font ",11"
set output dir.'/moons.png'
set title "two moons: decision boundary of a 2-16-16-2 MLP trained with tapegrad"
set xlabel "x_1"
set ylabel "x_2"
set view map
set xrange [-1.6:2.6]
set yrange [-1.2:1.7]
set pm3d map interpolate 0,0
set palette defined (0 "#f4a582", 0.5 "#f7f7f7", 1 "#92c5de")
set cbrange [0:1]
set cblabel "P(class 1)"
set contour base
set cntrparam levels discrete 0.5
unset clabel
splot dir.'/surface.dat' using 1:2:3 with pm3d notitle, \
      dir.'/surface.dat' using 1:2:3 with lines nosurface lw 2 lc rgb "black" title "P = 0.5", \
      dir.'/points.dat' using 1:2:(0):($3 == 0 ? 1/0 : 1) with points pt 7 ps 0.8 lc rgb "#2166ac" nocontour title "class 1", \
      dir.'/points.dat' using 1:2:(0):($3 == 1 ? 1/0 : 1) with points pt 7 ps 0.8 lc rgb "#b2182b" nocontour title "class 0"
)gp";
  examples::write_atomically(tmp.path / "moons.gp", script);
  int status = 0;
  const auto s =
      examples::run({"gnuplot", "-e", "dir='" + tmp.path.string() + "'", (tmp.path / "moons.gp").string()}, status);
  if (s == examples::Spawn::ok) {
    examples::write_atomically(out / "moons.png", examples::read_file(tmp.path / "moons.png"));
    fmt::print("wrote {}\n", (out / "moons.png").string());
  } else {
    for (const char* f : {"surface.dat", "points.dat", "moons.gp"})
      examples::write_atomically(out / f, examples::read_file(tmp.path / f));
    fmt::print("gnuplot {}: wrote the data and moons.gp to {}; render with  cd {} && gnuplot -e \"dir='.'\" moons.gp\n",
               s == examples::Spawn::not_found ? "not found" : "failed", out.string(), out.string());
  }
}

} // namespace

int main(int argc, char** argv) {
  int steps = 300;
  std::int64_t points = 200;
  double noise = 0.1;
  std::uint64_t seed = 1;
  fs::path out = ".";
  CLI::App app{"Train a small MLP on two moons and draw its decision boundary"};
  app.add_option("--steps", steps, "full-batch Adam steps")->check(CLI::Range(1, 100000))->capture_default_str();
  app.add_option("--points", points, "number of points")->check(CLI::Range(10, 100000))->capture_default_str();
  app.add_option("--noise", noise, "standard deviation of the noise")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  app.add_option("--seed", seed, "seed for data and initialisation")->capture_default_str();
  app.add_option("--out", out, "directory for moons.png")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  try {
    fs::create_directories(out);
    autodiff::manual_seed(seed);
    const nn::TensorDataset data = nn::make_moons(points, noise, seed);
    auto model = nn::mlp({2, 16, 16, 2}, "tanh");
    nn::Adam opt(model->parameters(), {.lr = 0.02});
    const auto t0 = std::chrono::steady_clock::now();
    for (int s = 1; s <= steps; ++s) {
      const Tensor loss = nn::cross_entropy((*model)(data.inputs()), data.targets());
      opt.zero_grad();
      loss.backward();
      opt.step();
      if (s == 1 || s % 50 == 0 || s == steps)
        fmt::print("step {:>4}  loss {:.4f}  accuracy {:.3f}\n", s, loss.item(), accuracy(*model, data));
    }
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    fmt::print("{} steps on {} points in {:.1f} ms ({:.1f} us per step)\n", steps, points, ms, 1000 * ms / steps);
    draw(*model, data, out);
  } catch (const std::exception& e) {
    fmt::print(stderr, "train_moons: {}\n", e.what());
    return 1;
  }
}
