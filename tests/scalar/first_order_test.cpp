// First-order tapes (docs/design.md, "Note [First-order tapes]"): a statement stores its partial
// derivatives, computed while recording by the rules of rules.hpp, and the sweep multiplies and adds.
// Gradients must equal the default tape's (bit for bit for one-op statements, to rounding for longer
// ones), follow Note [Zero adjoints] inside a statement and across statements, and agree with
// central differences; what needs the ops (create_graph, nodes, to_dot) must say so.

#include "op_table.hpp"

#include <autodiff/autodiff.hpp>
#include <autodiff/dot.hpp>

#include <boost/test/unit_test.hpp>
#include <fmt/format.h>

#include <cmath>
#include <limits>
#include <string>
#include <utility>
#include <vector>

using namespace autodiff;
using tapegrad_test::op_table;

namespace {
constexpr double inf = std::numeric_limits<double>::infinity();
constexpr TapeOptions first_order{.higher_order = false};

bool same_value(double a, double b) { return (std::isnan(a) && std::isnan(b)) || a == b; }
bool close(double a, double b, double tol) {
  if (std::isnan(a) || std::isnan(b) || std::isinf(a) || std::isinf(b)) return same_value(a, b);
  return std::fabs(a - b) <= tol * std::max({1.0, std::fabs(a), std::fabs(b)});
}

// The gradient of f at p recorded on a tape with the given options.
template <class F> std::vector<double> gradient_on(TapeOptions options, F f, const std::vector<double>& p) {
  Tape tape(options);
  const std::vector<Var> x(p.begin(), p.end());
  const Var y = f(x);
  return gradient(y, x);
}

// Multi-op statements: every rule form (unary, with a constant, binary) applied to expressions, a
// Var read twice in one statement, constants on either side. Each is one statement on the tape.
struct Composite {
  std::string name;
  std::function<Var(const std::vector<Var>&)> f;
  std::function<double(const std::vector<double>&)> plain; // the same template with double
};

template <class T> T c_exp_sin(const T& a, const T& b) { return exp(a * b) + sin(a - b) * 2.0; }
template <class T> T c_norm(const T& a, const T& b) { return sqrt(square(a) + square(b)) / (1.0 + abs(a)); }
template <class T> T c_pow_atan2(const T& a, const T& b) { return pow(a * a + 1.0, b) - atan2(a + b, b - 2.0 * a); }
template <class T> T c_smooth(const T& a, const T& b) {
  return tanh(sigmoid(a) * softplus(b)) - log1p(square(a)) + max(a, b * 0.5) - min(a - b, 0.25);
}
template <class T> T c_special(const T& a, const T& b) { return hypot(a * b, a / b) + cbrt(a - b) + erf(a) * erfc(b); }
template <class T> T c_hyperbolic(const T& a, const T& b) {
  return asinh(a * b) + atan(a / b) + cosh(a) / sinh(b + 3.0) + expm1(a) * tan(b * 0.5);
}
template <class T> T c_constants(const T& a, const T& b) {
  return (2.5 - a) * (0.3 / (a * b)) + pow(2.5, a * b) + relu(a - b) - -(a / 4.0) + pow(b * b + 0.5, 1.5);
}
template <class T> T c_auto(const T& a, const T& b) { // an intermediate kept with auto, used twice
  auto t = a * b - 1.0;
  return t * t + sin(t) / b;
}

std::vector<Composite> composites() {
  std::vector<Composite> out;
#define TAPEGRAD_COMPOSITE(fn)                                                                                         \
  out.push_back({#fn, [](const std::vector<Var>& x) { return Var(fn(x[0], x[1])); },                                   \
                 [](const std::vector<double>& x) { return fn(x[0], x[1]); }});
  TAPEGRAD_COMPOSITE(c_exp_sin)
  TAPEGRAD_COMPOSITE(c_norm)
  TAPEGRAD_COMPOSITE(c_pow_atan2)
  TAPEGRAD_COMPOSITE(c_smooth)
  TAPEGRAD_COMPOSITE(c_special)
  TAPEGRAD_COMPOSITE(c_hyperbolic)
  TAPEGRAD_COMPOSITE(c_constants)
  TAPEGRAD_COMPOSITE(c_auto)
#undef TAPEGRAD_COMPOSITE
  return out;
}
const std::vector<std::vector<double>> composite_points{{0.7, 1.3}, {-0.4, 2.1}, {1.9, -0.8}, {0.35, 0.6}};
} // namespace

BOOST_AUTO_TEST_SUITE(first_order_tapes)

BOOST_AUTO_TEST_CASE(every_op_gives_the_default_tapes_gradient_bit_for_bit) {
  // One op is one statement, and its partial is the rule's contribution for an adjoint of 1, so the
  // sweep adds exactly what the default tape's does. Special values included: NaN and inf operands,
  // the points where a partial is infinite, and the op under a zero adjoint (y = op(x) * 0 + sum x).
  std::size_t checked = 0;
  for (const auto& op : op_table()) {
    std::vector<std::vector<double>> points = op.points;
    for (auto& p : tapegrad_test::edge_points(op))
      points.push_back(std::move(p));
    for (const auto& p : points)
      for (const bool zero : {false, true}) {
        const auto f = [&](const std::vector<Var>& x) {
          Var y = op.f(x);
          if (zero) {
            y = y * 0.0;
            for (const Var& xi : x)
              y = y + xi;
          }
          return y;
        };
        const auto want = gradient_on({}, f, p);
        const auto got = gradient_on(first_order, f, p);
        for (std::size_t i = 0; i < p.size(); ++i) {
          BOOST_TEST(same_value(got[i], want[i]), fmt::format("{} at ({}), zero adjoint {}: d/dx{} {} vs {}", op.name,
                                                              fmt::join(p, ", "), zero, i, got[i], want[i]));
          ++checked;
        }
      }
  }
  BOOST_TEST(checked > 1000u);
}

BOOST_AUTO_TEST_CASE(multi_op_statements_match_the_default_tape_and_central_differences) {
  for (const auto& c : composites()) {
    for (const auto& p : composite_points) {
      {
        Tape tape(first_order);
        const std::vector<Var> x(p.begin(), p.end());
        BOOST_TEST(c.f(x).value() == c.plain(p), c.name);
      }
      const auto want = gradient_on({}, c.f, p);
      const auto got = gradient_on(first_order, c.f, p);
      for (std::size_t i = 0; i < p.size(); ++i) {
        // The partials are products taken in another order than the default sweep's: rounding.
        BOOST_TEST(close(got[i], want[i], 1e-14),
                   fmt::format("{} at ({}): d/dx{} {} vs {}", c.name, fmt::join(p, ", "), i, got[i], want[i]));
        // Central differences, independent of the rules: a wrong partial changes the result at order 1.
        const double h = 1e-6;
        std::vector<double> up = p, down = p;
        up[i] += h;
        down[i] -= h;
        const double fd = (c.plain(up) - c.plain(down)) / (2 * h);
        BOOST_TEST(close(got[i], fd, 1e-6), fmt::format("{} at ({}): d/dx{} {} vs central difference {}", c.name,
                                                        fmt::join(p, ", "), i, got[i], fd));
      }
    }
  }
}

BOOST_AUTO_TEST_CASE(a_zero_adjoint_inside_a_statement_stops_an_infinite_partial) {
  // sqrt, log, asin, cbrt, atanh and 0/0 have infinite or undefined partials at these points; the
  // statement multiplies them by 0 before adding x, so dy/dx = 1 (Note [Zero adjoints]), as on the
  // default tape. (e, a leaf holding 0, makes 0/0 without a constant.)
  using Case = std::function<Var(const Var&, const Var&)>;
  const std::vector<std::pair<std::string, Case>> cases{
      {"sqrt", [](const Var& x, const Var&) { return sqrt(x) * 0.0 + x; }},
      {"log", [](const Var& x, const Var&) { return log(x) * 0.0 + x; }},
      {"cbrt", [](const Var& x, const Var&) { return cbrt(x) * 0.0 + x; }},
      {"div", [](const Var& x, const Var& e) { return (x + e) / (x - e) * 0.0 + x; }},
      {"asin", [](const Var& x, const Var&) { return asin(x + 1.0) * 0.0 + x; }},
      {"atanh", [](const Var& x, const Var&) { return atanh(x + 1.0) * 0.0 + x; }},
      {"pow", [](const Var& x, const Var&) { return pow(x, 0.5) * 0.0 + x; }},
  };
  for (const auto& [name, case_f] : cases) {
    const Case& f = case_f; // clang 14 cannot capture a structured binding
    const auto g = [&](const std::vector<Var>& x) { return f(x[0], x[1]); };
    const std::vector<double> at{0.0, 0.0};
    {
      Tape tape(first_order);
      const Var x = 0.0, e = 0.0;
      (void)f(x, e);
      BOOST_TEST(tape.size() == 3u, name); // the leaves and one statement
    }
    BOOST_TEST(gradient_on(first_order, g, at)[0] == 1.0, name);
    BOOST_TEST(gradient_on({}, g, at)[0] == 1.0, name);
  }
  // Across statements: s's adjoint is 0, so the sweep skips it.
  Tape tape(first_order);
  const Var x = 0.0;
  const Var s = sqrt(x);
  const Var y = s * 0.0 + x;
  BOOST_TEST(gradient(y, {x})[0] == 1.0);
  // An op that contributes nothing (relu left of 0) contributes nothing under an infinite adjoint
  // too, not inf * 0 = NaN: within a statement and across statements, as on the default tape.
  {
    const Var u = -1.0;
    const Var r = relu(u);
    const Var within = relu(u) * inf + u;
    const Var across = r * inf + u;
    BOOST_TEST(gradient(within, {u})[0] == 1.0);
    BOOST_TEST(gradient(across, {u})[0] == 1.0);
    Tape reference;
    const Var ru = -1.0;
    const Var rr = relu(ru);
    BOOST_TEST(gradient(Var(rr * inf + ru), {ru})[0] == 1.0);
  }
  // And an infinite partial under a non-zero adjoint stays infinite, as on the default tape.
  const Var z = x * log(x);
  BOOST_TEST(gradient(z, {x})[0] == -inf);
  BOOST_TEST(gradient_on({}, [](const std::vector<Var>& v) { return Var(v[0] * log(v[0])); }, {0.0})[0] == -inf);
}

BOOST_AUTO_TEST_CASE(seeds_intermediates_and_repeated_sweeps) {
  Tape tape(first_order);
  const Var a = 1.5, b = -0.5;
  const Var u = a * b + sin(a);
  const Var v = exp(u) / b;
  const Var w = u - v * 2.0;
  w.backward();
  const double ga = a.grad(), gu = u.grad();
  // dw/du = 1 - 2 exp(u) / b, and u is an intermediate value: its adjoint is readable.
  BOOST_TEST(close(gu, 1.0 - 2.0 * std::exp(u.value()) / b.value(), 1e-15));
  BOOST_TEST(close(ga, gu * (b.value() + std::cos(a.value())), 1e-15));
  w.backward(); // recomputes, does not accumulate
  BOOST_TEST(a.grad() == ga);
  // A vector-Jacobian product seeded with (2, -1) on (v, w).
  const std::vector<Var> ys{v, w};
  const std::vector<double> seeds{2.0, -1.0};
  const std::vector<Var> xs{a, b};
  const auto vjp = gradient(ys, seeds, xs);
  Tape reference;
  const Var ra = 1.5, rb = -0.5;
  const Var ru = ra * rb + sin(ra);
  const Var rv = exp(ru) / rb;
  const Var rw = ru - rv * 2.0;
  const std::vector<Var> rys{rv, rw}, rxs{ra, rb};
  const auto want = gradient(rys, seeds, rxs);
  for (std::size_t i = 0; i < 2; ++i)
    BOOST_TEST(close(vjp[i], want[i], 1e-14));
}

BOOST_AUTO_TEST_CASE(the_tape_holds_one_byte_per_entry_and_twelve_per_partial) {
  Tape tape(first_order);
  BOOST_TEST(!tape.higher_order());
  const Var a = 1.0, b = 2.0;
  const Var y = a * b + sin(a * b) * 3.0; // one statement reading a, b, a and b: two merged pairs
  BOOST_TEST(tape.size() == 3u);
  BOOST_TEST(tape.operation_count() == 1u);
  BOOST_TEST(tape.bytes_used() == 3u * 1u + 2u * (4u + 8u));
  BOOST_TEST(close(gradient(y, {a, b})[0], 2.0 + 3.0 * std::cos(2.0) * 2.0, 1e-15));
  // Re-recording after reset reuses the memory, and Vars from before the reset are refused.
  const std::size_t reserved = tape.bytes_reserved();
  tape.reset();
  const Var c = 1.0, d = 2.0;
  const Var z = c * d + sin(c * d) * 3.0;
  BOOST_TEST(close(gradient(z, {c, d})[1], 1.0 + 3.0 * std::cos(2.0), 1e-15));
  BOOST_TEST(tape.bytes_reserved() == reserved);
  BOOST_CHECK_THROW((void)Var(a * c), Error);
}

// A sum's operands have a partial of exactly 1, known from the statement's type: only their index
// is kept (4 bytes, not 12). Statements of more than 15 Vars keep every pair with its partial and
// their pair count beside them.
BOOST_AUTO_TEST_CASE(unit_partials_keep_their_operand_only) {
  Tape tape(first_order);
  const Var a = 1.5, b = 2.0, c = -3.0, d = 0.25;
  const Var y = a + b * c + d; // a and d: unit pairs; b and c: pairs with their partials
  BOOST_TEST(tape.bytes_used() == 5u * 1u + 2u * 4u + 2u * (4u + 8u));
  BOOST_TEST(gradient(y, {a, b, c, d}) == (std::vector<double>{1.0, -3.0, 2.0, 1.0}));
  const Var z = a - b + (c + 2.0); // a, c: unit; b: -1 stored
  BOOST_TEST(tape.bytes_used() == 6u * 1u + 4u * 4u + 3u * (4u + 8u));
  BOOST_TEST(gradient(z, {a, b, c, d}) == (std::vector<double>{1.0, -1.0, 1.0, 0.0}));
  // A unit pair under a zero adjoint adds zero; one under an infinite adjoint adds it.
  const Var s = a + c;
  BOOST_TEST(gradient(Var(s * 0.0), {a, c}) == (std::vector<double>{0.0, 0.0}));
  const Var e = 0.0, f = 0.0;
  const Var u = e + f;
  BOOST_TEST(gradient(Var(log(u)), {e, f}) == (std::vector<double>{inf, inf}));
}

// A Var read more than once in a statement of 2 to 8 Vars with partials gets one pair, whose
// partial is the sum of its contributions (Note [First-order tapes], "Merged pairs").
BOOST_AUTO_TEST_CASE(a_var_read_twice_in_a_statement_gets_one_pair) {
  Tape tape(first_order);
  const Var a = 1.5, b = -2.0;
  const Var y = a * a * a; // three reads of a: one pair, 3 a^2
  BOOST_TEST(tape.bytes_used() == 3u * 1u + 1u * (4u + 8u));
  BOOST_TEST(gradient(y, {a})[0] == 3.0 * 1.5 * 1.5);
  const Var z = a * b; // two Vars: two pairs
  BOOST_TEST(tape.bytes_used() == 4u * 1u + 3u * (4u + 8u));
  const Var s = a + a * b; // the unit pair of a stays apart from its pair with a partial
  BOOST_TEST(tape.bytes_used() == 5u * 1u + 1u * 4u + 5u * (4u + 8u));
  BOOST_TEST(gradient(s, {a, b}) == (std::vector<double>{1.0 + b.value(), a.value()}));
  BOOST_TEST(gradient(z, {a, b}) == (std::vector<double>{b.value(), a.value()}));
  // Nine Vars with partials (more than detail::merge_slots): every read keeps its pair.
  const Var p = a * b * a * b * a * b * a * b * a;
  BOOST_TEST(tape.bytes_used() == 6u * 1u + 1u * 4u + 14u * (4u + 8u));
  BOOST_TEST(close(gradient(p, {a})[0], 5.0 * std::pow(1.5, 4) * 16.0, 1e-15));
}

BOOST_AUTO_TEST_CASE(merged_pairs_keep_the_zero_adjoint_policy) {
  // Contributions that cancel (2 - 2) make a partial of 0, which is not stored, as any zero
  // partial: under the infinite adjoint of log at 0 the Var gets 0 where the default tape adds
  // inf * 2 - inf * 2 = NaN (Note [First-order tapes], "Merged pairs"). Under a finite adjoint both
  // give 0.
  const auto cancel = [](const std::vector<Var>& x) {
    const Var s = x[0] * 2.0 - x[0] * 2.0;
    return Var(log(s));
  };
  BOOST_TEST(gradient_on(first_order, cancel, {0.5})[0] == 0.0);
  BOOST_TEST(std::isnan(gradient_on({}, cancel, {0.5})[0]));
  const auto finite = [](const std::vector<Var>& x) { return Var(x[0] * 2.0 - x[0] * 2.0 + x[0] * x[0]); };
  BOOST_TEST(gradient_on(first_order, finite, {0.5})[0] == 1.0);
  BOOST_TEST(gradient_on({}, finite, {0.5})[0] == 1.0);
  // A read under a zero adjoint contributes nothing (not 0 * inf), and the other read of the same
  // Var still counts: log(x) * 0 + x * 2 at x = 0 has derivative 2 on both tapes.
  const auto cut = [](const std::vector<Var>& x) { return Var(log(x[0]) * 0.0 + x[0] * 2.0); };
  BOOST_TEST(gradient_on(first_order, cut, {0.0})[0] == 2.0);
  BOOST_TEST(gradient_on({}, cut, {0.0})[0] == 2.0);
  // Every read under a zero adjoint: no pair at all.
  {
    Tape tape(first_order);
    const Var x = 0.0, e = 1.0;
    const Var y = (log(x) * sqrt(x)) * 0.0 + e * e;
    BOOST_TEST(tape.bytes_used() == 3u * 1u + 1u * (4u + 8u));
    BOOST_TEST(gradient(y, {x, e}) == (std::vector<double>{0.0, 2.0}));
  }
  // Every way of filling five operand places with three Vars (243 statements, each Var read 0 to
  // 5 times) gives the default tape's gradient to rounding.
  for (int code = 0; code < 243; ++code) {
    int k[5];
    for (int j = 0, c = code; j < 5; ++j, c /= 3)
      k[j] = c % 3;
    const auto f = [&k](const std::vector<Var>& x) {
      return Var(x[k[0]] * x[k[1]] + sin(x[k[2]] - x[k[3]]) / (1.5 + square(x[k[4]])));
    };
    const std::vector<double> at{0.7, -1.3, 0.4};
    const auto got = gradient_on(first_order, f, at), want = gradient_on({}, f, at);
    for (std::size_t i = 0; i < 3; ++i)
      BOOST_TEST(close(got[i], want[i], 1e-15), fmt::format("operands {} {} {} {} {}: d/dx{} {} vs {}", k[0], k[1],
                                                            k[2], k[3], k[4], i, got[i], want[i]));
  }
}

// A statement of U unit pairs (x[0..U) summed) and K pairs with partials (x[U + j] * (j + 2)).
template <std::size_t U, std::size_t K, std::size_t I = 1, class E>
auto shaped_from(const std::vector<Var>& x, const E& e) {
  if constexpr (I == U + K)
    return e;
  else if constexpr (I < U)
    return shaped_from<U, K, I + 1>(x, e + x[I]);
  else
    return shaped_from<U, K, I + 1>(x, e + x[I] * static_cast<double>(I - U + 2));
}
template <std::size_t U, std::size_t K> Var shaped(const std::vector<Var>& x) {
  if constexpr (U > 0)
    return Var(shaped_from<U, K>(x, x[0] + 1.0)); // x[0] alone would be no statement
  else
    return Var(shaped_from<U, K>(x, x[0] * 2.0));
}

// The sweep runs entries of common shapes unrolled and the others in loops: every shape of up to
// 4 unit pairs and 5 other pairs, under an adjoint of 1.7 and of 0, gives the default tape's
// gradient bit for bit (each Var gets one contribution, an exact product), and the layout stated.
template <std::size_t U, std::size_t K> void check_shape() {
  if constexpr (U + K > 0) {
    std::vector<double> p(U + K + 1);
    for (std::size_t i = 0; i < p.size(); ++i)
      p[i] = 0.25 * static_cast<double>(i) - 0.6;
    for (const double seed : {1.7, 0.0}) {
      const auto f = [seed](const std::vector<Var>& x) {
        const Var s = shaped<U, K>(x);
        return Var(s * seed + x.back());
      };
      {
        Tape tape(first_order);
        const std::vector<Var> x(p.begin(), p.end());
        const Var s = shaped<U, K>(x);
        BOOST_TEST(tape.bytes_used() == (p.size() + 1) * 1u + U * 4u + K * (4u + 8u), fmt::format("{} {}", U, K));
        (void)s;
      }
      const auto got = gradient_on(first_order, f, p), want = gradient_on({}, f, p);
      for (std::size_t i = 0; i < p.size(); ++i)
        BOOST_TEST(got[i] == want[i], fmt::format("{} unit and {} other pairs, adjoint {}: d/dx{} {} vs {}", U, K, seed,
                                                  i, got[i], want[i]));
    }
  }
}

template <std::size_t U, std::size_t... K> void check_shapes(std::index_sequence<K...>) { (check_shape<U, K>(), ...); }

BOOST_AUTO_TEST_CASE(every_shape_of_entry_sweeps_as_the_default_tape) {
  check_shapes<0>(std::make_index_sequence<6>{});
  check_shapes<1>(std::make_index_sequence<6>{});
  check_shapes<2>(std::make_index_sequence<6>{});
  check_shapes<3>(std::make_index_sequence<6>{});
  check_shapes<4>(std::make_index_sequence<6>{});
}

template <std::size_t... I> Var wide_sum(const std::vector<Var>& x, std::index_sequence<I...>) {
  return (x[I] + ...) + x[0] * x[1]; // one statement: 20 Vars read, x[0] and x[1] twice
}

BOOST_AUTO_TEST_CASE(statements_of_more_than_fifteen_vars_and_growth_match_the_default_tape) {
  std::vector<double> p(20);
  for (std::size_t i = 0; i < p.size(); ++i)
    p[i] = 0.1 * static_cast<double>(i) - 0.7;
  const auto f = [](const std::vector<Var>& x) { return wide_sum(x, std::make_index_sequence<20>{}); };
  {
    Tape tape(first_order);
    const std::vector<Var> x(p.begin(), p.end());
    const Var y = f(x);
    BOOST_TEST(tape.bytes_used() == 21u * 1u + 4u + 22u * (4u + 8u)); // the count, then every pair
    BOOST_TEST(gradient(y, x) == gradient_on({}, f, p));
  }
  // Many statements, narrow and wide, so that the pairs' arrays grow and move several times; the
  // unit pairs (kept at the top) move with them. Then a reset reuses the memory.
  const auto chain = [&f](const std::vector<Var>& x) {
    Var s = x[0];
    for (std::size_t k = 0; k < 5000; ++k) {
      s = s + x[k % 20] * x[(k + 3) % 20] - x[(k + 7) % 20];
      if (k % 97 == 0) s = s * 0.5 + f(x) * 1e-3;
    }
    return s;
  };
  Tape tape(first_order);
  for (int round = 0; round < 2; ++round) {
    tape.reset();
    const std::vector<Var> x(p.begin(), p.end());
    const Var y = chain(x);
    const std::vector<double> got = gradient(y, x), want = gradient_on({}, chain, p);
    for (std::size_t i = 0; i < p.size(); ++i)
      BOOST_TEST(close(got[i], want[i], 1e-12), fmt::format("round {}: d/dx{} {} vs {}", round, i, got[i], want[i]));
  }
}

BOOST_AUTO_TEST_CASE(what_needs_the_ops_says_so_and_the_helpers_still_work) {
  Tape tape(first_order);
  const Var x = 0.5;
  const Var y = x * sin(x);
  const auto says = [](const Error& e, const char* what) {
    const std::string m = e.what();
    return m.find(what) != std::string::npos && m.find("first-order") != std::string::npos;
  };
  BOOST_CHECK_EXCEPTION(grad(y, {x}, {.create_graph = true}), Error, [&](const Error& e) { return says(e, "grad"); });
  BOOST_CHECK_EXCEPTION(tape.nodes(), Error, [&](const Error& e) { return says(e, "nodes"); });
  BOOST_CHECK_EXCEPTION(to_dot(y), Error, [&](const Error& e) { return says(e, "nodes"); });
  // Without create_graph, grad returns the values.
  BOOST_TEST(grad(y, {x})[0].value() == std::sin(0.5) + 0.5 * std::cos(0.5));
  // hessian and hvp record on their own (higher-order) scratch tape, and leave this one active.
  const auto f = [](const std::vector<Var>& v) { return Var(v[0] * v[0] * v[1]); };
  const std::vector<double> at{2.0, 3.0};
  BOOST_TEST(hessian(f, at)[0][1] == 4.0);
  BOOST_TEST(hvp(f, at, std::vector<double>{1.0, 0.0})[0] == 6.0);
  BOOST_TEST(&Tape::active() == &tape);
  BOOST_TEST(gradient(y, {x})[0] == std::sin(0.5) + 0.5 * std::cos(0.5));
}

BOOST_AUTO_TEST_SUITE_END()
