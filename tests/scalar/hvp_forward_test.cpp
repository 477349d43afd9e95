// autodiff::hvp by forward over reverse (docs/design.md, "Note [Forward over reverse]"): for every
// op of the table, against the create_graph path (a create_graph gradient, then a sweep of it
// seeded with v) and against central differences of the gradient; its gradient against the
// first-order sweep's; the special values of Note [Zero adjoints]; and hessian's vector-mode
// sweeps against the create_graph Hessian.

#include "op_table.hpp"

#include <autodiff/autodiff.hpp>
#include <autodiff/detail/hvp.hpp>

#include <boost/test/unit_test.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

using namespace autodiff;
using tapegrad_test::op_table;
using tapegrad_test::OpInfo;

namespace {

using Fn = std::function<Var(const std::vector<Var>&)>;

struct Paths {
  std::vector<double> hv, gradient; // forward over reverse
  std::vector<double> old, first;   // create_graph + seeded sweep; first-order gradient
};

Paths both(const Fn& f, const std::vector<double>& x, const std::vector<double>& v) {
  Paths out;
  {
    Tape tape;
    const std::vector<Var> xs(x.begin(), x.end());
    const Var y = f(xs);
    detail::HvpResult r = detail::forward_over_reverse("hvp", y, xs, v);
    out.hv = std::move(r.hv);
    out.gradient = std::move(r.gradient);
    out.first = gradient(y, xs);
  }
  {
    Tape tape;
    const std::vector<Var> xs(x.begin(), x.end());
    const std::vector<Var> g = grad(f(xs), xs, {.create_graph = true});
    out.old = gradient(g, v, xs);
  }
  return out;
}

bool same_value(double a, double b) { return (std::isnan(a) && std::isnan(b)) || a == b; }
// Equal within rounding: the two paths sum the same terms in different orders.
bool close(double a, double b, double rel = 1e-12) {
  if (!std::isfinite(a) || !std::isfinite(b)) return same_value(a, b);
  return std::fabs(a - b) <= rel * std::max({1.0, std::fabs(a), std::fabs(b)});
}

// The functions of an op the products are taken of: the op alone (its adjoint is the constant 1),
// and two whose adjoint of the op has a tangent (x0 op, op^2 / 2).
struct Wrapped {
  std::string name;
  Fn f;
};
std::vector<Wrapped> wrappings(const OpInfo& op) {
  return {{op.name, op.f},
          {"x0 * " + op.name, [&op](const std::vector<Var>& x) { return x[0] * op.f(x); }},
          {op.name + "^2 / 2", [&op](const std::vector<Var>& x) { return 0.5 * square(op.f(x)); }}};
}

std::vector<double> direction(std::size_t n) {
  const std::vector<double> d{0.7, -1.3};
  return {d.begin(), d.begin() + static_cast<std::ptrdiff_t>(n)};
}

std::string where(const std::string& name, const std::vector<double>& p, const std::vector<double>& v) {
  return fmt::format("{} at ({}) along ({})", name, fmt::join(p, ", "), fmt::join(v, ", "));
}

using tapegrad_test::edge_points; // where partials are infinite or undefined, and non-finite operands

// (grad f(x + h v) - grad f(x - h v)) / 2h, h small against the smallest nonzero |x_i|.
std::vector<double> central_difference(const Fn& f, const std::vector<double>& x, const std::vector<double>& v) {
  // Small against the smallest nonzero |x_i| (pow(x, -1.5) near 0 bends on the scale of x), but not
  // below 1e-8: log1p and expm1 at 1e-10 bend on the scale of 1, and the rounding of the gradients
  // grows as 1/h.
  double smallest = 1;
  for (double xi : x)
    if (xi != 0) smallest = std::min(smallest, std::fabs(xi));
  const double h = 1e-5 * std::max(smallest, 1e-3);
  auto grad_at = [&](double s) {
    Tape tape;
    std::vector<Var> xs;
    for (std::size_t i = 0; i < x.size(); ++i)
      xs.push_back(x[i] + s * v[i]);
    return gradient(f(xs), xs);
  };
  const std::vector<double> up = grad_at(h), down = grad_at(-h);
  std::vector<double> out(x.size());
  for (std::size_t i = 0; i < x.size(); ++i)
    out[i] = (up[i] - down[i]) / (2 * h);
  return out;
}
// The create_graph Hessian: h[i][j] = d(dy/dx_i)/dx_j, a sweep of gradient i per row.
Matrix create_graph_hessian(const Fn& f, const std::vector<double>& x) {
  Tape tape;
  const std::vector<Var> xs(x.begin(), x.end());
  const std::vector<Var> g = grad(f(xs), xs, {.create_graph = true});
  Matrix h;
  for (const Var& gi : g)
    h.push_back(gradient(gi, xs));
  return h;
}
} // namespace

BOOST_AUTO_TEST_SUITE(hvp_forward)

BOOST_AUTO_TEST_CASE(every_op_equals_the_create_graph_path_and_the_first_order_gradient) {
  std::size_t checked = 0;
  for (const auto& op : op_table())
    for (const auto& w : wrappings(op))
      for (const auto& p : op.points) {
        const std::vector<double> v = direction(p.size());
        const Paths r = both(w.f, p, v);
        for (std::size_t i = 0; i < p.size(); ++i) {
          BOOST_TEST_CONTEXT(where(w.name, p, v) << ", component " << i) {
            BOOST_TEST(close(r.hv[i], r.old[i]), "forward over reverse " << r.hv[i] << ", create_graph " << r.old[i]);
            BOOST_TEST(same_value(r.gradient[i], r.first[i]), "gradient " << r.gradient[i] << ", first " << r.first[i]);
          }
        }
        ++checked;
      }
  BOOST_TEST(checked >= 600u);
}

BOOST_AUTO_TEST_CASE(every_op_matches_central_differences_of_the_gradient) {
  // A wrong partial derivative, or a tangent left out (of a(), r() or g()), changes H v at order 1;
  // the differences agree to about 1e-8 here.
  std::size_t checked = 0;
  for (const auto& op : op_table())
    for (const auto& w : wrappings(op))
      for (const auto& p : op.points) {
        const std::vector<double> v = direction(p.size());
        const Paths r = both(w.f, p, v);
        const std::vector<double> fd = central_difference(w.f, p, v);
        for (std::size_t i = 0; i < p.size(); ++i)
          BOOST_TEST(close(r.hv[i], fd[i], 1e-6),
                     where(w.name, p, v) << ", component " << i << ": " << r.hv[i] << ", differences " << fd[i]);
        ++checked;
      }
  BOOST_TEST(checked >= 600u);
}

BOOST_AUTO_TEST_CASE(random_compositions) {
  // Chains of 2 to 5 table ops over three inputs (as engine_test's), where tangents and dual
  // adjoints pass through several rules: against the create_graph path and central differences.
  const auto table = op_table();
  std::mt19937 rng(2024);
  std::uniform_int_distribution<std::size_t> pick(0, table.size() - 1);
  for (int trial = 0; trial < 200; ++trial) {
    std::vector<std::size_t> chain;
    for (std::size_t k = 0; k < 2 + static_cast<std::size_t>(trial % 4); ++k)
      chain.push_back(pick(rng));
    const Fn f = [&](const std::vector<Var>& x) {
      Var v = x[0];
      for (const std::size_t c : chain) {
        const auto& op = table[c];
        std::vector<Var> args;
        for (int a = 0; a < op.arity; ++a) {
          const double centre = op.points[op.points.size() / 2][static_cast<std::size_t>(a)];
          const double scale = centre == 0 ? 0.2 : 0.2 * std::fmin(1.0, std::fabs(centre));
          args.push_back(centre + scale * tanh(a == 0 ? v * x[2] + x[1] : v * x[1] + x[2]));
        }
        v = op.f(args);
      }
      return v * x[1];
    };
    const std::vector<double> p{0.3 - 0.01 * trial, 0.7, -0.2}, v{0.6, -1.1, 0.9};
    const Paths r = both(f, p, v);
    const std::vector<double> fd = central_difference(f, p, v);
    std::vector<std::string> names;
    for (const std::size_t c : chain)
      names.push_back(table[c].name);
    for (std::size_t i = 0; i < p.size(); ++i) {
      BOOST_TEST_CONTEXT(fmt::format("chain {}, component {}", fmt::join(names, " -> "), i)) {
        BOOST_TEST(close(r.hv[i], r.old[i], 1e-10), r.hv[i] << ", create_graph " << r.old[i]);
        BOOST_TEST(close(r.hv[i], fd[i], 1e-5), r.hv[i] << ", differences " << fd[i]);
        BOOST_TEST(same_value(r.gradient[i], r.first[i]));
      }
    }
  }
}

BOOST_AUTO_TEST_CASE(special_values) {
  // At the edge points (kinks, ties, poles of a derivative, +-0, +-inf, NaN): the gradient is the
  // first-order one NaN for NaN, v = 0 gives exactly 0, a zero adjoint (op * 0 + sum x) lets nothing
  // of the op through, and H v equals the create_graph path's wherever the Hessian there is finite
  // and symmetric. Where it is not, the two may differ: that path takes H v as the sum of v_k times
  // the gradient of component k (columns), this one as the derivative of each component along v
  // (rows), and Note [Zero adjoints] drops non-finite terms from a row (Note [Forward over reverse]).
  std::size_t regular = 0;
  std::vector<std::string> singular_differences;
  for (const auto& op : op_table()) {
    std::vector<Wrapped> ws = wrappings(op);
    ws.push_back({op.name + " * 0 + sum x", [&op](const std::vector<Var>& x) {
                    Var y = op.f(x) * 0.0;
                    for (const Var& xi : x)
                      y = y + xi;
                    return y;
                  }});
    for (std::size_t k = 0; k < ws.size(); ++k) {
      const Wrapped& w = ws[k];
      const bool masked = k + 1 == ws.size(); // op * 0 + sum x
      for (const auto& p : edge_points(op, false)) {
        bool finite_symmetric = std::all_of(p.begin(), p.end(), [](double x) { return std::isfinite(x); });
        if (finite_symmetric) {
          const Matrix h = create_graph_hessian(w.f, p);
          for (std::size_t i = 0; i < p.size(); ++i)
            for (std::size_t j = 0; j < p.size(); ++j)
              finite_symmetric = finite_symmetric && std::isfinite(h[i][j]) && close(h[i][j], h[j][i]);
        }
        for (const bool zero : {false, true}) {
          const std::vector<double> v = zero ? std::vector<double>(p.size(), 0.0) : direction(p.size());
          const Paths r = both(w.f, p, v);
          for (std::size_t i = 0; i < p.size(); ++i) {
            BOOST_TEST_CONTEXT(where(w.name, p, v) << ", component " << i) {
              BOOST_TEST(same_value(r.gradient[i], r.first[i]),
                         "gradient " << r.gradient[i] << ", first " << r.first[i]);
              if (zero) BOOST_TEST(r.hv[i] == 0.0, "H v " << r.hv[i]);
              if (masked) BOOST_TEST(same_value(r.hv[i], r.old[i]), "H v " << r.hv[i] << ", create_graph " << r.old[i]);
              if (masked && std::all_of(p.begin(), p.end(), [](double x) { return std::isfinite(x); }))
                BOOST_TEST(r.hv[i] == 0.0, "H v " << r.hv[i]);
              if (finite_symmetric) {
                BOOST_TEST(close(r.hv[i], r.old[i]), "H v " << r.hv[i] << ", create_graph " << r.old[i]);
                ++regular;
              } else if (!close(r.hv[i], r.old[i])) {
                singular_differences.push_back(
                    fmt::format("{}, component {}: {}, create_graph {}", where(w.name, p, v), i, r.hv[i], r.old[i]));
              }
            }
          }
        }
      }
    }
  }
  BOOST_TEST(regular >= 1000u);
  BOOST_TEST_MESSAGE(fmt::format("{} components at singular points differ from the create_graph path:\n{}",
                                 singular_differences.size(), fmt::join(singular_differences, "\n")));
}

BOOST_AUTO_TEST_CASE(kinks_and_ties_as_the_create_graph_path) {
  // Exactly at the kink (relu, abs at +-0) and at ties (max, min): the rules' masks are constants,
  // so the second derivative through them is 0 on both paths, and the tie splits the adjoint.
  const auto table = op_table();
  for (const char* name : {"relu", "abs", "max", "min", "max_scalar", "min_scalar"}) {
    const auto op = std::find_if(table.begin(), table.end(), [&](const OpInfo& o) { return o.name == name; });
    BOOST_REQUIRE(op != table.end());
    const std::vector<std::vector<double>> points =
        op->arity == 2 ? std::vector<std::vector<double>>{{0.0, 0.0}, {0.0, -0.0}, {1.5, 1.5}, {-2.0, -2.0}}
                       : std::vector<std::vector<double>>{{0.0}, {-0.0}, {0.5}};
    for (const auto& w : wrappings(*op))
      for (const auto& p : points) {
        const std::vector<double> v = direction(p.size());
        const Paths r = both(w.f, p, v);
        for (std::size_t i = 0; i < p.size(); ++i)
          BOOST_TEST(close(r.hv[i], r.old[i]),
                     where(w.name, p, v) << ", component " << i << ": " << r.hv[i] << ", create_graph " << r.old[i]);
      }
  }
}

BOOST_AUTO_TEST_CASE(a_zero_adjoint_keeps_its_tangent) {
  // y = z op(x) at z = 0: the op's adjoint is (0, v_z). d/dx of the gradient along v is op'(x) v_z
  // wherever op' is finite (Note [Zero adjoints]: the contribution is dropped only where it is not).
  for (const auto& op : op_table())
    for (const auto& p : edge_points(op, true)) {
      auto f = [&op](const std::vector<Var>& x) { return x.back() * op.f(x); };
      std::vector<double> at = p;
      at.push_back(0.0); // z
      std::vector<double> v(at.size(), 0.0);
      v.back() = 1.5;
      std::vector<double> partial;
      {
        Tape tape;
        const std::vector<Var> xs(p.begin(), p.end());
        partial = gradient(op.f(xs), xs);
      }
      const Paths r = both(f, at, v);
      for (std::size_t i = 0; i < p.size(); ++i) {
        if (!std::isfinite(partial[i])) continue;
        BOOST_TEST(close(r.hv[i], 1.5 * partial[i]),
                   where(op.name, p, v) << ", d/dx" << i << ": " << r.hv[i] << ", 1.5 op' " << 1.5 * partial[i]);
        BOOST_TEST(close(r.hv[i], r.old[i]), where(op.name, p, v) << ": create_graph " << r.old[i]);
      }
    }
}

BOOST_AUTO_TEST_CASE(empty_constant_and_unused_variables) {
  // No variables; f constant in x; f independent of some x; y a variable itself.
  BOOST_TEST(hvp([](const std::vector<Var>&) { return Var(2.0) * 3.0; }, std::vector<double>{}, std::vector<double>{})
                 .empty());
  const std::vector<double> x{1.0, 2.0, 3.0}, v{1.0, 1.0, 1.0};
  for (double h : hvp([](const std::vector<Var>&) { return Var(2.0) * 3.0; }, x, v))
    BOOST_TEST(h == 0.0);
  const std::vector<double> only0 = hvp([](const std::vector<Var>& a) { return square(a[0]); }, x, v);
  BOOST_TEST(only0 == (std::vector<double>{2.0, 0.0, 0.0}), boost::test_tools::per_element());
  const std::vector<double> identity = hvp([](const std::vector<Var>& a) { return a[1]; }, x, v);
  BOOST_TEST(identity == (std::vector<double>{0.0, 0.0, 0.0}), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(a_variable_given_twice_gets_the_sum_of_its_components) {
  // As the create_graph path's sweep seeded with v: the direction on x is v0 + v1.
  Tape tape;
  const Var x = 1.5;
  const Var y = x * x * x;
  const std::vector<Var> xs{x, x};
  const std::vector<double> v{1.0, 2.0};
  const detail::HvpResult r = detail::forward_over_reverse("hvp", y, xs, v);
  const std::vector<Var> g = grad(y, xs, {.create_graph = true});
  const std::vector<double> old = gradient(g, v, xs);
  BOOST_TEST(r.hv[0] == 6 * 1.5 * 3.0);
  BOOST_TEST(r.hv == old, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(errors_name_the_function_and_the_sizes) {
  Tape tape;
  const Var x = 1.0;
  const Var s = x * 2.0;
  const Var y = s * s;
  auto says = [](std::initializer_list<std::string_view> words) {
    return [words](const Error& e) {
      const std::string m = e.what();
      return std::all_of(words.begin(), words.end(),
                         [&](std::string_view w) { return m.find(w) != std::string::npos; });
    };
  };
  const std::vector<Var> one{x}, intermediate{s};
  BOOST_CHECK_EXCEPTION(detail::forward_over_reverse("hvp", y, one, std::vector<double>{1.0, 2.0}), Error,
                        says({"hvp", "1 variables", "2 components"}));
  BOOST_CHECK_EXCEPTION(detail::forward_over_reverse("hvp", y, intermediate, std::vector<double>{1.0}), Error,
                        says({"hvp", "not a leaf", "mul_scalar"}));
  Var other;
  {
    Tape inner;
    other = Var(1.0);
  }
  const std::vector<Var> foreign{other};
  BOOST_CHECK_THROW(detail::forward_over_reverse("hvp", y, foreign, std::vector<double>{1.0}), Error);
  BOOST_CHECK_EXCEPTION(
      hvp([](const std::vector<Var>& a) { return a[0]; }, std::vector<double>{1.0, 2.0}, std::vector<double>{1.0}),
      Error, says({"hvp", "2", "1"}));
}

BOOST_AUTO_TEST_CASE(hessian_in_vector_mode_equals_the_create_graph_hessian) {
  // Every op of the table at its points, and functions of more variables than one sweep's lanes
  // (several sweeps, the last one partly filled).
  std::size_t checked = 0;
  auto compare = [&](const std::string& name, const Fn& f, const std::vector<double>& p) {
    const Matrix want = create_graph_hessian(f, p);
    const Matrix got = hessian(f, p);
    BOOST_REQUIRE_EQUAL(got.size(), p.size());
    for (std::size_t i = 0; i < p.size(); ++i)
      for (std::size_t j = 0; j < p.size(); ++j)
        BOOST_TEST(close(got[i][j], want[i][j]), fmt::format("{} at ({}), h[{}][{}]: {}, create_graph {}", name,
                                                             fmt::join(p, ", "), i, j, got[i][j], want[i][j]));
    ++checked;
  };
  for (const auto& op : op_table())
    for (const auto& w : wrappings(op))
      for (const auto& p : op.points)
        compare(w.name, w.f, p);
  // 1 variable: one lane; 2, 3 and 7 variables: one sweep of 8 lanes, some idle; then 8 lanes,
  // straddling 1, 2 and 3 sweeps.
  static_assert(detail::hessian_lanes == 8);
  for (std::size_t n : {1u, 2u, 3u, 7u, 8u, 9u, 17u, 24u}) {
    std::vector<double> p(n);
    for (std::size_t i = 0; i < n; ++i)
      p[i] = 0.9 * std::sin(1.3 * static_cast<double>(i) + 0.2);
    auto f = [](const std::vector<Var>& x) {
      Var s = exp(0.3 * x[0]) * x.back();
      for (std::size_t i = 0; i + 1 < x.size(); ++i)
        s = s + 100.0 * square(x[i + 1] - square(x[i])) + square(1.0 - x[i]) + tanh(x[i] * x[x.size() - 1 - i]);
      return s;
    };
    compare(fmt::format("composite, n = {}", n), f, p);
  }
  BOOST_TEST(checked >= 600u);
}

BOOST_AUTO_TEST_CASE(threads_each_have_their_own_scratch) {
  // The sweep's scratch is per thread: two threads running hvp at once on different sizes get what
  // one thread gets.
  auto f = [](const std::vector<Var>& x) {
    Var s = x[0] * 0.0;
    for (std::size_t i = 0; i + 1 < x.size(); ++i)
      s = s + 100.0 * square(x[i + 1] - square(x[i])) + square(1.0 - x[i]) + sin(x[i] * x[i + 1]);
    return s;
  };
  auto point = [](std::size_t n, double scale) {
    std::vector<double> p(n);
    for (std::size_t i = 0; i < n; ++i)
      p[i] = scale * std::sin(0.7 * static_cast<double>(i) + 0.3);
    return p;
  };
  const std::vector<double> xa = point(300, 1.2), va = point(300, -0.5), xb = point(2000, 0.8), vb = point(2000, 1.1);
  const std::vector<double> want_a = hvp(f, xa, va), want_b = hvp(f, xb, vb);
  std::vector<double> got_a, got_b;
  {
    std::thread ta([&] {
      for (int k = 0; k < 20; ++k)
        got_a = hvp(f, xa, va);
    });
    std::thread tb([&] {
      for (int k = 0; k < 5; ++k)
        got_b = hvp(f, xb, vb);
    });
    ta.join();
    tb.join();
  }
  BOOST_TEST(got_a == want_a, boost::test_tools::per_element());
  BOOST_TEST(got_b == want_b, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_SUITE_END()
