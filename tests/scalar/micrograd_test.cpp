// micrograd's two classic engine tests, with the results its README and test_engine.py publish.

#include <autodiff/autodiff.hpp>

#include <boost/test/unit_test.hpp>

using namespace autodiff;

BOOST_AUTO_TEST_SUITE(micrograd)

BOOST_AUTO_TEST_CASE(sanity_check) {
  Tape tape;
  Var x = -4.0;
  Var z = 2.0 * x + 2.0 + x;
  Var q = relu(z) + z * x;
  Var h = relu(z * z);
  Var y = h + q + q * x;
  y.backward();
  BOOST_TEST(y.value() == -20.0);
  BOOST_TEST(x.grad() == 46.0);
}

BOOST_AUTO_TEST_CASE(more_ops) {
  Tape tape;
  Var a = -4.0;
  Var b = 2.0;
  Var c = a + b;
  Var d = a * b + pow(b, 3.0);
  c += c + 1.0;
  c += 1.0 + c + (-a);
  d += d * 2.0 + relu(b + a);
  d += 3.0 * d + relu(b - a);
  Var e = c - d;
  Var f = pow(e, 2.0);
  Var g = f / 2.0;
  g += 10.0 / f;
  g.backward();
  const double tol = 1e-6; // micrograd's own tolerance against PyTorch
  BOOST_TEST(std::fabs(g.value() - 24.70408163265306) < tol);
  BOOST_TEST(std::fabs(a.grad() - 138.83381924198252) < tol);
  BOOST_TEST(std::fabs(b.grad() - 645.5772594752186) < tol);
}

BOOST_AUTO_TEST_SUITE_END()
