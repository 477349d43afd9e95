#pragma once
// Internals of autodiff/tensor.hpp, kept out of the reader's way: the declarations Tensor's inline
// members need (its storage and gradient slot), and the constraints of the deleted overloads that
// stop a number from being read as a dim. Nothing here is API.

#include <atomic>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace autodiff {

namespace detail {
// Reference-counted storage from a caching allocator (tensor.cpp): freed buffers are kept by size
// and reused, across Tape::reset(), so a training loop allocates nothing after its first step.
struct Buffer {
  std::atomic<std::int32_t> refs{1};
  std::uint32_t size_class = 0;
  std::size_t bytes = 0;
  void* data = nullptr;
  Buffer* next = nullptr; // the next buffer of its size class while cached
};
void release(Buffer* b);
// The gradient slot of a leaf (or of a tensor that asked for retain_grad()): shared by the copies
// of the tensor, so `w.grad()` sees what a backward through any copy of w accumulated.
struct GradSlot;
void retain(GradSlot* s);
void release(GradSlot* s);
bool leaf_requires_grad(const GradSlot* s);
struct Record;
struct Access;

// The deleted overloads of tensor.hpp's "overloads that must not be misread": a dim may not be a
// floating-point number or a bool, and no later argument may be floating-point.
template <class D>
concept not_a_dim = std::floating_point<std::remove_cvref_t<D>> || std::same_as<bool, std::remove_cvref_t<D>>;
template <class... A>
concept any_floating = (std::floating_point<std::remove_cvref_t<A>> || ...);
} // namespace detail
// Declares the deleted overloads of op(const Tensor&, dim, ...); used in tensor.hpp, after Tensor.
#define TAPEGRAD_DIM_IS_AN_INTEGER(op)                                                                                 \
  template <class D, class... R>                                                                                       \
  Tensor op(const Tensor&, D&&, R&&...) requires(detail::not_a_dim<D> || detail::any_floating<R...>) = delete;

} // namespace autodiff
