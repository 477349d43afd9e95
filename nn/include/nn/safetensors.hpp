#pragma once
// The safetensors checkpoint format (https://huggingface.co/docs/safetensors), independent of any
// tensor type: names map to a dtype string, a shape and little-endian row-major bytes.
//
// Layout: u64 little-endian N, N bytes of a UTF-8 JSON object, then the data buffer. The object maps
// each tensor name to {"dtype", "shape", "data_offsets": [begin, end]} (offsets into the data
// buffer) and may hold "__metadata__", an object of strings.
//
// What parse() accepts, following the reference implementation where the prose spec is silent:
// - 8 <= size; 0 < N <= 100'000'000 and N <= size - 8; the header starts with '{' and may be padded
//   with trailing JSON whitespace;
// - no duplicate key anywhere in the header;
// - each entry has exactly the keys dtype (a known dtype string), shape (array of non-negative
//   integers, empty for a scalar) and data_offsets (two integers, begin <= end);
// - end - begin == product(shape) * dtype size, computed without overflow;
// - the entries' byte ranges, sorted by begin, tile the data buffer exactly: no overlap, no gap and
//   no unreferenced bytes at the end. A buffer with holes could hide data that a round trip drops,
//   and the reference loader rejects it too.
// save() writes entries in name order, contiguously, with the header padded by spaces to a multiple
// of 8 bytes so that the data starts 8-byte aligned; "__metadata__" is omitted when empty.

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include <autodiff/error.hpp>

namespace nn::safetensors {

// Bytes per element of a safetensors dtype ("F32" -> 4), or nullopt for an unknown one. Known:
// BOOL U8 I8 F8_E5M2 F8_E4M3 (1), U16 I16 F16 BF16 (2), U32 I32 F32 (4), U64 I64 F64 (8).
std::optional<std::size_t> dtype_size(std::string_view dtype);

// The dtype string for a C++ element type, e.g. dtype_of<float>() == "F32".
template <class T> constexpr std::string_view dtype_of() {
  if constexpr (std::is_same_v<T, float>)
    return "F32";
  else if constexpr (std::is_same_v<T, double>)
    return "F64";
  else if constexpr (std::is_same_v<T, std::int64_t>)
    return "I64";
  else if constexpr (std::is_same_v<T, std::int32_t>)
    return "I32";
  else if constexpr (std::is_same_v<T, std::uint8_t>)
    return "U8";
  else
    static_assert(sizeof(T) == 0, "no safetensors dtype for this element type");
}

struct Entry {
  std::string dtype;               // "F32", "F64", "I64", ...
  std::vector<std::int64_t> shape; // empty for a scalar
  std::vector<std::byte> data;     // little-endian, row-major; size == numel * dtype_size(dtype)

  // Product of the shape; throws autodiff::Error for a negative dim or an overflowing product.
  std::int64_t numel() const;

  // An entry holding `values` (converted to little-endian) with the given shape.
  template <class T> static Entry of(std::vector<std::int64_t> shape, std::span<const T> values) {
    Entry e{std::string(dtype_of<T>()), std::move(shape), std::vector<std::byte>(values.size_bytes())};
    if (!values.empty()) std::memcpy(e.data.data(), values.data(), values.size_bytes());
    if constexpr (std::endian::native == std::endian::big) e.swap_bytes(sizeof(T));
    return e;
  }

  // The values as T; throws autodiff::Error if the dtype is not T's.
  template <class T> std::vector<T> values() const {
    if (dtype != dtype_of<T>() || data.size() % sizeof(T) != 0)
      throw autodiff::Error("nn: safetensors: values<" + std::string(dtype_of<T>()) + ">: entry has dtype " + dtype +
                            " and " + std::to_string(data.size()) + " bytes");
    Entry copy = *this;
    if constexpr (std::endian::native == std::endian::big) copy.swap_bytes(sizeof(T));
    std::vector<T> out(data.size() / sizeof(T));
    if (!out.empty()) std::memcpy(out.data(), copy.data.data(), copy.data.size());
    return out;
  }

  bool operator==(const Entry&) const = default;

private:
  void swap_bytes(std::size_t width) {
    for (std::size_t i = 0; i + width <= data.size(); i += width)
      for (std::size_t a = i, b = i + width - 1; a < b; ++a, --b)
        std::swap(data[a], data[b]);
  }
};

struct File {
  std::map<std::string, Entry> tensors;
  std::map<std::string, std::string> metadata; // the "__metadata__" object

  bool operator==(const File&) const = default;
};

// The complete file contents for `file`. Throws autodiff::Error for an unknown dtype, a negative
// dim, data of the wrong size, a tensor named "__metadata__" or a name that is not valid UTF-8.
std::vector<std::byte> serialize(const File& file);

// serialize() written with write_file_atomically: an existing `path` is replaced only once the new
// contents are completely on disk.
void save(const std::filesystem::path& path, const File& file);

// Reads and validates `path` (see the rules at the top of this header).
File load(const std::filesystem::path& path);

// Validates and decodes a whole file image; `origin` names it in error messages. Every problem is
// an autodiff::Error; no input makes it read out of bounds or allocate more than about the input.
File parse(std::span<const std::byte> bytes, std::string_view origin);

} // namespace nn::safetensors
