// The optimizers' element loops (docs/design.md, Note [Vectorised updates]). This file is compiled
// with -fno-math-errno (std::sqrt becomes the instruction, which vectorises; the value is the same,
// only errno is not set for a negative argument) and -ffp-contract=off (no a*b+c fused into one
// rounding, which would change the bits). Every expression keeps the operation order of the scalar
// formulas it replaces, so each element gets the same roundings in a vector lane as it did alone.

#include "optim_kernels.hpp"

#include <algorithm>
#include <cmath>

// Each entry point is compiled three times, for AVX-512, AVX2 and baseline x86-64, and the loader
// picks the widest the CPU has (GCC and clang resolve target_clones through an ifunc). Elsewhere
// the compiler's baseline is used, and so under the sanitizers: the ifunc resolver runs while the
// dynamic loader relocates the program, before the sanitizer's runtime is set up, and its
// instrumented entry crashes there (TSan: SIGSEGV in the resolver). The bits are the same either way.
#if defined(__has_feature)
#if __has_feature(thread_sanitizer) || __has_feature(address_sanitizer)
#define TAPEGRAD_NO_CLONES 1
#endif
#endif
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define TAPEGRAD_NO_CLONES 1
#endif
#if defined(__x86_64__) && defined(__ELF__) && (defined(__GNUC__) || defined(__clang__)) && !defined(TAPEGRAD_NO_CLONES)
#define TAPEGRAD_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define TAPEGRAD_CLONES
#endif
#define TAPEGRAD_INLINE __attribute__((always_inline)) inline

namespace nn::kernels {
namespace {

template <class T, bool Decay, int Mom, bool Nesterov> // Mom: 0 none, 1 first step, 2 later steps
TAPEGRAD_INLINE void sgd_loop(const SGDArgs<T>& a, std::size_t b, std::size_t e) {
  T* __restrict w = a.w;
  const T* __restrict g = a.g;
  T* __restrict buf = a.buf;
  const T lr = a.lr, wd = a.wd, mom = a.mom, damp = a.damp;
  for (std::size_t i = b; i < e; ++i) {
    T dp = g[i];
    if constexpr (Decay) dp = dp + wd * w[i];
    if constexpr (Mom != 0) {
      if constexpr (Mom == 1)
        buf[i] = dp;
      else
        buf[i] = mom * buf[i] + damp * dp;
      dp = Nesterov ? dp + mom * buf[i] : buf[i];
    }
    w[i] = w[i] - lr * dp;
  }
}

template <class T> TAPEGRAD_INLINE void sgd_any(const SGDArgs<T>& a, std::size_t b, std::size_t e) {
  const int mom = a.buf == nullptr ? 0 : a.first ? 1 : 2;
  auto with_decay = [&]<bool D>() {
    if (mom == 0) return sgd_loop<T, D, 0, false>(a, b, e);
    if (a.nesterov) return mom == 1 ? sgd_loop<T, D, 1, true>(a, b, e) : sgd_loop<T, D, 2, true>(a, b, e);
    return mom == 1 ? sgd_loop<T, D, 1, false>(a, b, e) : sgd_loop<T, D, 2, false>(a, b, e);
  };
  if (a.decay)
    with_decay.template operator()<true>();
  else
    with_decay.template operator()<false>();
}

template <class T, AdamDecay Decay, bool Amsgrad>
TAPEGRAD_INLINE void adam_loop(const AdamArgs<T>& a, std::size_t b, std::size_t e) {
  T* __restrict w = a.w;
  const T* __restrict g = a.g;
  T* __restrict m = a.m;
  T* __restrict v = a.v;
  T* __restrict vmax = a.vmax;
  const T wd = a.wd, keep = a.keep, c1 = a.one_minus_b1, b2 = a.b2, c2 = a.one_minus_b2, eps = a.eps;
  const T step_size = a.step_size, bc2_sqrt = a.bc2_sqrt;
  for (std::size_t i = b; i < e; ++i) {
    T gi = g[i];
    if constexpr (Decay == AdamDecay::decoupled) w[i] = w[i] * keep;
    if constexpr (Decay == AdamDecay::coupled) gi = gi + wd * w[i];
    m[i] = m[i] + (gi - m[i]) * c1;
    v[i] = v[i] * b2 + c2 * gi * gi;
    T vhat = v[i];
    if constexpr (Amsgrad) vhat = vmax[i] = std::max(vmax[i], v[i]);
    const T denom = std::sqrt(vhat) / bc2_sqrt + eps;
    w[i] = w[i] - step_size * (m[i] / denom);
  }
}

template <class T> TAPEGRAD_INLINE void adam_any(const AdamArgs<T>& a, std::size_t b, std::size_t e) {
  auto with_decay = [&]<AdamDecay D>() {
    if (a.vmax != nullptr) return adam_loop<T, D, true>(a, b, e);
    return adam_loop<T, D, false>(a, b, e);
  };
  switch (a.decay) {
  case AdamDecay::none:
    return with_decay.template operator()<AdamDecay::none>();
  case AdamDecay::coupled:
    return with_decay.template operator()<AdamDecay::coupled>();
  case AdamDecay::decoupled:
    return with_decay.template operator()<AdamDecay::decoupled>();
  }
}

template <class T, bool Decay, bool Centered, bool Mom>
TAPEGRAD_INLINE void rmsprop_loop(const RMSpropArgs<T>& a, std::size_t b, std::size_t e) {
  T* __restrict w = a.w;
  const T* __restrict g = a.g;
  T* __restrict sq = a.sq;
  T* __restrict ga = a.ga;
  T* __restrict buf = a.buf;
  const T lr = a.lr, wd = a.wd, alpha = a.alpha, c = a.one_minus_alpha, eps = a.eps, mom = a.mom;
  for (std::size_t i = b; i < e; ++i) {
    T gi = g[i];
    if constexpr (Decay) gi = gi + wd * w[i];
    sq[i] = sq[i] * alpha + c * gi * gi;
    T avg;
    if constexpr (Centered) {
      ga[i] = ga[i] + (gi - ga[i]) * c;
      // Can be negative by rounding: sqrt gives NaN as the scalar loop did (only errno is not set).
      avg = std::sqrt(sq[i] - ga[i] * ga[i]) + eps;
    } else {
      avg = std::sqrt(sq[i]) + eps;
    }
    if constexpr (Mom) {
      buf[i] = buf[i] * mom + gi / avg;
      w[i] = w[i] - lr * buf[i];
    } else {
      w[i] = w[i] - lr * (gi / avg);
    }
  }
}

template <class T> TAPEGRAD_INLINE void rmsprop_any(const RMSpropArgs<T>& a, std::size_t b, std::size_t e) {
  auto with = [&]<bool D, bool C>() {
    if (a.buf != nullptr) return rmsprop_loop<T, D, C, true>(a, b, e);
    return rmsprop_loop<T, D, C, false>(a, b, e);
  };
  const bool decay = a.wd != 0, centered = a.ga != nullptr;
  if (decay)
    centered ? with.template operator()<true, true>() : with.template operator()<true, false>();
  else
    centered ? with.template operator()<false, true>() : with.template operator()<false, false>();
}

template <class T, bool Decay>
TAPEGRAD_INLINE void adagrad_loop(const AdagradArgs<T>& a, std::size_t b, std::size_t e) {
  T* __restrict w = a.w;
  const T* __restrict g = a.g;
  T* __restrict sum = a.sum;
  const T clr = a.clr, wd = a.wd, eps = a.eps;
  for (std::size_t i = b; i < e; ++i) {
    T gi = g[i];
    if constexpr (Decay) gi = gi + wd * w[i];
    sum[i] = sum[i] + gi * gi;
    const T std_ = std::sqrt(sum[i]) + eps;
    w[i] = w[i] - clr * (gi / std_);
  }
}

} // namespace

TAPEGRAD_CLONES void sgd(const SGDArgs<float>& a, std::size_t b, std::size_t e) { sgd_any(a, b, e); }
TAPEGRAD_CLONES void sgd(const SGDArgs<double>& a, std::size_t b, std::size_t e) { sgd_any(a, b, e); }
TAPEGRAD_CLONES void adam(const AdamArgs<float>& a, std::size_t b, std::size_t e) { adam_any(a, b, e); }
TAPEGRAD_CLONES void adam(const AdamArgs<double>& a, std::size_t b, std::size_t e) { adam_any(a, b, e); }
TAPEGRAD_CLONES void rmsprop(const RMSpropArgs<float>& a, std::size_t b, std::size_t e) { rmsprop_any(a, b, e); }
TAPEGRAD_CLONES void rmsprop(const RMSpropArgs<double>& a, std::size_t b, std::size_t e) { rmsprop_any(a, b, e); }
TAPEGRAD_CLONES void adagrad(const AdagradArgs<float>& a, std::size_t b, std::size_t e) {
  a.wd != 0 ? adagrad_loop<float, true>(a, b, e) : adagrad_loop<float, false>(a, b, e);
}
TAPEGRAD_CLONES void adagrad(const AdagradArgs<double>& a, std::size_t b, std::size_t e) {
  a.wd != 0 ? adagrad_loop<double, true>(a, b, e) : adagrad_loop<double, false>(a, b, e);
}

} // namespace nn::kernels
