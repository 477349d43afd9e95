#pragma once
// fmt support: `fmt::print("{:.3f}", x)` prints a Var's value with any double format.

#include <autodiff/var.hpp>

#include <fmt/format.h>

template <> struct fmt::formatter<autodiff::Var> : fmt::formatter<double> {
  auto format(const autodiff::Var& v, format_context& ctx) const {
    return fmt::formatter<double>::format(v.value(), ctx);
  }
};
