#include <nn/atomic_file.hpp>

#include <autodiff/error.hpp>

#include <fmt/format.h>
#include <fmt/std.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <random>
#include <string>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace nn {
namespace {

[[noreturn]] void fail(const std::filesystem::path& target, std::string_view what, int err) {
  throw autodiff::Error(fmt::format("nn: write_file_atomically: {}: {}: {}", target, what, std::strerror(err)));
}

// A name nobody else picks: pid, a per-process counter and a random number (for another process
// with the same pid on a shared filesystem). O_EXCL makes a collision an EEXIST, and we retry.
std::filesystem::path temp_name(const std::filesystem::path& target) {
  static std::atomic<unsigned> counter{0};
  static const unsigned salt = std::random_device{}();
  auto name = fmt::format(".{}.tmp-{}-{}-{:08x}", target.filename().string(), ::getpid(), counter++, salt);
  return target.parent_path() / name;
}

// Owns the temporary file until it is renamed: any exit before that closes and removes it.
class TempFile {
public:
  explicit TempFile(const std::filesystem::path& target) : target_(target) {
    for (int attempt = 0; attempt < 100; ++attempt) {
      path_ = temp_name(target);
      int fd = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
      if (fd >= 0) {
        file_ = ::fdopen(fd, "wb");
        if (!file_) {
          int err = errno;
          ::close(fd);
          ::unlink(path_.c_str());
          fail(target, "cannot open a stream on the temporary file", err);
        }
        return;
      }
      if (errno != EEXIST) fail(target, fmt::format("cannot create temporary file {}", path_), errno);
    }
    fail(target, "cannot find an unused temporary file name", EEXIST);
  }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  ~TempFile() {
    if (file_) std::fclose(file_);
    if (!path_.empty()) ::unlink(path_.c_str());
  }

  std::FILE* stream() const { return file_; }
  const std::filesystem::path& path() const { return path_; }

  // Makes the contents durable, then atomically puts them in place of the target.
  void commit() {
    if (std::fflush(file_) != 0) fail(target_, "cannot write", errno);
    // Keep the permissions of the file we replace (a new file keeps 0666 & ~umask from open).
    struct stat st {};
    if (::stat(target_.c_str(), &st) == 0 && ::fchmod(::fileno(file_), st.st_mode & 07777) != 0)
      fail(target_, "cannot copy the permissions of the existing file", errno);
    if (::fsync(::fileno(file_)) != 0) fail(target_, "cannot fsync", errno);
    std::FILE* f = std::exchange(file_, nullptr);
    if (std::fclose(f) != 0) fail(target_, "cannot close", errno);
    if (::rename(path_.c_str(), target_.c_str()) != 0) fail(target_, "cannot rename the temporary file over it", errno);
    path_.clear();
    // The rename is durable only once the directory is synced. It has happened, so a failure here
    // (some filesystems do not support fsync on a directory) is not reported as a failed write.
    auto dir = target_.parent_path().empty() ? std::filesystem::path(".") : target_.parent_path();
    int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
      (void)::fsync(dfd);
      ::close(dfd);
    }
  }

private:
  std::filesystem::path target_;
  std::filesystem::path path_;
  std::FILE* file_ = nullptr;
};

} // namespace

void FileSink::write(std::span<const std::byte> bytes) {
  if (bytes.empty()) return;
  if (std::fwrite(bytes.data(), 1, bytes.size(), file_) != bytes.size()) fail(path_, "cannot write", errno);
  written_ += bytes.size();
}

void write_file_atomically(const std::filesystem::path& target, const std::function<void(FileSink&)>& writer) {
  if (target.filename().empty())
    throw autodiff::Error(fmt::format("nn: write_file_atomically: {}: not a file name", target));
  TempFile temp(target);
  FileSink sink(temp.stream(), target);
  writer(sink);
  temp.commit();
}

void write_file_atomically(const std::filesystem::path& target, std::span<const std::byte> bytes) {
  write_file_atomically(target, [bytes](FileSink& sink) { sink.write(bytes); });
}

} // namespace nn
