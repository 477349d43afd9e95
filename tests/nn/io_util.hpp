#pragma once
// Scratch directories and raw byte helpers for the file-format tests.

#include <autodiff/error.hpp>

#include <boost/test/unit_test.hpp>
#include <fmt/format.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include <zlib.h>

namespace io_test {

// A fresh directory under the system temp dir, removed with everything in it at scope exit.
struct TempDir {
  std::filesystem::path path;
  TempDir() {
    std::random_device rd;
    path = std::filesystem::temp_directory_path() / ("tapegrad-nn-test-" + std::to_string(rd()) + std::to_string(rd()));
    std::filesystem::create_directories(path);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::filesystem::path operator/(const std::string& name) const { return path / name; }
  std::vector<std::string> entries() const {
    std::vector<std::string> names;
    for (const auto& e : std::filesystem::directory_iterator(path))
      names.push_back(e.path().filename().string());
    return names;
  }
};

inline std::vector<std::uint8_t> read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

inline void write_file(const std::filesystem::path& p, const std::vector<std::uint8_t>& bytes) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  BOOST_REQUIRE(out.good());
}

inline void write_gz(const std::filesystem::path& p, const std::vector<std::uint8_t>& bytes) {
  gzFile gz = gzopen(p.c_str(), "wb");
  BOOST_REQUIRE(gz != nullptr);
  BOOST_REQUIRE_EQUAL(gzwrite(gz, bytes.data(), static_cast<unsigned>(bytes.size())), static_cast<int>(bytes.size()));
  BOOST_REQUIRE_EQUAL(gzclose(gz), Z_OK);
}

inline std::vector<std::byte> as_bytes(const std::vector<std::uint8_t>& v) {
  std::vector<std::byte> out(v.size());
  for (std::size_t i = 0; i < v.size(); ++i)
    out[i] = std::byte{v[i]};
  return out;
}

// True if the error's message contains every word; prints the message when it does not.
inline bool mentions(const autodiff::Error& e, std::initializer_list<std::string> words) {
  const std::string what = e.what();
  for (const auto& w : words)
    if (what.find(w) == std::string::npos) {
      fmt::print(stderr, "message lacks '{}': {}\n", w, what);
      return false;
    }
  return true;
}

} // namespace io_test
