// libFuzzer target for nn::read_idx: any input (gzip-compressed or not) either reads or throws
// autodiff::Error, and what it reads is consistent (data size == product of dims).
// read_idx takes a path, so each input goes through one scratch file of this process.

#include "scratch_file.hpp"

#include <nn/idx.hpp>

#include <autodiff/error.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <unistd.h>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::filesystem::path scratch = tapegrad_fuzz::write_scratch("idx", data, size);
  try {
    const nn::IdxArray a = nn::read_idx(scratch);
    std::size_t n = 1;
    for (auto d : a.dims)
      if (__builtin_mul_overflow(n, d, &n)) std::abort();
    if (a.dims.empty() || a.dims.size() > 4 || n != a.data.size()) std::abort();
  } catch (const autodiff::Error&) {
  }
  return 0;
}
