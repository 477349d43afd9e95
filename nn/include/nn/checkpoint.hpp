#pragma once
// State dicts in safetensors files: a model saved here opens in Python's safetensors / PyTorch
// (`safetensors.torch.load_file`), and a training run can be resumed exactly.

#include <nn/module.hpp>

#include <filesystem>
#include <map>
#include <string>

namespace nn {

using Metadata = std::map<std::string, std::string>;

// Writes every tensor of `state` under its name (atomically: an existing file is replaced only once
// the new one is complete).
void save_state_dict(const std::filesystem::path& path, const StateDict& state, const Metadata& metadata = {});
// Reads a file written by save_state_dict (or any safetensors file of F32, F64 and I64 tensors).
StateDict load_state_dict(const std::filesystem::path& path, Metadata* metadata = nullptr);

} // namespace nn
