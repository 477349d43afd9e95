// State dicts <-> safetensors files.

#include <nn/checkpoint.hpp>
#include <nn/safetensors.hpp>

#include <autodiff/error.hpp>
#include <fmt/format.h>

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

StateDict load_state_dict(const std::filesystem::path& path, Metadata* metadata) {
  safetensors::File file = safetensors::load(path);
  StateDict out;
  for (auto& [name, e] : file.tensors) {
    const autodiff::Shape shape(e.shape);
    if (e.dtype == "F32")
      out.emplace(name, autodiff::from_vector(e.values<float>(), shape));
    else if (e.dtype == "F64")
      out.emplace(name, autodiff::from_vector(e.values<double>(), shape, DType::float64));
    else if (e.dtype == "I64")
      out.emplace(name, autodiff::from_vector(e.values<std::int64_t>(), shape));
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
