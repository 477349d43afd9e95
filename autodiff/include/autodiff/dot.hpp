#pragma once
// Graphviz drawings of a tape: `dot -Tsvg` renders what to_dot returns.

#include <autodiff/tape.hpp>
#include <autodiff/var.hpp>

#include <cstdint>
#include <map>
#include <string>

namespace autodiff {

struct DotOptions {
  // Names for nodes, by tape index (usually the leaves that are the independent variables).
  std::map<std::uint32_t, std::string> names;
  int precision = 6;          // significant digits of values, gradients and constants
  bool show_gradients = true; // the adjoints of the last backward(), where it ran
  std::string graph_name = "tape";
  std::size_t max_nodes = 20000; // refuse larger drawings: Graphviz would not lay them out usefully
};

// One DOT node per recorded node: its index, op name, constant (`mul_scalar ×2.5`), value and
// gradient; one edge from each operand to its result. Throws Error beyond options.max_nodes.
std::string to_dot(const Tape& tape, const DotOptions& options = {});
// Only the nodes `output` depends on, drawn from the tape it was recorded on (which must be the
// active tape); the output node is highlighted.
std::string to_dot(const Tape& tape, const Var& output, const DotOptions& options = {});
std::string to_dot(const Var& output, const DotOptions& options = {});

} // namespace autodiff
