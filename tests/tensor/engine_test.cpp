// The engine's contract under sharing and tape lifetime: leaves used on several tapes, gradients
// that never share storage, the graph freed by backward(), and requires_grad as a property of the
// tensor. Each case here gave a silently wrong number (or grew memory without bound) before.

#include "helpers.hpp"

#include <autodiff/tensor_derivatives.hpp>
#include <autodiff/tensor_gradcheck.hpp>

using namespace autodiff;
using namespace tapegrad_test;

BOOST_AUTO_TEST_SUITE(engine)

// ---- a leaf used on several tapes ------------------------------------------------------------------
BOOST_AUTO_TEST_CASE(leaf_used_on_a_nested_tape_keeps_its_node_on_the_outer_one) {
  Tensor w = full({}, 1.0, DType::float64);
  w.requires_grad(true);
  Tape outer;
  const Tensor y = w * 2.0;
  {
    Tape inner;
    const Tensor z = w * 3.0;
    BOOST_TEST(grad(z, {w})[0].item() == 3.0);
  }
  const Tensor y2 = w * 4.0;
  BOOST_TEST(grad(y + y2, {w})[0].item() == 6.0); // was 4: the outer tape had two nodes for w
}

BOOST_AUTO_TEST_CASE(leaf_used_inside_a_hessian_closure_and_outside) {
  Tensor a = full({}, 3.0, DType::float64);
  a.requires_grad(true);
  Tape outer;
  const Tensor before = a * a; // d/da = 2a = 6
  // The closure uses `a` as a leaf of its own (tensor_derivatives.hpp allows it), on the scratch tape.
  const Tensor h = hessian([&](const Tensor& x) { return sum(a * x * x); }, full({2}, 1.0, DType::float64));
  BOOST_TEST(h.to_vector() == (std::vector<double>{6, 0, 0, 6}));
  const Tensor after = a * 5.0;
  BOOST_TEST(grad(before + after, {a}, {.retain_graph = true})[0].item() == 11.0);
  // And backward() accumulates into the one slot from both uses.
  (before + after).backward();
  BOOST_TEST(a.grad().item() == 11.0);
}

BOOST_AUTO_TEST_CASE(leaf_used_on_two_live_tapes_alternately) {
  Tensor w = tensor({1.0, 2.0}, DType::float64);
  w.requires_grad(true);
  auto t1 = std::make_unique<Tape>();
  const Tensor y1 = sum(w * w); // on t1
  Tensor y2;
  {
    Tape t2;
    y2 = sum(w * 3.0);
    const Tensor y2b = y2 + sum(w); // w looked up again on t2
    BOOST_TEST(grad(y2b, {w})[0].to_vector() == (std::vector<double>{4, 4}));
  }
  const Tensor y1b = y1 + sum(w * 10.0); // back on t1: w's node there is still the first one
  BOOST_TEST(grad(y1b, {w})[0].to_vector() == (std::vector<double>{12, 14}));
}

// ---- gradients never alias ---------------------------------------------------------------------------
BOOST_AUTO_TEST_CASE(leaves_never_share_a_gradient_buffer) {
  Tensor p1 = tensor({1, 2, 3, 4}, DType::float64);
  Tensor p2 = tensor({{1, 1}, {1, 1}}, DType::float64);
  p1.requires_grad(true);
  p2.requires_grad(true);
  sum(reshape(p1, {2, 2}) + p2).backward(); // add passes one adjoint to both, reshape a view of it
  Tensor g1 = p1.grad();
  g1.mutable_data<double>()[0] = 100; // in place, as clip_grad_norm_ does
  BOOST_TEST(p2.grad().to_vector() == (std::vector<double>{1, 1, 1, 1}));
  BOOST_TEST(p1.grad().to_vector() == (std::vector<double>{100, 1, 1, 1}));
}

BOOST_AUTO_TEST_CASE(a_leaf_gradient_does_not_alias_the_seed_or_a_retained_gradient) {
  Tensor p = tensor({1, 2}, DType::float64);
  p.requires_grad(true);
  Tensor seed = tensor({5, 6}, DType::float64);
  (p * 1.0).backward(seed);
  p.grad().mutable_data<double>()[0] = -1;
  BOOST_TEST(seed.to_vector() == (std::vector<double>{5, 6}));

  Tensor q = tensor({1, 2}, DType::float64);
  q.requires_grad(true);
  Tensor mid = q + 0.0;
  mid.retain_grad();
  sum(mid).backward();
  mid.grad().mutable_data<double>()[0] = 42;
  BOOST_TEST(q.grad().to_vector() == (std::vector<double>{1, 1}));
}

BOOST_AUTO_TEST_CASE(functional_gradients_never_share_storage) {
  Tensor p1 = tensor({1, 2, 3, 4}, DType::float64);
  Tensor p2 = tensor({{1, 1}, {1, 1}}, DType::float64);
  p1.requires_grad(true);
  p2.requires_grad(true);
  for (const bool create_graph : {false, true}) {
    std::vector<Tensor> g = grad(sum(reshape(p1, {2, 2}) + p2), {p1, p2, p1}, {.create_graph = create_graph});
    g[0].detach().mutable_data<double>()[0] = 100;
    BOOST_TEST(g[1].to_vector() == (std::vector<double>{1, 1, 1, 1}));
    BOOST_TEST(g[2].to_vector() == (std::vector<double>{1, 1, 1, 1}));
  }
}

// ---- the graph is freed by backward() ---------------------------------------------------------------
BOOST_AUTO_TEST_CASE(backward_frees_the_graph_unless_asked_to_retain_it) {
  Tensor w = tensor({1, 2}, DType::float64);
  w.requires_grad(true);
  const Tensor h = w * w;
  const Tensor loss = sum(h);
  loss.backward({.retain_graph = true});
  loss.backward(); // the second sweep works, and frees
  BOOST_TEST(w.grad().to_vector() == (std::vector<double>{4, 8}));
  const std::string e = error_of([&] { loss.backward(); });
  BOOST_TEST(contains(e, "backward: tensor of shape []"), e);
  BOOST_TEST(contains(e, "already freed"), e);
  BOOST_TEST(contains(e, "retain_graph"), e);
  BOOST_TEST(contains(error_of([&] { (void)exp(h); }), "exp: tensor of shape [2]"));
  // Values stay readable, and detach() gives a constant to compute with.
  BOOST_TEST(h.to_vector() == (std::vector<double>{1, 4}));
  BOOST_TEST(exp(h.detach()).to_vector()[0] == std::exp(1.0));
  // grad() frees too, except with create_graph (PyTorch's default) or retain_graph.
  const Tensor y = sum(w * w * w);
  (void)grad(y, {w}, {.retain_graph = true});
  BOOST_TEST(grad(y, {w})[0].to_vector() == (std::vector<double>{3, 12}));
  BOOST_TEST(contains(error_of([&] { (void)grad(y, {w}); }), "already freed"));
  const Tensor z = sum(w * w * w);
  const Tensor gz = grad(z, {w}, {.create_graph = true})[0];
  BOOST_TEST(grad(sum(gz), {w})[0].to_vector() == (std::vector<double>{6, 12}));
}

BOOST_AUTO_TEST_CASE(a_training_loop_without_tape_calls_runs_in_flat_memory) {
  manual_seed(7);
  Tensor w1 = randn({16, 8}, DType::float64) * 0.3, w2 = randn({1, 16}, DType::float64) * 0.3;
  w1 = w1.detach();
  w2 = w2.detach();
  w1.requires_grad(true);
  w2.requires_grad(true);
  const Tensor x = randn({32, 8}, DType::float64), t = randn({32, 1}, DType::float64);
  TensorMemoryStats first{}, last{};
  for (int step = 0; step < 300; ++step) {
    w1.zero_grad();
    w2.zero_grad();
    const Tensor loss = mse_loss(linear(tanh(linear(x, w1)), w2), t);
    loss.backward();
    {
      NoGradGuard no_grad;
      for (Tensor* p : {&w1, &w2}) {
        auto v = p->mutable_data<double>();
        auto g = p->grad().data<double>();
        for (std::size_t i = 0; i < v.size(); ++i)
          v[i] -= 0.05 * g[i];
      }
    }
    if (step == 2) first = tensor_memory_stats();
    if (step == 299) last = tensor_memory_stats();
  }
  // Before backward() freed the graph, every step's saved tensors stayed alive: 300 steps of them.
  BOOST_TEST(last.heap_allocations == first.heap_allocations);
  BOOST_TEST(last.cached_bytes == first.cached_bytes);
}

// ---- requires_grad belongs to the tensor ----------------------------------------------------------------
BOOST_AUTO_TEST_CASE(requires_grad_false_is_seen_through_every_copy) {
  Tensor w = tensor({1, 2}, DType::float64);
  w.requires_grad(true);
  Tensor copy = w; // what parameters() hands out
  copy.requires_grad(false);
  BOOST_TEST(!w.requires_grad());
  Tensor b = tensor({3, 4}, DType::float64);
  b.requires_grad(true);
  sum(w * b).backward();
  BOOST_TEST(!w.grad().defined()); // frozen: a constant of the graph
  BOOST_TEST(b.grad().to_vector() == (std::vector<double>{1, 2}));
  w.requires_grad(true); // thawed through the other handle
  BOOST_TEST(copy.requires_grad());
  sum(w * b).backward();
  BOOST_TEST(copy.grad().to_vector() == (std::vector<double>{3, 4}));
  // Frozen everywhere: an op on frozen leaves alone records nothing.
  copy.requires_grad(false);
  BOOST_TEST(!(w * 2.0).requires_grad());
}

// ---- narrow counts never wrap ------------------------------------------------------------------------
BOOST_AUTO_TEST_CASE(a_custom_function_of_255_inputs_is_an_error_not_a_wrapped_count) {
  // It saves its 255 inputs and its output: one more than a node's count of saved tensors holds.
  std::vector<Tensor> xs;
  for (int k = 0; k < 255; ++k)
    xs.push_back(full({}, 1.0, DType::float64).requires_grad(true));
  const CustomFunction many{
      "many", [](const std::vector<Tensor>& v) { return v[0] * 1.0; },
      [](const Tensor& g, const std::vector<Tensor>& v, const Tensor&) { return std::vector<Tensor>(v.size(), g); }};
  const std::string e = error_of([&] { (void)autodiff::apply(many, xs); });
  BOOST_TEST(contains(e, "custom: at most 255 tensors can be saved for one node"), e);
  xs.pop_back();
  BOOST_TEST(grad(autodiff::apply(many, xs), {xs[0]})[0].item() == 1.0);
}

// ---- recording while a create_graph rule reads its node (Note [Stable records]) -------------------
BOOST_AUTO_TEST_CASE(a_custom_backward_that_applies_custom_functions_differentiates_again) {
  // outer(x) = x^3; its backward is g * inner(x) with inner(x) = 3 x^2 a custom function too, so
  // under create_graph the rule appends custom functions (40 of them: the record's list grows)
  // while its own one is running.
  const CustomFunction inner{
      "inner", [](const std::vector<Tensor>& v) { return 3.0 * square(v[0]); },
      [](const Tensor& g, const std::vector<Tensor>& v, const Tensor&) { return std::vector<Tensor>{g * 6.0 * v[0]}; },
      true};
  const CustomFunction outer{"outer", [](const std::vector<Tensor>& v) { return v[0] * v[0] * v[0]; },
                             [inner](const Tensor& g, const std::vector<Tensor>& v, const Tensor&) {
                               Tensor d = g * apply(inner, {v[0]});
                               for (int k = 0; k < 40; ++k) // each adds 0, through a new custom node
                                 d = d + 0.0 * apply(inner, {v[0]});
                               return std::vector<Tensor>{d};
                             },
                             true};
  const Tensor x = tensor({0.5, -1.25, 2.0}, DType::float64);
  Tensor h;
  const std::string e = error_of([&] { h = hessian([&](const Tensor& t) { return sum(apply(outer, {t})); }, x); });
  BOOST_TEST_REQUIRE(e.empty(), e);
  BOOST_TEST(h.to_vector() == std::vector<double>({3.0, 0, 0, 0, -7.5, 0, 0, 0, 12.0}),
             boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(create_graph_rules_read_their_saved_tensors_while_the_record_grows) {
  // 3000 ops, each saving tensors and integers: the create_graph sweep's rules append past many
  // chunk boundaries of the saved-tensor and integer stores while reading their own entries.
  manual_seed(5);
  const Tensor x = random_in({4, 3}, 0.2, 1.5, true, DType::float64);
  const auto f = [](const std::vector<Tensor>& v) {
    Tensor h = v[0];
    for (int k = 0; k < 500; ++k)
      h = permute(tanh(h * 0.9 + v[0]), {0, 1}) * sum(h, 1, true) * 0.1;
    return sum(h);
  };
  TensorGradcheckReport r;
  const std::string e = error_of([&] { r = gradgradcheck(f, {x}); });
  BOOST_TEST(e.empty(), e);
  BOOST_TEST(r.passed, fmt::format("{}", r));
}

// ---- gradients written over the adjoint ---------------------------------------------------------------
BOOST_AUTO_TEST_CASE(a_rule_writes_over_an_adjoint_only_when_nothing_else_holds_it) {
  // A unary rule may write its input's gradient into the adjoint it reads (BackwardCtx::owned). The
  // adjoints a functional grad() returns are kept, so their rules take the allocating path: both
  // paths must give the same bits, and nothing a caller holds (a seed, a retained or returned
  // gradient) may be written over.
  manual_seed(21);
  for (const DType d : {DType::float32, DType::float64}) {
    BOOST_TEST_CONTEXT(dtype_name(d)) {
      Tensor x = randn({37}, d);
      x.requires_grad(true);
      const auto f = [&](Tensor& m, Tensor& t) {
        m = x * 0.9;
        t = tanh(m);
        return exp(tanh(t));
      };
      Tensor m, t;
      {
        Tape tape;
        const Tensor seed = randn({37}, d);
        const std::vector<double> seed_before = seed.to_vector();
        f(m, t).backward(seed); // every rule may write over its adjoint, except where the seed is it
        BOOST_TEST(seed.to_vector() == seed_before, boost::test_tools::per_element());
        const std::vector<double> fast = x.grad().to_vector();
        x.zero_grad();
        const Tensor y = f(m, t);                                      // before m and t are read: f records them anew
        const std::vector<Tensor> kept = grad({y}, {x, m, t}, {seed}); // m's and t's adjoints are kept
        BOOST_TEST(kept[0].to_vector() == fast, boost::test_tools::per_element());
        // the adjoints returned for m and t are what their rules read: still the values of dy/dm, dy/dt
        const Tensor dm = kept[1], dt = kept[2];
        const Tensor y2 = f(m, t);
        const std::vector<Tensor> again = grad({y2}, {m, t}, {seed});
        BOOST_TEST(dm.to_vector() == again[0].to_vector(), boost::test_tools::per_element());
        BOOST_TEST(dt.to_vector() == again[1].to_vector(), boost::test_tools::per_element());
      }
      {
        Tape tape;
        Tensor h = x * 0.9;
        h.retain_grad();
        Tensor r = tanh(h);
        r.retain_grad();
        sum(exp(r)).backward();
        // dy/dr = exp(r), dy/dh = exp(r) (1 - r^2): the retained gradients are not written over
        const auto rv = r.detach().to_vector(), hg = h.grad().to_vector(), rg = r.grad().to_vector();
        for (std::size_t k = 0; k < rv.size(); ++k) {
          const double tol = d == DType::float32 ? 1e-5 : 1e-12;
          BOOST_TEST(rg[k] == std::exp(rv[k]), boost::test_tools::tolerance(tol));
          BOOST_TEST(hg[k] == std::exp(rv[k]) * (1 - rv[k] * rv[k]), boost::test_tools::tolerance(tol));
        }
      }
    }
  }
}

// ---- undoing broadcasting ---------------------------------------------------------------------------
BOOST_AUTO_TEST_CASE(broadcast_gradients_add_their_rows_in_order_bit_for_bit) {
  // The engine sums a broadcast gradient back to its input's shape (sum_to). A bias broadcast
  // along leading dims has a path of its own (columns in blocks of 16 held in registers); every
  // path must add a column's rows one after another from 0, in the input's dtype, so the bits do
  // not depend on which path ran. The reference below does exactly that, element by element.
  manual_seed(11);
  struct Case {
    Shape out, in;
  };
  const Case cases[] = {
      {{37, 16}, {16}},        {{5, 33}, {1, 33}}, {{4, 3, 17}, {17}}, {{4, 3, 17}, {1, 1, 17}},
      {{2, 3, 40}, {3, 40}},   {{9, 1}, {1}},      {{7, 5}, {1, 1}},   {{4, 3, 17}, {4, 1, 17}},
      {{4, 3, 17}, {4, 3, 1}}, {{6, 16}, {6, 1}},  {{0, 16}, {16}},    {{3, 0}, {0}},
  };
  for (const DType d : {DType::float32, DType::float64})
    for (const Case& c : cases) {
      Tape tape;
      Tensor b = zeros(c.in, d);
      b.requires_grad(true);
      const Tensor g = randn(c.out, d);
      (zeros(c.out, d) + b).backward(g);
      // reference: out element i adds into the input element it was broadcast from, in order of i
      const auto gv = g.to_vector();
      std::vector<double> want(static_cast<std::size_t>(c.in.numel()), 0.0);
      std::vector<float> want32(want.size(), 0.0f);
      const int r = c.out.rank(), off = r - c.in.rank();
      for (std::int64_t i = 0; i < c.out.numel(); ++i) {
        std::int64_t rest = i, j = 0, stride = 1;
        for (int k = r - 1; k >= 0; --k) {
          const std::int64_t idx = rest % c.out[k];
          rest /= c.out[k];
          if (k >= off) {
            const std::int64_t dim = c.in[k - off];
            j += (dim == 1 ? 0 : idx) * stride;
            stride *= dim;
          }
        }
        want[static_cast<std::size_t>(j)] += gv[static_cast<std::size_t>(i)];
        want32[static_cast<std::size_t>(j)] += static_cast<float>(gv[static_cast<std::size_t>(i)]);
      }
      const Tensor got = b.grad();
      BOOST_TEST_CONTEXT(fmt::format("{} -> {} ({})", c.out, c.in, dtype_name(d))) {
        BOOST_REQUIRE(got.defined());
        BOOST_TEST(got.shape() == c.in);
        const auto gotv = got.to_vector();
        for (std::size_t k = 0; k < want.size(); ++k)
          if (d == DType::float32)
            BOOST_TEST(gotv[k] == double{want32[k]}, "element " << k);
          else
            BOOST_TEST(gotv[k] == want[k], "element " << k);
      }
    }
}

BOOST_AUTO_TEST_CASE(linear_with_no_input_features_gives_its_bias) {
  // x [3, 0] w^T is an empty sum: every row is the bias (the product adds onto the bias rows).
  Tape tape;
  Tensor b = tensor({1.5, -2.0}, DType::float64);
  b.requires_grad(true);
  const Tensor y = linear(zeros({3, 0}, DType::float64), zeros({2, 0}, DType::float64), b);
  BOOST_TEST(y.to_vector() == (std::vector<double>{1.5, -2, 1.5, -2, 1.5, -2}), boost::test_tools::per_element());
  sum(y * tensor({1.0, 10.0}, DType::float64)).backward();
  BOOST_TEST(b.grad().to_vector() == (std::vector<double>{3, 30}), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_SUITE_END()
