// gradcheck itself: it passes right gradients, rejects wrong ones and names the bad component.

#include <autodiff/autodiff.hpp>

#include <boost/test/unit_test.hpp>
#include <fmt/format.h>

#include <cmath>
#include <limits>
#include <string>

using namespace autodiff;

BOOST_AUTO_TEST_SUITE(gradcheck_suite)

BOOST_AUTO_TEST_CASE(passes_a_correct_gradient) {
  auto f = [](const std::vector<Var>& x) { return x[0] * sin(x[1]) + exp(x[2] * x[0]); };
  const GradcheckReport r = gradcheck(f, std::vector<double>{0.3, -1.2, 0.8});
  BOOST_TEST(r.passed);
  BOOST_TEST(r.analytic.size() == 3u);
  BOOST_TEST(std::fabs(r.analytic[0] - (std::sin(-1.2) + 0.8 * std::exp(0.24))) < 1e-14);
  BOOST_TEST(r.abs_error < 1e-8);
}

BOOST_AUTO_TEST_CASE(accepts_span_callables) {
  auto f = [](std::span<const Var> x) { return x[0] * x[1]; };
  BOOST_TEST(gradcheck(f, std::vector<double>{2.0, 3.0}).passed);
}

BOOST_AUTO_TEST_CASE(rejects_a_wrong_gradient_and_names_the_component) {
  // The tape sees x3 * c with c a constant copy of x3, while the value is x3^2: component 3's
  // analytic gradient is 4 where the function's is 8.
  auto wrong = [](const std::vector<Var>& x) {
    const Var c = Var(x[3].value()); // a constant copy: its dependence on x3 is lost
    return x[0] * x[1] + x[2] + x[3] * c;
  };
  const GradcheckReport r = gradcheck(wrong, std::vector<double>{1.0, 2.0, 3.0, 4.0});
  BOOST_TEST(!r.passed);
  BOOST_TEST(r.worst == 3u);
  BOOST_TEST(r.analytic[3] == 4.0);
  BOOST_TEST(std::fabs(r.numeric[3] - 8.0) < 1e-6);
  const std::string text = fmt::format("{}", r);
  BOOST_TEST(text.find("FAILED") != std::string::npos);
  BOOST_TEST(text.find("worst component 3") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(nan_gradient_fails) {
  // At 0 the derivative of sqrt is infinite and the differences are NaN: a non-finite gradient
  // never passes.
  auto f = [](const std::vector<Var>& x) { return sqrt(x[0]); };
  const GradcheckReport r = gradcheck(f, std::vector<double>{0.0}, {.eps = 1e-6});
  BOOST_TEST(!r.passed);
  // The report prints NaN without printf's meaningless sign ("-nan").
  BOOST_TEST_REQUIRE(std::isnan(r.numeric[0]));
  const std::string text = fmt::format("{}", r);
  BOOST_TEST(text.find("-nan") == std::string::npos, text);
  BOOST_TEST(text.find("NaN") != std::string::npos, text);
}

BOOST_AUTO_TEST_CASE(fourth_order_stencil_helps_ill_conditioned_functions) {
  // exp(40 x) at x = 0.5: the O(eps^2) error of the central difference is 40^2 eps^2 / 6 relative.
  auto f = [](const std::vector<Var>& x) { return exp(40.0 * x[0]); };
  const GradcheckOptions coarse{.eps = 1e-3, .atol = 0, .rtol = 1e-6, .order = 2};
  GradcheckOptions fine = coarse;
  fine.order = 4;
  BOOST_TEST(!gradcheck(f, std::vector<double>{0.5}, coarse).passed);
  BOOST_TEST(gradcheck(f, std::vector<double>{0.5}, fine).passed);
}

BOOST_AUTO_TEST_CASE(gradcheck_leaves_the_callers_tape_alone) {
  Tape tape;
  Var x = 2.0;
  Var y = x * x;
  gradcheck([](const std::vector<Var>& v) { return v[0] * v[0]; }, std::vector<double>{1.0});
  y.backward();
  BOOST_TEST(x.grad() == 4.0);
}

BOOST_AUTO_TEST_CASE(bad_options_throw) {
  auto f = [](const std::vector<Var>& x) { return x[0]; };
  BOOST_CHECK_THROW(gradcheck(f, std::vector<double>{1.0}, {.eps = 0}), Error);
  BOOST_CHECK_THROW(gradcheck(f, std::vector<double>{1.0}, {.order = 3}), Error);
}

// ---- a gradient written by hand ------------------------------------------------------------------

namespace {
// f(x) = x0 sin x1 + exp(x2 x0), in plain doubles, and its gradient by hand.
double value(const std::vector<double>& x) { return x[0] * std::sin(x[1]) + std::exp(x[2] * x[0]); }
std::vector<double> hand_gradient(const std::vector<double>& x) {
  const double e = std::exp(x[2] * x[0]);
  return {std::sin(x[1]) + x[2] * e, x[0] * std::cos(x[1]), x[0] * e};
}
const std::vector<double> at{0.3, -1.2, 0.8};
} // namespace

BOOST_AUTO_TEST_CASE(passes_a_correct_hand_gradient) {
  const GradcheckReport r = gradcheck(value, hand_gradient, at);
  BOOST_TEST(r.passed, fmt::format("{}", r));
  BOOST_TEST(r.what == "claimed gradient");
  BOOST_TEST(r.analytic == hand_gradient(at));
  BOOST_TEST(r.numeric.size() == 3u);
  // the same verdict and numbers as gradcheck of the same function written with Var
  const GradcheckReport tape =
      gradcheck([](const std::vector<Var>& x) { return x[0] * sin(x[1]) + exp(x[2] * x[0]); }, at);
  BOOST_TEST(r.numeric == tape.numeric);
}

BOOST_AUTO_TEST_CASE(rejects_a_wrong_hand_gradient_and_names_the_component) {
  // One component off: d/dx1 with the sign flipped.
  auto flipped = [](const std::vector<double>& x) {
    auto g = hand_gradient(x);
    g[1] = -g[1];
    return g;
  };
  const GradcheckReport r = gradcheck(value, flipped, at);
  BOOST_TEST(!r.passed);
  BOOST_TEST(r.worst == 1u);
  const std::string text = fmt::format("{}", r);
  BOOST_TEST(text.find("claimed gradient check FAILED") != std::string::npos, text);
  BOOST_TEST(text.find("worst component 1") != std::string::npos, text);
  // A forgotten chain-rule factor in component 2 (x0 e written as e); the options are honoured.
  auto forgot = [](const std::vector<double>& x) {
    auto g = hand_gradient(x);
    g[2] = std::exp(x[2] * x[0]);
    return g;
  };
  const GradcheckReport r2 = gradcheck(value, forgot, at, {.eps = 1e-5, .order = 4});
  BOOST_TEST(!r2.passed);
  BOOST_TEST(r2.worst == 2u);
  // A NaN never passes.
  auto nan_grad = [](const std::vector<double>& x) {
    auto g = hand_gradient(x);
    g[0] = std::numeric_limits<double>::quiet_NaN();
    return g;
  };
  const GradcheckReport r3 = gradcheck(value, nan_grad, at);
  BOOST_TEST(!r3.passed);
  BOOST_TEST(r3.worst == 0u);
}

BOOST_AUTO_TEST_CASE(a_hand_gradient_of_the_wrong_size_is_an_error) {
  auto short_grad = [](const std::vector<double>& x) { return std::vector<double>{x[0], x[1]}; };
  try {
    gradcheck(value, short_grad, at);
    BOOST_FAIL("no error");
  } catch (const Error& e) {
    BOOST_TEST(std::string(e.what()) == "autodiff: gradcheck: the claimed gradient has 2 components but x has 3");
  }
  BOOST_CHECK_THROW(gradcheck(value, hand_gradient, at, {.eps = -1}), Error);
}

BOOST_AUTO_TEST_SUITE_END()
