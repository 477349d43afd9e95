// write_file_atomically: a failed write leaves the previous file byte-identical and no temporary
// file behind; a successful one replaces it whole.

#include "io_util.hpp"

#include <nn/atomic_file.hpp>
#include <nn/safetensors.hpp>

#include <boost/test/unit_test.hpp>

#include <csignal>

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

using namespace io_test;
using autodiff::Error;

namespace {

struct WriterFailed : std::runtime_error {
  WriterFailed() : std::runtime_error("writer failed on purpose") {}
};

std::vector<std::byte> filled(std::size_t n, int seed) {
  std::vector<std::byte> v(n);
  for (std::size_t i = 0; i < n; ++i)
    v[i] = static_cast<std::byte>((i * 131 + static_cast<std::size_t>(seed)) % 251);
  return v;
}

unsigned mode_of(const std::filesystem::path& p) {
  struct stat st {};
  BOOST_REQUIRE(::stat(p.c_str(), &st) == 0);
  return st.st_mode & 07777;
}

} // namespace

BOOST_AUTO_TEST_SUITE(atomic_file)

BOOST_AUTO_TEST_CASE(creates_and_replaces) {
  TempDir dir;
  auto first = filled(1000, 1);
  nn::write_file_atomically(dir / "f.bin", first);
  BOOST_TEST((as_bytes(read_file(dir / "f.bin")) == first));
  auto second = filled(3, 2);
  nn::write_file_atomically(dir / "f.bin", second);
  BOOST_TEST((as_bytes(read_file(dir / "f.bin")) == second));
  nn::write_file_atomically(dir / "f.bin", std::span<const std::byte>{});
  BOOST_TEST(read_file(dir / "f.bin").empty());
  BOOST_TEST(dir.entries() == (std::vector<std::string>{"f.bin"}), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(writer_throwing_halfway_keeps_the_old_file) {
  TempDir dir;
  auto old = filled(5000, 3);
  nn::write_file_atomically(dir / "ckpt.safetensors", old);
  std::vector<std::string> during;
  std::vector<std::byte> old_during;
  auto half = filled(4 << 20, 4);
  BOOST_CHECK_THROW(nn::write_file_atomically(dir / "ckpt.safetensors",
                                              [&](nn::FileSink& sink) {
                                                // Several MB, so that part of it has really reached the temporary file.
                                                sink.write(half);
                                                BOOST_TEST(sink.bytes_written() == half.size());
                                                during = dir.entries();
                                                old_during = as_bytes(read_file(dir / "ckpt.safetensors"));
                                                throw WriterFailed();
                                              }),
                    WriterFailed);
  // While writing, readers see the old file. The new contents are in an unnamed (O_TMPFILE) file,
  // or, where the filesystem has none, in a hidden one beside it.
  BOOST_TEST((old_during == old));
  BOOST_TEST_REQUIRE(!during.empty());
  for (const auto& name : during)
    BOOST_TEST((name == "ckpt.safetensors" || name.starts_with(".ckpt.safetensors.tmp-")), name);
  BOOST_TEST((as_bytes(read_file(dir / "ckpt.safetensors")) == old));
  BOOST_TEST(dir.entries() == (std::vector<std::string>{"ckpt.safetensors"}), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(failed_safetensors_save_keeps_the_old_checkpoint) {
  TempDir dir;
  namespace st = nn::safetensors;
  st::File good;
  good.tensors["w"] = st::Entry::of<float>({2}, std::vector<float>{1.0f, 2.0f});
  st::save(dir / "m.safetensors", good);
  auto before = read_file(dir / "m.safetensors");
  st::File bad = good;
  bad.tensors["v"] = st::Entry{"F32", {3}, std::vector<std::byte>(5)};
  BOOST_CHECK_THROW(st::save(dir / "m.safetensors", bad), Error);
  BOOST_TEST(read_file(dir / "m.safetensors") == before, boost::test_tools::per_element());
  BOOST_TEST((st::load(dir / "m.safetensors") == good));
  BOOST_TEST(dir.entries() == (std::vector<std::string>{"m.safetensors"}), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(io_errors_name_the_file_and_leave_nothing) {
  TempDir dir;
  BOOST_CHECK_EXCEPTION(nn::write_file_atomically(dir / "no/such/dir/f.bin", filled(10, 0)), Error, [](const Error& e) {
    return mentions(e, {"write_file_atomically:", "no/such/dir/f.bin", "No such file"});
  });
  std::filesystem::create_directory(dir / "sub");
  BOOST_CHECK_EXCEPTION(nn::write_file_atomically(dir / "sub", filled(10, 0)), Error, [](const Error& e) {
    return mentions(e, {"sub", "is a directory, not a regular file"});
  });
  BOOST_TEST(std::filesystem::is_directory(dir / "sub"));
  BOOST_TEST(dir.entries() == (std::vector<std::string>{"sub"}), boost::test_tools::per_element());
  BOOST_CHECK_EXCEPTION(nn::write_file_atomically(dir.path / "", filled(1, 0)), Error,
                        [](const Error& e) { return mentions(e, {"not a file name"}); });
}

BOOST_AUTO_TEST_CASE(permissions) {
  TempDir dir;
  const mode_t mask = ::umask(0);
  ::umask(mask);
  nn::write_file_atomically(dir / "new", filled(1, 0));
  BOOST_TEST(mode_of(dir / "new") == (0666u & ~static_cast<unsigned>(mask)));
  std::filesystem::permissions(dir / "new", std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  nn::write_file_atomically(dir / "new", filled(2, 0));
  BOOST_TEST(mode_of(dir / "new") == 0600u);
  BOOST_TEST(read_file(dir / "new").size() == 2u);
}

// A save killed halfway (SIGKILL: no destructor runs) must not leave its temporary file for ever:
// after the next save of the same file only that file is there, however many saves were killed.
BOOST_AUTO_TEST_CASE(killed_saves_leave_nothing_after_the_next_save) {
  TempDir dir;
  auto old = filled(1000, 5);
  nn::write_file_atomically(dir / "ckpt", old);
  for (int kill = 0; kill < 5; ++kill) {
    int ready[2];
    BOOST_REQUIRE(::pipe(ready) == 0);
    const pid_t child = ::fork();
    BOOST_REQUIRE(child >= 0);
    if (child == 0) {
      ::close(ready[0]);
      try {
        nn::write_file_atomically(dir / "ckpt", [&](nn::FileSink& sink) {
          sink.write(filled(1 << 20, kill));
          const char c = 'x';
          (void)!::write(ready[1], &c, 1);
          ::pause();
        });
      } catch (...) {
      }
      ::_exit(0);
    }
    ::close(ready[1]);
    char c = 0;
    BOOST_REQUIRE(::read(ready[0], &c, 1) == 1);
    ::close(ready[0]);
    ::kill(child, SIGKILL);
    int status = 0;
    BOOST_REQUIRE(::waitpid(child, &status, 0) == child);
    BOOST_TEST((as_bytes(read_file(dir / "ckpt")) == old)); // the killed save changed nothing
  }
  auto fresh = filled(10, 6);
  nn::write_file_atomically(dir / "ckpt", fresh);
  BOOST_TEST((as_bytes(read_file(dir / "ckpt")) == fresh));
  BOOST_TEST(dir.entries() == (std::vector<std::string>{"ckpt"}), boost::test_tools::per_element());
}

// Where there is no O_TMPFILE, or when a save is killed in the instant its file has a name, a
// hidden file is left. The next save removes those of processes that are gone, and only those.
BOOST_AUTO_TEST_CASE(the_next_save_removes_leftovers_of_dead_processes_only) {
  TempDir dir;
  const pid_t dead = ::fork();
  BOOST_REQUIRE(dead >= 0);
  if (dead == 0) ::_exit(0);
  int status = 0;
  BOOST_REQUIRE(::waitpid(dead, &status, 0) == dead); // reaped: its pid names no process now
  const pid_t live = ::fork();
  BOOST_REQUIRE(live >= 0);
  if (live == 0) {
    ::pause();
    ::_exit(0);
  }
  const auto leftover = autodiff::detail::temporary_name(dir / "m.bin", dead);
  const auto in_use = autodiff::detail::temporary_name(dir / "m.bin", live);
  const auto other_file = autodiff::detail::temporary_name(dir / "other.bin", dead);
  for (const auto& p : {leftover, in_use, other_file})
    write_file(p, {1, 2, 3});
  write_file(dir / ".m.bin.tmp-not-ours", {1});
  nn::write_file_atomically(dir / "m.bin", filled(3, 0));
  ::kill(live, SIGKILL);
  ::waitpid(live, &status, 0);
  BOOST_TEST(!std::filesystem::exists(leftover));
  BOOST_TEST(std::filesystem::exists(in_use));     // a live process's save
  BOOST_TEST(std::filesystem::exists(other_file)); // another target's
  BOOST_TEST(std::filesystem::exists(dir / ".m.bin.tmp-not-ours"));
  BOOST_TEST(dir.entries().size() == 4u);
}

// Saving onto a symbolic link replaces the file it points to, keeping the link and the file's mode.
BOOST_AUTO_TEST_CASE(writes_through_a_symbolic_link) {
  TempDir dir;
  std::filesystem::create_directory(dir / "real");
  nn::write_file_atomically(dir / "real/model.bin", filled(5, 1));
  ::chmod((dir / "real/model.bin").c_str(), 0640);
  std::filesystem::create_symlink("real/model.bin", dir / "latest");
  std::filesystem::create_symlink("latest", dir / "chain"); // a link to a link
  auto next = filled(7, 2);
  nn::write_file_atomically(dir / "chain", next);
  BOOST_TEST(std::filesystem::is_symlink(dir / "chain"));
  BOOST_TEST(std::filesystem::is_symlink(dir / "latest"));
  BOOST_TEST((as_bytes(read_file(dir / "real/model.bin")) == next));
  BOOST_TEST(mode_of(dir / "real/model.bin") == 0640u);
  // A dangling link gets its target created.
  std::filesystem::create_symlink("real/new.bin", dir / "dangling");
  nn::write_file_atomically(dir / "dangling", next);
  BOOST_TEST(std::filesystem::is_symlink(dir / "dangling"));
  BOOST_TEST((as_bytes(read_file(dir / "real/new.bin")) == next));
  BOOST_TEST(dir.entries().size() == 4u);
}

// A FIFO (or device, socket) is never replaced by a regular file: the save fails, naming it.
BOOST_AUTO_TEST_CASE(refuses_a_fifo) {
  TempDir dir;
  BOOST_REQUIRE(::mkfifo((dir / "pipe").c_str(), 0600) == 0);
  BOOST_CHECK_EXCEPTION(nn::write_file_atomically(dir / "pipe", filled(10, 0)), Error, [](const Error& e) {
    return mentions(e, {"pipe", "is a FIFO, not a regular file"});
  });
  BOOST_TEST(std::filesystem::is_fifo(dir / "pipe"));
  std::filesystem::create_symlink("pipe", dir / "to-pipe"); // nor through a link
  BOOST_CHECK_EXCEPTION(nn::write_file_atomically(dir / "to-pipe", filled(10, 0)), Error, [](const Error& e) {
    return mentions(e, {"to-pipe", "is a FIFO"});
  });
  BOOST_TEST(std::filesystem::is_fifo(dir / "pipe"));
  BOOST_TEST(dir.entries().size() == 2u);
}

BOOST_AUTO_TEST_SUITE_END()
