// libFuzzer target for nn::safetensors::parse: any input either parses or throws autodiff::Error.
// A parsed file must also survive a round trip: serialize() it, parse that, and get the same File.

#include <nn/safetensors.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  namespace st = nn::safetensors;
  st::File file;
  try {
    file = st::parse(std::as_bytes(std::span(data, size)), "fuzz input");
  } catch (const autodiff::Error&) {
    return 0;
  }
  // Everything parse accepted is a valid File, so neither step below may throw; an exception
  // escaping here is reported by libFuzzer as a finding, like the abort.
  auto bytes = st::serialize(file);
  if (!(st::parse(bytes, "fuzz round trip") == file)) std::abort();
  return 0;
}
