// The tensor record on the tape (its extension slot), recording, and the reverse sweep: one loop
// from the last node to the first, as for scalars (docs/design.md).

#include "internal.hpp"

#include <algorithm>
#include <limits>
#include <optional>
#include <typeinfo>

namespace autodiff {

namespace detail {

namespace {
std::vector<std::string_view>& op_registry() {
  static std::vector<std::string_view> names;
  return names;
}
} // namespace

OpInfo::OpInfo(std::string_view n, void (*b)(BackwardCtx&), void (*bg)(BackwardCtx&))
    : name(n), backward(b), backward_graph(bg) {
  auto& names = op_registry();
  if (std::find(names.begin(), names.end(), n) == names.end()) names.push_back(n);
}

const OpInfo leaf_op{"leaf", nullptr, nullptr};

std::uint32_t* LeafNodes::find(const GradSlot* s) {
  if (count_ == 0) return nullptr;
  const std::size_t mask = table_.size() - 1;
  for (std::size_t h = (reinterpret_cast<std::uintptr_t>(s) >> 4) & mask;; h = (h + 1) & mask) {
    if (table_[h].slot == s) return &table_[h].node;
    if (table_[h].slot == nullptr) return nullptr;
  }
}

void LeafNodes::insert(const GradSlot* s, std::uint32_t node) {
  if (2 * (count_ + 1) > table_.size()) { // keep the load under one half
    std::vector<Entry> old(std::max<std::size_t>(16, 2 * table_.size()));
    old.swap(table_);
    count_ = 0;
    for (const Entry& e : old)
      if (e.slot != nullptr) insert(e.slot, e.node);
  }
  const std::size_t mask = table_.size() - 1;
  std::size_t h = (reinterpret_cast<std::uintptr_t>(s) >> 4) & mask;
  while (table_[h].slot != nullptr)
    h = (h + 1) & mask;
  table_[h] = {s, node};
  ++count_;
}

void LeafNodes::clear() {
  if (count_ == 0) return;
  std::fill(table_.begin(), table_.end(), Entry{});
  count_ = 0;
}

void Record::free_graph() {
  freed_gen = gen;
  reset();
}

void Record::reset() {
  for (Node& n : nodes)
    if (n.slot) release(n.slot);
  gen = new_generation();
  leaf_nodes.clear();
  nodes.clear();
  args.clear();
  saved.clear();
  ints.clear();
  customs.clear();
  keep.clear(); // adj stays: its entries are all undefined between sweeps
}

Record& record_of_slow(Tape& t) {
  TapeExtension* e = t.extension();
  if (e != nullptr && typeid(*e) == typeid(Record)) return *static_cast<Record*>(e);
  if (e != nullptr) fail("tensor: the active tape's extension slot holds something other than the tensor record");
  auto r = std::make_unique<Record>();
  Record* p = r.get();
  t.set_extension(std::move(r));
  return *p;
}

namespace {
[[noreturn]] void foreign(std::string_view op, const Tensor& t, const Record& rec) {
  if (t.generation() == rec.freed_gen)
    fail("{}: tensor of shape {} (node {}) belongs to a graph that backward() or grad() already freed; pass "
         "{{.retain_graph = true}} to keep the graph, or use detach() for a constant copy",
         op, t.shape(), t.node());
  fail("{}: tensor of shape {} (node {}, record generation {}) is not on the active tape (generation {}): it was "
       "recorded before the tape was reset or before a backward() freed the graph (pass {{.retain_graph = true}} to "
       "keep it), or on another tape or thread",
       op, t.shape(), t.node(), t.generation(), rec.gen);
}

// The node of a leaf on this record, appended on its first use. The slot -> node map belongs to the
// record, so a leaf used on several tapes (nested scopes, threads) has one node on each of them.
std::uint32_t leaf_node(Record& rec, const Tensor& t) {
  GradSlot* s = Access::slot(t);
  if (const std::uint32_t* k = rec.leaf_nodes.find(s)) return *k;
  if (rec.nodes.size() >= Tensor::npos - 1) fail("tensor: the tape's tensor record is full");
  Node& n = rec.nodes.emplace_back(&leaf_op, t.shape(), t.dtype());
  retain(s);
  n.slot = s;
  const auto k = static_cast<std::uint32_t>(rec.nodes.size() - 1);
  rec.leaf_nodes.insert(s, k);
  return k;
}

// The node index of a tensor that requires grad, on the active tape.
std::uint32_t node_of(std::string_view op, Record& rec, const Tensor& t) {
  if (t.is_leaf()) return leaf_node(rec, t);
  if (t.generation() != rec.gen) foreign(op, t, rec);
  return t.node();
}
} // namespace

bool any_requires_grad(std::span<const Tensor> ts) {
  if (!grad_enabled()) return false;
  for (const Tensor& t : ts)
    if (t.requires_grad()) return true;
  return false;
}

std::uint32_t record(const OpInfo& op, Tensor& out, const NodeSpec& spec) {
  Record& rec = record_of(Tape::active());
  const std::uint64_t gen = rec.gen;
  const std::size_t nin = spec.inputs.size();
  // Everything is checked before the node is appended: a failed call leaves no partial node.
  for (const Tensor* t : spec.inputs)
    if (!t->is_leaf() && t->generation() != gen) foreign(op.name, *t, rec);
  // The counts are narrow to keep nodes small; past them a count would wrap and the sweep would
  // read another node's tensors (a custom function of 255 inputs saves 256).
  if (nin > std::numeric_limits<decltype(Node::nin)>::max()) [[unlikely]]
    fail("{}: at most {} inputs can be recorded, got {}", op.name, std::numeric_limits<decltype(Node::nin)>::max(),
         nin);
  if (spec.saved.size() > std::numeric_limits<decltype(Node::nsaved)>::max()) [[unlikely]]
    fail("{}: at most {} tensors can be saved for one node, got {}", op.name,
         std::numeric_limits<decltype(Node::nsaved)>::max(), spec.saved.size());
  if (spec.ints.size() > std::numeric_limits<decltype(Node::nints)>::max()) [[unlikely]]
    fail("{}: at most {} integer parameters can be saved for one node, got {}", op.name,
         std::numeric_limits<decltype(Node::nints)>::max(), spec.ints.size());
  if (rec.nodes.size() >= Tensor::npos - 1) fail("tensor: the tape's tensor record is full");
  // Leaf nodes of the inputs are appended first (leaf_node), so the inputs precede this node. A
  // recorded input's generation was checked above; a constant (a leaf not requiring grad) is npos.
  const auto args = static_cast<std::uint32_t>(rec.args.size());
  for (const Tensor* t : spec.inputs)
    rec.args.push_back(!t->is_leaf() ? t->node() : t->requires_grad() ? leaf_node(rec, *t) : Tensor::npos);
  // `out` becomes the node's tensor before the saved tensors are copied, so that an op saving its
  // output (tanh saves r) saves it as recorded, and a create_graph rule differentiates through it.
  const auto k = static_cast<std::uint32_t>(rec.nodes.size());
  Access::set_node(out, k, gen);
  // Plain copies: rules read only values and shapes, so the node and gradient slot a saved tensor
  // carries along are harmless, and skipping detach() keeps recording cheap.
  const Tensor* saved =
      rec.saved.append(spec.saved.size(), [&](std::size_t j) -> const Tensor& { return spec.saved[j]; });
  const std::int64_t* ints = rec.ints.append(spec.ints.size(), [&](std::size_t j) { return spec.ints[j]; });
  rec.nodes.emplace_back(&op, out.shape(), out.dtype(), static_cast<std::uint8_t>(nin),
                         static_cast<std::uint8_t>(spec.saved.size()), static_cast<std::uint16_t>(spec.ints.size()),
                         args, saved, ints, spec.c0, spec.c1);
  return k;
}

namespace {
// A custom function's backward gets the inputs as recorded and the output, and runs with recording
// off (first order) or on (create_graph), so one user-written backward serves both sweeps.
void custom_backward(BackwardCtx& x) {
  // A reference that stays valid while f.backward records, even another custom function's node:
  // Record::customs is a deque, which never moves its elements on push_back.
  const CustomFunction& f = x.rec.customs[static_cast<std::size_t>(x.ints()[0])];
  if (x.create_graph && !f.differentiable_backward)
    fail("{}: create_graph needs a backward that can be differentiated again; if this custom function's backward is "
         "written with tensor ops, set differentiable_backward = true",
         f.name);
  const int nin = x.nin();
  std::vector<Tensor> inputs;
  for (int k = 0; k < nin; ++k)
    inputs.push_back(x.saved(k));
  std::vector<Tensor> grads = f.backward(x.g, inputs, x.saved(nin));
  if (grads.size() != inputs.size())
    fail("{}: backward returned {} gradients for {} inputs", f.name, grads.size(), inputs.size());
  for (int k = 0; k < nin; ++k)
    if (x.needs(k)) x.grad(k, std::move(grads[static_cast<std::size_t>(k)]));
}
const OpInfo custom_op{"custom", custom_backward, custom_backward};
} // namespace

// A gradient whose dtype or shape is not its input's: an error, or a broadcast to undo (here, once,
// for every op). Out of line: most gradients fit, and the test in grad() is all they pay.
void BackwardCtx::fit(int k, std::uint32_t j, Tensor& gk) const {
  // By value: a create_graph reduction below records, which may move rec.nodes.
  const Shape in_shape = rec.nodes[j].shape;
  const DType in_dtype = rec.nodes[j].dtype;
  const Node& n = node();
  const std::string_view op =
      n.op == &custom_op ? std::string_view(rec.customs[static_cast<std::size_t>(n.ints[0])].name) : n.op->name;
  if (gk.dtype() != in_dtype)
    fail("{}: backward produced a {} gradient for input {}, which is {}", op, gk.dtype(), k, in_dtype);
  if (!broadcastable_to(in_shape, gk.shape()))
    fail("{}: backward produced a gradient of shape {} for input {} of shape {}", op, gk.shape(), k, in_shape);
  gk = create_graph ? sum_to_recorded(gk, in_shape) : sum_to(gk, in_shape);
}

void BackwardCtx::grad(int k, Tensor&& gk) {
  const std::uint32_t j = input(k);
  if (j == Tensor::npos || !gk.defined()) return;
  if (const Node& in = rec.nodes[j]; gk.dtype() != in.dtype || !(gk.shape() == in.shape)) [[unlikely]]
    fit(k, j, gk);
  Tensor& a = rec.adj[j];
  if (!a.defined())
    a = std::move(gk);
  else if (create_graph)
    a = add(a, gk); // recorded; never in place, since `a` may be saved by the nodes just recorded
  else
    accumulate(a, gk);
}

namespace {
enum class Mode { accumulate, functional };

// Adds the adjoint g to a gradient slot. Under the slot's lock, so threads sweeping their own tapes
// may share a leaf. A gradient never shares storage with another tensor: rules pass one adjoint
// to several inputs (add) or as a view (reshape), and a slot that took it as is would alias another
// leaf's gradient, so an in-place write into one (clip_grad_norm_) would change both. The adjoint's
// buffer is taken over only when nothing else refers to it (the leaf's adjoint, about to be
// dropped); otherwise it is copied, once per leaf and sweep.
void accumulate_into(GradSlot& slot, Tensor& g, bool leaf) {
  std::lock_guard lock(slot.mutex);
  if (slot.grad.defined()) {
    accumulate(slot.grad, g);
  } else if (leaf && Access::unique(g)) {
    slot.grad = std::move(g);
  } else {
    slot.grad = convert(g, g.dtype());
  }
}

void sweep(Record& rec, std::span<const std::uint32_t> roots, std::span<const Tensor> seeds, Mode mode,
           bool create_graph = false) {
  if (rec.sweeping)
    fail("backward: called from inside a backward pass (a custom function's backward?); that is not supported");
  struct Flag {
    bool& f;
    ~Flag() { f = false; }
  } flag{rec.sweeping = true};
  // First order: rules compute with raw kernels and custom backwards record nothing. create_graph:
  // the rules' tensor ops are recorded, after the nodes being swept.
  std::optional<NoGradGuard> no_grad;
  std::optional<EnableGradGuard> with_grad;
  if (create_graph)
    with_grad.emplace();
  else
    no_grad.emplace();
  // rec.adj keeps its size between sweeps with every entry undefined (an invariant kept below), so a
  // sweep touches only the entries of the nodes it visits.
  const std::size_t n = rec.nodes.size();
  if (rec.adj.size() < n) rec.adj.resize(n);
  if (mode == Mode::accumulate) rec.keep.assign(n, 0);
  rec.keep.resize(n, 0);
  std::uint32_t top = 0;
  for (std::size_t k = 0; k < roots.size(); ++k)
    top = std::max(top, roots[k] + 1);
  struct Cleanup { // restores the invariant when a rule throws
    Record& rec;
    std::uint32_t top;
    bool done = false;
    ~Cleanup() {
      if (done) return;
      for (std::uint32_t i = 0; i < top; ++i) // kept ones too: grad() will not return them
        Access::clear(rec.adj[i]);
    }
  } cleanup{rec, top};
  for (std::size_t k = 0; k < roots.size(); ++k) {
    Tensor& a = rec.adj[roots[k]];
    if (create_graph) // the seeds may require grad (the v of a Hessian-vector product, say)
      a = a.defined() ? add(a, seeds[k]) : seeds[k];
    else if (a.defined())
      accumulate(a, seeds[k]);
    else
      a = seeds[k].detach();
  }
  for (std::uint32_t i = top; i-- > 0;) {
    Tensor& gi = rec.adj[i];
    if (!gi.defined()) continue; // the outputs do not depend on this node
    const Node& nd = rec.nodes[i];
    const OpInfo* op = nd.op;
    if (mode == Mode::accumulate && nd.slot != nullptr) accumulate_into(*nd.slot, gi, op == &leaf_op);
    // The rule gets the node's index and gi itself: rec.adj does not move during a sweep (it was
    // sized above), and a rule writes only its inputs' entries, never node i's.
    BackwardCtx ctx{rec, i, gi, create_graph, create_graph || rec.keep[i] ? nullptr : &gi};
    if (create_graph) {
      if (op == &leaf_op) {
      } else if (op->backward_graph == nullptr) {
        fail("{}: this op has no create_graph rule, so its gradient cannot be differentiated again", op->name);
      } else {
        op->backward_graph(ctx);
      }
    } else if (op->backward != nullptr) {
      op->backward(ctx);
    }
    if (!rec.keep[i]) Access::clear(gi); // frees memory as early as possible
  }
  cleanup.done = true;
}

Tensor checked_seed(std::string_view op, const Tensor& out, const Tensor& seed) {
  if (!seed.defined()) {
    if (out.numel() != 1)
      fail("{}: the output has shape {} ({} elements); a non-scalar output needs an explicit seed gradient of "
           "that shape, e.g. backward(ones_like(y))",
           op, out.shape(), out.numel());
    return ones(out.shape(), out.dtype());
  }
  if (!(seed.shape() == out.shape()) || seed.dtype() != out.dtype())
    fail("{}: the seed has shape {} and dtype {}, but the output has shape {} and dtype {}", op, seed.shape(),
         seed.dtype(), out.shape(), out.dtype());
  return seed;
}
} // namespace

} // namespace detail

using detail::Access;
using detail::fail;

std::vector<std::string> tensor_op_names() {
  detail::touch_elementwise();
  detail::touch_reduce();
  detail::touch_matmul();
  detail::touch_shape();
  detail::touch_index();
  detail::touch_loss();
  std::vector<std::string> out(detail::op_registry().begin(), detail::op_registry().end());
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<std::string> recorded_tensor_ops() {
  const detail::Record& rec = detail::record_of(Tape::active());
  std::vector<std::string> out;
  out.reserve(rec.nodes.size());
  for (const detail::Node& n : rec.nodes)
    out.emplace_back(n.op->name);
  return out;
}

// ---- Tensor autograd members ---------------------------------------------------------------------
Tensor& Tensor::requires_grad(bool on) {
  detail::check_defined("requires_grad", *this);
  if (!is_leaf()) {
    if (on) return *this;
    fail("requires_grad: this tensor was computed by a recorded op (node {}); use detach() for a constant copy", node_);
  }
  if (on && dtype_ == DType::int64)
    fail("requires_grad: int64 tensors are never differentiable (shape {}); convert with .to(DType::float32)", shape_);
  if (slot_ == nullptr) {
    if (on) slot_ = new detail::GradSlot;
  } else {
    slot_->requires_grad.store(on, std::memory_order_relaxed);
  }
  return *this;
}

namespace detail {
bool leaf_requires_grad(const GradSlot* s) { return s->leaf && s->requires_grad.load(std::memory_order_relaxed); }
} // namespace detail

Tensor Tensor::grad() const {
  if (slot_ != nullptr) {
    std::lock_guard lock(slot_->mutex);
    return slot_->grad;
  }
  if (!is_leaf())
    fail("grad: this tensor is not a leaf (node {}); call retain_grad() on it before backward() to keep its "
         "gradient",
         node_);
  return Tensor();
}

void Tensor::zero_grad() {
  if (slot_ == nullptr) return;
  Tensor old;
  std::lock_guard lock(slot_->mutex);
  old = std::move(slot_->grad); // released after the lock
}

void Tensor::retain_grad() {
  if (!requires_grad()) fail("retain_grad: the tensor does not require grad (shape {})", shape_);
  if (is_leaf()) return; // leaves keep their gradient anyway
  detail::Record& rec = detail::record_of(Tape::active());
  if (gen_ != rec.gen) detail::foreign("retain_grad", *this, rec);
  detail::Node& n = rec.nodes[node_];
  if (n.slot == nullptr) {
    n.slot = new detail::GradSlot;
    n.slot->leaf = false;
  }
  if (slot_ != n.slot) {
    if (slot_) detail::release(slot_);
    slot_ = n.slot;
    detail::retain(slot_);
  }
}

void Tensor::backward(BackwardOptions options) const { backward(Tensor(), options); }

void Tensor::backward(const Tensor& seed, BackwardOptions options) const {
  detail::check_defined("backward", *this);
  if (!requires_grad())
    fail("backward: the tensor (shape {}) does not require grad: no input had requires_grad(true), or it was "
         "computed under NoGradGuard",
         shape_);
  const Tensor s = detail::checked_seed("backward", *this, seed);
  detail::Record& rec = detail::record_of(Tape::active());
  const std::uint32_t root = detail::node_of("backward", rec, *this);
  detail::sweep(rec, std::span<const std::uint32_t>(&root, 1), std::span<const Tensor>(&s, 1),
                detail::Mode::accumulate);
  if (!options.retain_graph) rec.free_graph();
}

std::vector<Tensor> grad(const std::vector<Tensor>& outputs, const std::vector<Tensor>& inputs,
                         const std::vector<Tensor>& seeds, GradOptions options) {
  if (!seeds.empty() && seeds.size() != outputs.size())
    fail("grad: {} seeds given for {} outputs", seeds.size(), outputs.size());
  detail::Record& rec = detail::record_of(Tape::active());
  std::vector<std::uint32_t> roots, wanted;
  std::vector<Tensor> s;
  for (std::size_t k = 0; k < outputs.size(); ++k) {
    detail::check_defined("grad", outputs[k]);
    if (!outputs[k].requires_grad()) fail("grad: output {} (shape {}) does not require grad", k, outputs[k].shape());
    s.push_back(detail::checked_seed("grad", outputs[k], seeds.empty() ? Tensor() : seeds[k]));
    roots.push_back(detail::node_of("grad", rec, outputs[k]));
  }
  for (std::size_t k = 0; k < inputs.size(); ++k) {
    detail::check_defined("grad", inputs[k]);
    if (!inputs[k].requires_grad())
      fail("grad: input {} (shape {}) does not require grad; call requires_grad(true) on it first", k,
           inputs[k].shape());
    wanted.push_back(detail::node_of("grad", rec, inputs[k]));
  }
  rec.keep.assign(rec.nodes.size(), 0);
  for (std::uint32_t w : wanted)
    rec.keep[w] = 1;
  detail::sweep(rec, roots, s, detail::Mode::functional, options.create_graph);
  std::vector<Tensor> out;
  for (std::size_t k = 0; k < inputs.size(); ++k) {
    Tensor& a = rec.adj[wanted[k]];
    out.push_back(a.defined() ? a : zeros(inputs[k].shape(), inputs[k].dtype()));
  }
  for (std::uint32_t w : wanted) {
    rec.adj[w] = Tensor();
    rec.keep[w] = 0;
  }
  // As for grad() slots (accumulate_into): no two returned gradients share storage. An input listed
  // twice gets two copies too.
  for (std::size_t k = 1; k < out.size(); ++k)
    for (std::size_t j = 0; j < k; ++j)
      if (Access::buffer(out[k]) == Access::buffer(out[j])) {
        out[k] = options.create_graph ? out[k].clone() : detail::convert(out[k], out[k].dtype());
        break;
      }
  if (!options.retain_graph.value_or(options.create_graph)) rec.free_graph();
  return out;
}

Tensor apply(const CustomFunction& f, const std::vector<Tensor>& inputs) {
  if (!f.forward) fail("{}: custom function has no forward", f.name);
  std::vector<Tensor> detached;
  for (const Tensor& t : inputs) {
    detail::check_defined(f.name, t);
    detached.push_back(t.detach());
  }
  Tensor out;
  {
    NoGradGuard no_grad;
    out = f.forward(detached);
  }
  if (!out.defined()) fail("{}: custom forward returned an undefined tensor", f.name);
  out = out.detach();
  if (!detail::any_requires_grad(std::span<const Tensor>(inputs))) return out;
  if (!f.backward) fail("{}: custom function has no backward, but an input requires grad", f.name);
  std::vector<const Tensor*> ptrs;
  for (const Tensor& t : inputs)
    ptrs.push_back(&t);
  detail::Record& rec = detail::record_of(Tape::active());
  // The inputs and the output as recorded, so that a create_graph sweep can differentiate the
  // backward through them.
  std::vector<const Tensor*> saved = ptrs;
  saved.push_back(&out);
  const std::int64_t index[1] = {static_cast<std::int64_t>(rec.customs.size())};
  detail::record(detail::custom_op, out, {.inputs = ptrs, .saved = saved, .ints = index});
  rec.customs.push_back(f); // after record(), which may throw
  return out;
}

} // namespace autodiff
