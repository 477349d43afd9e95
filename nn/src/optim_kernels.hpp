#pragma once
// The optimizers' element loops (docs/design.md, Note [Vectorised updates]): one loop per
// configuration, compiled for the widest vectors the CPU has (chosen at load time), bit for bit
// the arithmetic of the scalar formulas in optim.cpp. Each call updates elements [b, e); the
// arrays are distinct allocations (a parameter, its gradient and the optimizer's own buffers).

#include <cstddef>

namespace nn::kernels {

template <class T> struct SGDArgs {
  T* w;
  const T* g;
  T* buf; // momentum buffer, or null without momentum
  T lr, wd, mom, damp;
  bool decay; // wd != 0 (in T)
  bool first; // the momentum buffer's first step: it takes the gradient as it is
  bool nesterov;
};

enum class AdamDecay { none, coupled, decoupled };
template <class T> struct AdamArgs {
  T* w;
  const T* g;
  T* m;
  T* v;
  T* vmax;                                                              // amsgrad's running maximum, or null
  T wd, keep, one_minus_b1, b2, one_minus_b2, eps, step_size, bc2_sqrt; // keep = 1 - lr * wd (decoupled)
  AdamDecay decay;
};

template <class T> struct RMSpropArgs {
  T* w;
  const T* g;
  T* sq;
  T* ga;  // centered: the gradient's average, or null
  T* buf; // momentum buffer, or null (then mom must be <= 0)
  T lr, wd, alpha, one_minus_alpha, eps, mom;
};

template <class T> struct AdagradArgs {
  T* w;
  const T* g;
  T* sum;
  T clr, wd, eps;
};

void sgd(const SGDArgs<float>& a, std::size_t b, std::size_t e);
void sgd(const SGDArgs<double>& a, std::size_t b, std::size_t e);
void adam(const AdamArgs<float>& a, std::size_t b, std::size_t e);
void adam(const AdamArgs<double>& a, std::size_t b, std::size_t e);
void rmsprop(const RMSpropArgs<float>& a, std::size_t b, std::size_t e);
void rmsprop(const RMSpropArgs<double>& a, std::size_t b, std::size_t e);
void adagrad(const AdagradArgs<float>& a, std::size_t b, std::size_t e);
void adagrad(const AdagradArgs<double>& a, std::size_t b, std::size_t e);

} // namespace nn::kernels
