#pragma once
// Output and processes for the tapegrad tool: checked writes to standard output, PATH lookup,
// running Graphviz. Files are written with autodiff::write_file_atomically, as nn's are.

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

// Writes `text` to standard output and flushes it; throws IoError naming standard output if any of
// it could not be written (a full disk, a closed pipe, /dev/full).
void write_stdout(std::string_view text);

// The first executable regular file called `name` in the directories of $PATH.
std::optional<std::filesystem::path> find_on_path(std::string_view name);

// Runs `program` with `args` (argv[1...]) without a shell, standard input and output from the
// given descriptors; waits for it at most `timeout_seconds`, then kills it. Returns its exit status,
// or throws IoError if it could not be started, was killed or ran out of time.
int run_program(const std::filesystem::path& program, const std::vector<std::string>& args, int stdin_fd, int stdout_fd,
                double timeout_seconds);

// `s` quoted for a POSIX shell when it needs quoting, for printing commands users can paste.
std::string shell_quote(std::string_view s);

} // namespace tapegrad_cli
