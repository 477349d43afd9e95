// write_file_atomically: a failed write leaves the previous file byte-identical and no temporary
// file behind; a successful one replaces it whole.

#include "io_util.hpp"

#include <nn/atomic_file.hpp>
#include <nn/safetensors.hpp>

#include <boost/test/unit_test.hpp>

#include <sys/stat.h>

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
  std::uintmax_t temp_size = 0;
  auto half = filled(4 << 20, 4);
  BOOST_CHECK_THROW(nn::write_file_atomically(dir / "ckpt.safetensors",
                                              [&](nn::FileSink& sink) {
                                                // Several MB, so that part of it has really reached the temporary file.
                                                sink.write(half);
                                                BOOST_TEST(sink.bytes_written() == half.size());
                                                during = dir.entries();
                                                for (const auto& name : during)
                                                  if (name != "ckpt.safetensors")
                                                    temp_size = std::filesystem::file_size(dir / name);
                                                throw WriterFailed();
                                              }),
                    WriterFailed);
  // While writing there were two files: the old one and a hidden temporary one beside it.
  BOOST_TEST(during.size() == 2u);
  bool saw_temp = false;
  for (const auto& name : during) {
    if (name == "ckpt.safetensors") continue;
    saw_temp = name.starts_with(".ckpt.safetensors.tmp-");
  }
  BOOST_TEST(temp_size >= half.size() / 2);
  BOOST_TEST(saw_temp);
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
    return mentions(e, {"nn: write_file_atomically:", "no/such/dir/f.bin", "No such file"});
  });
  std::filesystem::create_directory(dir / "sub");
  BOOST_CHECK_EXCEPTION(nn::write_file_atomically(dir / "sub", filled(10, 0)), Error, [](const Error& e) {
    return mentions(e, {"sub", "cannot rename"});
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

BOOST_AUTO_TEST_SUITE_END()
