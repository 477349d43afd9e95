#pragma once
// The thread count of tapegrad's kernels and of the BLAS under it, and the one pool that splits
// large kernels across cores. Contract and thresholds: docs/design.md, Note [Threads] and
// Note [One thread pool].

#include <cstdint>
#include <type_traits>

namespace autodiff {

// Sets how many threads the library's kernels may use (the calling thread included), and sets
// OpenBLAS's thread count to the same number: the two never run at the same time, so they share
// the cores instead of dividing them. n must be >= 1; an error otherwise.
void set_num_threads(int n);
// The current count. Until set_num_threads is called it is $TAPEGRAD_NUM_THREADS when set (a whole
// number >= 1; anything else is an error at first use), otherwise the machine's hardware threads.
int get_num_threads();

namespace detail {
using RangeFn = void (*)(void* ctx, std::int64_t begin, std::int64_t end);
void parallel_for_impl(std::int64_t n, std::int64_t grain, void* ctx, RangeFn fn);
} // namespace detail

// Calls fn(begin, end) on disjoint ranges covering [0, n), each at least `grain` long (except a
// last shorter one), on the calling thread and the pool's workers, and returns when all are done.
// Runs everything on the calling thread, in one call fn(0, n), when n < 2 * grain, when one thread
// is set, when called from inside another parallel_for, or while another thread is using the pool.
// The first exception thrown by fn is rethrown here, after every range has finished or been
// skipped. fn must not depend on which thread runs a range (per-thread state, such as the active
// tape, grad mode, the random generator, the caching allocator or the floating-point control
// register, is the worker's own). While the ranges run, OpenBLAS runs one thread per call, so BLAS
// calls made inside fn use the caller's cores once, not once per range.
template <class F> void parallel_for(std::int64_t n, std::int64_t grain, F&& fn) {
  using Fn = std::remove_reference_t<F>;
  detail::parallel_for_impl(n, grain, const_cast<void*>(static_cast<const void*>(&fn)),
                            [](void* ctx, std::int64_t b, std::int64_t e) { (*static_cast<Fn*>(ctx))(b, e); });
}

} // namespace autodiff
