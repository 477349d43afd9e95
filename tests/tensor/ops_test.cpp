// Every op of the table: forward values against independent loops (float64 and float32), and
// gradients against finite differences (full Jacobian and the fast projection), on every listed shape.

#include "op_table.hpp"

#include <autodiff/var.hpp>

#include <fmt/format.h>

#include <functional>
#include <tuple>

using namespace autodiff;
using namespace tapegrad_test;

BOOST_AUTO_TEST_SUITE(ops)

BOOST_AUTO_TEST_CASE(table_is_broad) {
  const auto table = tensor_op_table();
  BOOST_TEST(table.size() >= 70u);
  std::size_t cases = 0;
  for (const auto& op : table)
    cases += op.shapes.size();
  BOOST_TEST(cases >= 150u);
}

BOOST_AUTO_TEST_CASE(every_rule_has_a_row) {
  // Ops covered elsewhere: leaves and custom functions (basics_test), dtype conversion (basics_test).
  BOOST_TEST(tensor_op_names().size() >= 55u);
  const std::vector<std::string> missing = ops_without_row(tensor_op_table(), {"leaf", "custom", "to"});
  BOOST_TEST(missing.empty(), "no row of the op table records " << fmt::format("{}", fmt::join(missing, ", ")));
}

BOOST_AUTO_TEST_CASE(the_completeness_check_reports_a_missing_op) {
  // Without the rows that record `max` (its own, and the infinity norm's), the `maximum` rows
  // (whose names start with "max") do not hide it.
  auto table = tensor_op_table();
  std::erase_if(table, [](const TensorOpInfo& op) {
    return op.name == "max" || op.name == "max_dim1" || op.name.starts_with("norm_inf");
  });
  const std::vector<std::string> missing = ops_without_row(table, {"leaf", "custom", "to"});
  BOOST_TEST((missing == std::vector<std::string>{"max"}), fmt::format("{}", fmt::join(missing, ", ")));
}

// The stricter half of the completeness check: each op is the output of a row of its own, so its
// value, gradient and second-order checks test it directly (docs/design.md, "Adding a tensor op").
BOOST_AUTO_TEST_CASE(every_op_is_the_output_of_a_row) {
  // Leaves, custom functions and dtype conversion are tested in basics_test, as above.
  const std::vector<std::string> missing = ops_without_own_row(tensor_op_table(), {"leaf", "custom", "to"});
  BOOST_TEST(missing.empty(), "no row of the op table outputs " << fmt::format("{}", fmt::join(missing, ", ")));
}

BOOST_AUTO_TEST_CASE(the_own_row_check_reports_an_op_used_only_inside_another_row) {
  // Without its own row, `neg` is still recorded (by the composite row below) but is no row's output.
  auto table = tensor_op_table();
  std::erase_if(table, [](const TensorOpInfo& op) { return op.name == "neg"; });
  table.push_back({"neg_inside",
                   {{Shape{3}}},
                   [](const std::vector<Tensor>& x) { return -x[0] + 1.0; },
                   [](const Vals& x, const Dims&, std::vector<std::int64_t>& out) {
                     out = {3};
                     return std::vector<double>{1 - x[0][0], 1 - x[0][1], 1 - x[0][2]};
                   }});
  BOOST_TEST(ops_without_row(table, {"leaf", "custom", "to"}).empty());
  const std::vector<std::string> missing = ops_without_own_row(table, {"leaf", "custom", "to"});
  BOOST_TEST((missing == std::vector<std::string>{"neg"}), fmt::format("{}", fmt::join(missing, ", ")));
}

// One formula per derivative: an elementwise tensor op with a scalar twin runs the scalar rule
// (rules.hpp), so its float64 gradient equals the Var gradient element for element, at kinks,
// ties, infinities and NaN too. A tensor op given a formula of its own that disagrees fails here.
BOOST_AUTO_TEST_CASE(elementwise_gradients_equal_the_scalar_engines) {
  using U = std::function<Tensor(const Tensor&)>;
  using V = std::function<Var(const Var&)>;
  const std::vector<std::tuple<std::string, U, V>> unary = {
      {"neg", [](const Tensor& a) { return -a; }, [](const Var& a) { return -a; }},
      {"exp", [](const Tensor& a) { return exp(a); }, [](const Var& a) { return exp(a); }},
      {"log", [](const Tensor& a) { return log(a); }, [](const Var& a) { return log(a); }},
      {"log1p", [](const Tensor& a) { return log1p(a); }, [](const Var& a) { return log1p(a); }},
      {"expm1", [](const Tensor& a) { return expm1(a); }, [](const Var& a) { return expm1(a); }},
      {"sqrt", [](const Tensor& a) { return sqrt(a); }, [](const Var& a) { return sqrt(a); }},
      {"square", [](const Tensor& a) { return square(a); }, [](const Var& a) { return square(a); }},
      {"abs", [](const Tensor& a) { return abs(a); }, [](const Var& a) { return abs(a); }},
      {"sin", [](const Tensor& a) { return sin(a); }, [](const Var& a) { return sin(a); }},
      {"cos", [](const Tensor& a) { return cos(a); }, [](const Var& a) { return cos(a); }},
      {"tan", [](const Tensor& a) { return tan(a); }, [](const Var& a) { return tan(a); }},
      {"tanh", [](const Tensor& a) { return tanh(a); }, [](const Var& a) { return tanh(a); }},
      {"sigmoid", [](const Tensor& a) { return sigmoid(a); }, [](const Var& a) { return sigmoid(a); }},
      {"relu", [](const Tensor& a) { return relu(a); }, [](const Var& a) { return relu(a); }},
      {"erf", [](const Tensor& a) { return erf(a); }, [](const Var& a) { return erf(a); }},
      {"softplus", [](const Tensor& a) { return softplus(a); }, [](const Var& a) { return softplus(a); }},
      {"add_scalar", [](const Tensor& a) { return a + 0.5; }, [](const Var& a) { return a + 0.5; }},
      {"rsub_scalar", [](const Tensor& a) { return 0.5 - a; }, [](const Var& a) { return 0.5 - a; }},
      {"mul_scalar", [](const Tensor& a) { return a * -1.5; }, [](const Var& a) { return a * -1.5; }},
      {"div_scalar", [](const Tensor& a) { return a / 0.5; }, [](const Var& a) { return a / 0.5; }},
      {"rdiv_scalar", [](const Tensor& a) { return 0.5 / a; }, [](const Var& a) { return 0.5 / a; }},
      {"pow_scalar 0", [](const Tensor& a) { return pow(a, 0.0); }, [](const Var& a) { return pow(a, 0.0); }},
      {"pow_scalar 2", [](const Tensor& a) { return pow(a, 2.0); }, [](const Var& a) { return pow(a, 2.0); }},
      {"pow_scalar -1.5", [](const Tensor& a) { return pow(a, -1.5); }, [](const Var& a) { return pow(a, -1.5); }},
      {"maximum_scalar", [](const Tensor& a) { return maximum(a, 0.5); }, [](const Var& a) { return max(a, 0.5); }},
      {"minimum_scalar", [](const Tensor& a) { return minimum(a, 0.5); }, [](const Var& a) { return min(a, 0.5); }},
  };
  using B = std::function<Tensor(const Tensor&, const Tensor&)>;
  using W = std::function<Var(const Var&, const Var&)>;
  const std::vector<std::tuple<std::string, B, W>> binary = {
      {"add", [](const Tensor& a, const Tensor& b) { return a + b; }, [](const Var& a, const Var& b) { return a + b; }},
      {"sub", [](const Tensor& a, const Tensor& b) { return a - b; }, [](const Var& a, const Var& b) { return a - b; }},
      {"mul", [](const Tensor& a, const Tensor& b) { return a * b; }, [](const Var& a, const Var& b) { return a * b; }},
      {"div", [](const Tensor& a, const Tensor& b) { return a / b; }, [](const Var& a, const Var& b) { return a / b; }},
      {"pow", [](const Tensor& a, const Tensor& b) { return pow(a, b); },
       [](const Var& a, const Var& b) { return pow(a, b); }},
      {"maximum", [](const Tensor& a, const Tensor& b) { return maximum(a, b); },
       [](const Var& a, const Var& b) { return max(a, b); }},
      {"minimum", [](const Tensor& a, const Tensor& b) { return minimum(a, b); },
       [](const Var& a, const Var& b) { return min(a, b); }},
  };
  const double inf = std::numeric_limits<double>::infinity(), nan = std::numeric_limits<double>::quiet_NaN();
  const std::vector<double> points = {-40, -3, -1, -0.5, -0.0, 0, 0.5, 1, 2.5, 40, 800, inf, -inf, nan};
  // Equal, or both NaN; the last bits may differ where the two are compiled differently.
  auto same = [](double got, double want) {
    return std::isnan(want) ? std::isnan(got) : got == want || std::fabs(got - want) <= 1e-14 * std::fabs(want);
  };
  for (const auto& [name, tf, vf] : unary) {
    Tape tape;
    Tensor x = from_vector(points, {static_cast<std::int64_t>(points.size())}, DType::float64);
    x.requires_grad(true);
    const std::vector<double> tg = grad(sum(tf(x)), {x})[0].to_vector();
    for (std::size_t i = 0; i < points.size(); ++i) {
      Tape t;
      const Var v = points[i];
      const double vg = gradient(vf(v), std::vector<Var>{v})[0];
      BOOST_TEST(same(tg[i], vg), name << " at " << points[i] << ": tensor " << tg[i] << ", Var " << vg);
    }
  }
  for (const auto& [name, tf, vf] : binary) {
    std::vector<double> as, bs;
    for (double p : points)
      for (double q : {-1.0, 0.0, 0.5, 2.0, inf, nan}) // 0.5 and 2: ties; 0: pow's b == 0 and a == 0
        as.push_back(p), bs.push_back(q);
    const auto n = static_cast<std::int64_t>(as.size());
    Tape tape;
    Tensor a = from_vector(as, {n}, DType::float64), b = from_vector(bs, {n}, DType::float64);
    a.requires_grad(true);
    b.requires_grad(true);
    const std::vector<Tensor> g = grad(sum(tf(a, b)), {a, b});
    const std::vector<double> ga = g[0].to_vector(), gb = g[1].to_vector();
    for (std::size_t i = 0; i < as.size(); ++i) {
      Tape t;
      const Var va = as[i], vb = bs[i];
      const std::vector<double> vg = gradient(vf(va, vb), std::vector<Var>{va, vb});
      BOOST_TEST((same(ga[i], vg[0]) && same(gb[i], vg[1])), name << " at (" << as[i] << ", " << bs[i] << "): tensor ("
                                                                  << ga[i] << ", " << gb[i] << "), Var (" << vg[0]
                                                                  << ", " << vg[1] << ")");
    }
  }
}

// softplus' is sigmoid, right up to +inf (it was exp(a - softplus(a)) = exp(inf - inf), NaN, there).
BOOST_AUTO_TEST_CASE(softplus_gradient_is_one_at_infinity_in_both_engines) {
  const double inf = std::numeric_limits<double>::infinity();
  Tape tape;
  const Var v = inf;
  BOOST_TEST(gradient(softplus(v), std::vector<Var>{v})[0] == 1.0);
  Tensor x = from_vector(std::vector<double>{inf, -inf}, {2}, DType::float64);
  x.requires_grad(true);
  BOOST_TEST(grad(sum(softplus(x)), {x})[0].to_vector() == (std::vector<double>{1.0, 0.0}));
}

BOOST_AUTO_TEST_CASE(forward_matches_reference_loops) {
  manual_seed(11);
  for (const auto& op : tensor_op_table()) {
    for (const auto& shapes : op.shapes) {
      BOOST_TEST_CONTEXT(op.name << " on " << describe(shapes)) {
        for (DType d : {DType::float64, DType::float32}) {
          Tape tape;
          const std::vector<Tensor> xs = inputs_for(op, shapes, d);
          Vals vals;
          Dims dims;
          for (const Tensor& x : xs) {
            vals.push_back(x.to_vector()); // float32 values, exactly, for the float32 pass
            dims.push_back(x.shape().vec());
          }
          std::vector<std::int64_t> out_dims;
          const std::vector<double> want = op.reference(vals, dims, out_dims);
          const Tensor y = op.f(xs);
          BOOST_TEST((y.dtype() == d));
          BOOST_TEST(y.shape().vec() == out_dims, "shape " << fmt::format("{}", y.shape()));
          check_close(y.to_vector(), want, d == DType::float64 ? 1e-12 : 2e-5, std::string(dtype_name(d)));
        }
      }
    }
  }
}

BOOST_AUTO_TEST_CASE(gradients_match_finite_differences) {
  manual_seed(12);
  for (const auto& op : tensor_op_table()) {
    for (const auto& shapes : op.shapes) {
      BOOST_TEST_CONTEXT(op.name << " on " << describe(shapes)) {
        const std::vector<Tensor> xs = inputs_for(op, shapes, DType::float64);
        Tensor w;
        {
          NoGradGuard ng;
          w = randn(op.f(xs).shape(), DType::float64); // a random reduction of the output: sum(w * y)
        }
        auto f = [&](const std::vector<Tensor>& x) { return sum(op.f(x) * w); };
        const TensorGradcheckReport full = gradcheck(f, xs, {.atol = op.gradcheck_atol});
        BOOST_TEST(full.passed, fmt::format("{}", full));
        const TensorGradcheckReport fast = gradcheck(f, xs, {.atol = op.gradcheck_atol, .fast = true});
        BOOST_TEST(fast.passed, fmt::format("{}", fast));
      }
    }
  }
}

// Every zero-size case of the table: the gradient reaches each input with that input's shape.
BOOST_AUTO_TEST_CASE(zero_size_gradients_have_the_input_shapes) {
  manual_seed(13);
  std::size_t cases = 0;
  for (const auto& op : tensor_op_table()) {
    for (const auto& shapes : op.shapes) {
      if (std::none_of(shapes.begin(), shapes.end(), [](const Shape& s) { return s.numel() == 0; })) continue;
      BOOST_TEST_CONTEXT(op.name << " on " << describe(shapes)) {
        ++cases;
        Tape tape;
        std::vector<Tensor> xs = inputs_for(op, shapes, DType::float64);
        for (Tensor& x : xs)
          x.requires_grad(true);
        const Tensor y = op.f(xs);
        const std::vector<Tensor> g = grad(sum(y * 1.0), xs);
        for (std::size_t k = 0; k < xs.size(); ++k)
          BOOST_TEST((g[k].shape() == xs[k].shape()), k << ": " << fmt::format("{}", g[k].shape()));
      }
    }
  }
  BOOST_TEST(cases >= 60u);
}

// linear with no input features is the bias alone (PyTorch: [5, 7] for each row), and its graph
// rule and its forward agree on the number of rows.
BOOST_AUTO_TEST_CASE(linear_without_input_features_is_the_bias) {
  Tape tape;
  Tensor x = zeros({2, 0}, DType::float64);
  Tensor w = zeros({2, 0}, DType::float64);
  Tensor b = tensor({5, 7}, DType::float64);
  b.requires_grad(true);
  const Tensor y = linear(x, w, b);
  BOOST_TEST(y.shape() == (Shape{2, 2}));
  BOOST_TEST(y.to_vector() == (std::vector<double>{5, 7, 5, 7}));
  BOOST_TEST(grad(sum(y), {b})[0].to_vector() == (std::vector<double>{2, 2}));
}

BOOST_AUTO_TEST_SUITE_END()
