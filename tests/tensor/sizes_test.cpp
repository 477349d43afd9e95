// Size computations: every element count, byte count and slice bound is checked, and a size that
// does not fit is an autodiff::Error naming the op and the dims, never a wrapped count, undefined
// behaviour or an allocation of the wrong size. The rule (tensor.hpp, max_numel): dims >= 0 and the
// product of the non-zero dims at most 2^60; a zero dim makes a legitimately empty tensor.

#include "helpers.hpp"

#include <autodiff/tensor_derivatives.hpp>

#include <limits>

using namespace autodiff;
using namespace tapegrad_test;

namespace {
constexpr std::int64_t big = std::int64_t{1} << 32;
constexpr std::int64_t i64max = std::numeric_limits<std::int64_t>::max();
constexpr std::int64_t i64min = std::numeric_limits<std::int64_t>::min();
} // namespace

BOOST_AUTO_TEST_SUITE(sizes)

BOOST_AUTO_TEST_CASE(shape_construction_and_numel) {
  BOOST_TEST(starts_with(error_of([] { (void)Shape{big, big}; }), "autodiff: shape: [4294967296,4294967296]: "));
  BOOST_TEST(contains(error_of([] { (void)Shape{big, big}; }), "2^60"));
  BOOST_TEST(starts_with(error_of([] { (void)zeros({big, big}); }), "autodiff: shape: [4294967296,4294967296]: "));
  BOOST_TEST(starts_with(error_of([] { (void)Shape{2, -2}; }), "autodiff: shape: [2,-2]: dimension 1 is -2"));
  BOOST_TEST(
      starts_with(error_of([] { (void)Shape{i64min}; }), "autodiff: shape: [-9223372036854775808]: dimension 0"));
  BOOST_TEST(error_of([] { (void)Shape{std::int64_t{1} << 60}; }).empty());
  BOOST_TEST(!error_of([] { (void)Shape{(std::int64_t{1} << 60) + 1}; }).empty());
  BOOST_TEST(!error_of([] { (void)Shape{i64max}; }).empty());
  // A zero dim: empty whatever the others are, as long as those fit.
  BOOST_TEST(Shape({0, std::int64_t{1} << 40}).numel() == 0);
  BOOST_TEST(zeros({0, std::int64_t{1} << 40}).numel() == 0);
  BOOST_TEST(starts_with(error_of([] {
                           (void)Shape{std::int64_t{1} << 62, std::int64_t{1} << 62, 0};
                         }),
                         "autodiff: shape: [4611686018427387904,4611686018427387904,0]: "));
  BOOST_TEST(starts_with(error_of([] { (void)Shape{0, big, big}; }), "autodiff: shape: [0,4294967296,4294967296]: "));
  // push_back checks as it grows.
  BOOST_TEST(starts_with(error_of([] {
                           Shape s{big};
                           s.push_back(big);
                         }),
                         "autodiff: shape: [4294967296,4294967296]: "));
  // numel() of a shape changed through operator[] is checked too.
  BOOST_TEST(starts_with(error_of([] {
                           Shape s{2, 3};
                           s[0] = std::int64_t{1} << 62;
                           s[1] = 8;
                           (void)s.numel();
                         }),
                         "autodiff: shape: [4611686018427387904,8] has no element count"));
  BOOST_TEST(starts_with(error_of([] {
                           Shape s{2, 3};
                           s[1] = -3;
                           (void)s.numel();
                         }),
                         "autodiff: shape: [2,-3] has no element count: dimension 1 is -3"));
  // The helper the file readers use.
  BOOST_TEST(checked_numel(std::vector<std::int64_t>{3, 4}).value() == 12);
  BOOST_TEST(checked_numel(std::vector<std::int64_t>{0, std::int64_t{1} << 40}).value() == 0);
  BOOST_TEST(!checked_numel(std::vector<std::int64_t>{std::int64_t{1} << 62, std::int64_t{1} << 62, 0}));
  BOOST_TEST(!checked_numel(std::vector<std::int64_t>{-1}));
  BOOST_TEST(!checked_add(i64max, 1));
  BOOST_TEST(!checked_mul(big, big));
}

// The -1 that reshape infers is a Shape, but no factory takes it: each names itself.
BOOST_AUTO_TEST_CASE(factories_name_themselves) {
  BOOST_TEST(starts_with(error_of([] { (void)zeros({-1, 3}); }), "autodiff: zeros: shape [-1,3]: dimension 0 is -1"));
  BOOST_TEST(starts_with(error_of([] { (void)ones({-1}); }), "autodiff: ones: shape [-1]"));
  BOOST_TEST(starts_with(error_of([] { (void)full({2, -1}, 1.0); }), "autodiff: full: shape [2,-1]"));
  BOOST_TEST(starts_with(error_of([] { (void)empty({2, -1}); }), "autodiff: empty: shape [2,-1]"));
  BOOST_TEST(starts_with(error_of([] { (void)rand({-1}); }), "autodiff: rand: shape [-1]"));
  BOOST_TEST(starts_with(error_of([] { (void)randn({-1}); }), "autodiff: randn: shape [-1]"));
  BOOST_TEST(starts_with(error_of([] { (void)from_vector(std::vector<double>{1}, {-1}); }),
                         "autodiff: from_vector: shape [-1]"));
  BOOST_TEST(starts_with(error_of([] { (void)from_vector(std::vector<float>{1}, {-1}); }),
                         "autodiff: from_vector: shape [-1]"));
  BOOST_TEST(starts_with(error_of([] { (void)from_vector(std::vector<std::int64_t>{1}, {-1}); }),
                         "autodiff: from_vector: shape [-1]"));
  // arange's count is checked before it becomes an integer (1e19 does not fit an int64).
  BOOST_TEST(starts_with(error_of([] { (void)arange(0, 1e19); }),
                         "autodiff: arange: [0, 1e+19) with step 1 has 1e+19 elements"));
  BOOST_TEST(starts_with(error_of([] { (void)arange(-1e308, 1e308); }), "autodiff: arange: [-1e+308, 1e+308)"));
  BOOST_TEST(starts_with(error_of([] { (void)arange(1e19, 0, -1); }), "autodiff: arange: [1e+19, 0) with step -1"));
  BOOST_TEST(arange(5, 0).numel() == 0);
  BOOST_TEST(
      starts_with(error_of([] { (void)linspace(0, 1, i64max); }), "autodiff: linspace: steps is 9223372036854775807"));
  BOOST_TEST(starts_with(error_of([] { (void)eye(big, big); }), "autodiff: eye: shape [4294967296,4294967296]: "));
  BOOST_TEST(eye(0, big).numel() == 0);
}

// Ops that compute output dims check them under their own names; the inputs here are all empty,
// so nothing large is ever allocated.
BOOST_AUTO_TEST_CASE(ops_check_the_shapes_they_compute) {
  const std::int64_t half = std::int64_t{1} << 31, e59 = std::int64_t{1} << 59, e60 = std::int64_t{1} << 60;
  BOOST_TEST(starts_with(error_of([&] {
                           (void)matmul(zeros({half, 0}), zeros({0, half}));
                         }),
                         "autodiff: matmul: shape [2147483648,2147483648]: "));
  BOOST_TEST(starts_with(error_of([&] {
                           (void)linear(zeros({half, 0}), zeros({half, 0}));
                         }),
                         "autodiff: linear: shape [2147483648,2147483648]: "));
  BOOST_TEST(starts_with(error_of([&] {
                           (void)(zeros({half, 1, 0}) + zeros({1, half, 0}));
                         }),
                         "autodiff: add: shape [2147483648,2147483648,0]: "));
  BOOST_TEST(starts_with(error_of([&] {
                           (void)where(zeros({half, 1, 0}), zeros({1, half, 0}), zeros({1, 1, 0}));
                         }),
                         "autodiff: where: shape [2147483648,2147483648,0]: "));
  BOOST_TEST(starts_with(error_of([&] {
                           (void)concat({zeros({0, e59}), zeros({0, e59}), zeros({0, e59})}, 1);
                         }),
                         "autodiff: concat: shape [0,1729382256910270464]: "));
  BOOST_TEST(
      starts_with(error_of([&] {
                    (void)concat(std::vector<Tensor>(9, zeros({0, e60})), 1);
                  }),
                  "autodiff: concat: the lengths along dim 1 of 9 tensors of shape [0,1152921504606846976] overflow"));
  BOOST_TEST(concat({zeros({0, e59}), zeros({0, e59})}, 1).shape() == (Shape{0, e60}));
  BOOST_TEST(starts_with(error_of([&] {
                           (void)stack({zeros({0, e59, 2}), zeros({0, e59, 2}), zeros({0, e59, 2})});
                         }),
                         "autodiff: stack: shape [3,0,576460752303423488,2]: "));
  BOOST_TEST(
      starts_with(error_of([&] {
                    (void)index_select(zeros({e59, 0, 2}), 2, from_vector(std::vector<std::int64_t>{0, 1, 0}, {3}));
                  }),
                  "autodiff: index_select: shape [576460752303423488,0,3]: "));
  BOOST_TEST(starts_with(error_of([&] {
                           (void)reshape(zeros({0}), {-1, half, half});
                         }),
                         "autodiff: shape: [-1,2147483648,2147483648]"));
  BOOST_TEST(reshape(zeros({0}), {-1, e60}).shape() == (Shape{0, e60}));
  BOOST_TEST(starts_with(error_of([&] {
                           (void)expand(zeros({1, 1}), {big, big});
                         }),
                         "autodiff: shape: [4294967296,4294967296]: "));
  BOOST_TEST(expand(zeros({1, 0}), {big, 0}).shape() == (Shape{big, 0}));
  BOOST_TEST(flatten(zeros({0, e59, 2})).shape() == (Shape{0}));
  // A Hessian's shape is x's shape twice: [0, 2^31] gives [0, 2^31, 0, 2^31].
  BOOST_TEST(starts_with(error_of([&] {
                           (void)hessian([](const Tensor& x) { return sum(x); }, zeros({0, half}, DType::float64));
                         }),
                         "autodiff: hessian: shape [0,2147483648,0,2147483648]: "));
}

// Slice bounds and steps at the extremes of int64: clamped as Python's, never overflowing.
BOOST_AUTO_TEST_CASE(slice_bounds_at_the_extremes) {
  const Tensor x = arange(10, DType::float64);
  BOOST_TEST(slice(x, 0, 0, 10, i64max).to_vector() == (std::vector<double>{0}));
  BOOST_TEST(slice(x, 0, i64min, i64max, i64max).to_vector() == (std::vector<double>{0}));
  BOOST_TEST(slice(x, 0, 3, i64max, 2).to_vector() == (std::vector<double>{3, 5, 7, 9}));
  BOOST_TEST(slice(x, 0, -3, i64max, i64max - 1).to_vector() == (std::vector<double>{7}));
  BOOST_TEST(slice(x, 0, i64min, i64min).numel() == 0);
  BOOST_TEST(slice(x, 0, i64max, i64min).numel() == 0);
  BOOST_TEST(slice(x, 0, i64max, i64max).numel() == 0);
  BOOST_TEST(slice(x, 0, i64min, -9, 3).to_vector() == (std::vector<double>{0}));
  BOOST_TEST(
      starts_with(error_of([&] { (void)slice(x, 0, 0, 10, i64min); }), "autodiff: slice: step must be positive"));
  BOOST_TEST(starts_with(error_of([&] { (void)slice(x, 0, 0, 10, 0); }), "autodiff: slice: step must be positive"));
  // The gradient goes back to the one element taken, and slice_scatter writes it.
  Tape tape;
  Tensor v = arange(10, DType::float64);
  v.requires_grad(true);
  const Tensor g = grad(sum(slice(v, 0, 2, i64max, i64max) * 3.0), {v})[0];
  BOOST_TEST(g.to_vector() == (std::vector<double>{0, 0, 3, 0, 0, 0, 0, 0, 0, 0}));
  const Tensor w = slice_scatter(zeros({10}, DType::float64), ones({1}, DType::float64), 0, i64min, i64max, i64max);
  BOOST_TEST(w.to_vector() == (std::vector<double>{1, 0, 0, 0, 0, 0, 0, 0, 0, 0}));
  const Tensor g2 = grad(sum(slice_scatter(v, tensor({5.0}, DType::float64), 0, 4, i64max, i64max) * v), {v})[0];
  BOOST_TEST(g2.to_vector() == (std::vector<double>{0, 2, 4, 6, 5, 10, 12, 14, 16, 18}));
}

BOOST_AUTO_TEST_SUITE_END()
