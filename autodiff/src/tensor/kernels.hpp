#pragma once
// The element loops of the elementwise ops and the reductions: vector lanes and the pool's threads
// (docs/design.md, Note [Vectorised kernels]).

#include <autodiff/parallel.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <mutex>
#include <type_traits>
#include <utility>
#include <vector>

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

// Note [Vectorised kernels]: a contiguous run is summed in blocks of sum_block elements, each block in
// sum_lanes double accumulators (element k to lane k % sum_lanes: a vector's lanes), the lanes
// combined in a fixed tree and the blocks added in order. The order of every addition is a function
// of the run's length alone, so the bits do not depend on the vector width or the thread count.
constexpr std::int64_t sum_block = 4096, sum_lanes = 8;
// The sum of f(k) for k < n (n <= sum_block), f(k) converted to double.
template <class F> TAPEGRAD_KERNEL_CLONES double block_sum_of(std::int64_t n, const F& f) {
  const F at = f; // a local copy: see run_range
  double lane[sum_lanes] = {};
  std::int64_t k = 0;
  for (; k + sum_lanes <= n; k += sum_lanes)
    for (std::int64_t j = 0; j < sum_lanes; ++j)
      lane[j] += static_cast<double>(at(k + j));
  for (std::int64_t j = 0; k + j < n; ++j)
    lane[j] += static_cast<double>(at(k + j));
  return ((lane[0] + lane[4]) + (lane[1] + lane[5])) + ((lane[2] + lane[6]) + (lane[3] + lane[7]));
}
template <class T> double block_sum(const T* x, std::int64_t n) {
  return block_sum_of(n, [x](std::int64_t k) { return x[k]; });
}
// The sum of block(b, len) over the blocks [b, b + len) of a run of n, added in order. A long run
// (2 * map_grain elements and more: a full sum, one long row) computes its blocks on the pool and
// adds them in the same order on the caller, so the bits are those of the serial loop. Inside a
// range of the pool (a row of each_line) the blocks stay on that thread.
template <class Block> double blocks_sum(std::int64_t n, const Block& block) {
  double acc = 0;
  if (n < 2 * map_grain) {
    for (std::int64_t b = 0; b < n; b += sum_block)
      acc += block(b, std::min(sum_block, n - b));
    return acc;
  }
  const std::int64_t blocks = (n + sum_block - 1) / sum_block;
  std::vector<double> part(static_cast<std::size_t>(blocks));
  parallel_for(blocks, map_grain / sum_block, [&](std::int64_t lo, std::int64_t hi) {
    for (std::int64_t j = lo; j < hi; ++j)
      part[static_cast<std::size_t>(j)] = block(j * sum_block, std::min(sum_block, n - j * sum_block));
  });
  for (const double v : part)
    acc += v;
  return acc;
}
// The sum of f(k) for k < n in blocks of sum_block, added in order.
template <class F> double run_sum_of(std::int64_t n, const F& f) {
  return blocks_sum(n, [&f](std::int64_t b, std::int64_t len) {
    return block_sum_of(len, [f, b](std::int64_t k) { return f(b + k); });
  });
}
template <class T> double run_sum(const T* x, std::int64_t n) {
  return run_sum_of(n, [x](std::int64_t k) { return x[k]; });
}
// The same sum as run_sum_of(n, f), bit for bit, for a float f worth a vector loop of its own (a
// transcendental: GCC does not vectorise one inside block_sum_of's double lanes): each block's f(k)
// are first computed into a buffer on the stack by run_range, then summed.
template <class F> double run_sum_of_values(std::int64_t n, const F& f) {
  return blocks_sum(n, [&f](std::int64_t b, std::int64_t len) {
    float block[sum_block];
    float* v = block;
    run_range(0, len, [=](std::int64_t k) { v[k] = f(b + k); });
    return block_sum(v, len);
  });
}
// The largest element of a[0, n) in 16 lanes (-inf when n = 0). A max rounds nothing, so the lanes
// give the value one pass gives, for any row without a NaN (a NaN is skipped unless it comes first,
// as std::max skips it; callers give NaN rows NaN results whatever the max).
template <class T> TAPEGRAD_KERNEL_CLONES T row_max(const T* a, std::int64_t n) {
  constexpr std::int64_t lanes = 16;
  T lane[lanes];
  for (T& l : lane)
    l = -std::numeric_limits<T>::infinity();
  std::int64_t k = 0;
  for (; k + lanes <= n; k += lanes)
    for (std::int64_t j = 0; j < lanes; ++j)
      lane[j] = a[k + j] > lane[j] ? a[k + j] : lane[j];
  T m = -std::numeric_limits<T>::infinity();
  for (; k < n; ++k)
    m = a[k] > m ? a[k] : m;
  for (const T l : lane)
    m = l > m ? l : m;
  return m;
}

// max, min, argmax and argmin (Note [Vectorised kernels]): the first extremal element, the first NaN
// if there is one (PyTorch's rule); a tie goes to the first. `beats(v, b)`: v replaces the best b.
template <bool IsMax, class T> constexpr bool beats(T v, T b) { return IsMax ? v > b : v < b; }
template <class T> constexpr bool is_nan(T v) {
  if constexpr (std::is_floating_point_v<T>)
    return v != v;
  else
    return false;
}
// The first k in [from, n) with a[k] a NaN, or (WantM) equal to m; n if none. 64 elements at a time
// in lanes, then the block that has it one by one.
template <bool WantM, class T> std::int64_t first_equal_or_nan(const T* a, std::int64_t from, std::int64_t n, T m) {
  constexpr std::int64_t block = 64;
  const auto hit = [a, m](std::int64_t k) { return (WantM && a[k] == m) || is_nan(a[k]); };
  std::int64_t b = from;
  for (; b + block <= n; b += block) {
    int any = 0;
    for (std::int64_t j = 0; j < block; ++j)
      any |= static_cast<int>(hit(b + j));
    if (any != 0) break;
  }
  for (; b < n; ++b)
    if (hit(b)) return b;
  return n;
}
// The extremum of a[0, n) (n >= 1) and its first index, for any n and any dtype. Two passes in
// lanes: the extremum of the numbers (16 lanes; a NaN never beats a lane, and nothing rounds, so
// any order gives the one-pass value); then the first element equal to it or NaN, 64 elements at
// a time; when that is a number, the rest is searched for a NaN the same way. The value returned is
// the element itself (so -0 and +0 come back as they stand).
template <bool IsMax, class T>
TAPEGRAD_KERNEL_CLONES std::pair<T, std::int64_t> line_extremum(const T* a, std::int64_t n) {
  constexpr std::int64_t lanes = 16;
  T lane[lanes];
  for (T& l : lane)
    l = a[0];
  std::int64_t k = 0;
  for (; k + lanes <= n; k += lanes)
    for (std::int64_t j = 0; j < lanes; ++j)
      lane[j] = beats<IsMax>(a[k + j], lane[j]) ? a[k + j] : lane[j];
  T m = a[0];
  for (; k < n; ++k)
    m = beats<IsMax>(a[k], m) ? a[k] : m;
  for (const T l : lane)
    m = beats<IsMax>(l, m) ? l : m;
  std::int64_t at = first_equal_or_nan<true>(a, 0, n, m);
  if (!is_nan(a[at])) { // a number: a NaN after it still wins
    const std::int64_t nan = first_equal_or_nan<false>(a, at + 1, n, m);
    if (nan < n) at = nan;
  }
  return {a[at], at};
}
// One row of an extremum along an inner dim: for i < len, row[i] (row k of the slice) replaces
// best[i] (and k at[i]) when it beats it or is a NaN, unless best[i] is a NaN already: the one-pass
// rule, column by column, in lanes across the columns.
template <bool IsMax, class T> TAPEGRAD_KERNEL_CLONES void extremum_row(const T* __restrict row, std::int64_t k,
                                                                        T* __restrict best, std::int64_t* __restrict at,
                                                                        std::int64_t len) {
  for (std::int64_t i = 0; i < len; ++i) {
    const T v = row[i], b = best[i];
    const bool take = !is_nan(b) && (beats<IsMax>(v, b) || is_nan(v));
    best[i] = take ? v : b;
    at[i] = take ? k : at[i];
  }
}
// line_extremum of a long line (a full max): ranges on the pool from 2 * map_grain elements, their
// results joined in range order on the caller by the same rule (a NaN stays; a later range's
// result replaces the best only when it beats it or is a NaN), so the result is the one pass's.
template <bool IsMax, class T> std::pair<T, std::int64_t> long_line_extremum(const T* a, std::int64_t n) {
  if (n < 2 * map_grain) return line_extremum<IsMax>(a, n);
  std::vector<std::pair<std::int64_t, std::pair<T, std::int64_t>>> parts; // (range start, its result)
  std::mutex m;
  parallel_for(n, map_grain, [&](std::int64_t lo, std::int64_t hi) {
    const auto r = line_extremum<IsMax>(a + lo, hi - lo);
    const std::lock_guard lock(m);
    parts.push_back({lo, {r.first, lo + r.second}});
  });
  std::sort(parts.begin(), parts.end(), [](const auto& x, const auto& y) { return x.first < y.first; });
  std::pair<T, std::int64_t> best = parts[0].second;
  for (std::size_t j = 1; j < parts.size(); ++j) {
    const auto& r = parts[j].second;
    if (!is_nan(best.first) && (beats<IsMax>(r.first, best.first) || is_nan(r.first))) best = r;
  }
  return best;
}

} // namespace autodiff::detail
