#pragma once
// nn's checkpoints are written with autodiff's file writer (<autodiff/atomic_file.hpp>): the same
// one the tapegrad tool uses. These names are kept for nn code.

#include <autodiff/atomic_file.hpp>

namespace nn {

using autodiff::FileError;
using autodiff::FileSink;
using autodiff::write_file_atomically;
using autodiff::WriteOptions;

} // namespace nn
