// The main job: train an MLP on Fashion-MNIST with tapegrad, show progress, report test accuracy
// and a per-class summary, plot the curves and save the model as safetensors. Ctrl-C stops after
// saving a checkpoint; --resume continues from it exactly.

#include "common/files.hpp"
#include "common/openblas.hpp"

#include <autodiff/parallel.hpp>
#include <autodiff/tensor.hpp>
#include <nn/checkpoint.hpp>
#include <nn/data.hpp>
#include <nn/idx.hpp>
#include <nn/layers.hpp>
#include <nn/loss.hpp>
#include <nn/optim.hpp>
#include <nn/parallel.hpp>
#include <nn/scheduler.hpp>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <memory>
#include <string>
#include <vector>

using autodiff::Tensor;
namespace fs = std::filesystem;

namespace {

std::atomic<bool> stop_requested{false};
extern "C" void on_sigint(int) { stop_requested = true; }

struct Config {
  int epochs = 15;
  std::int64_t batch_size = 128;
  double lr = 1e-3;
  std::string optimizer = "adam";
  std::string schedule = "cosine";
  std::vector<std::int64_t> hidden{256, 128};
  int threads = 0; // 0: the library's default (TAPEGRAD_NUM_THREADS, else the machine's cores)
  std::uint64_t seed = 42;
  fs::path out = "fashion_mnist_out";
  fs::path data = std::string(nn::fashion_mnist_default_dir);
  bool resume = false;
  bool data_parallel = false; // split each batch's rows across the threads instead of each layer's features
};

struct EpochStats {
  double loss, train_acc, test_acc, seconds;
};

std::shared_ptr<nn::ByteImageDataset> load(const fs::path& dir, nn::Split split) {
  nn::FashionMnist d = nn::load_fashion_mnist(dir, split, nn::Pixels::bytes);
  return std::make_shared<nn::ByteImageDataset>(std::move(d.bytes), static_cast<std::int64_t>(d.pixels_per_image()),
                                                std::move(d.labels));
}

std::unique_ptr<nn::Optimizer> make_optimizer(const Config& c, const std::vector<Tensor>& params) {
  if (c.optimizer == "adam") return std::make_unique<nn::Adam>(params, nn::AdamOptions{.lr = c.lr});
  if (c.optimizer == "adamw")
    return std::make_unique<nn::AdamW>(params, nn::AdamOptions{.lr = c.lr, .weight_decay = 1e-2});
  if (c.optimizer == "sgd") return std::make_unique<nn::SGD>(params, nn::SGDOptions{.lr = c.lr, .momentum = 0.9});
  if (c.optimizer == "rmsprop") return std::make_unique<nn::RMSprop>(params, nn::RMSpropOptions{.lr = c.lr});
  if (c.optimizer == "adagrad") return std::make_unique<nn::Adagrad>(params, nn::AdagradOptions{.lr = c.lr});
  throw autodiff::Error(fmt::format("unknown optimizer '{}' (adam, adamw, sgd, rmsprop, adagrad)", c.optimizer));
}

// Predicted classes of the rows of `logits` [N, 10].
std::vector<std::int64_t> predictions(const Tensor& logits) {
  const Tensor a = autodiff::argmax(logits, 1);
  const auto s = a.data<std::int64_t>();
  return {s.begin(), s.end()};
}

// Accuracy and the confusion matrix [true][predicted] over a dataset, without recording.
double evaluate(nn::Module& model, const std::shared_ptr<nn::ByteImageDataset>& data,
                std::vector<std::vector<int>>* confusion) {
  autodiff::NoGradGuard no_grad;
  model.eval();
  nn::DataLoader loader(data, {.batch_size = 1000});
  std::int64_t correct = 0;
  for (const nn::Batch& b : loader) {
    const auto pred = predictions(model(b.inputs));
    const auto truth = b.targets.data<std::int64_t>();
    for (std::size_t i = 0; i < pred.size(); ++i) {
      correct += pred[i] == truth[i];
      if (confusion) ++(*confusion)[static_cast<std::size_t>(truth[i])][static_cast<std::size_t>(pred[i])];
    }
  }
  model.train();
  return static_cast<double>(correct) / static_cast<double>(data->size());
}

void progress(bool tty, int epoch, int epochs, std::int64_t step, std::int64_t steps, double loss, double acc,
              double rate) {
  if (!tty) return;
  constexpr int width = 30;
  const int filled = static_cast<int>(width * step / std::max<std::int64_t>(steps, 1));
  fmt::print("\repoch {:>2}/{} [{}{}] {:>3}/{} loss {:.4f} acc {:.4f} {:>7.0f} samples/s", epoch, epochs,
             std::string(static_cast<std::size_t>(filled), '#'),
             std::string(static_cast<std::size_t>(width - filled), '.'), step, steps, loss, acc, rate);
  std::fflush(stdout);
}

void plot(const fs::path& out, const std::vector<EpochStats>& history) {
  examples::TempDir tmp("fashion_plot");
  std::string data = "# epoch loss train_acc test_acc\n";
  for (std::size_t e = 0; e < history.size(); ++e)
    data += fmt::format("{} {} {} {}\n", e + 1, history[e].loss, history[e].train_acc, history[e].test_acc);
  examples::write_atomically(tmp.path / "curves.dat", data);
  const std::string script = R"gp(set terminal pngcairo size 1100,450 font ",11"
set output dir.'/curves.png'
set multiplot layout 1,2 title "tapegrad: MLP on Fashion-MNIST"
set grid
set xtics 1
set xlabel "epoch"
set ylabel "training loss (cross-entropy)"
set key top right
plot dir.'/curves.dat' using 1:2 with linespoints lw 2 title "train loss"
set ylabel "accuracy"
set key bottom right
plot dir.'/curves.dat' using 1:3 with linespoints lw 2 title "train", \
     dir.'/curves.dat' using 1:4 with linespoints lw 2 title "test"
unset multiplot
)gp";
  examples::write_atomically(tmp.path / "curves.gp", script);
  examples::write_atomically(out / "curves.dat", data);
  int status = 0;
  const auto s =
      examples::run({"gnuplot", "-e", "dir='" + tmp.path.string() + "'", (tmp.path / "curves.gp").string()}, status);
  if (s == examples::Spawn::ok) {
    examples::write_atomically(out / "curves.png", examples::read_file(tmp.path / "curves.png"));
    fmt::print("wrote {}\n", (out / "curves.png").string());
  } else {
    examples::write_atomically(out / "curves.gp", script);
    fmt::print("gnuplot {}: wrote {} and {}; render with  cd {} && gnuplot -e \"dir='.'\" curves.gp\n",
               s == examples::Spawn::not_found ? "not found" : "failed", (out / "curves.dat").string(),
               (out / "curves.gp").string(), out.string());
  }
}

// The running totals of an epoch, kept in a checkpoint taken mid-epoch so that the epoch's figures
// after --resume cover all of it, not only the steps after the resume.
struct Partial {
  double loss_sum = 0;
  std::int64_t correct = 0, seen = 0;
  double seconds = 0;
};

// What a checkpoint belongs to: resuming with another optimizer or schedule would silently mix
// states (Adam and AdamW keep the same buffers), so they are recorded and compared.
struct Training {
  const Config& config;
  nn::Module& model;
  nn::Optimizer& opt;
  nn::LRScheduler* schedule; // null for a constant rate
};

// Checkpoint: model, optimizer, schedule and generator state, with the position in training (the
// loader's order follows from the seed and the epoch, so epoch and step fix it) and the history.
void save_checkpoint(const fs::path& path, const Training& t, int epoch, std::int64_t step,
                     const std::vector<EpochStats>& history, const Partial& partial = {}) {
  nn::StateDict all;
  for (auto& [k, v] : t.model.state_dict())
    all.emplace("model." + k, v);
  for (auto& [k, v] : t.opt.state_dict())
    all.emplace("optimizer." + k, v);
  if (t.schedule)
    for (auto& [k, v] : t.schedule->state_dict())
      all.emplace("scheduler." + k, v);
  all.emplace("generator.state", autodiff::get_rng_state());
  std::string hist;
  for (const auto& h : history)
    hist += fmt::format("{} {} {} {};", h.loss, h.train_acc, h.test_acc, h.seconds);
  nn::save_state_dict(
      path, all,
      {{"optimizer", t.config.optimizer},
       {"schedule", t.config.schedule},
       {"epoch", std::to_string(epoch)},
       {"step", std::to_string(step)},
       {"history", hist},
       {"partial", fmt::format("{} {} {} {}", partial.loss_sum, partial.correct, partial.seen, partial.seconds)}});
}

void load_checkpoint(const fs::path& path, const Training& t, int& epoch, std::int64_t& step,
                     std::vector<EpochStats>& history, Partial& partial) {
  nn::Metadata meta;
  const nn::StateDict all = nn::load_state_dict(path, &meta);
  // Older checkpoints do not name them; the optimizer's own checks still refuse foreign buffers.
  for (const auto& [key, ours] : {std::pair{"optimizer", t.config.optimizer}, {"schedule", t.config.schedule}})
    if (const auto it = meta.find(key); it != meta.end() && it->second != ours)
      throw autodiff::Error(fmt::format("{}: the checkpoint was written with --{} {}, but this run has --{} {}; resume "
                                        "with the same {}",
                                        path.string(), key, it->second, key, ours, key));
  nn::StateDict m, o, sched, g;
  for (const auto& [k, v] : all) {
    if (k.rfind("model.", 0) == 0)
      m.emplace(k.substr(6), v);
    else if (k.rfind("optimizer.", 0) == 0)
      o.emplace(k.substr(10), v);
    else if (k.rfind("scheduler.", 0) == 0)
      sched.emplace(k.substr(10), v);
    else if (k.rfind("generator.", 0) == 0)
      g.emplace(k.substr(10), v);
  }
  t.model.load_state_dict(m);
  t.opt.load_state_dict(o);
  if (t.schedule && !sched.empty()) t.schedule->load_state_dict(sched);
  if (const auto it = g.find("state"); it != g.end()) autodiff::set_rng_state(it->second);
  try {
    epoch = std::stoi(meta.at("epoch"));
    step = std::stoll(meta.at("step"));
    history.clear();
    std::string_view h = meta.at("history");
    while (!h.empty()) {
      const auto end = h.find(';');
      EpochStats s{};
      if (std::sscanf(std::string(h.substr(0, end)).c_str(), "%lf %lf %lf %lf", &s.loss, &s.train_acc, &s.test_acc,
                      &s.seconds) != 4)
        throw std::invalid_argument("history");
      history.push_back(s);
      h.remove_prefix(end == std::string_view::npos ? h.size() : end + 1);
    }
    partial = {};
    if (const auto it = meta.find("partial"); it != meta.end()) { // absent from older checkpoints
      long long correct = 0, seen = 0;
      if (std::sscanf(it->second.c_str(), "%lf %lld %lld %lf", &partial.loss_sum, &correct, &seen, &partial.seconds) !=
              4 ||
          correct < 0 || seen < correct)
        throw std::invalid_argument("partial");
      partial.correct = correct;
      partial.seen = seen;
    }
  } catch (const std::exception&) {
    throw autodiff::Error(
        fmt::format("{}: checkpoint metadata (epoch, step, history, partial) is missing or corrupt", path.string()));
  }
  if (t.schedule && sched.empty()) // an older checkpoint, without the schedule's state: replay it
    for (int e = 0; e < epoch; ++e)
      t.schedule->step();
}

int run(const Config& c) {
  // One count for tapegrad's kernels and OpenBLAS (docs/design.md, Note [One thread pool]).
  if (c.threads > 0) autodiff::set_num_threads(c.threads);
  fmt::print("threads: {} for tapegrad, {} for OpenBLAS; {}\n{}\n", autodiff::get_num_threads(),
             openblas_get_num_threads(),
             autodiff::get_num_threads() == 1 ? "one core"
             : c.data_parallel                ? "each batch's rows split across them (--data-parallel)"
                                              : "each layer's output features split across them",
             examples::describe_blas_kernel());
  autodiff::manual_seed(c.seed);
  fs::create_directories(c.out);
  const fs::path checkpoint = c.out / "checkpoint.safetensors";

  const auto t_load = std::chrono::steady_clock::now();
  const auto train = load(c.data, nn::Split::train);
  const auto test = load(c.data, nn::Split::test);
  fmt::print("Fashion-MNIST: {} training and {} test images of 28x28 from {} ({:.2f} s)\n", train->size(), test->size(),
             c.data.string(), std::chrono::duration<double>(std::chrono::steady_clock::now() - t_load).count());

  std::vector<std::int64_t> sizes{784};
  sizes.insert(sizes.end(), c.hidden.begin(), c.hidden.end());
  sizes.push_back(10);
  auto model = nn::mlp(sizes, "relu");
  auto opt = make_optimizer(c, model->parameters());
  // Cosine annealing to 0 over the run: the last epochs take small steps, which is worth about half
  // a point of test accuracy over a constant rate here.
  std::unique_ptr<nn::LRScheduler> schedule;
  if (c.schedule == "cosine") schedule = std::make_unique<nn::CosineAnnealingLR>(*opt, c.epochs);
  fmt::print("model: {}\noptimizer: {} lr {} ({} schedule), batch {}, {} epochs, seed {}\n", model->describe(),
             c.optimizer, c.lr, c.schedule, c.batch_size, c.epochs, c.seed);

  int first_epoch = 0;
  std::int64_t first_step = 0;
  std::vector<EpochStats> history;
  Partial resumed;
  const Training training{c, *model, *opt, schedule.get()};
  if (c.resume) {
    load_checkpoint(checkpoint, training, first_epoch, first_step, history, resumed);
    fmt::print("resumed from {} at epoch {}, step {}\n", checkpoint.string(), first_epoch + 1, first_step);
  }

  nn::DataLoader loader(train, {.batch_size = c.batch_size, .shuffle = true, .drop_last = false, .seed = c.seed});
  const bool tty = ::isatty(STDOUT_FILENO) != 0;
  std::signal(SIGINT, on_sigint);
  const auto t_start = std::chrono::steady_clock::now();

  for (int epoch = first_epoch; epoch < c.epochs; ++epoch) {
    loader.set_epoch(epoch);
    // A resumed epoch carries on with the totals (and the time) of its first part.
    const Partial start = first_step > 0 ? resumed : Partial{};
    const auto t0 = std::chrono::steady_clock::now() - std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                                           std::chrono::duration<double>(start.seconds));
    double loss_sum = start.loss_sum;
    std::int64_t correct = start.correct, seen = start.seen, step = 0;
    for (const nn::Batch& b : loader) {
      if (step < first_step) { // resuming mid-epoch: the same shuffled order, skip what was done
        ++step;
        continue;
      }
      // By default the step is forward, loss, backward: linear splits each large layer's output
      // features across the threads, and the optimizer updates each thread's rows on it
      // (docs/design.md, Note [Owned rows]). With --data-parallel the batch's rows are split instead,
      // one shard and tape each (Note [Data-parallel steps]).
      opt->zero_grad();
      const auto shard = [&](const Tensor& x, const Tensor& t) -> nn::ShardResult {
        const Tensor logits = (*model)(x);
        return {nn::cross_entropy(logits, t), logits};
      };
      nn::ShardResult r;
      if (c.data_parallel) {
        r = nn::parallel_backward(b.inputs, b.targets, shard);
      } else {
        r = shard(b.inputs, b.targets);
        r.loss.backward();
      }
      opt->step();
      const Tensor& loss = r.loss;
      const auto pred = predictions(r.output);
      const auto truth = b.targets.data<std::int64_t>();
      for (std::size_t i = 0; i < pred.size(); ++i)
        correct += pred[i] == truth[i];
      seen += b.targets.numel();
      loss_sum += loss.item() * static_cast<double>(b.targets.numel());
      ++step;
      const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (step % 20 == 0 || step == loader.batches_per_epoch())
        progress(tty, epoch + 1, c.epochs, step, loader.batches_per_epoch(), loss_sum / static_cast<double>(seen),
                 static_cast<double>(correct) / static_cast<double>(seen), static_cast<double>(seen) / secs);
      if (stop_requested) {
        save_checkpoint(
            checkpoint, training, epoch, step, history,
            {loss_sum, correct, seen, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()});
        fmt::print("\ninterrupted: saved {} (epoch {}, step {}); continue with --resume\n", checkpoint.string(),
                   epoch + 1, step);
        return 130;
      }
    }
    first_step = 0;
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double test_acc = evaluate(*model, test, nullptr);
    history.push_back({loss_sum / static_cast<double>(seen), static_cast<double>(correct) / static_cast<double>(seen),
                       test_acc, secs});
    if (tty) fmt::print("\r{:100}\r", "");
    fmt::print("epoch {:>2}/{}  loss {:.4f}  train acc {:.4f}  test acc {:.4f}  {:.2f} s  {:.0f} samples/s\n",
               epoch + 1, c.epochs, history.back().loss, history.back().train_acc, test_acc, secs,
               static_cast<double>(seen) / secs);
    if (schedule) schedule->step();
    save_checkpoint(checkpoint, training, epoch + 1, 0, history);
  }

  std::vector<std::vector<int>> confusion(10, std::vector<int>(10, 0));
  const double acc = evaluate(*model, test, &confusion);
  fmt::print("\ntest accuracy {:.4f} after {} epochs ({:.1f} s of training in this run)\n\n", acc, c.epochs,
             std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count());
  fmt::print("{:<12} {:>8}  most often mistaken for\n", "class", "accuracy");
  for (std::size_t k = 0; k < 10; ++k) {
    int total = 0;
    std::size_t worst = k;
    for (std::size_t j = 0; j < 10; ++j) {
      total += confusion[k][j];
      if (j != k && (worst == k || confusion[k][j] > confusion[k][worst])) worst = j;
    }
    fmt::print("{:<12} {:>8.3f}  {} ({})\n", nn::fashion_mnist_classes[k], static_cast<double>(confusion[k][k]) / total,
               nn::fashion_mnist_classes[worst], confusion[k][worst]);
  }
  fmt::print("\n");
  const fs::path model_path = c.out / "fashion_mnist_mlp.safetensors";
  nn::save_state_dict(model_path, model->state_dict(),
                      {{"format", "pt"}, {"test_accuracy", fmt::format("{:.4f}", acc)}});
  fmt::print("wrote {} (open with safetensors.torch.load_file)\n", model_path.string());
  plot(c.out, history);
  return 0;
}

} // namespace

int main(int argc, char** argv) {
  Config c;
  CLI::App app{"Train an MLP on Fashion-MNIST with tapegrad"};
  app.add_option("--epochs", c.epochs, "training epochs")->check(CLI::Range(1, 1000))->capture_default_str();
  app.add_option("--batch-size", c.batch_size, "examples per step")->check(CLI::Range(1, 60000))->capture_default_str();
  app.add_option("--lr", c.lr, "learning rate")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--optimizer", c.optimizer, "adam, adamw, sgd (momentum 0.9), rmsprop or adagrad")
      ->check(CLI::IsMember({"adam", "adamw", "sgd", "rmsprop", "adagrad"}))
      ->capture_default_str();
  app.add_option("--schedule", c.schedule, "learning-rate schedule over the epochs: cosine or constant")
      ->check(CLI::IsMember({"cosine", "constant"}))
      ->capture_default_str();
  app.add_option("--hidden", c.hidden, "hidden layer sizes")->expected(1, 8)->capture_default_str();
  app.add_option("--threads", c.threads,
                 "threads for tapegrad's kernels and OpenBLAS (default: $TAPEGRAD_NUM_THREADS, else the machine's "
                 "cores)")
      ->check(CLI::Range(1, 64));
  app.add_option("--seed", c.seed, "seed for initialisation and shuffling")->capture_default_str();
  app.add_option("--out", c.out, "directory for the model, checkpoint and plot")->capture_default_str();
  app.add_option("--data", c.data, "directory with the Fashion-MNIST files")->capture_default_str();
  app.add_flag("--resume", c.resume, "continue from <out>/checkpoint.safetensors");
  app.add_flag("--data-parallel", c.data_parallel,
               "split each batch's rows across the threads (nn::parallel_backward) instead of each layer's output "
               "features");
  CLI11_PARSE(app, argc, argv);
  try {
    return run(c);
  } catch (const std::exception& e) {
    fmt::print(stderr, "train_fashion_mnist: {}\n", e.what());
    return 1;
  }
}
