#pragma once
// Replacing a file so that readers (and a crash) only ever see the old or the new contents. The one
// file writer of the project: nn's checkpoints and the tapegrad tool both write through it.

#include <autodiff/error.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <utility>

namespace autodiff {

// A failed write_file_atomically: `path` is the file the caller asked for (never the temporary
// file), `reason` what went wrong ("No space left on device", "it is a FIFO, not a regular file").
class FileError : public Error {
public:
  FileError(std::filesystem::path path_, std::string reason_);
  std::filesystem::path path;
  std::string reason;
};

// What a writer callback writes to. Buffered; every failure throws FileError naming the target.
class FileSink {
public:
  FileSink(std::FILE* file, std::filesystem::path shown_as) : file_(file), path_(std::move(shown_as)) {}
  void write(std::span<const std::byte> bytes);
  void write(std::string_view text) { write(std::as_bytes(std::span(text.data(), text.size()))); }
  std::uint64_t bytes_written() const { return written_; }
  // The file descriptor, after flushing what write() buffered: for handing the file to another
  // program (e.g. as its standard output). Bytes written to it directly are not counted.
  int descriptor();

private:
  std::FILE* file_;
  std::filesystem::path path_;
  std::uint64_t written_ = 0;
};

struct WriteOptions {
  // false: fail (FileError, "it already exists") instead of replacing an existing file, atomically.
  bool replace = true;
};

// Writes the new contents to a file beside the target, flushes and fsyncs it, then renames it over
// the target (and fsyncs the directory). If `writer` or any I/O step throws, the target is
// untouched and the exception propagates.
//
// - A symbolic link is written through: its target file is replaced, the link stays.
// - Anything else that is not a regular file (directory, FIFO, device, socket) is refused with a
//   FileError naming what it is; it is never opened or replaced.
// - An existing target keeps its permission bits (and owner, where allowed); a new file gets
//   0666 & ~umask.
// - Nothing is left behind by a killed save that a later save does not remove: where the
//   filesystem supports it the data goes to an unnamed O_TMPFILE file, which gets a name
//   (".NAME.tmp-PID-HOST-RANDOM") only for the instant before the rename; otherwise that name is
//   used from the start. Each save removes such files of its target left by processes of this host
//   that no longer exist.
void write_file_atomically(const std::filesystem::path& target, const std::function<void(FileSink&)>& writer,
                           WriteOptions options = {});
void write_file_atomically(const std::filesystem::path& target, std::span<const std::byte> bytes,
                           WriteOptions options = {});

namespace detail {
// The name a save of `target` by process `pid` of this host gives its temporary file: for tests of
// the removal of leftovers, which otherwise only a kill at the right instant leaves.
std::filesystem::path temporary_name(const std::filesystem::path& target, long pid);
} // namespace detail

} // namespace autodiff
