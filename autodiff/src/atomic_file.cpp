#include <autodiff/atomic_file.hpp>

#include <fmt/format.h>

#include <cerrno>
#include <climits>
#include <csignal>
#include <cstring>
#include <functional>
#include <random>
#include <string>

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace autodiff {

FileError::FileError(std::filesystem::path path_, std::string reason_)
    : Error(fmt::format("autodiff: write_file_atomically: {}: {}", path_.string(), reason_)), path(std::move(path_)),
      reason(std::move(reason_)) {}

namespace {

namespace fs = std::filesystem;

[[noreturn]] void fail(const fs::path& target, std::string_view what, int err) {
  throw FileError(target, fmt::format("{}: {}", what, std::strerror(err)));
}

std::string kind_of(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  return "not a regular file";
}

// Where the bytes go: the requested path, or the file a chain of symbolic links points to.
struct Resolved {
  fs::path path;
  bool exists = false;
  struct stat st {};
};

Resolved resolve(const fs::path& requested) {
  Resolved r;
  r.path = requested;
  for (int hops = 0;; ++hops) {
    if (::lstat(r.path.c_str(), &r.st) != 0) {
      if (errno == ENOENT) return r; // a new file (or a dangling link's target): created below
      fail(requested, "cannot examine it", errno);
    }
    if (S_ISLNK(r.st.st_mode)) {
      if (hops == 40) fail(requested, "cannot follow its symbolic link", ELOOP);
      std::string buf(PATH_MAX, '\0');
      const ssize_t n = ::readlink(r.path.c_str(), buf.data(), buf.size());
      if (n < 0) fail(requested, "cannot read its symbolic link", errno);
      buf.resize(static_cast<std::size_t>(n));
      const fs::path link(buf);
      r.path = link.is_absolute() ? link : r.path.parent_path() / link;
      continue;
    }
    // Renaming over a device, FIFO or socket would silently turn it into a regular file.
    if (!S_ISREG(r.st.st_mode))
      throw FileError(requested, fmt::format("it is {}, not a regular file; it was left alone", kind_of(r.st.st_mode)));
    r.exists = true;
    return r;
  }
}

// Leftover names are ".NAME.tmp-PID-HOST-RANDOM": HOST (a hash of the host name) keeps a save on
// one host of a shared filesystem from deleting the live temporary file of a save on another.
unsigned host_hash() {
  static const unsigned h = [] {
    char name[256] = {};
    ::gethostname(name, sizeof name - 1);
    return static_cast<unsigned>(std::hash<std::string_view>{}(name)&0xffffffffu);
  }();
  return h;
}

std::string temp_prefix(const fs::path& target) { return fmt::format(".{}.tmp-", target.filename().string()); }

fs::path temp_name(const fs::path& target, long pid = ::getpid()) {
  static thread_local std::mt19937 rng(std::random_device{}());
  return target.parent_path() /
         fmt::format("{}{}-{:08x}-{:08x}", temp_prefix(target), pid, host_hash(), static_cast<unsigned>(rng()));
}

// Removes this target's temporary files left by killed saves: those of this host whose process is
// gone. A live process's (another thread's, another program's) is never touched.
void remove_stale_temporaries(const fs::path& target) {
  const fs::path dir = target.parent_path().empty() ? fs::path(".") : target.parent_path();
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return;
  const std::string prefix = temp_prefix(target);
  while (const dirent* e = ::readdir(d)) {
    const std::string_view name(e->d_name);
    if (!name.starts_with(prefix)) continue;
    unsigned long pid = 0;
    unsigned host = 0, rnd = 0;
    int used = 0;
    const std::string rest(name.substr(prefix.size()));
    if (std::sscanf(rest.c_str(), "%lu-%8x-%8x%n", &pid, &host, &rnd, &used) != 3 ||
        static_cast<std::size_t>(used) != rest.size() || host != host_hash() || pid == 0)
      continue;
    const auto p = static_cast<pid_t>(pid);
    if (p == ::getpid() || ::kill(p, 0) == 0 || errno != ESRCH) continue;
    (void)::unlinkat(::dirfd(d), e->d_name, 0); // best effort: a failure here is not this save's
  }
  ::closedir(d);
}

bool proc_fd_usable() {
  static const bool usable = ::access("/proc/self/fd", X_OK) == 0;
  return usable;
}

// Owns the new contents until they are in place: any exit before that removes them.
class TempFile {
public:
  TempFile(const fs::path& shown_as, const fs::path& target) : shown_(shown_as), target_(target) {
    const fs::path dir = target.parent_path().empty() ? fs::path(".") : target.parent_path();
    remove_stale_temporaries(target);
    int fd = -1;
    // An unnamed file vanishes with the process however it dies. Linking it in later goes through
    // /proc/self/fd, so without /proc it is not used.
    if (proc_fd_usable()) fd = ::open(dir.c_str(), O_TMPFILE | O_WRONLY | O_CLOEXEC, 0666);
    if (fd < 0) fd = create_named();
    file_ = ::fdopen(fd, "wb");
    if (!file_) {
      const int err = errno;
      ::close(fd);
      discard_name();
      fail(shown_, "cannot open a stream on the temporary file", err);
    }
  }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  ~TempFile() {
    if (file_) std::fclose(file_);
    discard_name();
  }

  std::FILE* stream() const { return file_; }

  // Makes the contents durable, then atomically puts them in place of the target.
  void commit(const Resolved& old, bool replace) {
    const int fd = ::fileno(file_);
    if (std::fflush(file_) != 0) fail(shown_, "cannot write", errno);
    if (old.exists) {
      // Keep the owner (where we may) and permissions of the file we replace. chown first: it
      // clears set-user-ID bits that the chmod then restores.
      (void)::fchown(fd, old.st.st_uid, old.st.st_gid);
      if (::fchmod(fd, old.st.st_mode & 07777) != 0)
        fail(shown_, "cannot copy the permissions of the existing file", errno);
    }
    if (::fsync(fd) != 0) fail(shown_, "cannot write (fsync)", errno);
    if (!replace && name_.empty()) {
      // Linking an unnamed file fails with EEXIST rather than replacing: no-replace for free.
      if (::linkat(AT_FDCWD, fmt::format("/proc/self/fd/{}", fd).c_str(), AT_FDCWD, target_.c_str(),
                   AT_SYMLINK_FOLLOW) != 0)
        link_failed(errno);
      close();
      sync_directory();
      return;
    }
    if (name_.empty()) give_name(fd);
    close();
    if (replace) {
      if (::rename(name_.c_str(), target_.c_str()) != 0)
        fail(shown_, "cannot rename the temporary file over it", errno);
    } else {
      if (::link(name_.c_str(), target_.c_str()) != 0) link_failed(errno);
      ::unlink(name_.c_str());
    }
    name_.clear();
    sync_directory();
  }

private:
  int create_named() {
    for (int attempt = 0; attempt < 100; ++attempt) {
      name_ = temp_name(target_);
      const int fd = ::open(name_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
      if (fd >= 0) return fd;
      const int err = errno;
      name_.clear();
      if (err != EEXIST) fail(shown_, "cannot create the new file in its directory", err);
    }
    fail(shown_, "cannot find an unused temporary file name", EEXIST);
  }

  // rename() needs a name; the unnamed file gets one only now, for this instant. A kill right here
  // leaves it behind, for the next save of the target to remove.
  void give_name(int fd) {
    const std::string from = fmt::format("/proc/self/fd/{}", fd);
    for (int attempt = 0; attempt < 100; ++attempt) {
      name_ = temp_name(target_);
      if (::linkat(AT_FDCWD, from.c_str(), AT_FDCWD, name_.c_str(), AT_SYMLINK_FOLLOW) == 0) return;
      const int err = errno;
      name_.clear();
      if (err != EEXIST) fail(shown_, "cannot name the new file in its directory", err);
    }
    fail(shown_, "cannot find an unused temporary file name", EEXIST);
  }

  [[noreturn]] void link_failed(int err) {
    if (err == EEXIST) throw FileError(shown_, "it already exists; it was left alone");
    fail(shown_, "cannot put the new file in place", err);
  }

  void close() {
    std::FILE* f = std::exchange(file_, nullptr);
    if (std::fclose(f) != 0) fail(shown_, "cannot close", errno);
  }

  void discard_name() {
    if (!name_.empty()) ::unlink(name_.c_str());
    name_.clear();
  }

  // The rename is durable only once the directory is synced. It has happened, so a failure here
  // (some filesystems do not support fsync on a directory) is not reported as a failed write.
  void sync_directory() const {
    const fs::path dir = target_.parent_path().empty() ? fs::path(".") : target_.parent_path();
    const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
      (void)::fsync(dfd);
      ::close(dfd);
    }
  }

  fs::path shown_;  // what the caller asked for: every message names it
  fs::path target_; // what is replaced: the end of its symbolic links
  fs::path name_;   // the temporary file's name, while it has one
  std::FILE* file_ = nullptr;
};

} // namespace

void FileSink::write(std::span<const std::byte> bytes) {
  if (bytes.empty()) return;
  if (std::fwrite(bytes.data(), 1, bytes.size(), file_) != bytes.size()) fail(path_, "cannot write", errno);
  written_ += bytes.size();
}

int FileSink::descriptor() {
  if (std::fflush(file_) != 0) fail(path_, "cannot write", errno);
  return ::fileno(file_);
}

void write_file_atomically(const fs::path& target, const std::function<void(FileSink&)>& writer, WriteOptions options) {
  if (target.filename().empty()) throw FileError(target, "not a file name");
  const Resolved resolved = resolve(target);
  if (resolved.exists && !options.replace) throw FileError(target, "it already exists; it was left alone");
  TempFile temp(target, resolved.path);
  FileSink sink(temp.stream(), target);
  writer(sink);
  temp.commit(resolved, options.replace);
}

fs::path detail::temporary_name(const fs::path& target, long pid) { return temp_name(target, pid); }

void write_file_atomically(const fs::path& target, std::span<const std::byte> bytes, WriteOptions options) {
  write_file_atomically(
      target, [bytes](FileSink& sink) { sink.write(bytes); }, options);
}

} // namespace autodiff
