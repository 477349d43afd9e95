// Checked output and running Graphviz: POSIX calls, argument vectors only (never a shell string).

#include "output.hpp"

#include <fmt/format.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

extern char** environ;

namespace tapegrad_cli {

namespace fs = std::filesystem;

namespace {
std::string errno_text(int e) { return std::strerror(e); }
} // namespace

void write_stdout(std::string_view text) {
  // stdio buffers: a failed write often shows only at the flush, so both are checked.
  errno = 0;
  const bool written = std::fwrite(text.data(), 1, text.size(), stdout) == text.size();
  const int err = errno;
  if (std::fflush(stdout) != 0 || !written || std::ferror(stdout)) {
    const int e = errno != 0 ? errno : err;
    std::clearerr(stdout);
    throw IoError(fmt::format("cannot write standard output: {}", errno_text(e)));
  }
}

std::optional<fs::path> find_on_path(std::string_view name) {
  const char* env = std::getenv("PATH");
  if (env == nullptr) return std::nullopt;
  std::string_view rest(env);
  while (true) {
    const std::size_t colon = rest.find(':');
    const std::string_view dir = rest.substr(0, colon);
    // An empty entry means the current directory, as for execvp.
    const fs::path candidate = fs::path(dir.empty() ? "." : std::string(dir)) / std::string(name);
    std::error_code ec;
    if (fs::is_regular_file(candidate, ec) && ::access(candidate.c_str(), X_OK) == 0) return candidate;
    if (colon == std::string_view::npos) break;
    rest.remove_prefix(colon + 1);
  }
  return std::nullopt;
}

int run_program(const fs::path& program, const std::vector<std::string>& args, int stdin_fd, int stdout_fd,
                double timeout_seconds) {
  std::vector<std::string> storage;
  storage.push_back(program.filename().string());
  storage.insert(storage.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& s : storage)
    argv.push_back(s.data());
  argv.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  if (::posix_spawn_file_actions_init(&actions) != 0) throw IoError("cannot prepare to run " + program.string());
  ::posix_spawn_file_actions_adddup2(&actions, stdin_fd, 0);
  ::posix_spawn_file_actions_adddup2(&actions, stdout_fd, 1);
  pid_t pid = 0;
  const int rc = ::posix_spawn(&pid, program.c_str(), &actions, nullptr, argv.data(), environ);
  ::posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) throw IoError(fmt::format("cannot run {}: {}", program.string(), errno_text(rc)));
  // Graphviz can lay out a large graph for many minutes: poll, and kill it at the deadline.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_seconds);
  int status = 0;
  while (true) {
    const pid_t done = ::waitpid(pid, &status, WNOHANG);
    if (done == pid) break;
    if (done < 0 && errno != EINTR)
      throw IoError(fmt::format("cannot wait for {}: {}", program.string(), errno_text(errno)));
    if (std::chrono::steady_clock::now() >= deadline) {
      ::kill(pid, SIGKILL);
      while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
      throw IoError(fmt::format("{} did not finish within {} s and was stopped", program.string(), timeout_seconds));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (WIFSIGNALED(status)) throw IoError(fmt::format("{} was killed by signal {}", program.string(), WTERMSIG(status)));
  return WEXITSTATUS(status);
}

std::string shell_quote(std::string_view s) {
  const bool plain = !s.empty() && s.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                                       "0123456789._/-+=,:") == std::string_view::npos;
  if (plain) return std::string(s);
  std::string out = "'";
  for (char c : s) {
    if (c == '\'')
      out.append("'\\''");
    else
      out.push_back(c);
  }
  out.push_back('\'');
  return out;
}

} // namespace tapegrad_cli
