#pragma once
// Small file and process helpers shared by the examples that write pictures with gnuplot.

#include <autodiff/atomic_file.hpp>
#include <autodiff/error.hpp>
#include <fmt/format.h>

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <span>
#include <string>
#include <vector>

extern char** environ;

namespace examples {

namespace fs = std::filesystem;

// The library's writer (as nn's checkpoints and the tapegrad tool): a reader never sees a
// half-written file, a killed run leaves nothing behind, links and permissions are kept.
inline void write_atomically(const fs::path& path, const std::string& bytes) {
  autodiff::write_file_atomically(path, std::as_bytes(std::span(bytes.data(), bytes.size())));
}

inline std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw autodiff::Error(fmt::format("cannot read {}", path.string()));
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// A fresh private directory, removed with everything in it when this goes out of scope.
struct TempDir {
  fs::path path;
  explicit TempDir(const std::string& prefix) {
    std::string templ = (fs::temp_directory_path() / (prefix + ".XXXXXX")).string();
    if (::mkdtemp(templ.data()) == nullptr)
      throw autodiff::Error(fmt::format("mkdtemp({}) failed: {}", templ, std::strerror(errno)));
    path = templ;
  }
  ~TempDir() {
    std::error_code ignored;
    fs::remove_all(path, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
};

enum class Spawn { ok, not_found, failed };

// Runs a program with an argument vector (no shell, so no quoting of paths) and waits for it.
inline Spawn run(const std::vector<std::string>& args, int& status) {
  std::vector<char*> argv;
  for (const std::string& a : args)
    argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid = 0;
  const int rc = ::posix_spawnp(&pid, argv[0], nullptr, nullptr, argv.data(), environ);
  if (rc == ENOENT) return Spawn::not_found;
  if (rc != 0) return Spawn::failed;
  while (::waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) return Spawn::failed;
  // glibc's posix_spawnp reports a missing program as exit status 127 from the child.
  if (WIFEXITED(status) && WEXITSTATUS(status) == 127) return Spawn::not_found;
  return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? Spawn::ok : Spawn::failed;
}

} // namespace examples
