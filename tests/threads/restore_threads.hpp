#pragma once
// Shared by the thread tests: a scope that puts both thread counts back.

#include <autodiff/parallel.hpp>

extern "C" {
int openblas_get_num_threads(void);
void openblas_set_num_threads(int);
}

namespace tapegrad_test {
// Restores both counts: set_num_threads moves OpenBLAS's too, and scripts/test.sh keeps OpenBLAS
// at one thread under ThreadSanitizer (its threads are not instrumented).
struct RestoreThreads {
  int ours = autodiff::get_num_threads(), blas = openblas_get_num_threads();
  ~RestoreThreads() {
    autodiff::set_num_threads(ours);
    openblas_set_num_threads(blas);
  }
};
} // namespace tapegrad_test
