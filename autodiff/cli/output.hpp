#pragma once
// Files and processes for the tapegrad tool: atomic writes, PATH lookup, running Graphviz.

#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace tapegrad_cli {

// A failure of the environment rather than of the input (cannot write, dot failed): exit status 3.
class IoError : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

// A file in `path`'s directory that is removed when this object dies, unless released.
class TempFile {
public:
  explicit TempFile(const std::filesystem::path& next_to);
  ~TempFile();
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  const std::filesystem::path& path() const { return path_; }
  void write_all(std::string_view data); // writes, flushes to disk and closes
  void rename_to(const std::filesystem::path& target);

private:
  std::filesystem::path path_;
  int fd_ = -1;
  bool owned_ = true;
};

// Readers never see a half-written file: the data goes to a temporary file next to `path`, which
// is then renamed over it.
void write_atomically(const std::filesystem::path& path, std::string_view data);

// The first executable regular file called `name` in the directories of $PATH.
std::optional<std::filesystem::path> find_on_path(std::string_view name);

// Runs `program` with `args` (argv[1...]) without a shell, stdin from /dev/null; waits for it.
// Returns its exit status, or throws IoError if it could not be started or was killed.
int run_program(const std::filesystem::path& program, const std::vector<std::string>& args);

// `s` quoted for a POSIX shell when it needs quoting, for printing commands users can paste.
std::string shell_quote(std::string_view s);

} // namespace tapegrad_cli
