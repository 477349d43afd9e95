// Every op of the table: forward values against independent loops (float64 and float32), and
// gradients against finite differences (full Jacobian and the fast projection), on every listed shape.

#include "op_table.hpp"

#include <fmt/format.h>

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
