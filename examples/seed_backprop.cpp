// The blog post's 3-2-1 network (docs/backprop.md, "The example with numbers"), line by line:
// every quantity of the forward pass, the error terms and the weight updates by the hand formulas
// and by tapegrad's reverse mode side by side, then gradient descent on the same sample.

#include <autodiff/autodiff.hpp>

#include <fmt/format.h>

#include <array>
#include <cmath>
#include <string>
#include <vector>

using namespace autodiff;

namespace {

struct Weights {
  std::array<std::array<double, 2>, 3> W01; // W^(0->1): rows = inputs i, columns = hidden units j
  std::array<double, 2> W12;                // W^(1->2): rows = hidden units i, one output
};

struct Pass {
  std::array<double, 2> vin1, vout1, fprime1;
  double vin2, yhat, fprime2, E, dE_dyhat, delta2;
  std::array<double, 2> W12_delta2, delta1;
  Weights dW; // the updates Delta W
};

const std::array<double, 3> x{1.0, 0.5, -1.5};
constexpr double y = 1.0;
constexpr double eta = 0.5;

double f(double z) { return 1.0 / (1.0 + std::exp(-z)); }

// The formulas of the post (with its slips corrected, docs/backprop.md "Where the post slips").
Pass by_hand(const Weights& w) {
  Pass p{};
  for (int j = 0; j < 2; ++j) {
    p.vin1[j] = w.W01[0][j] * x[0] + w.W01[1][j] * x[1] + w.W01[2][j] * x[2];
    p.vout1[j] = f(p.vin1[j]);
    p.fprime1[j] = p.vout1[j] * (1 - p.vout1[j]);
  }
  p.vin2 = w.W12[0] * p.vout1[0] + w.W12[1] * p.vout1[1];
  p.yhat = f(p.vin2);
  p.fprime2 = p.yhat * (1 - p.yhat);
  p.E = 0.5 * (y - p.yhat) * (y - p.yhat);
  p.dE_dyhat = -(y - p.yhat);
  p.delta2 = (y - p.yhat) * p.fprime2;
  for (int j = 0; j < 2; ++j) {
    p.W12_delta2[j] = w.W12[j] * p.delta2;
    p.delta1[j] = p.W12_delta2[j] * p.fprime1[j];
    p.dW.W12[j] = eta * p.delta2 * p.vout1[j];
  }
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 2; ++j)
      p.dW.W01[i][j] = eta * p.delta1[j] * x[i];
  return p;
}

// Reverse mode on E = 1/2 (y - yhat)^2: deltas are minus the adjoints of the pre-activations,
// updates are -eta times the adjoints of the weights. The caller's tape is reset first.
Pass by_autodiff(Tape& tape, const Weights& w) {
  tape.reset();
  std::array<std::array<Var, 2>, 3> W01;
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 2; ++j)
      W01[i][j] = w.W01[i][j];
  std::array<Var, 2> W12{w.W12[0], w.W12[1]};
  std::array<Var, 2> vin1, vout1;
  for (int j = 0; j < 2; ++j) {
    vin1[j] = W01[0][j] * x[0] + W01[1][j] * x[1] + W01[2][j] * x[2];
    vout1[j] = sigmoid(vin1[j]);
  }
  Var vin2 = W12[0] * vout1[0] + W12[1] * vout1[1];
  Var yhat = sigmoid(vin2);
  Var E = 0.5 * square(y - yhat);
  E.backward();

  Pass p{};
  for (int j = 0; j < 2; ++j) {
    p.vin1[j] = vin1[j].value();
    p.vout1[j] = vout1[j].value();
    p.fprime1[j] = vin1[j].grad() / vout1[j].grad(); // chain rule: dE/dv_in = dE/dv_out * f'
    p.W12_delta2[j] = -vout1[j].grad();
    p.delta1[j] = -vin1[j].grad();
    p.dW.W12[j] = -eta * W12[j].grad();
  }
  p.vin2 = vin2.value();
  p.yhat = yhat.value();
  p.fprime2 = vin2.grad() / yhat.grad();
  p.E = E.value();
  p.dE_dyhat = yhat.grad();
  p.delta2 = -vin2.grad();
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 2; ++j)
      p.dW.W01[i][j] = -eta * W01[i][j].grad();
  return p;
}

Weights stepped(const Weights& w, const Weights& dW) {
  Weights n = w;
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 2; ++j)
      n.W01[i][j] += dW.W01[i][j];
  for (int i = 0; i < 2; ++i)
    n.W12[i] += dW.W12[i];
  return n;
}

double max_update_diff(const Weights& a, const Weights& b) {
  double d = 0;
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 2; ++j)
      d = std::max(d, std::fabs(a.W01[i][j] - b.W01[i][j]));
  for (int i = 0; i < 2; ++i)
    d = std::max(d, std::fabs(a.W12[i] - b.W12[i]));
  return d;
}

constexpr int label_width = 52;

void header(const std::string& title, const std::string& autodiff_how) {
  fmt::print("\n{}\n", title);
  fmt::print("  {:<{}} {:>14} {:>14} {:>10}{}\n", "quantity", label_width, "hand formula", "autodiff", "difference",
             autodiff_how.empty() ? "" : "   " + autodiff_how);
  fmt::print("  {:-<{}} {:->14} {:->14} {:->10}\n", "", label_width, "", "", "");
}

void row(const std::string& label, double hand, double ad, const std::string& note = "") {
  fmt::print("  {:<{}} {:>14.9f} {:>14.9f} {:>10.1e}{}\n", label, label_width, hand, ad, ad - hand,
             note.empty() ? "" : "   " + note);
}

} // namespace

int main() {
  const Weights w0{{{{0.1, -0.2}, {0.4, 0.3}, {-0.5, 0.2}}}, {0.7, -0.3}};
  Tape tape;

  fmt::print("The post's 3-2-1 network: sigmoid f, no biases, E = 1/2 (y - yhat)^2 (see docs/backprop.md)\n");
  fmt::print("  x = ({}), y = {}, eta = {}\n", fmt::join(x, ", "), y, eta);
  fmt::print("  W^(0->1) = [[{}], [{}], [{}]]   (3x2: rows = inputs i, columns = hidden units j)\n",
             fmt::join(w0.W01[0], ", "), fmt::join(w0.W01[1], ", "), fmt::join(w0.W01[2], ", "));
  fmt::print("  W^(1->2) = [[{}], [{}]]          (2x1)\n", w0.W12[0], w0.W12[1]);

  const Pass h = by_hand(w0);
  const Pass a = by_autodiff(tape, w0);

  header("Forward pass", "autodiff column: the recorded Var's value");
  for (int j = 0; j < 2; ++j)
    row(fmt::format("v_in^(1)_{} = sum_i w^(1)_i{} x_i", j + 1, j + 1), h.vin1[j], a.vin1[j]);
  for (int j = 0; j < 2; ++j)
    row(fmt::format("v_out^(1)_{} = f(v_in^(1)_{})", j + 1, j + 1), h.vout1[j], a.vout1[j]);
  for (int j = 0; j < 2; ++j)
    row(fmt::format("f'(v_in^(1)_{}) = v_out (1 - v_out)", j + 1), h.fprime1[j], a.fprime1[j],
        "autodiff: dE/dv_in / dE/dv_out");
  row("v_in^(2) = sum_i w^(2)_i1 v_out^(1)_i", h.vin2, a.vin2);
  row("yhat = v_out^(2) = f(v_in^(2))", h.yhat, a.yhat);
  row("f'(v_in^(2)) = yhat (1 - yhat)", h.fprime2, a.fprime2, "autodiff: dE/dv_in^(2) / dE/dyhat");
  row("E = 1/2 (y - yhat)^2", h.E, a.E);

  header("Error terms (backward pass)", "autodiff column: adjoints after E.backward()");
  row("dE/dyhat = -(y - yhat)", h.dE_dyhat, a.dE_dyhat, "yhat.grad()");
  row("delta^(2) = (y - yhat) f'(v_in^(2))", h.delta2, a.delta2, "-v_in^(2).grad()");
  for (int j = 0; j < 2; ++j)
    row(fmt::format("(W^(1->2) delta^(2))_{}", j + 1), h.W12_delta2[j], a.W12_delta2[j],
        fmt::format("-v_out^(1)_{}.grad()", j + 1));
  for (int j = 0; j < 2; ++j)
    row(fmt::format("delta^(1)_{} = (W^(1->2) delta^(2))_{} f'(v_in^(1)_{})", j + 1, j + 1, j + 1), h.delta1[j],
        a.delta1[j], fmt::format("-v_in^(1)_{}.grad()", j + 1));

  header("Weight updates  Delta w_ij = eta delta_j (input of the layer)_i", "autodiff column: -eta w.grad()");
  for (int i = 0; i < 2; ++i)
    row(fmt::format("Delta w^(2)_{}1 = eta delta^(2) v_out^(1)_{}", i + 1, i + 1), h.dW.W12[i], a.dW.W12[i]);
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 2; ++j)
      row(fmt::format("Delta w^(1)_{}{} = eta delta^(1)_{} x_{}", i + 1, j + 1, j + 1, i + 1), h.dW.W01[i][j],
          a.dW.W01[i][j]);

  const Weights w1h = stepped(w0, h.dW), w1a = stepped(w0, a.dW);
  header("New weights  W <- W + Delta W", "");
  for (int i = 0; i < 2; ++i)
    row(fmt::format("w^(2)_{}1", i + 1), w1h.W12[i], w1a.W12[i]);
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 2; ++j)
      row(fmt::format("w^(1)_{}{}", i + 1, j + 1), w1h.W01[i][j], w1a.W01[i][j]);

  const Pass h1 = by_hand(w1h), a1 = by_autodiff(tape, w1a);
  header("Forward pass again, after one step", "");
  row("yhat", h1.yhat, a1.yhat);
  row("E", h1.E, a1.E);
  row("decrease of E", h.E - h1.E, a.E - a1.E);

  // Gradient descent on the same sample until E < 1e-4; the hand rule runs alongside as a check.
  fmt::print("\nGradient descent, eta = {}, same sample, until E < 1e-4 (updates by autodiff)\n", eta);
  fmt::print("  {:>6} {:>14} {:>12}\n  {:->6} {:->14} {:->12}\n", "step", "E", "yhat", "", "", "");
  Weights w = w0;
  double worst = 0;
  constexpr int every = 250, max_steps = 100000;
  int step = 0;
  for (;; ++step) {
    const Pass p = by_autodiff(tape, w);
    if (p.E < 1e-4 || step == max_steps) {
      fmt::print("  {:>6} {:>14.9f} {:>12.9f}   (last{})\n", step, p.E, p.yhat, p.E < 1e-4 ? "" : ", not converged");
      break;
    }
    if (step % every == 0) fmt::print("  {:>6} {:>14.9f} {:>12.9f}\n", step, p.E, p.yhat);
    worst = std::max(worst, max_update_diff(p.dW, by_hand(w).dW));
    w = stepped(w, p.dW);
  }
  fmt::print("\n  largest |hand - autodiff| of any update over the {} steps: {:.1e}\n", step, worst);
  fmt::print("  final W^(0->1) = [[{:.6f}], [{:.6f}], [{:.6f}]], W^(1->2) = [{:.6f}]\n", fmt::join(w.W01[0], ", "),
             fmt::join(w.W01[1], ", "), fmt::join(w.W01[2], ", "), fmt::join(w.W12, ", "));
  return 0;
}
