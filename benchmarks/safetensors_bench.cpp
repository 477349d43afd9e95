// safetensors loading: time for a header of many small tensors, and peak memory for a large
// checkpoint. A plain program (not Google Benchmark): each measurement runs in a child process so
// that its peak resident size (getrusage) is its own.
//
//   safetensors_bench [directory for the temporary files, default /tmp] [tensors, default 100000]
//                     [checkpoint MB, default 400]

#include <nn/checkpoint.hpp>
#include <nn/safetensors.hpp>

#include <fmt/format.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <string>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

namespace fs = std::filesystem;
namespace st = nn::safetensors;

namespace {
double peak_mb() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_maxrss) / 1024.0; // KiB on Linux
}

// Runs f in a child process and waits for it; the child prints its own figures.
void in_child(const std::function<void()>& f) {
  std::fflush(stdout);
  const pid_t pid = ::fork();
  if (pid == 0) {
    try {
      f();
    } catch (const std::exception& e) {
      fmt::print(stderr, "error: {}\n", e.what());
      std::fflush(stderr);
      ::_exit(1);
    }
    std::fflush(stdout);
    ::_exit(0);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) std::exit(1);
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}
} // namespace

int main(int argc, char** argv) {
  const fs::path dir = argc > 1 ? argv[1] : "/tmp";
  const long tensors = argc > 2 ? std::atol(argv[2]) : 100'000;
  const long megabytes = argc > 3 ? std::atol(argv[3]) : 400;
  const fs::path many = dir / fmt::format("safetensors_bench_many.{}.safetensors", ::getpid());
  const fs::path big = dir / fmt::format("safetensors_bench_big.{}.safetensors", ::getpid());

  in_child([&] {
    st::File f;
    const std::byte one{1};
    for (long i = 0; i < tensors; ++i)
      f.tensors.emplace(fmt::format("t{}", i), st::Entry{"U8", {1}, {one}});
    st::save(many, f);
  });
  in_child([&] {
    const auto t0 = std::chrono::steady_clock::now();
    const st::File f = st::load(many);
    fmt::print("safetensors::load, {} one-byte tensors: {:.3f} s, peak RSS {:.0f} MB\n", f.tensors.size(),
               seconds_since(t0), peak_mb());
  });
  fs::remove(many);

  // A checkpoint of 16 float32 tensors of megabytes/16 MB each.
  in_child([&] {
    nn::StateDict s;
    const std::int64_t per = megabytes * 1'000'000 / 16 / 4;
    for (int i = 0; i < 16; ++i)
      s.emplace(fmt::format("layer{}.weight", i), autodiff::full({per}, 0.5));
    nn::save_state_dict(big, s);
  });
  const double file_mb = static_cast<double>(fs::file_size(big)) / 1e6;
  in_child([&] {
    const auto t0 = std::chrono::steady_clock::now();
    const st::File f = st::load(big);
    fmt::print("safetensors::load, {:.0f} MB file: {:.2f} s, peak RSS {:.0f} MB ({:.2f}x the file)\n", file_mb,
               seconds_since(t0), peak_mb(), peak_mb() / file_mb);
  });
  in_child([&] {
    const auto t0 = std::chrono::steady_clock::now();
    const nn::StateDict s = nn::load_state_dict(big);
    fmt::print("nn::load_state_dict, {:.0f} MB file: {:.2f} s, peak RSS {:.0f} MB ({:.2f}x the file)\n", file_mb,
               seconds_since(t0), peak_mb(), peak_mb() / file_mb);
  });
  fs::remove(big);
}
