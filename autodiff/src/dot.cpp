// Graphviz DOT text for tapes.
//
// The writer below knows nothing about scalar nodes: it takes node ids, label lines and a style.
// The tensor record (a TapeExtension) will draw through the same writer: its nodes get ids "t<k>"
// next to the scalar "n<i>", a label with op name and shape, and edges to the scalar nodes it reads
// or writes; to_dot then asks the extension (a virtual "describe" on TapeExtension, or a visitor)
// for its nodes after the scalar ones. Nothing here assumes every node is a scalar node.

#include <autodiff/dot.hpp>

#include <fmt/format.h>

#include <cmath>

#include <vector>

namespace autodiff {

namespace {

// Length of the valid UTF-8 sequence starting at s[i], or 0.
std::size_t utf8_length(std::string_view s, std::size_t i) {
  const auto c = static_cast<unsigned char>(s[i]);
  std::size_t n = c >= 0xF0 && c <= 0xF4 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 && c < 0xE0 ? 2 : 0;
  if (n == 0 || i + n > s.size()) return 0;
  for (std::size_t k = 1; k < n; ++k)
    if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return 0;
  return n;
}

// Text for inside a DOT double-quoted string: quotes and backslashes escaped, control characters
// and invalid UTF-8 replaced, so no name can break out of the label or confuse Graphviz.
std::string escape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c < 0x20 || c == 0x7f) {
      out += ' ';
    } else if (c >= 0x80) {
      const std::size_t n = utf8_length(s, i);
      if (n == 0) {
        out += '?';
      } else {
        out.append(s.substr(i, n));
        i += n;
        continue;
      }
    } else {
      out += static_cast<char>(c);
    }
    ++i;
  }
  return out;
}

class DotWriter {
public:
  DotWriter(std::string_view name, int precision) : precision_(precision) {
    out_ = fmt::format("digraph \"{}\" {{\n  rankdir=TB;\n  node [fontname=\"Helvetica\", fontsize=11, "
                       "style=filled, fillcolor=white];\n  edge [arrowsize=0.7];\n",
                       escape(name));
  }
  // NaN's sign is noise: printf's "-nan" would only confuse.
  std::string number(double v) const { return std::isnan(v) ? "NaN" : fmt::format("{:.{}g}", v, precision_); }
  // lines are raw text; they are escaped here and joined with DOT line breaks.
  void node(std::string_view id, const std::vector<std::string>& lines, std::string_view attributes) {
    std::string label;
    for (const auto& l : lines)
      label += (label.empty() ? "" : "\\n") + escape(l);
    out_ += fmt::format("  {} [label=\"{}\"{}{}];\n", id, label, attributes.empty() ? "" : ", ", attributes);
  }
  void edge(std::string_view from, std::string_view to, std::string_view label = {}) {
    if (label.empty())
      out_ += fmt::format("  {} -> {};\n", from, to);
    else
      out_ += fmt::format("  {} -> {} [label=\"{}\"];\n", from, to, escape(label));
  }
  std::string finish() { return out_ + "}\n"; }

private:
  int precision_;
  std::string out_;
};

std::string constant_text(const DotWriter& w, OpCode op, double c) {
  const std::string v = w.number(c);
  switch (op) {
  // fmt rather than operator+: GCC 12 warns falsely (-Wrestrict) on "literal" + std::string.
  case OpCode::MulC:
    return fmt::format("\u00d7{}", v); // ×
  case OpCode::DivC:
    return fmt::format("\u00f7{}", v); // ÷
  case OpCode::PowC:
    return fmt::format("^{}", v);
  case OpCode::RPowC:
    return fmt::format("{}^", v);
  default:
    return v;
  }
}

std::string draw(const std::vector<NodeInfo>& nodes, const std::vector<bool>& keep, std::optional<std::uint32_t> output,
                 const DotOptions& o) {
  if (o.precision < 1 || o.precision > 17)
    throw Error(fmt::format("autodiff: to_dot: precision must be 1 to 17, got {}", o.precision));
  std::size_t count = 0;
  for (bool k : keep)
    count += k ? 1 : 0;
  if (count > o.max_nodes)
    throw Error(fmt::format("autodiff: to_dot: {} nodes to draw, more than max_nodes = {}", count, o.max_nodes));
  DotWriter w(o.graph_name, o.precision);
  for (const NodeInfo& n : nodes) {
    if (!keep[n.index]) continue;
    std::vector<std::string> lines;
    std::string head = fmt::format("#{} {}", n.index, op_name(n.op));
    if (n.constant) head = fmt::format("{} {}", head, constant_text(w, n.op, *n.constant));
    const auto name = o.names.find(n.index);
    if (name != o.names.end()) head = fmt::format("{} ({})", name->second, head);
    lines.push_back(head);
    lines.push_back(fmt::format("value {}", w.number(n.value)));
    if (o.show_gradients && n.adjoint) lines.push_back(fmt::format("grad {}", w.number(*n.adjoint)));
    std::string attributes = n.op == OpCode::Leaf ? "shape=ellipse" : "shape=box";
    if (n.op == OpCode::Leaf && name != o.names.end()) attributes += ", fillcolor=\"#cfe8ff\"";
    if (output && n.index == *output) attributes += ", fillcolor=\"#ffe08a\", penwidth=2";
    w.node(fmt::format("n{}", n.index), lines, attributes);
    for (int k = 0; k < n.operand_count; ++k)
      w.edge(fmt::format("n{}", n.operands[k]), fmt::format("n{}", n.index),
             n.operand_count == 2 ? (k == 0 ? "a" : "b") : "");
  }
  return w.finish();
}

} // namespace

std::string to_dot(const Tape& tape, const DotOptions& options) {
  const std::vector<NodeInfo> nodes = tape.nodes();
  return draw(nodes, std::vector<bool>(nodes.size(), true), std::nullopt, options);
}

std::string to_dot(const Tape& tape, const Var& output, const DotOptions& options) {
  if (output.generation() != tape.generation() || output.index() >= tape.size())
    throw Error(fmt::format("autodiff: to_dot: the output (node {}, tape generation {}) was not recorded on this tape "
                            "(generation {}, {} nodes)",
                            output.index(), output.generation(), tape.generation(), tape.size()));
  const std::vector<NodeInfo> nodes = tape.nodes();
  std::vector<bool> keep(nodes.size(), false);
  keep[output.index()] = true;
  // Recording order is topological, so one backwards pass marks everything the output reads.
  for (std::uint32_t i = output.index() + 1; i-- > 0;)
    if (keep[i])
      for (int k = 0; k < nodes[i].operand_count; ++k)
        keep[nodes[i].operands[k]] = true;
  return draw(nodes, keep, output.index(), options);
}

std::string to_dot(const Var& output, const DotOptions& options) { return to_dot(Tape::active(), output, options); }

} // namespace autodiff
