// The engine: tapes, scopes, reset, backward semantics, generic code, threads, compositions.

#include "op_table.hpp"

#include <autodiff/autodiff.hpp>

#include <boost/test/unit_test.hpp>
#include <fmt/format.h>

#include <random>
#include <thread>

using namespace autodiff;

namespace {
// Generic user code: one implementation, values with double and gradients with Var.
template <class T> T energy(const std::vector<T>& x) {
  T s = x[0] * 0.0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    s = s + exp(-square(x[i])) * sin(x[i]) + pow(x[i], 2.0) / (1.0 + abs(x[i]));
    s = s + max(x[i], 0.1) - min(x[i], 0.0) + sigmoid(x[i]) * softplus(x[i]) + relu(x[i]);
  }
  return s + log1p(tanh(x[0]) + 1.5) + atan2(x[0], x[1]) + hypot(x[0], x[1]);
}
} // namespace

BOOST_AUTO_TEST_SUITE(engine)

BOOST_AUTO_TEST_CASE(generic_code_runs_with_double_and_var) {
  const std::vector<double> p{0.3, -1.1, 2.0, 0.05};
  const double plain = energy(p);
  Tape tape;
  const std::vector<Var> x(p.begin(), p.end());
  const Var y = energy(x);
  BOOST_TEST(y.value() == plain); // bit-identical: the same operations in the same order
  BOOST_TEST(gradcheck([](const std::vector<Var>& v) { return energy(v); }, p).passed);
}

BOOST_AUTO_TEST_CASE(constants_cost_nothing_on_the_tape) {
  Tape tape;
  Var x = 2.0;
  const std::size_t before = tape.size();
  Var y = 3.0 * x + 1.0 - x / 4.0;
  BOOST_TEST(tape.size() - before == 4u); // mul_scalar, add_scalar, div_scalar, sub: no leaves
  BOOST_TEST(tape.operation_count() == 4u);
  y.backward();
  BOOST_TEST(x.grad() == 2.75);
}

BOOST_AUTO_TEST_CASE(backward_twice_gives_the_same_gradients) {
  Tape tape;
  Var x = 1.5;
  Var y = x * x * x;
  y.backward();
  const double first = x.grad();
  y.backward();
  BOOST_TEST(x.grad() == first);
  BOOST_TEST(first == 3 * 1.5 * 1.5);
}

BOOST_AUTO_TEST_CASE(intermediate_gradients_are_kept) {
  Tape tape;
  Var x = 0.7;
  Var h = sin(x);
  Var y = h * h;
  y.backward();
  BOOST_TEST(h.grad() == 2 * std::sin(0.7));
  BOOST_TEST(y.grad() == 1.0);
  BOOST_TEST(x.grad() == 2 * std::sin(0.7) * std::cos(0.7));
}

BOOST_AUTO_TEST_CASE(backward_from_an_earlier_node) {
  Tape tape;
  Var x = 3.0;
  Var a = x * x;
  Var b = a * x; // recorded after a
  a.backward();
  BOOST_TEST(x.grad() == 6.0);
  BOOST_TEST(b.grad() == 0.0); // a does not depend on b
  const auto g = gradient(b, {x, a});
  BOOST_TEST(g[0] == 27.0);
  BOOST_TEST(g[1] == 3.0);
}

BOOST_AUTO_TEST_CASE(functional_gradient) {
  Tape tape;
  Var x = 1.0, y = 2.0, unused = 5.0;
  const auto g = gradient(x * y + y, {x, y, unused});
  BOOST_TEST(g == std::vector<double>({2.0, 2.0, 0.0}), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(seeded_sweep_is_a_vector_jacobian_product) {
  Tape tape;
  const Var a = 0.7, b = -1.3;
  const std::vector<Var> ys{a * b, sin(a) + b * b, exp(b)};
  const std::vector<double> u{2.0, -0.5, 3.0};
  const std::vector<Var> xs{a, b};
  const std::vector<double> vjp = gradient(ys, u, xs);
  // u^T J by hand: d(ab) = (b, a), d(sin a + b^2) = (cos a, 2b), d(e^b) = (0, e^b).
  BOOST_TEST(vjp[0] == 2.0 * -1.3 - 0.5 * std::cos(0.7), boost::test_tools::tolerance(1e-14));
  BOOST_TEST(vjp[1] == 2.0 * 0.7 - 0.5 * 2 * -1.3 + 3.0 * std::exp(-1.3), boost::test_tools::tolerance(1e-14));
  // Seeding the same output twice adds the seeds.
  const std::vector<Var> twice{ys[0], ys[0]};
  const std::vector<double> u2{1.0, 1.0};
  BOOST_TEST(gradient(twice, u2, xs)[0] == 2 * -1.3, boost::test_tools::tolerance(1e-14));
  const std::vector<double> short_u{1.0};
  BOOST_CHECK_THROW(gradient(ys, short_u, xs), Error);
}

BOOST_AUTO_TEST_CASE(reset_keeps_memory_and_records_again) {
  Tape tape;
  auto record = [&] {
    std::vector<Var> x;
    for (int i = 0; i < 5000; ++i)
      x.push_back(0.001 * i);
    Var s = x[0];
    for (std::size_t i = 1; i < x.size(); ++i)
      s = s + tanh(x[i]) * x[i - 1] * 0.5;
    s.backward();
    return x[1].grad();
  };
  const double first = record();
  const std::size_t reserved = tape.bytes_reserved();
  for (int k = 0; k < 10; ++k) {
    tape.reset();
    BOOST_TEST(tape.size() == 0u);
    BOOST_TEST(record() == first);
  }
  BOOST_TEST(tape.bytes_reserved() == reserved);
}

BOOST_AUTO_TEST_CASE(scopes_nest) {
  Tape outer;
  Var x = 2.0;
  {
    Tape inner;
    BOOST_TEST(&Tape::active() == &inner);
    Var y = 3.0;
    Var z = y * y;
    z.backward();
    BOOST_TEST(y.grad() == 6.0);
  }
  BOOST_TEST(&Tape::active() == &outer);
  Var w = x * x;
  w.backward();
  BOOST_TEST(x.grad() == 4.0);
}

BOOST_AUTO_TEST_CASE(two_threads_differentiate_at_once) {
  auto work = [](double scale, double* out) {
    Tape tape;
    double acc = 0;
    for (int k = 0; k < 200; ++k) {
      tape.reset();
      Var x = scale + 0.001 * k;
      Var y = sin(x) * exp(0.1 * x);
      for (int j = 0; j < 50; ++j)
        y = y + tanh(y * x) * 1e-3;
      y.backward();
      acc += x.grad();
    }
    *out = acc;
  };
  double ref_a = 0, ref_b = 0;
  work(0.5, &ref_a);
  work(-1.3, &ref_b);
  double a = 0, b = 0;
  std::thread ta(work, 0.5, &a), tb(work, -1.3, &b);
  ta.join();
  tb.join();
  BOOST_TEST(a == ref_a);
  BOOST_TEST(b == ref_b);
  BOOST_TEST(a != b);
}

BOOST_AUTO_TEST_CASE(default_tape_without_scope) {
  // A thread with no Tape object records on its own default tape.
  double g = 0;
  std::thread t([&] {
    Var x = 4.0;
    Var y = sqrt(x);
    y.backward();
    g = x.grad();
  });
  t.join();
  BOOST_TEST(g == 0.25);
}

BOOST_AUTO_TEST_CASE(random_compositions_match_finite_differences) {
  const auto table = tapegrad_test::op_table();
  std::mt19937 rng(12345);
  std::uniform_int_distribution<std::size_t> pick(0, table.size() - 1);
  int checked = 0;
  for (int trial = 0; trial < 150; ++trial) {
    // A chain of 2 to 4 table ops over three inputs; between steps, c + s tanh(v) maps the value
    // into a neighbourhood of the next op's middle checking point, where it is defined and well
    // conditioned, while keeping every input's influence.
    std::vector<std::size_t> chain;
    const std::size_t len = 2 + trial % 3;
    for (std::size_t k = 0; k < len; ++k)
      chain.push_back(pick(rng));
    auto f = [&](const std::vector<Var>& x) {
      Var v = x[0];
      for (std::size_t k = 0; k < chain.size(); ++k) {
        const auto& op = table[chain[k]];
        std::vector<Var> args;
        for (int a = 0; a < op.arity; ++a) {
          const double centre = op.points[op.points.size() / 2][static_cast<std::size_t>(a)];
          const double scale = centre == 0 ? 0.2 : 0.2 * std::fmin(1.0, std::fabs(centre));
          args.push_back(centre + scale * tanh(a == 0 ? v : v * x[1] + x[2]));
        }
        v = op.f(args);
      }
      return v;
    };
    const std::vector<double> p{0.3 - 0.01 * trial, 0.7, -0.2};
    const GradcheckReport r = gradcheck(f, p, {.eps = 1e-5, .atol = 1e-8, .rtol = 1e-5, .order = 4});
    std::vector<std::string> names;
    for (auto c : chain)
      names.push_back(table[c].name);
    BOOST_TEST_CONTEXT(fmt::format("chain {}\n{}", fmt::join(names, " -> "), r)) { BOOST_TEST(r.passed); }
    ++checked;
  }
  BOOST_TEST(checked == 150);
}

BOOST_AUTO_TEST_CASE(nodes_describe_the_record) {
  Tape tape;
  Var x = 2.0;
  Var y = exp(x) * 3.0;
  y.backward();
  const auto nodes = tape.nodes();
  BOOST_TEST(nodes.size() == 3u);
  BOOST_TEST(op_name(nodes[1].op) == "exp");
  BOOST_TEST(nodes[2].operands[0] == 1u);
  BOOST_TEST(*nodes[2].constant == 3.0);
  BOOST_TEST(*nodes[0].adjoint == 3.0 * std::exp(2.0));
  BOOST_TEST(fmt::format("{:.2f}", y) == fmt::format("{:.2f}", 3.0 * std::exp(2.0)));
}

BOOST_AUTO_TEST_SUITE_END()
