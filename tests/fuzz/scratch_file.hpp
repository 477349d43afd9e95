#pragma once
// For fuzz targets whose code under test takes a path (read_idx, load_state_dict): each input is
// written to one scratch file of this process, named `tapegrad_fuzz_<what>.<pid>` in the temp dir.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <unistd.h>

namespace tapegrad_fuzz {

inline std::filesystem::path write_scratch(const char* what, const std::uint8_t* data, std::size_t size) {
  const std::filesystem::path scratch = std::filesystem::temp_directory_path() /
                                        (std::string("tapegrad_fuzz_") + what + "." + std::to_string(::getpid()));
  std::FILE* f = std::fopen(scratch.c_str(), "wb");
  if (!f) std::abort();
  if (size > 0 && std::fwrite(data, 1, size, f) != size) std::abort();
  std::fclose(f);
  return scratch;
}

} // namespace tapegrad_fuzz
