#include <nn/idx.hpp>

#include <autodiff/error.hpp>
#include <autodiff/tensor.hpp>

#include <fmt/format.h>
#include <fmt/std.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <string>

#include <zlib.h>

namespace nn {
namespace {

[[noreturn]] void fail(const std::filesystem::path& file, std::string_view what) {
  throw autodiff::Error(fmt::format("nn: read_idx: {}: {}", file, what));
}

std::string_view type_name(unsigned code) {
  switch (code) {
  case 0x08:
    return "unsigned byte";
  case 0x09:
    return "signed byte";
  case 0x0B:
    return "16-bit integer";
  case 0x0C:
    return "32-bit integer";
  case 0x0D:
    return "float";
  case 0x0E:
    return "double";
  default:
    return "unknown";
  }
}

// gzread on a gzip file, or a plain read when zlib finds no gzip header ("transparent" mode).
class GzReader {
public:
  explicit GzReader(const std::filesystem::path& file) : file_(file) {
    std::error_code ec;
    auto status = std::filesystem::status(file, ec);
    if (ec && ec != std::errc::no_such_file_or_directory) fail(file, ec.message());
    if (!std::filesystem::exists(status)) fail(file, "no such file");
    if (std::filesystem::is_directory(status)) fail(file, "is a directory, not an IDX file");
    gz_ = gzopen(file.c_str(), "rb");
    if (!gz_) fail(file, fmt::format("cannot open: {}", std::strerror(errno)));
    // A larger buffer than zlib's 8 KiB default roughly halves the time spent in read calls.
    gzbuffer(gz_, 1 << 18);
  }
  GzReader(const GzReader&) = delete;
  GzReader& operator=(const GzReader&) = delete;
  ~GzReader() { gzclose(gz_); }

  // Reads up to out.size() bytes; fewer only at the end of the data. Throws on a zlib error.
  std::size_t read(std::span<std::uint8_t> out) {
    std::size_t done = 0;
    while (done < out.size()) {
      auto chunk = static_cast<unsigned>(std::min<std::size_t>(out.size() - done, 1u << 30));
      int n = gzread(gz_, out.data() + done, chunk);
      if (n < 0) fail_zlib();
      if (n == 0) break;
      done += static_cast<std::size_t>(n);
    }
    // A truncated gzip stream reads as a short read plus Z_BUF_ERROR; report it as corruption.
    int err = Z_OK;
    const char* msg = gzerror(gz_, &err);
    if (err != Z_OK && err != Z_BUF_ERROR) fail_zlib();
    if (err == Z_BUF_ERROR) truncated_stream_ = msg ? msg : "unexpected end of file";
    return done;
  }

  // Why the stream ended early, if it did because the compressed data was cut off.
  const std::string& truncated_stream() const { return truncated_stream_; }

private:
  [[noreturn]] void fail_zlib() {
    int err = Z_OK;
    const char* msg = gzerror(gz_, &err);
    if (err == Z_ERRNO) fail(file_, fmt::format("read error: {}", std::strerror(errno)));
    fail(file_, fmt::format("corrupt gzip data (zlib: {})", msg ? msg : "unknown error"));
  }

  std::filesystem::path file_;
  gzFile gz_ = nullptr;
  std::string truncated_stream_;
};

std::uint32_t big_endian_u32(const std::uint8_t* p) {
  return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) | std::uint32_t{p[3]};
}

} // namespace

IdxArray read_idx(const std::filesystem::path& file) {
  GzReader in(file);

  std::uint8_t magic[4];
  std::size_t got = in.read(magic);
  if (got < 4)
    fail(file, fmt::format("too short for an IDX header: {} bytes{}", got,
                           in.truncated_stream().empty() ? "" : " (zlib: " + in.truncated_stream() + ")"));
  if (magic[0] != 0 || magic[1] != 0)
    fail(file, fmt::format("bad magic {:02x} {:02x} {:02x} {:02x}: an IDX file starts with 00 00 <type> <ndims>",
                           magic[0], magic[1], magic[2], magic[3]));
  if (magic[2] != 0x08)
    fail(file, fmt::format("element type 0x{:02x} ({}) is not supported; only 0x08 (unsigned byte) is", magic[2],
                           type_name(magic[2])));
  const unsigned ndims = magic[3];
  if (ndims < 1 || ndims > 4) fail(file, fmt::format("{} dimensions; expected 1 to 4", ndims));

  std::uint8_t dim_bytes[16];
  got = in.read(std::span(dim_bytes, 4 * ndims));
  if (got < 4 * ndims)
    fail(file, fmt::format("header ends inside the dimensions: expected {} bytes, got {}", 4 * ndims, got));

  IdxArray out;
  std::int64_t dims[4] = {};
  for (unsigned i = 0; i < ndims; ++i) {
    dims[i] = big_endian_u32(dim_bytes + 4 * i);
    out.dims.push_back(static_cast<std::size_t>(dims[i]));
  }
  // The tensors' rule (autodiff::max_numel), a zero dim included: 0 x 2^32-1 x 2^32-1 x 2^32-1 is
  // 0 bytes here but no tensor shape.
  const auto numel = autodiff::checked_numel(std::span<const std::int64_t>(dims, ndims));
  if (!numel)
    fail(file,
         fmt::format("dims {} have more than 2^60 elements (counting the non-zero dims)", fmt::join(out.dims, " x ")));
  const auto expected = static_cast<std::size_t>(*numel);

  // The header is not trusted to size an allocation: the data is read in chunks, so a file that
  // claims terabytes fails with "expected N bytes, got M" after reading what is really there.
  constexpr std::size_t chunk = std::size_t{1} << 24;
  out.data.reserve(std::min(expected, std::size_t{1} << 26));
  std::size_t have = 0;
  while (have < expected) {
    std::size_t want = std::min(chunk, expected - have);
    out.data.resize(have + want);
    std::size_t n = in.read(std::span(out.data).subspan(have, want));
    have += n;
    if (n < want) {
      out.data.resize(have);
      break;
    }
  }
  if (have < expected)
    fail(file,
         fmt::format("truncated: expected {} data bytes for dims {}, got {}{}", expected, fmt::join(out.dims, " x "),
                     have, in.truncated_stream().empty() ? "" : " (zlib: " + in.truncated_stream() + ")"));

  std::uint8_t extra[4096];
  if (std::size_t n = in.read(extra); n > 0)
    fail(file, fmt::format("{}{} bytes of trailing data after the {} data bytes that dims {} describe",
                           n == sizeof extra ? "at least " : "", n, expected, fmt::join(out.dims, " x ")));
  return out;
}

namespace {

IdxArray read_dataset_file(const std::filesystem::path& dir, const std::string& name) {
  auto gz = dir / (name + ".gz");
  if (std::filesystem::exists(gz)) return read_idx(gz);
  auto plain = dir / name;
  if (std::filesystem::exists(plain)) return read_idx(plain);
  throw autodiff::Error(fmt::format("nn: load_fashion_mnist: neither {} nor {} exists", gz, plain));
}

} // namespace

FashionMnist load_fashion_mnist(const std::filesystem::path& dir, Split split, Pixels pixels) {
  const std::string prefix = split == Split::train ? "train" : "t10k";
  IdxArray images = read_dataset_file(dir, prefix + "-images-idx3-ubyte");
  IdxArray labels = read_dataset_file(dir, prefix + "-labels-idx1-ubyte");
  auto where = dir / prefix;
  if (images.dims.size() != 3)
    throw autodiff::Error(fmt::format("nn: load_fashion_mnist: {}: images have dims {}; expected count x rows x cols",
                                      where, fmt::join(images.dims, " x ")));
  if (labels.dims.size() != 1)
    throw autodiff::Error(fmt::format("nn: load_fashion_mnist: {}: labels have dims {}; expected a single count", where,
                                      fmt::join(labels.dims, " x ")));
  if (images.dims[0] != labels.dims[0])
    throw autodiff::Error(
        fmt::format("nn: load_fashion_mnist: {}: {} images but {} labels", where, images.dims[0], labels.dims[0]));

  FashionMnist out;
  out.count = images.dims[0];
  out.rows = images.dims[1];
  out.cols = images.dims[2];
  out.labels.reserve(out.count);
  for (std::size_t i = 0; i < out.count; ++i) {
    if (labels.data[i] >= fashion_mnist_classes.size())
      throw autodiff::Error(
          fmt::format("nn: load_fashion_mnist: {}: label {} of image {} is not below 10", where, labels.data[i], i));
    out.labels.push_back(labels.data[i]);
  }
  if (pixels == Pixels::bytes) {
    out.bytes = std::move(images.data);
    return out;
  }
  out.images.resize(images.data.size());
  std::transform(images.data.begin(), images.data.end(), out.images.begin(),
                 [](std::uint8_t p) { return static_cast<float>(p) / 255.0f; });
  return out;
}

} // namespace nn
