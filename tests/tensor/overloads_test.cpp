// Overloads that could silently mean something else: the second positional argument of a reduction
// is a dim (as in PyTorch), a number where a dim is expected does not compile, and a variance's
// correction has a type of its own. The compile-time half is static_asserts on requires-expressions.

#include "helpers.hpp"

#include <limits>

using namespace autodiff;
using namespace tapegrad_test;

namespace {

// Whether op(x, args...) compiles, for each op taking a dim.
#define TAPEGRAD_CALLABLE(op)                                                                                          \
  template <class... A>                                                                                                \
  concept op##_compiles = requires(const Tensor& x, A... a) {                                                          \
    op(x, a...);                                                                                                       \
  };
TAPEGRAD_CALLABLE(sum)
TAPEGRAD_CALLABLE(mean)
TAPEGRAD_CALLABLE(max)
TAPEGRAD_CALLABLE(min)
TAPEGRAD_CALLABLE(argmax)
TAPEGRAD_CALLABLE(argmin)
TAPEGRAD_CALLABLE(prod)
TAPEGRAD_CALLABLE(var)
TAPEGRAD_CALLABLE(stddev)
TAPEGRAD_CALLABLE(logsumexp)
TAPEGRAD_CALLABLE(norm)
TAPEGRAD_CALLABLE(softmax)
TAPEGRAD_CALLABLE(log_softmax)
TAPEGRAD_CALLABLE(flatten)
TAPEGRAD_CALLABLE(squeeze)
TAPEGRAD_CALLABLE(unsqueeze)
TAPEGRAD_CALLABLE(transpose)
TAPEGRAD_CALLABLE(slice)
TAPEGRAD_CALLABLE(index_select)
TAPEGRAD_CALLABLE(gather)
TAPEGRAD_CALLABLE(index_add)
TAPEGRAD_CALLABLE(scatter_add)
TAPEGRAD_CALLABLE(slice_scatter)
#undef TAPEGRAD_CALLABLE
template <class... A>
concept concat_compiles = requires(const std::vector<Tensor>& ts, A... a) {
  concat(ts, a...);
};
template <class... A>
concept stack_compiles = requires(const std::vector<Tensor>& ts, A... a) {
  stack(ts, a...);
};
template <class... A>
concept linspace_compiles = requires(A... a) {
  linspace(a...);
};
template <class... A>
concept eye_compiles = requires(A... a) {
  eye(a...);
};

// The traps: a floating-point number or a bool where a dim is expected.
template <class A>
concept size_compiles = requires(const Tensor& x, A a) {
  x.size(a);
};
static_assert(size_compiles<int> && size_compiles<std::int64_t>);
static_assert(!size_compiles<double> && !size_compiles<float> && !size_compiles<bool>); // size(1.5), size(true)
static_assert(!max_compiles<double>); // max(x, 0.0): not "max over dim 0"
static_assert(!min_compiles<double>);
static_assert(!max_compiles<float>);
static_assert(!max_compiles<bool>);
static_assert(!max_compiles<double, bool>);
static_assert(!sum_compiles<double>);
static_assert(!sum_compiles<bool>); // sum(x, true) is no keepdim
static_assert(!sum_compiles<int, double>);
static_assert(!mean_compiles<double>);
static_assert(!mean_compiles<double, bool>);
static_assert(!argmax_compiles<double>);
static_assert(!argmin_compiles<double>);
static_assert(!prod_compiles<double>);
static_assert(!logsumexp_compiles<double>);
static_assert(!softmax_compiles<double>);
static_assert(!log_softmax_compiles<double>);
static_assert(!flatten_compiles<double>);
static_assert(!flatten_compiles<int, double>);
static_assert(!squeeze_compiles<double>);
static_assert(!unsqueeze_compiles<double>);
static_assert(!transpose_compiles<double, int>);
static_assert(!transpose_compiles<int, double>);
static_assert(!slice_compiles<double, int, int>);
static_assert(!slice_compiles<int, double, int>);
static_assert(!slice_compiles<int, int, int, double>);
static_assert(!index_select_compiles<double, Tensor>);
static_assert(!gather_compiles<double, Tensor>);
static_assert(!index_add_compiles<double, Tensor, Tensor>);
static_assert(!scatter_add_compiles<double, Tensor, Tensor>);
static_assert(!slice_scatter_compiles<Tensor, double, int, int>);
static_assert(!concat_compiles<double>);
static_assert(!stack_compiles<double>);
static_assert(!linspace_compiles<double, double, double>);
static_assert(!eye_compiles<double>);
static_assert(!eye_compiles<int, double>);
// var and stddev: an int is a dim; a correction is only ever a Correction.
static_assert(!var_compiles<double>);
static_assert(!var_compiles<int, bool, int>); // var(x, 1, false, 0): say Correction{0}
static_assert(!stddev_compiles<int, bool, int>);
static_assert(!var_compiles<bool>);
// norm: the second argument is p; a dim comes third and is an integer.
static_assert(!norm_compiles<int, bool>); // the old norm(x, dim, keepdim) spelling
static_assert(!norm_compiles<double, double>);
static_assert(!norm_compiles<double, int, double>);

// What still compiles, with PyTorch's meaning.
static_assert(max_compiles<int> && max_compiles<int, bool> && max_compiles<Tensor>); // max(a, b): elementwise
static_assert(min_compiles<Tensor>);
static_assert(sum_compiles<int> && sum_compiles<std::int64_t, bool> && sum_compiles<>);
static_assert(var_compiles<int> && var_compiles<int, bool> && var_compiles<int, bool, Correction>);
static_assert(var_compiles<Correction> && var_compiles<>);
static_assert(stddev_compiles<int> && stddev_compiles<Correction>);
static_assert(norm_compiles<> && norm_compiles<double> && norm_compiles<int> && norm_compiles<double, int, bool>);
static_assert(slice_compiles<int, std::int64_t, std::int64_t, std::int64_t>);
static_assert(transpose_compiles<int, int> && transpose_compiles<>);
static_assert(concat_compiles<int> && stack_compiles<> && linspace_compiles<double, double, int>);
static_assert(eye_compiles<int> && eye_compiles<int, int> && eye_compiles<int, DType>);
static_assert(index_select_compiles<int, Tensor> && slice_scatter_compiles<Tensor, int, int, int>);

} // namespace

BOOST_AUTO_TEST_SUITE(overloads)

// var(x, 1) reduces dim 1, as torch.var(x, 1) does and as sum(x, 1) does; it was the whole-tensor
// variance with correction 1.
BOOST_AUTO_TEST_CASE(var_second_argument_is_a_dim) {
  const Tensor x = tensor({{1, 2, 3}, {4, 6, 8}}, DType::float64);
  BOOST_TEST(var(x, 1).to_vector() == (std::vector<double>{1, 4}));
  BOOST_TEST(var(x, 1).shape() == (Shape{2}));
  BOOST_TEST(var(x, 1, true).shape() == (Shape{2, 1}));
  BOOST_TEST(stddev(x, 1).to_vector() == (std::vector<double>{1, 2}));
  BOOST_TEST(var(x, 0, false, Correction{0}).to_vector() == (std::vector<double>{2.25, 4, 6.25}));
  // The whole tensor: mean 4, squares 9 + 4 + 1 + 0 + 4 + 16 = 34.
  BOOST_TEST(var(x).item() == 34.0 / 5);
  BOOST_TEST(var(x, Correction{0}).item() == 34.0 / 6);
  BOOST_TEST(stddev(x, Correction{0}).item() == std::sqrt(34.0 / 6));
  // PyTorch's divisor max(0, n - correction): inf or NaN, never a negative variance.
  BOOST_TEST(std::isinf(var(x, 1, false, Correction{3}).to_vector()[0]));
  BOOST_TEST(var(x, 1, false, Correction{4}).to_vector()[0] > 0);
  BOOST_TEST(std::isnan(var(zeros({0})).item()));
}

// norm's second argument is p (torch.norm(x, p, dim, keepdim)); it was a dim.
BOOST_AUTO_TEST_CASE(norm_second_argument_is_p) {
  const Tensor x = tensor({{3, -4}, {0, 1}}, DType::float64);
  BOOST_TEST(norm(x, 1).item() == 8.0);
  BOOST_TEST(norm(x, 2).item() == std::sqrt(26.0));
  BOOST_TEST(norm(x).item() == std::sqrt(26.0));
  BOOST_TEST(norm(x, std::numeric_limits<double>::infinity()).item() == 4.0);
  BOOST_TEST(std::fabs(norm(x, 3).item() - std::cbrt(27.0 + 64 + 1)) < 1e-12);
  BOOST_TEST(norm(x, 2, 1).to_vector() == (std::vector<double>{5, 1}));
  BOOST_TEST(norm(x, 1, 0, true).to_vector() == (std::vector<double>{3, 5}));
  BOOST_TEST(norm(x, 1, 0, true).shape() == (Shape{1, 2}));
  // A slice of zeros: gradient 0 for every p, as PyTorch's (not the NaN of inf * 0).
  for (double p : {1.0, 2.0, 3.0, 0.5, std::numeric_limits<double>::infinity()}) {
    Tape tape;
    Tensor z = tensor({{0, 0}, {1, 2}}, DType::float64);
    z.requires_grad(true);
    const Tensor r = norm(z, p, 1);
    BOOST_TEST(r.to_vector()[0] == 0.0, "p = " << p);
    const Tensor g = grad(sum(r), {z})[0];
    BOOST_TEST(g.to_vector()[0] == 0.0, "p = " << p);
    BOOST_TEST(g.to_vector()[1] == 0.0, "p = " << p);
    BOOST_TEST(std::isfinite(g.to_vector()[3]), "p = " << p);
  }
  BOOST_TEST(starts_with(error_of([&] { (void)norm(x, 0); }), "autodiff: norm: p must be > 0 or infinity, got 0"));
  BOOST_TEST(starts_with(error_of([&] { (void)norm(x, -1, 1); }), "autodiff: norm: p must be > 0 or infinity, got -1"));
}

// max(a, b) and min(a, b) of two tensors are elementwise (torch.max(a, b)); max(a, 1) reduces dim 1.
BOOST_AUTO_TEST_CASE(max_of_two_tensors_is_elementwise) {
  const Tensor a = tensor({{1, 5}, {7, 0}}, DType::float64);
  const Tensor b = tensor({{2, 2}, {2, 2}}, DType::float64);
  BOOST_TEST(max(a, b).to_vector() == (std::vector<double>{2, 5, 7, 2}));
  BOOST_TEST(min(a, b).to_vector() == (std::vector<double>{1, 2, 2, 0}));
  BOOST_TEST(max(a, full({}, 0.0, DType::float64)).to_vector() == (std::vector<double>{1, 5, 7, 0}));
  BOOST_TEST(max(a, 1).to_vector() == (std::vector<double>{5, 7}));
  BOOST_TEST(max(a, 0).to_vector() == (std::vector<double>{7, 5}));
}

BOOST_AUTO_TEST_SUITE_END()
