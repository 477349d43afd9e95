// IDX reading: generated files (plain and gzipped, intact and damaged) and, when installed, the
// real Fashion-MNIST files checked against figures computed independently with Python's gzip.

#include "io_util.hpp"

#include <nn/idx.hpp>

#include <boost/test/unit_test.hpp>

#include <cmath>
#include <numeric>

using namespace io_test;
using autodiff::Error;

namespace {

std::vector<std::uint8_t> idx_header(std::uint8_t type, std::vector<std::uint32_t> dims) {
  std::vector<std::uint8_t> h = {0, 0, type, static_cast<std::uint8_t>(dims.size())};
  for (auto d : dims)
    for (int shift = 24; shift >= 0; shift -= 8)
      h.push_back(static_cast<std::uint8_t>(d >> shift));
  return h;
}

std::vector<std::uint8_t> pattern(std::size_t n) {
  std::vector<std::uint8_t> v(n);
  for (std::size_t i = 0; i < n; ++i)
    v[i] = static_cast<std::uint8_t>((i * 37 + 11) % 256);
  return v;
}

std::vector<std::uint8_t> concat(std::vector<std::uint8_t> a, const std::vector<std::uint8_t>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

bool throws_mentioning(const std::filesystem::path& p, std::initializer_list<std::string> words) {
  try {
    nn::read_idx(p);
  } catch (const Error& e) {
    return mentions(e, words);
  }
  fmt::print(stderr, "read_idx({}) did not throw\n", p.string());
  return false;
}

} // namespace

BOOST_AUTO_TEST_SUITE(idx)

BOOST_AUTO_TEST_CASE(plain_and_gzipped_round_trip) {
  TempDir dir;
  auto data = pattern(5 * 3 * 2);
  auto file = concat(idx_header(0x08, {5, 3, 2}), data);
  write_file(dir / "a.idx", file);
  write_gz(dir / "a.idx.gz", file);
  for (const char* name : {"a.idx", "a.idx.gz"}) {
    auto a = nn::read_idx(dir / name);
    BOOST_TEST(a.dtype == 0x08);
    BOOST_TEST(a.dims == (std::vector<std::size_t>{5, 3, 2}), boost::test_tools::per_element());
    BOOST_TEST(a.data == data, boost::test_tools::per_element());
  }
  // The gzipped file really is compressed: zlib would otherwise read it transparently as well.
  auto gz = read_file(dir / "a.idx.gz");
  BOOST_TEST((gz[0] == 0x1f && gz[1] == 0x8b));
}

BOOST_AUTO_TEST_CASE(one_and_four_dims_and_big_dims) {
  TempDir dir;
  auto labels = std::vector<std::uint8_t>{9, 0, 0, 3, 7};
  write_gz(dir / "l.gz", concat(idx_header(0x08, {5}), labels));
  BOOST_TEST(nn::read_idx(dir / "l.gz").data == labels, boost::test_tools::per_element());

  auto data = pattern(2 * 1 * 3 * 4);
  write_file(dir / "4d", concat(idx_header(0x08, {2, 1, 3, 4}), data));
  auto a = nn::read_idx(dir / "4d");
  BOOST_TEST(a.dims == (std::vector<std::size_t>{2, 1, 3, 4}), boost::test_tools::per_element());
  BOOST_TEST(a.data == data, boost::test_tools::per_element());

  // A dim above 2^16 checks that all four big-endian bytes are used: 70000 = 0x00011170.
  auto long_data = pattern(70000);
  write_gz(dir / "long.gz", concat(idx_header(0x08, {70000}), long_data));
  auto l = nn::read_idx(dir / "long.gz");
  BOOST_TEST(l.dims.at(0) == 70000u);
  BOOST_TEST((l.data == long_data));

  write_file(dir / "empty", idx_header(0x08, {0, 28}));
  BOOST_TEST(nn::read_idx(dir / "empty").size() == 0u);
}

BOOST_AUTO_TEST_CASE(missing_file_and_directory) {
  TempDir dir;
  BOOST_TEST(throws_mentioning(dir / "nope.gz", {"nn: read_idx:", "nope.gz", "no such file"}));
  BOOST_TEST(throws_mentioning(dir.path, {"nn: read_idx:", "directory"}));
}

BOOST_AUTO_TEST_CASE(bad_headers) {
  TempDir dir;
  write_file(dir / "empty", {});
  BOOST_TEST(throws_mentioning(dir / "empty", {"empty", "too short", "0 bytes"}));
  write_file(dir / "magic", concat({1, 0, 8, 1, 0, 0, 0, 1}, {7}));
  BOOST_TEST(throws_mentioning(dir / "magic", {"magic", "01 00 08 01"}));
  write_gz(dir / "float.gz", concat(idx_header(0x0D, {1}), {0, 0, 0, 0}));
  BOOST_TEST(throws_mentioning(dir / "float.gz", {"float.gz", "0x0d", "float", "not supported"}));
  write_file(dir / "nodims", idx_header(0x08, {}));
  BOOST_TEST(throws_mentioning(dir / "nodims", {"0 dimensions"}));
  write_file(dir / "5dims", idx_header(0x08, {1, 1, 1, 1, 1}));
  BOOST_TEST(throws_mentioning(dir / "5dims", {"5 dimensions", "1 to 4"}));
  auto cut = idx_header(0x08, {3, 4, 5});
  cut.resize(10);
  write_file(dir / "cutdims", cut);
  BOOST_TEST(throws_mentioning(dir / "cutdims", {"expected 12 bytes, got 6"}));
}

BOOST_AUTO_TEST_CASE(huge_dims) {
  TempDir dir;
  // 2^32-1 to the 4th overflows 64 bits; (2^32-1)^2 fits them, but not the tensors' 2^60 elements.
  write_file(dir / "overflow", concat(idx_header(0x08, {0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF}), {1, 2}));
  BOOST_TEST(throws_mentioning(dir / "overflow", {"4294967295 x 4294967295", "more than 2^60 elements"}));
  write_file(dir / "square", concat(idx_header(0x08, {0xFFFFFFFF, 0xFFFFFFFF}), {1, 2}));
  BOOST_TEST(throws_mentioning(dir / "square", {"4294967295 x 4294967295", "more than 2^60 elements"}));
  // A zero dim does not excuse the others: 0 bytes, but no tensor shape.
  write_file(dir / "zero", idx_header(0x08, {0, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF}));
  BOOST_TEST(throws_mentioning(dir / "zero", {"0 x 4294967295 x 4294967295 x 4294967295", "more than 2^60 elements"}));
  // (2^30-1)^2 fits; it must be reported as missing data, without allocating exabytes first.
  write_gz(dir / "huge.gz", concat(idx_header(0x08, {0x3FFFFFFF, 0x3FFFFFFF}), pattern(100)));
  BOOST_TEST(throws_mentioning(dir / "huge.gz", {"truncated", "expected 1152921502459363329", "got 100"}));
}

BOOST_AUTO_TEST_CASE(truncated_and_trailing_data) {
  TempDir dir;
  auto header = idx_header(0x08, {10, 10});
  write_file(dir / "short", concat(header, pattern(77)));
  BOOST_TEST(throws_mentioning(dir / "short", {"short", "truncated", "expected 100 data bytes", "got 77"}));
  write_gz(dir / "short.gz", concat(header, pattern(99)));
  BOOST_TEST(throws_mentioning(dir / "short.gz", {"expected 100 data bytes", "got 99"}));

  write_file(dir / "long", concat(header, pattern(103)));
  BOOST_TEST(throws_mentioning(dir / "long", {"long", "3 bytes of trailing data", "100 data bytes"}));
  write_gz(dir / "long.gz", concat(header, pattern(101)));
  BOOST_TEST(throws_mentioning(dir / "long.gz", {"1 bytes of trailing data"}));
}

BOOST_AUTO_TEST_CASE(damaged_gzip) {
  TempDir dir;
  auto file = concat(idx_header(0x08, {64, 64}), pattern(64 * 64));
  write_gz(dir / "ok.gz", file);
  auto gz = read_file(dir / "ok.gz");
  BOOST_REQUIRE(gz.size() > 40);

  // Cut inside the deflate stream: zlib reports the stream ending early.
  auto cut = gz;
  cut.resize(gz.size() / 2);
  write_file(dir / "cut.gz", cut);
  BOOST_TEST(throws_mentioning(dir / "cut.gz", {"cut.gz", "zlib"}));

  // Garbage after a valid gzip header: an invalid deflate block.
  std::vector<std::uint8_t> junk(gz.begin(), gz.begin() + 10);
  for (int i = 0; i < 40; ++i)
    junk.push_back(0xFF);
  write_file(dir / "junk.gz", junk);
  BOOST_TEST(throws_mentioning(dir / "junk.gz", {"junk.gz", "corrupt gzip data (zlib:"}));

  // A damaged CRC-32 in the trailer: every byte decompresses, the check at the end fails.
  auto crc = gz;
  crc[crc.size() - 8] ^= 0x55;
  write_file(dir / "crc.gz", crc);
  BOOST_TEST(throws_mentioning(dir / "crc.gz", {"crc.gz", "corrupt gzip data", "incorrect data check"}));
}

BOOST_AUTO_TEST_CASE(fashion_mnist_layout_from_generated_files) {
  TempDir dir;
  // 3 images of 2 x 4; image i pixel j = 40 i + 17 j, so the last pixel is 255.
  std::vector<std::uint8_t> pixels;
  for (std::uint32_t i = 0; i < 3; ++i)
    for (std::uint32_t j = 0; j < 8; ++j)
      pixels.push_back(static_cast<std::uint8_t>(i * 40 + j * 17 + (i == 2 && j == 7 ? 56 : 0)));
  BOOST_REQUIRE(pixels.back() == 255);
  write_gz(dir / "t10k-images-idx3-ubyte.gz", concat(idx_header(0x08, {3, 2, 4}), pixels));
  write_file(dir / "t10k-labels-idx1-ubyte", concat(idx_header(0x08, {3}), {4, 0, 9}));
  auto d = nn::load_fashion_mnist(dir.path, nn::Split::test);
  BOOST_TEST(d.count == 3u);
  BOOST_TEST(d.rows == 2u);
  BOOST_TEST(d.cols == 4u);
  BOOST_TEST(d.labels == (std::vector<std::int64_t>{4, 0, 9}), boost::test_tools::per_element());
  BOOST_REQUIRE(d.images.size() == 24u);
  for (std::size_t k = 0; k < 24; ++k)
    BOOST_TEST(d.images[k] == static_cast<float>(pixels[k]) / 255.0f);
  BOOST_TEST(d.image(2)[7] == 1.0f);
  BOOST_TEST(d.image(1)[1] == 57.0f / 255.0f);

  BOOST_CHECK_EXCEPTION(nn::load_fashion_mnist(dir.path, nn::Split::train), Error, [](const Error& e) {
    return mentions(e, {"nn: load_fashion_mnist:", "train-images-idx3-ubyte.gz", "train-images-idx3-ubyte\""});
  });

  write_file(dir / "t10k-labels-idx1-ubyte", concat(idx_header(0x08, {2}), {4, 0}));
  BOOST_CHECK_EXCEPTION(nn::load_fashion_mnist(dir.path, nn::Split::test), Error,
                        [](const Error& e) { return mentions(e, {"3 images but 2 labels"}); });
  write_file(dir / "t10k-labels-idx1-ubyte", concat(idx_header(0x08, {3}), {4, 10, 9}));
  BOOST_CHECK_EXCEPTION(nn::load_fashion_mnist(dir.path, nn::Split::test), Error, [](const Error& e) {
    return mentions(e, {"label 10 of image 1", "below 10"});
  });
  write_file(dir / "t10k-labels-idx1-ubyte", concat(idx_header(0x08, {3, 1}), {4, 1, 9}));
  BOOST_CHECK_EXCEPTION(nn::load_fashion_mnist(dir.path, nn::Split::test), Error,
                        [](const Error& e) { return mentions(e, {"labels have dims 3 x 1"}); });
}

// Expected figures computed with Python's gzip module from the installed files.
BOOST_AUTO_TEST_CASE(real_fashion_mnist) {
  const std::filesystem::path dir(nn::fashion_mnist_default_dir);
  if (!std::filesystem::exists(dir / "train-images-idx3-ubyte.gz")) {
    BOOST_TEST_MESSAGE("Fashion-MNIST not installed at " << dir << "; skipped");
    return;
  }
  auto raw = nn::read_idx(dir / "train-images-idx3-ubyte.gz");
  BOOST_TEST(raw.dims == (std::vector<std::size_t>{60000, 28, 28}), boost::test_tools::per_element());
  BOOST_TEST(std::accumulate(raw.data.begin(), raw.data.end(), std::uint64_t{0}) == 3431114169u);

  auto train = nn::load_fashion_mnist(dir, nn::Split::train);
  BOOST_TEST(train.count == 60000u);
  BOOST_TEST(train.rows == 28u);
  BOOST_TEST(train.cols == 28u);
  BOOST_TEST(train.images.size() == 60000u * 784u);
  BOOST_TEST(std::vector<std::int64_t>(train.labels.begin(), train.labels.begin() + 10) ==
                 (std::vector<std::int64_t>{9, 0, 0, 3, 0, 2, 7, 2, 5, 5}),
             boost::test_tools::per_element());
  std::vector<int> per_class(10);
  for (auto l : train.labels)
    ++per_class.at(static_cast<std::size_t>(l));
  for (int c : per_class)
    BOOST_TEST(c == 6000);
  double sum = std::accumulate(train.images.begin(), train.images.end(), 0.0);
  BOOST_TEST(sum / static_cast<double>(train.images.size()) == 72.94035223214286 / 255.0,
             boost::test_tools::tolerance(1e-6)); // each float is rounded
  // Row 14 of the first image (an ankle boot).
  const std::vector<int> row14 = {0,   0,   1,   4,   6,   7,   2,   0,   0,   0,   0,   0,   237, 226,
                                  217, 223, 222, 219, 222, 221, 216, 223, 229, 215, 218, 255, 77,  0};
  for (std::size_t c = 0; c < 28; ++c)
    BOOST_TEST(train.image(0)[14 * 28 + c] == static_cast<float>(row14[c]) / 255.0f);

  auto test = nn::load_fashion_mnist(dir, nn::Split::test);
  BOOST_TEST(test.count == 10000u);
  BOOST_TEST(std::vector<std::int64_t>(test.labels.begin(), test.labels.begin() + 10) ==
                 (std::vector<std::int64_t>{9, 2, 1, 1, 6, 1, 4, 6, 5, 7}),
             boost::test_tools::per_element());
  double test_sum = 0;
  for (float p : test.images)
    test_sum += std::round(p * 255.0);
  BOOST_TEST(test_sum == 573469082.0);
}

BOOST_AUTO_TEST_SUITE_END()
