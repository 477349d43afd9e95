// safetensors: round trips, a reference file built byte by byte from the format description, and
// one damaged file per validation rule.

#include "io_util.hpp"

#include <nn/idx.hpp>
#include <nn/nn.hpp>
#include <nn/safetensors.hpp>

#include <boost/test/unit_test.hpp>

#include <chrono>
#include <cstring>
#include <optional>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

using namespace io_test;
using autodiff::Error;
namespace st = nn::safetensors;

namespace {
// Peak-memory bounds hold for the plain allocator only: AddressSanitizer keeps freed memory in a
// quarantine (256 MB by default) and adds shadow memory, so under it the paths run but the bounds
// are not checked.
// GCC defines __SANITIZE_ADDRESS__/__SANITIZE_THREAD__; clang 14 only answers __has_feature.
#if defined(__has_feature)
#define TAPEGRAD_HAS_FEATURE(x) __has_feature(x)
#else
#define TAPEGRAD_HAS_FEATURE(x) 0
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__) || TAPEGRAD_HAS_FEATURE(address_sanitizer) ||        \
    TAPEGRAD_HAS_FEATURE(thread_sanitizer)
constexpr bool check_peaks = false;
#else
constexpr bool check_peaks = true;
#endif

std::vector<std::byte> bytes_of(std::initializer_list<int> v) {
  std::vector<std::byte> out;
  for (int b : v)
    out.push_back(static_cast<std::byte>(b));
  return out;
}

// A file image: little-endian length (the real one unless overridden), header text, data.
std::vector<std::byte> make(const std::string& header, const std::vector<std::byte>& data = {},
                            std::optional<std::uint64_t> length = std::nullopt) {
  std::uint64_t n = length.value_or(header.size());
  std::vector<std::byte> out;
  for (int i = 0; i < 8; ++i)
    out.push_back(static_cast<std::byte>((n >> (8 * i)) & 0xFF));
  for (char c : header)
    out.push_back(static_cast<std::byte>(c));
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

std::vector<std::byte> zeros(std::size_t n) { return std::vector<std::byte>(n); }

bool rejects(const std::vector<std::byte>& file, std::initializer_list<std::string> words) {
  try {
    st::parse(file, "damaged.safetensors");
  } catch (const Error& e) {
    return mentions(e, {"nn: safetensors: damaged.safetensors: "}) && mentions(e, words);
  }
  fmt::print(stderr, "parse did not throw for a file expected to contain {}\n", *words.begin());
  return false;
}

st::File sample() {
  st::File f;
  const std::vector<float> w = {1.5f, -2.0f, 0.25f, 3.0f, -0.0f, 1e-30f};
  const std::vector<double> s = {3.141592653589793};
  const std::vector<std::int64_t> idx = {-1, 0, 1LL << 40, 7};
  f.tensors["layer1.weight"] = st::Entry::of<float>({2, 3}, w);
  f.tensors["scale"] = st::Entry::of<double>({}, s);
  f.tensors["indices"] = st::Entry::of<std::int64_t>({4}, idx);
  f.tensors["empty"] = st::Entry::of<float>({0, 5}, std::span<const float>{});
  f.tensors["half"] = st::Entry{"BF16", {2}, bytes_of({0x80, 0x3f, 0x00, 0xc0})};
  f.metadata = {{"format", "pt"}, {"epoch", "12"}, {"note", "ünïcode ✓"}};
  return f;
}

// Replays tests/fuzz/corpus/<dir>: files named valid-* load, damaged-* are rejected with an Error.
template <class Load> void replay_corpus(const std::string& dir, Load load, int min_valid, int min_damaged) {
  const std::filesystem::path corpus = std::filesystem::path(TAPEGRAD_SOURCE_DIR) / "tests/fuzz/corpus" / dir;
  int valid = 0, damaged = 0;
  for (const auto& entry : std::filesystem::directory_iterator(corpus)) {
    const auto name = entry.path().filename().string();
    BOOST_TEST_CONTEXT(name) {
      if (name.starts_with("valid-")) {
        BOOST_CHECK_NO_THROW(load(entry.path()));
        ++valid;
      } else if (name.starts_with("damaged-")) {
        BOOST_CHECK_THROW(load(entry.path()), Error);
        ++damaged;
      }
    }
  }
  BOOST_TEST(valid >= min_valid);
  BOOST_TEST(damaged >= min_damaged);
}

} // namespace

BOOST_AUTO_TEST_SUITE(safetensors)

BOOST_AUTO_TEST_CASE(round_trip_through_a_file) {
  TempDir dir;
  auto f = sample();
  st::save(dir / "a.safetensors", f);
  auto g = st::load(dir / "a.safetensors");
  BOOST_TEST((g == f));
  BOOST_TEST(g.tensors.at("layer1.weight").values<float>() ==
                 (std::vector<float>{1.5f, -2.0f, 0.25f, 3.0f, -0.0f, 1e-30f}),
             boost::test_tools::per_element());
  BOOST_TEST(g.tensors.at("scale").values<double>().at(0) == 3.141592653589793);
  BOOST_TEST(g.tensors.at("indices").values<std::int64_t>().at(2) == (1LL << 40));
  BOOST_TEST(g.tensors.at("empty").shape == (std::vector<std::int64_t>{0, 5}), boost::test_tools::per_element());
  BOOST_TEST(g.metadata.at("note") == "ünïcode ✓");

  // The file is exactly serialize(), and serialize() of what was loaded is the same bytes again.
  auto on_disk = as_bytes(read_file(dir / "a.safetensors"));
  BOOST_TEST((on_disk == st::serialize(f)));
  BOOST_TEST((on_disk == st::serialize(g)));

  // Header length is a multiple of 8, and the data buffer is the tensors' bytes in name order.
  std::uint64_t n = 0;
  for (int i = 0; i < 8; ++i)
    n |= std::uint64_t(std::to_integer<std::uint8_t>(on_disk[i])) << (8 * i);
  BOOST_TEST(n % 8 == 0u);
  std::vector<std::byte> expected_data;
  for (const auto& [name, e] : f.tensors)
    expected_data.insert(expected_data.end(), e.data.begin(), e.data.end());
  BOOST_TEST(on_disk.size() == 8 + n + expected_data.size());
  BOOST_TEST(std::equal(expected_data.begin(), expected_data.end(), on_disk.begin() + 8 + static_cast<long>(n)));
  BOOST_TEST(dir.entries() == (std::vector<std::string>{"a.safetensors"}), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(typed_values_are_little_endian) {
  // 1.0f is 0x3f800000; little-endian puts 00 00 80 3f in the file.
  auto e = st::Entry::of<float>({1}, std::vector<float>{1.0f});
  BOOST_TEST((e.data == bytes_of({0x00, 0x00, 0x80, 0x3f})));
  auto i = st::Entry::of<std::int64_t>({1}, std::vector<std::int64_t>{258});
  BOOST_TEST((i.data == bytes_of({2, 1, 0, 0, 0, 0, 0, 0})));
  BOOST_CHECK_EXCEPTION(e.values<double>(), Error, [](const Error& err) { return mentions(err, {"F64", "F32"}); });
  BOOST_TEST(st::dtype_size("BF16").value_or(0) == 2u);
  BOOST_TEST(!st::dtype_size("F32 ").has_value());
  BOOST_TEST((st::Entry{"F32", {2, 3, 4}, {}}.numel() == 24));
  BOOST_CHECK_THROW((st::Entry{"F32", {2, -3}, {}}.numel()), Error);
}

// Built by hand from the format description, in the compact style of the reference writer (no
// spaces, padding at the end), with the data in a different order than the keys and metadata
// first. Float bytes: 1.0 = 00 00 80 3f, 2.0 = 00 00 00 40, -0.5 = 00 00 00 bf, 3.25 = 00 00 50 40.
BOOST_AUTO_TEST_CASE(hand_built_reference_file) {
  std::string header = R"({"__metadata__":{"format":"pt"},"b":{"dtype":"I64","shape":[2],"data_offsets":[16,32]},)"
                       R"("a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},)"
                       R"("c":{"dtype":"F16","shape":[],"data_offsets":[32,34]}})";
  header.resize((header.size() + 7) / 8 * 8, ' ');
  auto data =
      bytes_of({0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0x40, 0x00, 0x00, 0x00, 0xbf, 0x00, 0x00, 0x50, 0x40, 0xff,
                0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x3c});
  auto file = st::parse(make(header, data), "reference");
  BOOST_TEST(file.metadata == (std::map<std::string, std::string>{{"format", "pt"}}));
  BOOST_TEST(file.tensors.size() == 3u);
  BOOST_TEST(file.tensors.at("a").dtype == "F32");
  BOOST_TEST(file.tensors.at("a").shape == (std::vector<std::int64_t>{2, 2}), boost::test_tools::per_element());
  BOOST_TEST(file.tensors.at("a").values<float>() == (std::vector<float>{1.0f, 2.0f, -0.5f, 3.25f}),
             boost::test_tools::per_element());
  BOOST_TEST(file.tensors.at("b").values<std::int64_t>() == (std::vector<std::int64_t>{-1, 258}),
             boost::test_tools::per_element());
  BOOST_TEST(file.tensors.at("c").shape.empty());
  BOOST_TEST((file.tensors.at("c").data == bytes_of({0x00, 0x3c}))); // 1.0 in half precision

  // Our writer lays the same content out in name order; it reads back to the same File.
  BOOST_TEST((st::parse(st::serialize(file), "rewritten") == file));

  // Whitespace between tokens and an empty file are fine too.
  BOOST_TEST(st::parse(make("{ }     "), "x").tensors.empty());
  auto spaced = st::parse(
      make("{\n \"x\" : {\"shape\": [1], \"data_offsets\": [0, 1], \"dtype\": \"U8\"}\n}", bytes_of({42})), "x");
  BOOST_TEST((spaced.tensors.at("x").data == bytes_of({42})));
}

BOOST_AUTO_TEST_CASE(length_field_and_header_text) {
  BOOST_TEST(rejects(bytes_of({1, 2, 3}), {"3 bytes is too short"}));
  BOOST_TEST(rejects(make("", {}, 0), {"header length is 0"}));
  BOOST_TEST(rejects(make("{}      ", {}, 100'000'001), {"header length 100000001 exceeds the limit"}));
  BOOST_TEST(rejects(make("{}      ", {}, ~std::uint64_t{0}), {"18446744073709551615", "limit"}));
  BOOST_TEST(rejects(make("{}      ", {}, 9), {"header length 9 exceeds the 8 bytes"}));
  BOOST_TEST(rejects(make("[]      "), {"does not start with '{'"}));
  BOOST_TEST(rejects(make(" {}     "), {"does not start with '{'"}));
  BOOST_TEST(rejects(make("{\"a\":   "), {"not valid JSON"}));
  BOOST_TEST(rejects(make("{} x    "), {"not valid JSON"}));
  BOOST_TEST(rejects(make(std::string("{}\0     ", 8)), {"not valid JSON"}));
  BOOST_TEST(rejects(make("{\"\xff\":{}}"), {"not valid JSON"})); // invalid UTF-8
  BOOST_TEST(rejects(make("{\"\xc3\":1}"), {"not valid JSON"}));  // truncated UTF-8 sequence
}

BOOST_AUTO_TEST_CASE(duplicate_keys) {
  const std::string x = R"("x":{"dtype":"U8","shape":[1],"data_offsets":[0,1]})";
  BOOST_TEST(rejects(make("{" + x + "," + x + "}", bytes_of({1})), {"key \"x\" twice"}));
  BOOST_TEST(rejects(make(R"({"x":{"dtype":"U8","dtype":"U8","shape":[1],"data_offsets":[0,1]}})", bytes_of({1})),
                     {"key \"dtype\" twice"}));
  BOOST_TEST(rejects(make(R"({"__metadata__":{"a":"1","a":"2"}})"), {"key \"a\" twice"}));
  // The same key in different objects is not a duplicate.
  BOOST_TEST(st::parse(make(R"({"__metadata__":{"x":"1"},)" + x + "}", bytes_of({1})), "ok").tensors.size() == 1u);
}

BOOST_AUTO_TEST_CASE(metadata) {
  BOOST_TEST(rejects(make(R"({"__metadata__":[]})"), {"__metadata__ is a JSON array"}));
  BOOST_TEST(rejects(make(R"({"__metadata__":{"epoch":3}})"), {"\"epoch\"", "number, not a string"}));
}

BOOST_AUTO_TEST_CASE(entry_fields) {
  auto one = [](const std::string& fields, std::vector<std::byte> data = zeros(4)) {
    return make(R"({"w":{)" + fields + "}}", data);
  };
  const std::string ok_shape = R"("shape":[1])", ok_dtype = R"("dtype":"F32")", ok_off = R"("data_offsets":[0,4])";
  BOOST_TEST(st::parse(one(ok_dtype + "," + ok_shape + "," + ok_off), "x").tensors.at("w").numel() == 1);

  BOOST_TEST(rejects(make(R"({"w":[1,2]})"), {"tensor 'w'", "entry is a JSON array"}));
  BOOST_TEST(rejects(one(ok_dtype + "," + ok_shape), {"tensor 'w'", "missing key \"data_offsets\""}));
  BOOST_TEST(rejects(one(ok_dtype + "," + ok_off), {"missing key \"shape\""}));
  BOOST_TEST(rejects(one(ok_shape + "," + ok_off), {"missing key \"dtype\""}));
  BOOST_TEST(
      rejects(one(ok_dtype + "," + ok_shape + "," + ok_off + R"(,"offsets":[0,4])"), {"unexpected key \"offsets\""}));

  BOOST_TEST(rejects(one(R"("dtype":4,)" + ok_shape + "," + ok_off), {"dtype is a JSON number"}));
  BOOST_TEST(rejects(one(R"("dtype":"f32",)" + ok_shape + "," + ok_off), {"unknown dtype \"f32\""}));

  BOOST_TEST(rejects(one(ok_dtype + R"(,"shape":4,)" + ok_off), {"shape is a JSON number, not an array"}));
  BOOST_TEST(rejects(one(ok_dtype + R"(,"shape":[-1],)" + ok_off), {"shape holds -1"}));
  BOOST_TEST(rejects(one(ok_dtype + R"(,"shape":[1.0],)" + ok_off), {"shape holds 1.0"}));
  BOOST_TEST(rejects(one(ok_dtype + R"(,"shape":["1"],)" + ok_off), {"shape holds \"1\""}));
  BOOST_TEST(
      rejects(one(ok_dtype + R"(,"shape":[9223372036854775808],)" + ok_off), {"9223372036854775808 is too large"}));
  BOOST_TEST(rejects(one(ok_dtype + R"(,"shape":[4294967296,4294967296,4294967296],)" + ok_off),
                     {"shape [4294967296, 4294967296, 4294967296] has too many elements"}));
  // 2^62 elements of 4 bytes overflow 64 bits only once multiplied by the dtype size.
  BOOST_TEST(rejects(one(ok_dtype + R"(,"shape":[4611686018427387904],)" + ok_off), {"too many elements"}));
  // A zero dim does not excuse the others: no tensor has that shape (its strides overflow).
  BOOST_TEST(rejects(make(R"({"w":{"dtype":"F32","shape":[4611686018427387904,4611686018427387904,0],)"
                          R"("data_offsets":[0,0]}})"),
                     {"tensor 'w'", "shape [4611686018427387904, 4611686018427387904, 0] has too many elements"}));
  BOOST_TEST(st::parse(make(R"({"w":{"dtype":"F32","shape":[1099511627776,0],"data_offsets":[0,0]}})"), "x")
                 .tensors.at("w")
                 .numel() == 0);

  BOOST_TEST(rejects(one(ok_dtype + "," + ok_shape + R"(,"data_offsets":[0])"),
                     {"data_offsets is [0], not an array of two integers"}));
  BOOST_TEST(rejects(one(ok_dtype + "," + ok_shape + R"(,"data_offsets":{"a":0})"),
                     {"data_offsets is a JSON object of 1 elements"}));
  BOOST_TEST(rejects(one(ok_dtype + "," + ok_shape + R"(,"data_offsets":[-4,0])"), {"data_offsets holds -4"}));
  BOOST_TEST(rejects(one(ok_dtype + "," + ok_shape + R"(,"data_offsets":[4,0])"), {"[4, 0] end before they begin"}));
  BOOST_TEST(rejects(one(ok_dtype + "," + ok_shape + R"(,"data_offsets":[0,8])"),
                     {"[0, 8] go past the end of the 4-byte data buffer"}));
  BOOST_TEST(
      rejects(one(ok_dtype + "," + ok_shape + R"(,"data_offsets":[0,18446744073709551615])"), {"go past the end"}));
  BOOST_TEST(rejects(one(ok_dtype + R"(,"shape":[2],)" + ok_off),
                     {"tensor 'w'", "[0, 4] hold 4 bytes but shape [2] of F32 needs 8"}));
  BOOST_TEST(rejects(one(R"("dtype":"F64",)" + ok_shape + "," + ok_off), {"needs 8"}));
}

// Messages describe deeply nested values without recursing through them.
BOOST_AUTO_TEST_CASE(deeply_nested_values) {
  const std::size_t depth = 100'000;
  const std::string deep = std::string(depth, '[') + std::string(depth, ']');
  BOOST_TEST(rejects(make(R"({"w":)" + deep + "}"), {"tensor 'w'", "entry is a JSON array"}));
  BOOST_TEST(rejects(make(R"({"w":{"dtype":"U8","shape":[)" + deep + R"(],"data_offsets":[0,0]}})"),
                     {"shape holds a JSON array of 1 elements"}));
  BOOST_TEST(rejects(make(R"({"w":{"dtype":"U8","shape":[],"data_offsets":)" + deep + "}}"),
                     {"data_offsets is a JSON array of 1 elements"}));
  BOOST_TEST(rejects(make(R"({"__metadata__":{"k":)" + deep + "}}"), {"\"k\" is a JSON array"}));
}

// Parsing is linear in the number of tensors: the callback parser used before took 25 s for
// 80,000 one-byte tensors (it rescanned the header object after every entry).
BOOST_AUTO_TEST_CASE(many_tensors_parse) {
  const std::size_t n = 100'000;
  std::string header = "{";
  for (std::size_t i = 0; i < n; ++i)
    header += fmt::format(R"({}"t{}":{{"dtype":"U8","shape":[1],"data_offsets":[{},{}]}})", i ? "," : "", i, i, i + 1);
  header += "}";
  const auto file = make(header, zeros(n));
  const auto t0 = std::chrono::steady_clock::now();
  const st::File f = st::parse(file, "many.safetensors");
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  BOOST_TEST(f.tensors.size() == n);
  // Not asserted (speed is measured in benchmarks/safetensors_bench, not in tests): about 0.2 s in a
  // release build, where the quadratic parser took over 300 s and so blew CI's time budget.
  BOOST_TEST_MESSAGE(fmt::format("{} tensors parsed in {:.3f} s", n, secs));
}

// Nesting is not stored past what messages need: 20 MB of '[' used 1.5 GB before failing.
BOOST_AUTO_TEST_CASE(nested_headers_cost_little_memory) {
  auto peak_kib = [] {
    rusage u{};
    ::getrusage(RUSAGE_SELF, &u);
    return static_cast<std::int64_t>(u.ru_maxrss);
  };
  const std::size_t n = 20'000'000;
  const auto file = make(R"({"w":)" + std::string(n, '[') + std::string(n, ']') + "}");
  const std::int64_t before = peak_kib();
  BOOST_TEST(rejects(file, {"tensor 'w'", "entry is a JSON array"}));
  const std::int64_t grown = peak_kib() - before;
  BOOST_TEST_MESSAGE(fmt::format("peak grew by {} KiB for a {} MB header", grown, 2 * n / 1'000'000));
  if (check_peaks)
    BOOST_TEST(grown < static_cast<std::int64_t>(2 * n / 1024)); // under the header's size (already held)
}

BOOST_AUTO_TEST_CASE(layout_of_the_data_buffer) {
  auto two = [](int a0, int a1, int b0, int b1, std::size_t size) {
    return make(fmt::format(R"({{"a":{{"dtype":"U8","shape":[{}],"data_offsets":[{},{}]}},)"
                            R"("b":{{"dtype":"U8","shape":[{}],"data_offsets":[{},{}]}}}})",
                            a1 - a0, a0, a1, b1 - b0, b0, b1),
                zeros(size));
  };
  BOOST_TEST(st::parse(two(0, 3, 3, 5, 5), "x").tensors.size() == 2u);
  BOOST_TEST(st::parse(two(2, 5, 0, 2, 5), "x").tensors.size() == 2u);
  BOOST_TEST(st::parse(two(0, 0, 0, 5, 5), "x").tensors.size() == 2u); // an empty tensor anywhere
  BOOST_TEST(rejects(two(0, 3, 2, 5, 5), {"tensor 'b'", "overlap tensor 'a' which ends at 3"}));
  BOOST_TEST(rejects(two(0, 5, 0, 5, 5), {"overlap"}));
  BOOST_TEST(rejects(two(0, 2, 3, 5, 5), {"tensor 'b'", "leave bytes [2, 3) of the data buffer unused"}));
  BOOST_TEST(rejects(two(1, 3, 3, 5, 5), {"tensor 'a'", "leave bytes [0, 1)"}));
  BOOST_TEST(rejects(two(0, 3, 3, 5, 7), {"cover 5 bytes of the 7-byte data buffer"}));
  BOOST_TEST(rejects(make("{}      ", zeros(1)), {"cover 0 bytes of the 1-byte data buffer"}));
}

// Every proper prefix of a valid file is rejected, and flipping any single byte either still
// parses or is rejected with an Error (the sanitizer build checks that nothing reads out of bounds).
BOOST_AUTO_TEST_CASE(every_truncation_and_byte_flip) {
  auto full = st::serialize(sample());
  for (std::size_t n = 0; n < full.size(); ++n)
    BOOST_CHECK_THROW(st::parse(std::span(full).first(n), "prefix"), Error);
  std::size_t parsed = 0, rejected = 0;
  for (std::size_t i = 0; i < full.size(); ++i)
    for (int bit : {0x01, 0x80, 0xff}) {
      auto damaged = full;
      damaged[i] ^= static_cast<std::byte>(bit);
      try {
        st::parse(damaged, "flip");
        ++parsed;
      } catch (const Error&) {
        ++rejected;
      }
    }
  BOOST_TEST(parsed + rejected == 3 * full.size());
  BOOST_TEST(rejected > full.size()); // the length field and the JSON syntax catch most flips
}

BOOST_AUTO_TEST_CASE(save_rejects_invalid_files_and_writes_nothing) {
  TempDir dir;
  auto try_save = [&](st::File f, std::initializer_list<std::string> words) {
    bool ok = false;
    try {
      st::save(dir / "bad.safetensors", f);
    } catch (const Error& e) {
      ok = mentions(e, {"nn: safetensors save:", "bad.safetensors"}) && mentions(e, words);
    }
    return ok && dir.entries().empty();
  };
  auto f = sample();
  f.tensors["w"] = st::Entry{"F32", {2}, zeros(7)};
  BOOST_TEST(try_save(f, {"tensor 'w'", "needs 2 x 4 bytes but data has 7"}));
  f = sample();
  f.tensors["w"] = st::Entry{"Q4", {2}, zeros(2)};
  BOOST_TEST(try_save(f, {"unknown dtype 'Q4'"}));
  f = sample();
  f.tensors["w"] = st::Entry{"F32", {-2}, zeros(0)};
  BOOST_TEST(try_save(f, {"invalid shape [-2]"}));
  f = sample();
  f.tensors["__metadata__"] = st::Entry{"U8", {1}, zeros(1)};
  BOOST_TEST(try_save(f, {"named \"__metadata__\""}));
  f = sample();
  f.tensors["bad\xff"] = st::Entry{"U8", {1}, zeros(1)};
  BOOST_TEST(try_save(f, {"not valid UTF-8"}));
}

BOOST_AUTO_TEST_CASE(load_errors_name_the_file) {
  TempDir dir;
  BOOST_CHECK_EXCEPTION(st::load(dir / "missing.safetensors"), Error, [](const Error& e) {
    return mentions(e, {"nn: safetensors:", "missing.safetensors", "No such file"});
  });
  BOOST_CHECK_EXCEPTION(st::load(dir.path), Error, [](const Error& e) { return mentions(e, {"Is a directory"}); });
  write_file(dir / "short.safetensors", {1, 0, 0});
  BOOST_CHECK_EXCEPTION(st::load(dir / "short.safetensors"), Error, [](const Error& e) {
    return mentions(e, {"short.safetensors", "3 bytes is too short"});
  });
}

// The seed corpus of the fuzz target: files named valid-* parse, damaged-* are rejected.
BOOST_AUTO_TEST_CASE(fuzz_seed_corpus) {
  replay_corpus(
      "safetensors", [](const std::filesystem::path& p) { (void)st::load(p); }, 3, 5);
}

// Loading a checkpoint holds its data about once: it used to be read into a whole-file buffer and
// then copied into the entries (and again into tensors), twice the file's size at the peak. Each
// step runs in a child process so that the peak (getrusage) is its own.
BOOST_AUTO_TEST_CASE(loading_holds_the_data_about_once) {
  const auto path = std::filesystem::temp_directory_path() / fmt::format("tapegrad_peak.{}.safetensors", ::getpid());
  const std::int64_t floats = 50'000'000; // 200 MB
  auto in_child = [](auto f) {
    const pid_t pid = ::fork();
    if (pid == 0) ::_exit(f());
    int status = 0;
    ::waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 255;
  };
  BOOST_REQUIRE(in_child([&] {
                  nn::StateDict s;
                  for (int i = 0; i < 8; ++i)
                    s.emplace(fmt::format("w{}", i), autodiff::full({floats / 8}, 0.5));
                  nn::save_state_dict(path, s);
                  return 0;
                }) == 0);
  const double file_mb = static_cast<double>(std::filesystem::file_size(path)) / (1 << 20);
  for (bool tensors : {false, true}) {
    // Exit status: the peak growth over the resident size before loading, in tenths of the file size.
    const int tenths = in_child([&] {
      long pages = 0, resident = 0;
      std::FILE* statm = std::fopen("/proc/self/statm", "r");
      if (!statm || std::fscanf(statm, "%ld %ld", &pages, &resident) != 2) return 254;
      std::fclose(statm);
      const double before_mb = static_cast<double>(resident) * static_cast<double>(::sysconf(_SC_PAGESIZE)) / (1 << 20);
      if (tensors)
        nn::load_state_dict(path);
      else
        st::load(path);
      rusage u{};
      ::getrusage(RUSAGE_SELF, &u);
      const double grown = static_cast<double>(u.ru_maxrss) / 1024 - before_mb;
      return static_cast<int>(std::min(250.0, std::max(0.0, 10 * grown / file_mb)));
    });
    BOOST_TEST_MESSAGE(fmt::format("{}: peak grew by {:.1f}x the file",
                                   tensors ? "nn::load_state_dict" : "safetensors::load", tenths / 10.0));
    const std::string what = tensors ? "nn::load_state_dict" : "safetensors::load";
    BOOST_TEST_CONTEXT(what) {
      BOOST_TEST(tenths < 250); // the child loaded the file
      if (check_peaks) BOOST_TEST(tenths <= 13);
    }
  }
  std::filesystem::remove(path);
}

// The state-dict fuzz target's corpus: valid-* load into the model and an amsgrad Adam of
// mlp({2, 3, 2}); defect-* are optimizer states that were once accepted and must be refused.
BOOST_AUTO_TEST_CASE(state_dict_fuzz_corpus) {
  const std::filesystem::path corpus = std::filesystem::path(TAPEGRAD_SOURCE_DIR) / "tests/fuzz/corpus/state_dict";
  int valid = 0, defects = 0;
  for (const auto& entry : std::filesystem::directory_iterator(corpus)) {
    const auto name = entry.path().filename().string();
    const nn::StateDict all = nn::load_state_dict(entry.path());
    nn::StateDict model, opt;
    for (const auto& [k, v] : all)
      (k.starts_with("param_groups.") || k.starts_with("state.") ? opt : model).emplace(k, v);
    autodiff::manual_seed(1);
    auto net = nn::mlp({2, 3, 2}, "tanh");
    nn::Adam adam(net->parameters(), {.amsgrad = true});
    nn::SGD sgd(net->parameters(), {.lr = 0.1, .momentum = 0.9});
    BOOST_TEST_CONTEXT(name) {
      if (name.starts_with("valid-")) {
        if (!model.empty()) BOOST_CHECK_NO_THROW(net->load_state_dict(model));
        if (!opt.empty())
          BOOST_CHECK_NO_THROW(name.find("sgd") != std::string::npos ? sgd.load_state_dict(opt)
                                                                     : adam.load_state_dict(opt));
        ++valid;
      } else if (name.starts_with("defect-")) {
        BOOST_CHECK_THROW(adam.load_state_dict(opt), Error);
        ++defects;
      }
    }
  }
  BOOST_TEST(valid >= 3);
  BOOST_TEST(defects >= 5);
}

BOOST_AUTO_TEST_CASE(idx_fuzz_corpus) {
  replay_corpus(
      "idx", [](const std::filesystem::path& p) { (void)nn::read_idx(p); }, 2, 3);
}

BOOST_AUTO_TEST_SUITE_END()
