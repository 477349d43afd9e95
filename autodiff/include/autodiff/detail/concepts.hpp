#pragma once
// Concepts the public headers constrain templates with; not API.

#include <type_traits>

namespace autodiff::detail {

// F, called as an lvalue with a const Arg&, returns something convertible to R.
template <class F, class R, class Arg>
concept invocable_r = std::is_invocable_r_v<R, F&, const Arg&>;

} // namespace autodiff::detail
