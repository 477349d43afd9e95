#pragma once
// Replacing a file so that readers (and a crash) only ever see the old or the new contents.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <span>
#include <string_view>
#include <utility>

namespace nn {

// What a writer callback writes to. Buffered; every failure throws autodiff::Error naming the file.
class FileSink {
public:
  FileSink(std::FILE* file, std::filesystem::path shown_as) : file_(file), path_(std::move(shown_as)) {}
  void write(std::span<const std::byte> bytes);
  void write(std::string_view text) { write(std::as_bytes(std::span(text.data(), text.size()))); }
  std::uint64_t bytes_written() const { return written_; }

private:
  std::FILE* file_;
  std::filesystem::path path_;
  std::uint64_t written_ = 0;
};

// Writes to a fresh temporary file next to `target`, flushes and fsyncs it, then renames it over
// `target` (and fsyncs the directory). If `writer` or any I/O step throws, the temporary file is
// removed, `target` is untouched and the exception propagates. An existing target's permission
// bits are kept; a new file gets the usual 0666 & ~umask.
void write_file_atomically(const std::filesystem::path& target, const std::function<void(FileSink&)>& writer);
void write_file_atomically(const std::filesystem::path& target, std::span<const std::byte> bytes);

} // namespace nn
