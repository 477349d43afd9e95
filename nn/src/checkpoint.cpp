// State dicts <-> safetensors files.

#include <nn/checkpoint.hpp>
#include <nn/safetensors.hpp>

#include <autodiff/error.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <bit>
#include <cstring>

namespace nn {

using autodiff::DType;

void save_state_dict(const std::filesystem::path& path, const StateDict& state, const Metadata& metadata) {
  safetensors::File file;
  file.metadata = metadata;
  for (const auto& [name, t] : state) {
    if (!t.defined()) throw autodiff::Error(fmt::format("nn: save_state_dict: '{}' is an undefined tensor", name));
    const std::vector<std::int64_t> shape = t.shape().vec();
    switch (t.dtype()) {
    case DType::float32:
      file.tensors.emplace(name, safetensors::Entry::of<float>(shape, t.data<float>()));
      break;
    case DType::float64:
      file.tensors.emplace(name, safetensors::Entry::of<double>(shape, t.data<double>()));
      break;
    case DType::int64:
      file.tensors.emplace(name, safetensors::Entry::of<std::int64_t>(shape, t.data<std::int64_t>()));
      break;
    }
  }
  safetensors::save(path, file);
}

namespace {
// The entry's bytes copied straight into a new tensor (Entry::values would make two transient
// copies: of the entry, then into a vector).
template <class T> Tensor to_tensor(const safetensors::Entry& e, const autodiff::Shape& shape, DType d) {
  Tensor t = autodiff::zeros(shape, d);
  auto dst = t.mutable_data<T>();
  if (e.data.size() != dst.size_bytes())
    throw autodiff::Error(fmt::format("nn: load_state_dict: {} bytes for a tensor of shape {}", e.data.size(), shape));
  if constexpr (std::endian::native == std::endian::big) {
    const std::vector<T> v = e.values<T>(); // swaps the little-endian bytes
    std::copy(v.begin(), v.end(), dst.begin());
  } else if (!e.data.empty()) {
    std::memcpy(dst.data(), e.data.data(), e.data.size());
  }
  return t;
}
} // namespace

StateDict load_state_dict(const std::filesystem::path& path, Metadata* metadata) {
  safetensors::File file = safetensors::load(path);
  StateDict out;
  for (auto& [name, e] : file.tensors) {
    if (e.shape.size() > static_cast<std::size_t>(autodiff::Shape::max_rank))
      throw autodiff::Error(fmt::format("nn: load_state_dict: {}: tensor '{}' has {} dimensions (shape [{}]); tensors "
                                        "have at most {}",
                                        path.string(), name, e.shape.size(), fmt::join(e.shape, ","),
                                        autodiff::Shape::max_rank));
    const autodiff::Shape shape(e.shape);
    if (e.dtype == "F32")
      out.emplace(name, to_tensor<float>(e, shape, DType::float32));
    else if (e.dtype == "F64")
      out.emplace(name, to_tensor<double>(e, shape, DType::float64));
    else if (e.dtype == "I64")
      out.emplace(name, to_tensor<std::int64_t>(e, shape, DType::int64));
    else
      throw autodiff::Error(fmt::format("nn: load_state_dict: {}: tensor '{}' has dtype {}, but only F32, F64 and I64 "
                                        "are supported",
                                        path.string(), name, e.dtype));
    std::vector<std::byte>().swap(e.data); // each byte held once: in the file's entry or in the tensor
  }
  if (metadata) *metadata = file.metadata;
  return out;
}

} // namespace nn
