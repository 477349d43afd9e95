#pragma once
// The reverse walk over a higher-order tape's nodes, shared by the sweeps of backward.cpp and the
// forward-over-reverse sweep of hvp.cpp: the one place that knows how operands and constants are
// laid out per op form. Internal to the library's sources.

#include <autodiff/tape.hpp>

#include <cstddef>
#include <cstdint>

namespace autodiff::detail {

// Walks nodes [0, n) from last to first, keeping the operand and constant cursors in step, and
// calls visit(rule-type tag, node, first operand, second operand, constant) for each node.
// ops, args and consts are pointers, or Live views that re-read the tape's array on every access.
template <class Ops, class Args, class Consts, class Visit>
void reverse_walk(const Ops& ops, const Args& args, std::size_t nargs, const Consts& consts, std::size_t nconsts,
                  std::uint32_t n, Visit&& visit) {
  std::size_t ap = nargs, cp = nconsts;
  for (std::uint32_t i = n; i-- > 0;) {
    switch (ops[i]) {
#define TAPEGRAD_X(Name)                                                                                               \
  case OpCode::Name: {                                                                                                 \
    using R = rules::Name;                                                                                             \
    std::uint32_t a = 0, b = 0;                                                                                        \
    double c = 0;                                                                                                      \
    if constexpr (R::form == rules::Form::binary) {                                                                    \
      ap -= 2;                                                                                                         \
      a = args[ap];                                                                                                    \
      b = args[ap + 1];                                                                                                \
    } else if constexpr (R::form != rules::Form::leaf) {                                                               \
      a = args[--ap];                                                                                                  \
    }                                                                                                                  \
    if constexpr (R::form == rules::Form::unary_const) c = consts[--cp];                                               \
    visit(R{}, i, a, b, c);                                                                                            \
    break;                                                                                                             \
  }
      TAPEGRAD_SCALAR_OPS(TAPEGRAD_X)
#undef TAPEGRAD_X
    }
  }
}

} // namespace autodiff::detail
