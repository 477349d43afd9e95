// Atomic writes and running Graphviz: POSIX calls, argument vectors only (never a shell string).

#include "output.hpp"

#include <fmt/format.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace tapegrad_cli {

namespace fs = std::filesystem;

namespace {
std::string errno_text(int e) { return std::strerror(e); }
} // namespace

TempFile::TempFile(const fs::path& next_to) {
  const fs::path dir = next_to.has_parent_path() ? next_to.parent_path() : fs::path(".");
  std::string pattern = (dir / fmt::format(".{}.tmp-XXXXXX", next_to.filename().string())).string();
  fd_ = ::mkstemp(pattern.data());
  if (fd_ < 0) throw IoError(fmt::format("cannot create a temporary file in {}: {}", dir.string(), errno_text(errno)));
  path_ = pattern;
  // mkstemp creates the file 0600; the result should get the permissions any new file would.
  const mode_t mask = ::umask(0);
  ::umask(mask);
  ::fchmod(fd_, 0666 & ~mask);
}

TempFile::~TempFile() {
  if (fd_ >= 0) ::close(fd_);
  if (owned_) ::unlink(path_.c_str());
}

void TempFile::write_all(std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd_, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      throw IoError(fmt::format("cannot write {}: {}", path_.string(), errno_text(errno)));
    }
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  if (::fsync(fd_) != 0) throw IoError(fmt::format("cannot write {}: {}", path_.string(), errno_text(errno)));
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) throw IoError(fmt::format("cannot write {}: {}", path_.string(), errno_text(errno)));
}

void TempFile::rename_to(const fs::path& target) {
  if (::rename(path_.c_str(), target.c_str()) != 0)
    throw IoError(fmt::format("cannot rename {} to {}: {}", path_.string(), target.string(), errno_text(errno)));
  owned_ = false;
}

void write_atomically(const fs::path& path, std::string_view data) {
  TempFile tmp(path);
  tmp.write_all(data);
  tmp.rename_to(path);
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

int run_program(const fs::path& program, const std::vector<std::string>& args) {
  std::vector<std::string> storage;
  storage.push_back(program.filename().string());
  storage.insert(storage.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& s : storage)
    argv.push_back(s.data());
  argv.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  if (::posix_spawn_file_actions_init(&actions) != 0) throw IoError("cannot prepare to run " + program.string());
  ::posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  pid_t pid = 0;
  const int rc = ::posix_spawn(&pid, program.c_str(), &actions, nullptr, argv.data(), environ);
  ::posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) throw IoError(fmt::format("cannot run {}: {}", program.string(), errno_text(rc)));
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) throw IoError(fmt::format("cannot wait for {}: {}", program.string(), errno_text(errno)));
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
