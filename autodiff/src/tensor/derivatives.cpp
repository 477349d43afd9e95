// hvp, hessian, jacobian and vjp of tensor functions (see tensor_derivatives.hpp): each a few
// reverse sweeps over one recording of f, on a Tape of its own.

#include "internal.hpp"

#include <autodiff/tensor_derivatives.hpp>

#include <algorithm>

namespace autodiff {

using detail::fail;

namespace {

// Leaves sharing the points' storage (nothing writes to them), recorded on the current tape.
std::vector<Tensor> leaves_of(std::string_view op, const std::vector<Tensor>& xs) {
  std::vector<Tensor> out;
  for (std::size_t k = 0; k < xs.size(); ++k) {
    detail::check_defined(op, xs[k]);
    if (xs[k].dtype() == DType::int64)
      fail("{}: input {} (shape {}) is int64, which is never differentiable", op, k, xs[k].shape());
    out.push_back(xs[k].detach());
    out.back().requires_grad(true);
  }
  return out;
}

Tensor checked_scalar(std::string_view op, const Tensor& y) {
  detail::check_defined(op, y);
  if (y.numel() != 1) fail("{}: f must return a one-element tensor, got shape {}", op, y.shape());
  return y;
}

void check_like(std::string_view op, std::string_view what, const Tensor& v, const Tensor& x) {
  detail::check_defined(op, v);
  if (!(v.shape() == x.shape()) || v.dtype() != x.dtype())
    fail("{}: {} has shape {} and dtype {}, but must match {} and {}", op, what, v.shape(), v.dtype(), x.shape(),
         x.dtype());
}

Shape concat_shapes(std::string_view op, const Shape& a, const Shape& b) {
  if (a.rank() + b.rank() > Shape::max_rank)
    fail("{}: the result would have shape {} ++ {}, more than {} dimensions", op, a, b, Shape::max_rank);
  std::vector<std::int64_t> dims = a.vec(); // checked under the op's name: [n] ++ [n] has n^2 elements
  dims.insert(dims.end(), b.begin(), b.end());
  return detail::make_shape(op, dims);
}

// Rows of a matrix result: row i is the reverse sweep seeded with the i-th unit tensor.
Tensor rows_by_unit_seeds(const Tensor& out, const Tensor& x, const Shape& shape) {
  Tensor result = zeros(shape, x.dtype());
  const std::int64_t m = out.numel(), n = x.numel();
  Tensor seed = zeros(out.shape(), out.dtype());
  detail::dispatch_float("jacobian", x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    T* r = result.mutable_data<T>().data();
    for (std::int64_t i = 0; i < m; ++i) {
      auto s = seed.mutable_data<T>();
      std::fill(s.begin(), s.end(), T(0));
      s[static_cast<std::size_t>(i)] = T(1);
      // One sweep per row over the same record: keep it.
      const Tensor row =
          grad(std::vector<Tensor>{out}, std::vector<Tensor>{x}, std::vector<Tensor>{seed}, {.retain_graph = true})[0];
      const auto rv = row.data<T>();
      std::copy(rv.begin(), rv.end(), r + i * n);
    }
  });
  return result;
}

} // namespace

std::vector<Tensor> hvp(const TensorFunctionN& f, const std::vector<Tensor>& xs, const std::vector<Tensor>& vs) {
  if (vs.size() != xs.size()) fail("hvp: {} directions given for {} inputs", vs.size(), xs.size());
  for (std::size_t k = 0; k < xs.size(); ++k)
    check_like("hvp", fmt::format("direction {}", k), vs[k], xs[k]);
  const ScratchTape scratch; // this thread's reused tape: a loop of calls allocates nothing new
  const std::vector<Tensor> x = leaves_of("hvp", xs);
  const Tensor y = checked_scalar("hvp", f(x));
  std::vector<Tensor> zero;
  for (const Tensor& t : xs)
    zero.push_back(zeros(t.shape(), t.dtype()));
  if (!y.requires_grad()) return zero;
  const std::vector<Tensor> g = grad(std::vector<Tensor>{y}, x, {.create_graph = true});
  // H v = d <g, v> / dx: one sweep seeded with v from every gradient that depends on x.
  std::vector<Tensor> outs, seeds;
  for (std::size_t k = 0; k < g.size(); ++k)
    if (g[k].requires_grad()) {
      outs.push_back(g[k]);
      seeds.push_back(vs[k]);
    }
  if (outs.empty()) return zero;
  std::vector<Tensor> hv = grad(outs, x, seeds);
  for (Tensor& t : hv)
    t = t.detach();
  return hv;
}

Tensor hvp(const UnaryTensorFunction& f, const Tensor& x, const Tensor& v) {
  return hvp([&](const std::vector<Tensor>& t) { return f(t[0]); }, std::vector<Tensor>{x}, std::vector<Tensor>{v})[0];
}

Tensor hessian(const UnaryTensorFunction& f, const Tensor& x) {
  const Shape shape = concat_shapes("hessian", x.shape(), x.shape());
  const ScratchTape scratch;
  const Tensor leaf = leaves_of("hessian", {x})[0];
  const Tensor y = checked_scalar("hessian", f(leaf));
  if (!y.requires_grad()) return zeros(shape, x.dtype());
  const Tensor g = grad(y, {leaf}, {.create_graph = true})[0];
  if (!g.requires_grad()) return zeros(shape, x.dtype()); // f is linear in x
  return rows_by_unit_seeds(g, leaf, shape);
}

Tensor jacobian(const UnaryTensorFunction& f, const Tensor& x) {
  const ScratchTape scratch;
  const Tensor leaf = leaves_of("jacobian", {x})[0];
  const Tensor y = f(leaf);
  detail::check_defined("jacobian", y);
  if (y.dtype() != x.dtype()) fail("jacobian: f returns {} for a {} input", y.dtype(), x.dtype());
  const Shape shape = concat_shapes("jacobian", y.shape(), x.shape());
  if (!y.requires_grad()) return zeros(shape, x.dtype());
  if (x.numel() >= y.numel()) return rows_by_unit_seeds(y, leaf, shape);
  // More outputs than inputs: columns instead of rows. J^T u, recorded with a seed u that requires
  // grad, is linear in u, and its gradient in u along e_j is column j (J e_j). That is one
  // create_graph sweep, then one sweep per input element instead of one per output element.
  Tensor u = zeros(y.shape(), y.dtype());
  u.requires_grad(true);
  const Tensor jt_u =
      grad(std::vector<Tensor>{y}, std::vector<Tensor>{leaf}, std::vector<Tensor>{u}, {.create_graph = true})[0];
  if (!jt_u.requires_grad()) return zeros(shape, x.dtype()); // x does not reach y
  const Tensor columns = rows_by_unit_seeds(jt_u, u, concat_shapes("jacobian", x.shape(), y.shape()));
  // columns is [x..., y...]; the Jacobian is its transpose [y..., x...].
  return reshape(transpose(reshape(columns, {x.numel(), y.numel()})), shape).detach();
}

std::vector<Tensor> vjp(const TensorFunctionN& f, const std::vector<Tensor>& xs, const Tensor& u) {
  const ScratchTape scratch;
  const std::vector<Tensor> x = leaves_of("vjp", xs);
  const Tensor y = f(x);
  detail::check_defined("vjp", y);
  check_like("vjp", "u", u, y);
  std::vector<Tensor> out;
  if (!y.requires_grad()) {
    for (const Tensor& t : xs)
      out.push_back(zeros(t.shape(), t.dtype()));
    return out;
  }
  out = grad(std::vector<Tensor>{y}, x, std::vector<Tensor>{u});
  for (Tensor& t : out)
    t = t.detach();
  return out;
}

Tensor vjp(const UnaryTensorFunction& f, const Tensor& x, const Tensor& u) {
  return vjp([&](const std::vector<Tensor>& t) { return f(t[0]); }, std::vector<Tensor>{x}, u)[0];
}

} // namespace autodiff
