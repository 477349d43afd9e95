// Every documented misuse throws autodiff::Error with a message naming the op.

#include <autodiff/autodiff.hpp>

#include <boost/test/unit_test.hpp>

#include <string>
#include <thread>

using namespace autodiff;

namespace {
bool mentions(const Error& e, std::initializer_list<std::string> words) {
  const std::string what = e.what();
  for (const auto& w : words)
    if (what.find(w) == std::string::npos) return false;
  return true;
}
} // namespace

BOOST_AUTO_TEST_SUITE(errors)

BOOST_AUTO_TEST_CASE(value_from_a_reset_tape) {
  Tape tape;
  Var x = 1.0;
  Var y = x * 2.0;
  tape.reset();
  BOOST_CHECK_EXCEPTION(exp(x), Error, [](const Error& e) { return mentions(e, {"exp", "reset"}); });
  BOOST_CHECK_EXCEPTION(x + y, Error, [](const Error& e) { return mentions(e, {"add"}); });
  BOOST_CHECK_EXCEPTION(y.backward(), Error, [](const Error& e) { return mentions(e, {"backward"}); });
  BOOST_CHECK_EXCEPTION(x.grad(), Error, [](const Error& e) { return mentions(e, {"grad"}); });
}

BOOST_AUTO_TEST_CASE(values_of_two_tapes) {
  Tape a;
  Var x = 1.0;
  Tape b;
  Var y = 2.0;
  BOOST_CHECK_EXCEPTION(x * y, Error, [](const Error& e) { return mentions(e, {"mul", "another tape"}); });
  BOOST_CHECK_EXCEPTION(gradient(y, {x}), Error, [](const Error& e) { return mentions(e, {"gradient"}); });
}

BOOST_AUTO_TEST_CASE(value_from_another_thread) {
  Tape tape;
  Var x = 1.0;
  bool threw = false;
  std::thread t([&] {
    try {
      (void)(x * 2.0);
    } catch (const Error&) {
      threw = true;
    }
  });
  t.join();
  BOOST_TEST(threw);
}

BOOST_AUTO_TEST_CASE(grad_before_backward) {
  Tape tape;
  Var x = 1.0;
  BOOST_CHECK_EXCEPTION(x.grad(), Error, [](const Error& e) { return mentions(e, {"grad", "no backward"}); });
}

BOOST_AUTO_TEST_CASE(grad_of_a_node_recorded_after_backward) {
  Tape tape;
  Var x = 1.0;
  Var y = x * 3.0;
  y.backward();
  Var z = y + 1.0;
  BOOST_CHECK_EXCEPTION(z.grad(), Error, [](const Error& e) {
    return mentions(e, {"grad", "after the last backward"});
  });
}

BOOST_AUTO_TEST_CASE(derivative_helpers_check_sizes) {
  auto f = [](const std::vector<Var>& x) { return x[0] * x[1]; };
  BOOST_CHECK_EXCEPTION(hvp(f, std::vector<double>{1.0, 2.0}, std::vector<double>{1.0}), Error, [](const Error& e) {
    return mentions(e, {"hvp", "2", "1"});
  });
  auto g = [](const std::vector<Var>& x) { return std::vector<Var>{x[0], x[1]}; };
  BOOST_CHECK_EXCEPTION(vjp(g, std::vector<double>{1.0, 2.0}, std::vector<double>{1.0, 2.0, 3.0}), Error,
                        [](const Error& e) {
                          return mentions(e, {"vjp", "2 outputs", "3"});
                        });
}

BOOST_AUTO_TEST_SUITE_END()
