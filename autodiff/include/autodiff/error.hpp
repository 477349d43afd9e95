#pragma once
// The exception type every autodiff and nn error is reported with.

#include <stdexcept>
#include <string>

namespace autodiff {

// Thrown for every misuse the library detects: shape mismatches, values from a reset or foreign
// tape, backward without a seed, corrupt files. The message starts with the library and the op,
// for the scalar and the tensor engine alike: "autodiff: matmul: shapes [2,3] and [4,5] ...",
// "autodiff: grad: ...", "nn: load_state_dict: ...". The library's name is kept because such a
// message is often read far from the call that raised it (a training script's log, a tool's
// output), where "matmul: ..." alone does not say whose matmul; the tapegrad tool strips it.
class Error : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

} // namespace autodiff
