// The Tensor type, factories, printing, the autograd protocol (accumulation, retain_grad, seeds,
// no_grad, functional grad, custom functions), tape integration and errors.

#include "helpers.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <autodiff/var.hpp>
#include <limits>
#include <thread>

using namespace autodiff;
using namespace tapegrad_test;

BOOST_AUTO_TEST_SUITE(basics)

BOOST_AUTO_TEST_CASE(factories) {
  BOOST_TEST(zeros({2, 3}).to_vector() == std::vector<double>(6, 0.0));
  BOOST_TEST(ones({2}, DType::int64).to_vector() == std::vector<double>(2, 1.0));
  BOOST_TEST(full({3}, 2.5, DType::float64).to_vector() == std::vector<double>(3, 2.5));
  BOOST_TEST(arange(5).to_vector() == (std::vector<double>{0, 1, 2, 3, 4}));
  BOOST_TEST(arange(1, 2, 0.25, DType::float64).to_vector() == (std::vector<double>{1, 1.25, 1.5, 1.75}));
  BOOST_TEST(linspace(0, 1, 5, DType::float64).to_vector() == (std::vector<double>{0, 0.25, 0.5, 0.75, 1}));
  BOOST_TEST(eye(2, 3).to_vector() == (std::vector<double>{1, 0, 0, 0, 1, 0}));
  const Tensor t = tensor({{1, 2, 3}, {4, 5, 6}});
  BOOST_TEST(t.shape().vec() == (std::vector<std::int64_t>{2, 3}));
  BOOST_TEST((t.dtype() == DType::float32));
  BOOST_TEST(t.at<double>({1, 2}) == 6.0);
  BOOST_TEST(tensor({{{1, 2}}, {{3, 4}}}).shape().vec() == (std::vector<std::int64_t>{2, 1, 2}));
  BOOST_TEST(from_vector(std::vector<std::int64_t>{7, 8}, {2}).data<std::int64_t>()[1] == 8);
  BOOST_TEST(tensor({3.5}).item() == 3.5);
  BOOST_TEST(starts_with(error_of([] { (void)tensor({{1, 2}, {3}}); }), "autodiff: tensor: rows have 2 and 1"));
  BOOST_TEST(starts_with(error_of([] { (void)tensor({1, 2}).item(); }), "autodiff: item: the tensor has shape [2]"));
  BOOST_TEST(starts_with(error_of([] {
                           (void)tensor({1, 2}).at<double>({2});
                         }),
                         "autodiff: at: index 2 is out of range"));
  BOOST_TEST(starts_with(error_of([] {
                           (void)tensor({1, 2}).data<double>();
                         }),
                         "autodiff: data: the tensor is float32"));
}

// empty: the shape and dtype asked for, a leaf that does not require grad, storage of its own that
// can be written in full (each write read back), and no storage for zero elements.
BOOST_AUTO_TEST_CASE(empty_gives_writable_storage_of_the_shape) {
  Tensor a = empty({3, 4}, DType::float64);
  BOOST_TEST(a.shape().vec() == (std::vector<std::int64_t>{3, 4}));
  BOOST_TEST((a.dtype() == DType::float64));
  BOOST_TEST(!a.requires_grad());
  std::span<double> v = a.mutable_data<double>();
  BOOST_TEST(v.size() == 12U);
  for (std::size_t i = 0; i < v.size(); ++i)
    v[i] = static_cast<double>(i);
  const Tensor b = empty({3, 4}, DType::float64); // a second one never shares the first's storage
  BOOST_TEST(b.storage_id() != a.storage_id());
  BOOST_TEST(a.to_vector() == (std::vector<double>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}));
  BOOST_TEST(empty({0, 5}).numel() == 0);
  BOOST_TEST((empty({2}, DType::int64).dtype() == DType::int64));
}

BOOST_AUTO_TEST_CASE(random_numbers_are_seedable) {
  manual_seed(42);
  const std::vector<double> a = rand({100}).to_vector();
  manual_seed(42);
  const std::vector<double> b = rand({100}).to_vector();
  BOOST_TEST(a == b);
  for (double v : a)
    BOOST_TEST((v >= 0 && v < 1));
  const std::vector<double> n = randn({20000}, DType::float64).to_vector();
  double m = 0, s = 0;
  for (double v : n)
    m += v;
  m /= static_cast<double>(n.size());
  for (double v : n)
    s += (v - m) * (v - m);
  s = std::sqrt(s / static_cast<double>(n.size()));
  BOOST_TEST(std::fabs(m) < 0.03);
  BOOST_TEST(std::fabs(s - 1) < 0.03);
}

BOOST_AUTO_TEST_CASE(fork_rng_sets_the_generator_aside) {
  // Inside: the numbers of manual_seed(seed). After: the thread's generator goes on as if the scope
  // had never been, nested scopes included.
  manual_seed(5);
  const auto first = rand({3}, DType::float64).to_vector();
  const auto plain_next = rand({3}, DType::float64).to_vector();
  manual_seed(99);
  const auto seeded = rand({4}, DType::float64).to_vector();
  manual_seed(5);
  BOOST_TEST(rand({3}, DType::float64).to_vector() == first);
  {
    const ForkRng outer(99);
    BOOST_TEST(rand({4}, DType::float64).to_vector() == seeded);
    {
      const ForkRng inner(7);
      rand({10});
    }
    manual_seed(99); // changes only the forked generator
    BOOST_TEST(rand({4}, DType::float64).to_vector() == seeded);
  }
  BOOST_TEST(rand({3}, DType::float64).to_vector() == plain_next);
}

BOOST_AUTO_TEST_CASE(reshape_is_a_view_and_conversions_copy) {
  const Tensor a = arange(6);
  const Tensor b = reshape(a, {2, -1});
  BOOST_TEST(b.shape().vec() == (std::vector<std::int64_t>{2, 3}));
  BOOST_TEST(b.data<float>().data() == a.data<float>().data());
  const Tensor c = a.to(DType::float64);
  BOOST_TEST((c.dtype() == DType::float64));
  BOOST_TEST(c.to_vector() == a.to_vector());
  const Tensor i = tensor({1.7, -2.2}).to(DType::int64);
  BOOST_TEST(i.to_vector() == (std::vector<double>{1, -2}));
  {
    Tape tape;
    Tensor x = tensor({1, 2}, DType::float64);
    x.requires_grad(true);
    sum(x.to(DType::float32) * tensor({3, -1})).backward(); // the gradient comes back in x's dtype
    BOOST_TEST((x.grad().dtype() == DType::float64));
    BOOST_TEST(x.grad().to_vector() == (std::vector<double>{3, -1}));
    BOOST_TEST(!x.to(DType::int64).requires_grad());
  }
  BOOST_TEST(starts_with(error_of([&] {
                           (void)reshape(a, {4, 2});
                         }),
                         "autodiff: reshape: cannot reshape tensor of shape [6] (6 elements) into [4,2]"));
}

BOOST_AUTO_TEST_CASE(printing) {
  BOOST_TEST(fmt::format("{}", tensor({{1, 2}, {3, 4.5}})) == "tensor([[1, 2], [3, 4.5]], shape=[2,2], dtype=float32)");
  BOOST_TEST(fmt::format("{:.2f}", tensor({1, 2}, DType::float64)) == "tensor([1.00, 2.00], shape=[2], dtype=float64)");
  BOOST_TEST(fmt::format("{}", arange(3, DType::int64)) == "tensor([0, 1, 2], shape=[3], dtype=int64)");
  Tensor x = ones({2});
  x.requires_grad(true);
  BOOST_TEST(fmt::format("{}", x) == "tensor([1, 1], shape=[2], dtype=float32, requires_grad)");
  const std::string big = fmt::format("{}", arange(2000).reshape({40, 50}));
  BOOST_TEST(big.find("[0, 1, 2, ..., 47, 48, 49]") != std::string::npos, big);
  BOOST_TEST(big.find("shape=[40,50]") != std::string::npos);
  BOOST_TEST(big.size() < 600u);
  BOOST_TEST(fmt::format("{}", Tensor()) == "tensor(undefined)");
}

BOOST_AUTO_TEST_CASE(gradients_accumulate_into_leaves) {
  Tape tape;
  Tensor x = tensor({1, -2, 3}, DType::float64);
  x.requires_grad(true);
  BOOST_TEST(!x.grad().defined());
  sum(x * x).backward();
  BOOST_TEST(x.grad().to_vector() == (std::vector<double>{2, -4, 6}));
  sum(x * x).backward(); // a second backward adds, as in PyTorch
  BOOST_TEST(x.grad().to_vector() == (std::vector<double>{4, -8, 12}));
  const Tensor y = sum(3.0 * x);
  y.backward({.retain_graph = true}); // the record survives a backward that retains it
  y.backward();                       // the same output twice adds twice
  BOOST_TEST(x.grad().to_vector() == (std::vector<double>{10, -2, 18}));
  x.zero_grad();
  BOOST_TEST(!x.grad().defined());
  Tensor copy = x; // copies share the gradient slot
  sum(copy).backward();
  BOOST_TEST(x.grad().to_vector() == (std::vector<double>{1, 1, 1}));
}

BOOST_AUTO_TEST_CASE(a_leaf_used_twice_and_shared_gradients) {
  Tape tape;
  Tensor a = tensor({1, 2}, DType::float64), b = tensor({3, 4}, DType::float64);
  a.requires_grad(true);
  b.requires_grad(true);
  sum(a + b).backward(); // add passes one gradient buffer to both inputs
  sum(a * 2.0).backward();
  BOOST_TEST(a.grad().to_vector() == (std::vector<double>{3, 3}));
  BOOST_TEST(b.grad().to_vector() == (std::vector<double>{1, 1}));
}

BOOST_AUTO_TEST_CASE(non_scalar_backward_needs_a_seed) {
  Tape tape;
  Tensor x = tensor({1, 2, 3}, DType::float64);
  x.requires_grad(true);
  const Tensor y = x * x;
  BOOST_TEST(starts_with(
      error_of([&] { y.backward(); }),
      "autodiff: backward: the output has shape [3] (3 elements); a non-scalar output needs an explicit seed"));
  y.backward(tensor({1, 0, -1}, DType::float64));
  BOOST_TEST(x.grad().to_vector() == (std::vector<double>{2, 0, -6}));
  BOOST_TEST(starts_with(error_of([&] {
                           y.backward(tensor({1, 0}, DType::float64));
                         }),
                         "autodiff: backward: the seed has shape [2]"));
}

BOOST_AUTO_TEST_CASE(retain_grad_and_non_leaf_grad) {
  Tape tape;
  Tensor x = tensor({1, 2}, DType::float64);
  x.requires_grad(true);
  Tensor h = x * 3.0;
  const Tensor h2 = h; // taken before retain_grad: a plain copy of the node
  h.retain_grad();
  sum(square(h)).backward();
  BOOST_TEST(h.grad().to_vector() == (std::vector<double>{6, 12}));
  BOOST_TEST(x.grad().to_vector() == (std::vector<double>{18, 36}));
  BOOST_TEST(starts_with(error_of([&] { (void)h2.grad(); }), "autodiff: grad: this tensor is not a leaf"));
  BOOST_TEST(!h.is_leaf());
  BOOST_TEST(x.is_leaf());
}

BOOST_AUTO_TEST_CASE(no_grad_records_nothing) {
  Tape tape;
  Tensor x = ones({2});
  x.requires_grad(true);
  {
    NoGradGuard g;
    BOOST_TEST(!grad_enabled());
    const Tensor y = exp(x);
    BOOST_TEST(!y.requires_grad());
    BOOST_TEST(starts_with(error_of([&] {
                             y.backward(tensor({1, 1}));
                           }),
                           "autodiff: backward: the tensor (shape [2]) does not"));
  }
  BOOST_TEST(grad_enabled());
  BOOST_TEST(exp(x).requires_grad());
  const Tensor c = ones({2}) * 2.0; // no input requires grad: not recorded
  BOOST_TEST(!c.requires_grad());
  BOOST_TEST(x.detach().requires_grad() == false);
}

BOOST_AUTO_TEST_CASE(tape_reset_and_foreign_tapes) {
  Tape tape;
  Tensor w = tensor({0.5, -1}, DType::float64);
  w.requires_grad(true);
  Tensor h = exp(w);
  tape.reset();
  const std::string e = error_of([&] { (void)(h * 2.0); });
  BOOST_TEST(starts_with(e, "autodiff: mul_scalar: tensor of shape [2] (node"), e);
  BOOST_TEST(e.find("before the tape was reset") != std::string::npos);
  // leaves outlive resets: a training loop records them again each step
  sum(exp(w)).backward();
  BOOST_TEST(w.grad().at<double>({0}) == std::exp(0.5));
  Tensor inner_result;
  {
    Tape other;
    inner_result = w * 2.0;
  }
  BOOST_TEST(starts_with(error_of([&] { (void)(inner_result + w); }), "autodiff: add: tensor of shape [2]"));
}

BOOST_AUTO_TEST_CASE(tensors_from_another_thread_are_rejected) {
  Tensor w = tensor({1, 2}, DType::float64);
  w.requires_grad(true);
  Tensor from_thread;
  std::thread([&] { from_thread = w * 2.0; }).join(); // recorded on that thread's default tape
  Tape tape;
  BOOST_TEST(starts_with(error_of([&] { (void)exp(from_thread); }), "autodiff: exp: tensor of shape [2]"));
  {
    NoGradGuard ng; // values stay readable; only recording checks the tape
    BOOST_TEST(exp(from_thread).at<double>({1}) == std::exp(4.0));
  }
}

BOOST_AUTO_TEST_CASE(functional_grad_leaves_grad_alone) {
  Tape tape;
  Tensor x = tensor({1, 2}, DType::float64), z = tensor({5}, DType::float64);
  x.requires_grad(true);
  z.requires_grad(true);
  const Tensor h = x * x;
  const Tensor y = sum(h * x);
  const auto g = grad(y, {x, h, z}, {.retain_graph = true});
  BOOST_TEST(g[0].to_vector() == (std::vector<double>{3, 12}));
  BOOST_TEST(g[1].to_vector() == (std::vector<double>{1, 2})); // intermediate tensors too
  BOOST_TEST(g[2].to_vector() == (std::vector<double>{0}));    // y does not depend on z
  BOOST_TEST(!x.grad().defined());
  const auto g2 = grad({h}, {x}, {tensor({1, -1}, DType::float64)});
  BOOST_TEST(g2[0].to_vector() == (std::vector<double>{2, -4}));
}

BOOST_AUTO_TEST_CASE(dtype_and_shape_errors) {
  Tape tape;
  BOOST_TEST(error_of([] {
               (void)matmul(ones({3, 4}), ones({5, 2}));
             }) == "autodiff: matmul: shapes [3,4] and [5,2] cannot be multiplied");
  BOOST_TEST(error_of([] {
               (void)(ones({3, 4}) + ones({3}));
             }) == "autodiff: add: shapes [3,4] and [3] cannot be broadcast together");
  BOOST_TEST(starts_with(error_of([] { (void)(ones({2}) * ones({2}, DType::float64)); }),
                         "autodiff: mul: dtypes float32 (shape [2]) and float64 (shape [2]) differ"));
  BOOST_TEST(starts_with(error_of([] { ones({2}, DType::int64).requires_grad(true); }),
                         "autodiff: requires_grad: int64 tensors are never differentiable"));
  BOOST_TEST(starts_with(error_of([] { (void)exp(ones({2}, DType::int64)); }),
                         "autodiff: exp: needs a float32 or float64 tensor"));
  BOOST_TEST(starts_with(error_of([] { (void)sum(ones({2}), 2); }), "autodiff: sum: dim 2 is out of range"));
  BOOST_TEST(
      starts_with(error_of([] { (void)max(zeros({0})); }), "autodiff: max: cannot reduce over an empty dimension"));
  BOOST_TEST(starts_with(error_of([] { (void)exp(Tensor()); }), "autodiff: exp: the tensor is undefined"));
  BOOST_TEST(starts_with(error_of([] {
                           (void)cross_entropy(ones({2, 3}), from_vector(std::vector<std::int64_t>{0, 3}, {2}));
                         }),
                         "autodiff: cross_entropy: target 3 at position 1 is out of range for 3 classes"));
  BOOST_TEST(starts_with(error_of([] {
                           (void)cross_entropy(ones({2, 3}), ones({2}));
                         }),
                         "autodiff: cross_entropy: targets must be int64"));
  BOOST_TEST(starts_with(error_of([] {
                           (void)index_select(ones({2, 3}), 1, from_vector(std::vector<std::int64_t>{3}, {1}));
                         }),
                         "autodiff: index_select: index 3 is out of range"));
  BOOST_TEST(starts_with(error_of([] {
                           (void)permute(ones({2, 3}), {0, 0});
                         }),
                         "autodiff: permute: dim 0 appears twice"));
  BOOST_TEST(starts_with(error_of([] {
                           (void)expand(ones({2, 3}), {3, 3});
                         }),
                         "autodiff: expand: shape [2,3] cannot be expanded"));
  BOOST_TEST(starts_with(error_of([] {
                           (void)concat({ones({2, 3}), ones({3, 3})}, 1);
                         }),
                         "autodiff: concat: shapes [2,3] and [3,3]"));
  BOOST_TEST(starts_with(error_of([] {
                           (void)matmul(ones({2, 2, 3}), ones({3}));
                         }),
                         "autodiff: matmul: shapes [2,2,3] and [3] are not supported"));
  BOOST_TEST(starts_with(error_of([] {
                           (void)linear(ones({2, 3}), ones({3, 2}));
                         }),
                         "autodiff: linear: input of shape [2,3] and weight of shape [3,2] do not fit"));
}

BOOST_AUTO_TEST_CASE(scatter_op_errors) {
  Tape tape;
  const auto idx = [](std::vector<std::int64_t> v, Shape s) { return from_vector(v, s); };
  BOOST_TEST(starts_with(
      error_of([] {
        (void)slice_scatter(ones({4, 3}), ones({3, 3}), 0, 0, 2);
      }),
      "autodiff: slice_scatter: src has shape [3,3], but the slice 0:2:1 of dim 0 of shape [4,3] has shape [2,3]"));
  BOOST_TEST(starts_with(error_of([] { (void)slice_scatter(ones({4}), ones({2}), 0, 0, 4, 0); }),
                         "autodiff: slice_scatter: step must be positive, got 0"));
  BOOST_TEST(starts_with(error_of([&] {
                           (void)index_add(ones({4, 3}), 0, idx({0, 4}, {2}), ones({2, 3}));
                         }),
                         "autodiff: index_add: index 4 is out of range for dim 0 of shape [4,3]"));
  BOOST_TEST(starts_with(error_of([&] {
                           (void)index_add(ones({4, 3}), 0, idx({0, 1}, {2}), ones({3, 3}));
                         }),
                         "autodiff: index_add: src has shape [3,3]"));
  BOOST_TEST(starts_with(error_of([] {
                           (void)index_add(ones({4, 3}), 0, ones({2}), ones({2, 3}));
                         }),
                         "autodiff: index_add: index must be a 1-D int64 tensor"));
  BOOST_TEST(starts_with(error_of([&] {
                           (void)scatter_add(ones({2, 3}), 1, idx({0, 1}, {1, 2}), ones({1, 3}));
                         }),
                         "autodiff: scatter_add: index has shape [1,2] but src has shape [1,3]; they must be equal"));
  BOOST_TEST(starts_with(error_of([&] {
                           (void)scatter_add(ones({2, 3}), 1, idx({0, -1}, {1, 2}), ones({1, 2}));
                         }),
                         "autodiff: scatter_add: index -1 is out of range for dim 1 of shape [2,3]"));
  BOOST_TEST(starts_with(error_of([] {
                           (void)scatter_add(ones({2, 3}), 0, ones({1, 3}), ones({1, 3}));
                         }),
                         "autodiff: scatter_add: index must be an int64 tensor of 2 dimensions"));
}

BOOST_AUTO_TEST_CASE(where_does_not_leak_nan_from_the_branch_not_taken) {
  Tape tape;
  Tensor x = tensor({-1, 4, 0}, DType::float64);
  x.requires_grad(true);
  const Tensor y = where(x > 0.0, sqrt(x), zeros_like(x)) + where(x > 0.0, zeros_like(x), log(x) * 0.0 + 1.0);
  BOOST_TEST(std::isnan(sqrt(x.detach()).at<double>({0}))); // the untaken branch really is NaN
  sum(y).backward();
  const auto g = x.grad().to_vector();
  BOOST_TEST(g[0] == 0.0);
  BOOST_TEST(g[1] == 0.25);
  BOOST_TEST(g[2] == 0.0);
  // masks are constants and broadcast like everything else
  const Tensor m = from_vector({1.0, 0.0}, {2, 1}, DType::float64);
  Tensor a = tensor({1, 2, 3}, DType::float64);
  a.requires_grad(true);
  sum(where(m, a, a * 10.0)).backward();
  BOOST_TEST(a.grad().to_vector() == (std::vector<double>{11, 11, 11}));
}

BOOST_AUTO_TEST_CASE(comparisons) {
  const Tensor a = tensor({1, 2, 3}), b = tensor({3, 2, 1});
  BOOST_TEST(gt(a, b).to_vector() == (std::vector<double>{0, 0, 1}));
  BOOST_TEST((a <= b).to_vector() == (std::vector<double>{1, 1, 0}));
  BOOST_TEST(eq(a, 2.0).to_vector() == (std::vector<double>{0, 1, 0}));
  BOOST_TEST(ne(a, b).to_vector() == (std::vector<double>{1, 0, 1}));
  BOOST_TEST(argmax(tensor({{1, 5, 2}, {7, 0, 7}}), 1).to_vector() == (std::vector<double>{1, 0}));
  BOOST_TEST(argmin(tensor({{1, 5, 2}, {7, 0, 7}})).item() == 4.0);
}

namespace {
CustomFunction cube(bool wrong) {
  return {"cube", [](const std::vector<Tensor>& x) { return x[0] * x[0] * x[0]; },
          [wrong](const Tensor& g, const std::vector<Tensor>& x, const Tensor&) {
            return std::vector<Tensor>{g * (wrong ? 2.0 : 3.0) * square(x[0])};
          }};
}
} // namespace

BOOST_AUTO_TEST_CASE(custom_functions_compose_with_gradcheck) {
  manual_seed(3);
  const Tensor x = random_in({3, 2}, 0.2, 2, true);
  const auto f = [](const std::vector<Tensor>& v) { return sum(sin(apply(cube(false), {v[0]})) * 2.0); };
  const auto r = gradcheck(f, {x});
  BOOST_TEST(r.passed, fmt::format("{}", r));
  BOOST_TEST(r.checked == 6u);
  // a wrong backward is caught, and the report says where
  const auto bad = gradcheck([](const std::vector<Tensor>& v) { return sum(apply(cube(true), {v[0]})); }, {x});
  BOOST_TEST(!bad.passed);
  const std::string text = fmt::format("{}", bad);
  BOOST_TEST(text.find("gradcheck FAILED (6 components); worst: input 0 element [") != std::string::npos, text);
  BOOST_TEST(std::fabs(bad.analytic / bad.numeric - 2.0 / 3.0) < 1e-6);
  // a gradient of the wrong shape is an error naming the function
  Tape tape;
  Tensor y = tensor({1, 2}, DType::float64);
  y.requires_grad(true);
  const CustomFunction bad_shape{"bad_shape", [](const std::vector<Tensor>& v) { return v[0] * 2.0; },
                                 [](const Tensor&, const std::vector<Tensor>&, const Tensor&) {
                                   return std::vector<Tensor>{ones({3}, DType::float64)};
                                 }};
  BOOST_TEST(error_of([&] { sum(apply(bad_shape, {y})).backward(); }) ==
             "autodiff: bad_shape: backward produced a gradient of shape [3] for input 0 of shape [2]");
}

BOOST_AUTO_TEST_CASE(a_throwing_backward_leaves_the_engine_usable) {
  Tape tape;
  Tensor x = tensor({1, 2}, DType::float64);
  x.requires_grad(true);
  const CustomFunction boom{"boom", [](const std::vector<Tensor>& v) { return v[0] * 1.0; },
                            [](const Tensor&, const std::vector<Tensor>&, const Tensor&) -> std::vector<Tensor> {
                              throw Error("boom: refused");
                            }};
  const Tensor h = x * 3.0;
  BOOST_TEST(error_of([&] { sum(apply(boom, {h}) + h).backward(); }) == "boom: refused");
  BOOST_TEST(error_of([&] { (void)grad(sum(apply(boom, {h})), {x, h}); }) == "boom: refused");
  x.zero_grad();
  // No adjoint of the failed sweeps is left behind to pollute this one.
  sum(h * h).backward({.retain_graph = true});
  BOOST_TEST(x.grad().to_vector() == (std::vector<double>{18, 36}));
  BOOST_TEST(grad(sum(h), {x}, {.retain_graph = true})[0].to_vector() == (std::vector<double>{3, 3}));
  const Tensor y2 = sum(h); // recorded before, swept from inside another sweep
  const CustomFunction reenter{"reenter", [](const std::vector<Tensor>& v) { return v[0] * 1.0; },
                               [&](const Tensor& g, const std::vector<Tensor>&, const Tensor&) {
                                 y2.backward();
                                 return std::vector<Tensor>{g};
                               }};
  BOOST_TEST(starts_with(error_of([&] { sum(apply(reenter, {h})).backward(); }),
                         "autodiff: backward: called from inside a backward pass"));
}

BOOST_AUTO_TEST_CASE(gradcheck_refuses_float32_unless_asked) {
  const Tensor x = ones({2});
  const auto f = [](const std::vector<Tensor>& v) { return sum(exp(v[0])); };
  BOOST_TEST(
      starts_with(error_of([&] { (void)gradcheck(f, {x}); }), "autodiff: gradcheck: input 0 (shape [2]) is float32"));
  BOOST_TEST(gradcheck(f, {x}, {.convert_float32 = true}).passed);
  BOOST_TEST(starts_with(error_of([&] {
                           (void)gradcheck([](const std::vector<Tensor>& v) { return v[0] * 2.0; },
                                           {ones({2}, DType::float64)});
                         }),
                         "autodiff: gradcheck: f must return a one-element tensor, got shape [2]"));
}

// ---- gradcheck of a gradient written by hand ------------------------------------------------------

namespace {
// f(a, b) = sum(a * sin(b)) + sum(a^2) for a [2,3], b [3] (broadcast), and its gradient by hand.
Tensor hand_f(const std::vector<Tensor>& x) { return sum(x[0] * sin(x[1])) + sum(square(x[0])); }
std::vector<Tensor> hand_grad(const std::vector<Tensor>& x) {
  return {sin(x[1]) + x[0] * 2.0, sum(x[0], 0) * cos(x[1])};
}
std::vector<Tensor> hand_inputs() {
  return {from_vector({0.3, -1.2, 0.8, 1.5, 0.1, -0.7}, {2, 3}, DType::float64),
          tensor({0.4, -2.0, 1.1}, DType::float64)};
}
} // namespace

BOOST_AUTO_TEST_CASE(gradcheck_passes_a_correct_hand_gradient) {
  const TensorGradcheckReport r = gradcheck(hand_f, hand_grad, hand_inputs());
  BOOST_TEST(r.passed, fmt::format("{}", r));
  BOOST_TEST(r.checked == 9u);
  BOOST_TEST(gradcheck(hand_f, hand_grad, hand_inputs(), {.fast = true}).passed);
}

BOOST_AUTO_TEST_CASE(gradcheck_rejects_a_wrong_hand_gradient_and_names_the_element) {
  // One element off: b's gradient with the sign of element 2 flipped.
  auto flipped = [](const std::vector<Tensor>& x) {
    std::vector<Tensor> g = hand_grad(x);
    g[1] = g[1] * tensor({1.0, 1.0, -1.0}, DType::float64);
    return g;
  };
  const TensorGradcheckReport r = gradcheck(hand_f, flipped, hand_inputs());
  BOOST_TEST(!r.passed);
  BOOST_TEST(r.input == 1u);
  BOOST_TEST(r.index == (std::vector<std::int64_t>{2}));
  const std::string text = fmt::format("{}", r);
  BOOST_TEST(text.find("gradcheck FAILED (9 components); worst: input 1 element [2]") != std::string::npos, text);
  // Every element wrong in sign: the fast projection catches it too.
  auto negated = [](const std::vector<Tensor>& x) {
    std::vector<Tensor> g = hand_grad(x);
    return std::vector<Tensor>{-g[0], -g[1]};
  };
  BOOST_TEST(!gradcheck(hand_f, negated, hand_inputs(), {.fast = true}).passed);
  // An undefined gradient means zero, which is wrong for a.
  auto none_for_a = [](const std::vector<Tensor>& x) { return std::vector<Tensor>{Tensor(), hand_grad(x)[1]}; };
  const TensorGradcheckReport r2 = gradcheck(hand_f, none_for_a, hand_inputs());
  BOOST_TEST(!r2.passed);
  BOOST_TEST(r2.input == 0u);
}

BOOST_AUTO_TEST_CASE(gradcheck_of_a_hand_gradient_names_wrong_shapes) {
  // b's gradient left in the broadcast shape [2,3] instead of reduced to [3].
  auto unreduced = [](const std::vector<Tensor>& x) { return std::vector<Tensor>{hand_grad(x)[0], x[0] * cos(x[1])}; };
  BOOST_TEST(error_of([&] { (void)gradcheck(hand_f, unreduced, hand_inputs()); }) ==
             "autodiff: gradcheck: the claimed gradient of input 1 has shape [2,3] but the input has shape [3]");
  auto one = [](const std::vector<Tensor>& x) { return std::vector<Tensor>{hand_grad(x)[0]}; };
  BOOST_TEST(error_of([&] { (void)gradcheck(hand_f, one, hand_inputs()); }) ==
             "autodiff: gradcheck: the claimed gradient has 1 tensors but there are 2 inputs");
}

BOOST_AUTO_TEST_CASE(maximum_and_minimum_propagate_nan) {
  // As PyTorch, and as the scalar max/min: in either operand, with a tensor or a scalar operand.
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const Tensor a = tensor({nan, 1.0, nan}, DType::float64), b = tensor({1.0, nan, nan}, DType::float64);
  for (const Tensor& r : {maximum(a, b), minimum(a, b), maximum(b, a), minimum(b, a)})
    for (double v : r.to_vector())
      BOOST_TEST(std::isnan(v));
  const Tensor c = tensor({nan, 1.0}, DType::float64);
  for (const Tensor& r : {maximum(c, 0.0), minimum(c, 0.0), maximum(c, nan), minimum(c, nan)})
    BOOST_TEST(std::isnan(r.to_vector()[0]));
  BOOST_TEST(std::isnan(maximum(c, nan).to_vector()[1]));
  BOOST_TEST(std::isnan(minimum(c, nan).to_vector()[1]));
}

BOOST_AUTO_TEST_CASE(relu_and_the_max_min_reductions_propagate_nan) {
  // As PyTorch: relu(NaN) is NaN, in both engines; a slice with a NaN has max and min NaN wherever
  // the NaN stands, argmax and argmin name the first one, and the gradient goes to it.
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const auto r = relu(tensor({nan, -0.0, -1.0, 2.0}, DType::float64)).to_vector();
  BOOST_TEST(std::isnan(r[0]));
  BOOST_TEST((r[1] == 0 && r[2] == 0 && r[3] == 2));
  BOOST_TEST(std::isnan(relu(Var(nan)).value()));
  for (const std::vector<double>& v : {std::vector<double>{nan, 1, 3}, {3, nan, 1}, {1, 3, nan}, {3, nan, nan}}) {
    Tensor a = from_vector(v, {3}, DType::float64);
    a.requires_grad(true);
    const std::int64_t first = std::find_if(v.begin(), v.end(), [](double x) { return std::isnan(x); }) - v.begin();
    BOOST_TEST(std::isnan(max(a).item()));
    BOOST_TEST(std::isnan(min(a).item()));
    BOOST_TEST(argmax(a).to_vector()[0] == static_cast<double>(first));
    BOOST_TEST(argmin(a).to_vector()[0] == static_cast<double>(first));
    max(a).backward();
    std::vector<double> want(3, 0.0);
    want[static_cast<std::size_t>(first)] = 1;
    BOOST_TEST(a.grad().to_vector() == want, boost::test_tools::per_element());
  }
  // Along a dim, per slice: [[1, NaN], [4, 2]] has column maxima NaN and 4, row minima NaN and 2.
  const Tensor m = tensor({{1.0, nan}, {4.0, 2.0}}, DType::float64);
  const auto cols = max(m, 0).to_vector(), rows = min(m, 1).to_vector();
  BOOST_TEST((cols[0] == 4 && std::isnan(cols[1])));
  BOOST_TEST((std::isnan(rows[0]) && rows[1] == 2));
}

BOOST_AUTO_TEST_CASE(a_training_loop_allocates_nothing_after_warm_up) {
  Tape tape;
  Tensor w = randn({8, 8});
  w.requires_grad(true);
  const Tensor x = randn({4, 8});
  const Tensor t = from_vector(std::vector<std::int64_t>{1, 0, 7, 3}, {4});
  std::size_t after_warm_up = 0;
  for (int step = 0; step < 6; ++step) {
    if (step == 2) after_warm_up = tensor_memory_stats().heap_allocations;
    tape.reset();
    const Tensor loss = cross_entropy(tanh(matmul(x, w)) * 0.5 + 1.0, t) + sum(square(w)) * 1e-3;
    loss.backward();
    w.zero_grad();
  }
  BOOST_TEST(after_warm_up > 0u);
  BOOST_TEST(tensor_memory_stats().heap_allocations == after_warm_up);
  BOOST_TEST(tensor_memory_stats().cached_bytes > 0u);
}

BOOST_AUTO_TEST_SUITE_END()
