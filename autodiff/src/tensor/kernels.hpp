#pragma once
// The element loops of the elementwise ops and the reductions: vector lanes and the pool's threads
// (docs/design.md, Note [Vectorised kernels]).

#include <autodiff/parallel.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>

// A loop marked TAPEGRAD_CLONES is compiled for AVX-512, AVX2 and baseline x86-64, and the loader
// picks the widest the CPU has (an ifunc), so the binary still runs on any x86-64. GCC only: clang 14
// does not clone function templates. Not under the sanitizers, whose runtime is not set up yet when
// the loader runs the resolver (Note [Vectorised updates]).
#if defined(__has_feature)
#if __has_feature(thread_sanitizer) || __has_feature(address_sanitizer)
#define TAPEGRAD_KERNEL_NO_CLONES 1
#endif
#endif
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define TAPEGRAD_KERNEL_NO_CLONES 1
#endif
#if defined(__x86_64__) && defined(__ELF__) && defined(__GNUC__) && !defined(__clang__) &&                             \
    !defined(TAPEGRAD_KERNEL_NO_CLONES)
#define TAPEGRAD_KERNEL_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define TAPEGRAD_KERNEL_CLONES
#endif

// With glibc's libmvec (found at configure time, autodiff/CMakeLists.txt), these float functions
// have vector variants: a loop calling them vectorises (4 lanes in the baseline clone, 8 with AVX2,
// 16 with AVX-512). glibc bounds their error at a few ulp (libmvec's ulps table; measured by
// tests/tensor/kernels_test.cpp). float64 keeps scalar libm: float64 is the precise path.
#if defined(TAPEGRAD_HAVE_LIBMVEC) && !defined(__clang__)
#define TAPEGRAD_SIMD_DECL(f) extern "C" __attribute__((simd("notinbranch"))) float f(float) noexcept;
TAPEGRAD_SIMD_DECL(expf)
TAPEGRAD_SIMD_DECL(logf)
TAPEGRAD_SIMD_DECL(log1pf)
TAPEGRAD_SIMD_DECL(expm1f)
TAPEGRAD_SIMD_DECL(sinf)
TAPEGRAD_SIMD_DECL(cosf)
TAPEGRAD_SIMD_DECL(tanf)
TAPEGRAD_SIMD_DECL(tanhf)
TAPEGRAD_SIMD_DECL(erff)
#undef TAPEGRAD_SIMD_DECL
extern "C" __attribute__((simd("notinbranch"))) float powf(float, float) noexcept;
#endif

namespace autodiff::detail {

// Below 2 * map_grain elements a loop runs on the calling thread (a pool round trip costs some
// microseconds); above, in ranges of at least map_grain elements. Measured: Note [Vectorised kernels].
inline constexpr std::int64_t map_grain = 65536;

// body(i) computes element i alone, so the bits do not depend on the vector width, the split or the
// thread count.
//
// The loop runs a local copy of `body`, and the kernels' lambdas capture by value: a store through
// the output pointer could otherwise alias a captured float (a constant, the rule's c0), so the
// compiler reloaded it every element or guarded the vector loop with overlap tests against each
// captured address, which for the 16 elements of a tiny op cost as much as the arithmetic.
template <class F> TAPEGRAD_KERNEL_CLONES void run_range(std::int64_t lo, std::int64_t hi, const F& body) {
  const F f = body;
  for (std::int64_t i = lo; i < hi; ++i)
    f(i);
}
template <class F> void split(std::int64_t n, const F& body) {
  if (n < 2 * map_grain)
    run_range(0, n, body);
  else
    parallel_for(n, map_grain, [&](std::int64_t lo, std::int64_t hi) { run_range(lo, hi, body); });
}

// line(q, i) for every line of an [outer, n, inner] view: the n elements, i + k inner for k < n,
// that a reduction along a dim, a softmax or a loss row reads. Lines split across the pool when the
// view has at least 2 * map_grain elements, at least map_grain elements a range; below, the plain
// loop nest (no division per line). Each line is computed alone by one thread, so the bits do not
// depend on the split.
inline bool lines_split(std::int64_t lines, std::int64_t n) {
  return lines >= 2 && static_cast<double>(lines) * static_cast<double>(n) >= 2.0 * map_grain;
}
template <class F> void each_line(std::int64_t outer, std::int64_t n, std::int64_t inner, const F& line) {
  const std::int64_t lines = outer * inner;
  if (!lines_split(lines, n)) {
    for (std::int64_t q = 0; q < outer; ++q)
      for (std::int64_t i = 0; i < inner; ++i)
        line(q, i);
    return;
  }
  parallel_for(lines, std::max<std::int64_t>(1, map_grain / std::max<std::int64_t>(1, n)),
               [&](std::int64_t lo, std::int64_t hi) {
                 for (std::int64_t l = lo; l < hi; ++l)
                   line(l / inner, l % inner);
               });
}

} // namespace autodiff::detail
