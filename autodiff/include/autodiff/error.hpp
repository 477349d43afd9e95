#pragma once
// The exception type every autodiff and nn error is reported with.

#include <stdexcept>
#include <string>

namespace autodiff {

// Thrown for every misuse the library detects: shape mismatches, values from a reset or foreign
// tape, backward without a seed, corrupt files. The message always starts with the op's name.
class Error : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

} // namespace autodiff
