#pragma once
// The IDX format of MNIST-style datasets, read from gzipped or plain files.

#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string_view>
#include <vector>

namespace nn {

// An IDX array: big-endian header `00 00 type ndims`, ndims big-endian u32 dims, then the data.
struct IdxArray {
  std::uint8_t dtype = 0x08; // always 0x08 (unsigned byte): the only element type read_idx accepts
  std::vector<std::size_t> dims;
  std::vector<std::uint8_t> data; // row-major, data.size() == product of dims

  std::size_t size() const { return data.size(); }
};

// Reads an IDX file of unsigned bytes with 1 to 4 dimensions, gzip-compressed or not (zlib decides
// from the first bytes). Throws autodiff::Error naming the file for a missing file, a bad header, an
// unsupported element type, a gzip error (with zlib's message), too little data or trailing data.
IdxArray read_idx(const std::filesystem::path& file);

enum class Split { train, test };

// Fashion-MNIST (or MNIST: same file names and layout) with pixels scaled to [0, 1].
struct FashionMnist {
  std::size_t count = 0, rows = 0, cols = 0;
  std::vector<float> images;        // count * rows * cols, image-major, row-major inside an image
  std::vector<std::uint8_t> bytes;  // the same pixels unscaled, instead of images, with Pixels::bytes
  std::vector<std::int64_t> labels; // count, each in [0, 10)

  std::size_t pixels_per_image() const { return rows * cols; }
  std::span<const float> image(std::size_t i) const {
    return std::span(images).subspan(i * pixels_per_image(), pixels_per_image());
  }
};

// Pixels as floats in [0, 1] (FashionMnist::images), or as the file's bytes (FashionMnist::bytes,
// a quarter of the memory; nn::ByteImageDataset scales them per batch).
enum class Pixels { floats, bytes };

// Where the Debian package dataset-fashion-mnist installs the files.
inline constexpr std::string_view fashion_mnist_default_dir = "/usr/share/datasets/fashion-mnist";

inline constexpr std::array<std::string_view, 10> fashion_mnist_classes = {
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"};

// Reads `{train,t10k}-images-idx3-ubyte` and `...-labels-idx1-ubyte` from `dir`, each either with
// a `.gz` suffix (preferred when both exist) or without. Checks that the images are 3-d, the labels
// 1-d, that their counts agree and that every label is below 10.
FashionMnist load_fashion_mnist(const std::filesystem::path& dir, Split split, Pixels pixels = Pixels::floats);

} // namespace nn
