#pragma once
// Fully connected networks computed twice: by the hand-derived delta rule of docs/backprop.md in
// plain double, and by tapegrad's reverse mode on a Var network built neuron by neuron. The hand
// rule can be broken on purpose (`Mistake`) so that tests can show the comparison has teeth.
//
// Conventions (docs/backprop.md, "The general delta rule"): W[l] has n_{l-1} rows (sending units)
// and n_l columns (receiving units); the batch loss is the MEAN over the B examples of
// 1/2 ||y - yhat||^2, so the 1/B sits in the output deltas; delta = -dE/d(pre-activation);
// dW = eta * sum_b a_{l-1}[b] delta_l[b]^T = -eta dE/dW, db = eta * sum_b delta_l[b].

#include <autodiff/autodiff.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace backprop_test {

using Vec = std::vector<double>;
using Mat = std::vector<Vec>;

enum class Activation { sigmoid, tanh, relu };

inline std::string_view name(Activation a) {
  switch (a) {
  case Activation::sigmoid:
    return "sigmoid";
  case Activation::tanh:
    return "tanh";
  case Activation::relu:
    return "relu";
  }
  return "?";
}

// The hand side's own activation functions, written from their definitions so that they share
// nothing with autodiff's rules.
inline double act_f(Activation a, double z) {
  switch (a) {
  case Activation::sigmoid:
    return 1.0 / (1.0 + std::exp(-z));
  case Activation::tanh:
    return std::tanh(z);
  case Activation::relu:
    return z > 0.0 ? z : 0.0;
  }
  return 0.0;
}
inline double act_fprime(Activation a, double z) {
  switch (a) {
  case Activation::sigmoid: {
    const double s = 1.0 / (1.0 + std::exp(-z));
    return s * (1.0 - s);
  }
  case Activation::tanh: {
    const double t = std::tanh(z);
    return 1.0 - t * t;
  }
  case Activation::relu:
    return z > 0.0 ? 1.0 : 0.0; // relu'(0) = 0, as in autodiff (docs/design.md, "Kinks")
  }
  return 0.0;
}

struct Network {
  std::vector<std::size_t> widths; // n_0 (inputs) ... n_L (outputs)
  std::vector<Mat> W;              // W[l], l = 1..L (W[0] unused): n_{l-1} x n_l
  std::vector<Vec> b;              // b[l], l = 1..L (b[0] unused); all zero when !bias
  Activation act = Activation::sigmoid;
  bool bias = false;
  std::size_t layers() const { return widths.size() - 1; }
};

struct Batch {
  Mat X; // B x n_0
  Mat Y; // B x n_L
};

// Everything the comparison looks at, indexed [l][b][unit] / [l][i][j] like Network.
struct Backprop {
  double E = 0;
  std::vector<Mat> Z;     // pre-activations v_in
  std::vector<Mat> A;     // activations v_out (A[0] = X)
  std::vector<Mat> delta; // -dE/dZ
  std::vector<Mat> dW;    // weight updates -eta dE/dW
  std::vector<Vec> db;    // bias updates -eta dE/db
};

enum class Mistake {
  none,
  drop_fprime,         // delta without the f' factor
  flipped_sign,        // delta = +dE/dZ, i.e. (yhat - y) f': the update climbs
  literal_loss,        // the post's E = y - yhat taken literally: delta_L = -d(y - yhat)/dZ = f'
  transposed_backward, // sum_k W[k][j] delta_k instead of W[j][k] (square layers only)
  transposed_update,   // dW = eta delta x^T instead of eta x delta^T (square layers only)
  stale_weights,       // W_{l+1} updated before delta_l is computed from it
};

inline std::string_view name(Mistake m) {
  switch (m) {
  case Mistake::none:
    return "none";
  case Mistake::drop_fprime:
    return "drop f'";
  case Mistake::flipped_sign:
    return "delta = +dE/dv_in";
  case Mistake::literal_loss:
    return "E = y - yhat";
  case Mistake::transposed_backward:
    return "W^T delta in the backward pass";
  case Mistake::transposed_update:
    return "dW = eta delta x^T";
  case Mistake::stale_weights:
    return "updated W used for delta";
  }
  return "?";
}

inline Backprop forward_hand(const Network& net, const Batch& batch) {
  const std::size_t L = net.layers(), B = batch.X.size();
  Backprop r;
  r.Z.assign(L + 1, {});
  r.A.assign(L + 1, {});
  r.A[0] = batch.X;
  for (std::size_t l = 1; l <= L; ++l) {
    r.Z[l].assign(B, Vec(net.widths[l]));
    r.A[l].assign(B, Vec(net.widths[l]));
    for (std::size_t n = 0; n < B; ++n)
      for (std::size_t j = 0; j < net.widths[l]; ++j) {
        double z = net.W[l][0][j] * r.A[l - 1][n][0];
        for (std::size_t i = 1; i < net.widths[l - 1]; ++i)
          z += net.W[l][i][j] * r.A[l - 1][n][i];
        if (net.bias) z += net.b[l][j];
        r.Z[l][n][j] = z;
        r.A[l][n][j] = act_f(net.act, z);
      }
  }
  r.E = 0;
  for (std::size_t n = 0; n < B; ++n)
    for (std::size_t k = 0; k < net.widths[L]; ++k) {
      const double e = batch.Y[n][k] - r.A[L][n][k];
      r.E += 0.5 * e * e;
    }
  r.E /= static_cast<double>(B);
  return r;
}

// The delta rule of docs/backprop.md, written out with indices, optionally with one mistake.
inline Backprop backprop_hand(const Network& net, const Batch& batch, double eta, Mistake mistake = Mistake::none) {
  const std::size_t L = net.layers(), B = batch.X.size();
  const double inv_b = 1.0 / static_cast<double>(B);
  if (mistake == Mistake::transposed_backward || mistake == Mistake::transposed_update)
    for (std::size_t n : net.widths)
      if (n != net.widths[0])
        throw autodiff::Error(fmt::format("backprop_hand: mistake '{}' needs equal widths, got {}", name(mistake),
                                          fmt::join(net.widths, "-")));
  Backprop r = forward_hand(net, batch);
  auto fprime = [&](double z) { return mistake == Mistake::drop_fprime ? 1.0 : act_fprime(net.act, z); };

  r.delta.assign(L + 1, {});
  r.dW.assign(L + 1, {});
  r.db.assign(L + 1, {});
  std::vector<Mat> W = net.W; // the weights the backward pass reads (changed by stale_weights)

  auto compute_updates = [&](std::size_t l) {
    r.dW[l].assign(net.widths[l - 1], Vec(net.widths[l], 0.0));
    r.db[l].assign(net.widths[l], 0.0);
    for (std::size_t n = 0; n < B; ++n) {
      for (std::size_t i = 0; i < net.widths[l - 1]; ++i)
        for (std::size_t j = 0; j < net.widths[l]; ++j)
          r.dW[l][i][j] += mistake == Mistake::transposed_update ? eta * r.delta[l][n][i] * r.A[l - 1][n][j]
                                                                 : eta * r.A[l - 1][n][i] * r.delta[l][n][j];
      if (net.bias)
        for (std::size_t j = 0; j < net.widths[l]; ++j)
          r.db[l][j] += eta * r.delta[l][n][j];
    }
    if (mistake == Mistake::stale_weights)
      for (std::size_t i = 0; i < net.widths[l - 1]; ++i)
        for (std::size_t j = 0; j < net.widths[l]; ++j)
          W[l][i][j] += r.dW[l][i][j];
  };

  r.delta[L].assign(B, Vec(net.widths[L]));
  for (std::size_t n = 0; n < B; ++n)
    for (std::size_t k = 0; k < net.widths[L]; ++k) {
      const double z = r.Z[L][n][k];
      double err = batch.Y[n][k] - r.A[L][n][k];
      if (mistake == Mistake::flipped_sign) err = -err;
      if (mistake == Mistake::literal_loss) err = 1.0;
      r.delta[L][n][k] = inv_b * err * fprime(z);
    }
  compute_updates(L);

  for (std::size_t l = L - 1; l >= 1; --l) {
    r.delta[l].assign(B, Vec(net.widths[l]));
    for (std::size_t n = 0; n < B; ++n)
      for (std::size_t j = 0; j < net.widths[l]; ++j) {
        double back = 0;
        for (std::size_t k = 0; k < net.widths[l + 1]; ++k)
          back += (mistake == Mistake::transposed_backward ? W[l + 1][k][j] : W[l + 1][j][k]) * r.delta[l + 1][n][k];
        r.delta[l][n][j] = back * fprime(r.Z[l][n][j]);
      }
    compute_updates(l);
  }
  return r;
}

// The same network built from Vars, one neuron at a time; E = mean over the batch of
// 1/2 ||y - yhat||^2. The deltas are read as minus the adjoints of the pre-activation Vars.
inline Backprop backprop_autodiff(const Network& net, const Batch& batch, double eta) {
  using autodiff::Var;
  const std::size_t L = net.layers(), B = batch.X.size();
  autodiff::Tape tape;
  std::vector<std::vector<std::vector<Var>>> W(L + 1);
  std::vector<std::vector<Var>> b(L + 1);
  for (std::size_t l = 1; l <= L; ++l) {
    for (const Vec& row : net.W[l])
      W[l].emplace_back(row.begin(), row.end());
    if (net.bias) b[l].assign(net.b[l].begin(), net.b[l].end());
  }
  std::vector<std::vector<std::vector<Var>>> Z(L + 1, std::vector<std::vector<Var>>(B));
  std::vector<std::vector<Var>> out(B);
  Var E = 0.0;
  for (std::size_t n = 0; n < B; ++n) {
    std::vector<Var> a(batch.X[n].begin(), batch.X[n].end());
    for (std::size_t l = 1; l <= L; ++l) {
      std::vector<Var> next;
      for (std::size_t j = 0; j < net.widths[l]; ++j) {
        Var z = W[l][0][j] * a[0];
        for (std::size_t i = 1; i < net.widths[l - 1]; ++i)
          z += W[l][i][j] * a[i];
        if (net.bias) z += b[l][j];
        Z[l][n].push_back(z);
        switch (net.act) {
        case Activation::sigmoid:
          next.push_back(sigmoid(z));
          break;
        case Activation::tanh:
          next.push_back(tanh(z));
          break;
        case Activation::relu:
          next.push_back(relu(z));
          break;
        }
      }
      a = std::move(next);
    }
    for (std::size_t k = 0; k < net.widths[L]; ++k)
      E += 0.5 * square(batch.Y[n][k] - a[k]);
    out[n] = std::move(a);
  }
  E = E / static_cast<double>(B);
  E.backward();

  Backprop r;
  r.E = E.value();
  r.Z.assign(L + 1, {});
  r.A.assign(L + 1, {});
  r.delta.assign(L + 1, {});
  r.dW.assign(L + 1, {});
  r.db.assign(L + 1, {});
  r.A[0] = batch.X;
  for (std::size_t l = 1; l <= L; ++l) {
    r.Z[l].assign(B, Vec(net.widths[l]));
    r.delta[l].assign(B, Vec(net.widths[l]));
    for (std::size_t n = 0; n < B; ++n)
      for (std::size_t j = 0; j < net.widths[l]; ++j) {
        r.Z[l][n][j] = Z[l][n][j].value();
        r.delta[l][n][j] = -Z[l][n][j].grad();
      }
    r.dW[l].assign(net.widths[l - 1], Vec(net.widths[l]));
    for (std::size_t i = 0; i < net.widths[l - 1]; ++i)
      for (std::size_t j = 0; j < net.widths[l]; ++j)
        r.dW[l][i][j] = -eta * W[l][i][j].grad();
    r.db[l].assign(net.widths[l], 0.0);
    if (net.bias)
      for (std::size_t j = 0; j < net.widths[l]; ++j)
        r.db[l][j] = -eta * b[l][j].grad();
  }
  r.A[L].resize(B);
  for (std::size_t n = 0; n < B; ++n)
    for (const Var& v : out[n])
      r.A[L][n].push_back(v.value());
  return r;
}

// |a - b| / max(1, |b|): absolute for small numbers, relative for large ones.
inline double scaled_diff(double a, double b) { return std::fabs(a - b) / std::max(1.0, std::fabs(b)); }

inline double max_diff(const Mat& a, const Mat& b) {
  double d = 0;
  for (std::size_t i = 0; i < a.size(); ++i)
    for (std::size_t j = 0; j < a[i].size(); ++j)
      d = std::max(d, scaled_diff(a[i][j], b[i][j]));
  return d;
}
inline double max_diff(const Vec& a, const Vec& b) {
  double d = 0;
  for (std::size_t i = 0; i < a.size(); ++i)
    d = std::max(d, scaled_diff(a[i], b[i]));
  return d;
}

// The largest disagreement over every delta, weight update and bias update of every layer.
inline double max_gradient_diff(const Backprop& a, const Backprop& b) {
  double d = 0;
  for (std::size_t l = 1; l < a.delta.size(); ++l)
    d = std::max({d, max_diff(a.delta[l], b.delta[l]), max_diff(a.dW[l], b.dW[l]), max_diff(a.db[l], b.db[l])});
  return d;
}

struct NetworkShape {
  std::vector<std::size_t> widths;
  Activation act;
  bool bias;
  std::size_t batch;
};

// The smallest nonzero |pre-activation|. Exact zeros (units fed only by dead relus) are the kink
// itself, where both sides use relu'(0) = 0; tiny nonzero ones could round to either side.
inline double min_abs_nonzero_preactivation(const Backprop& r) {
  double m = INFINITY;
  for (const Mat& z : r.Z)
    for (const Vec& row : z)
      for (double v : row)
        if (v != 0.0) m = std::min(m, std::fabs(v));
  return m;
}

// Random weights, biases, inputs and targets for a given shape. For relu, instances with a nonzero
// pre-activation within 1e-9 of the kink are redrawn.
inline std::pair<Network, Batch> random_instance(std::mt19937& rng, const NetworkShape& shape) {
  std::uniform_real_distribution<double> weight(-1.0, 1.0), input(-2.0, 2.0);
  std::uniform_real_distribution<double> target =
      shape.act == Activation::tanh   ? std::uniform_real_distribution<double>(-1.0, 1.0)
      : shape.act == Activation::relu ? std::uniform_real_distribution<double>(0.0, 2.0)
                                      : std::uniform_real_distribution<double>(0.0, 1.0);
  for (;;) {
    Network net;
    net.widths = shape.widths;
    net.act = shape.act;
    net.bias = shape.bias;
    const std::size_t L = net.layers();
    net.W.assign(L + 1, {});
    net.b.assign(L + 1, {});
    for (std::size_t l = 1; l <= L; ++l) {
      net.W[l].assign(net.widths[l - 1], Vec(net.widths[l]));
      for (Vec& row : net.W[l])
        for (double& w : row)
          w = weight(rng);
      net.b[l].assign(net.widths[l], 0.0);
      if (net.bias)
        for (double& v : net.b[l])
          v = 0.5 * weight(rng);
    }
    Batch batch;
    batch.X.assign(shape.batch, Vec(net.widths[0]));
    batch.Y.assign(shape.batch, Vec(net.widths[L]));
    for (Vec& x : batch.X)
      for (double& v : x)
        v = input(rng);
    for (Vec& y : batch.Y)
      for (double& v : y)
        v = target(rng);
    if (shape.act != Activation::relu || min_abs_nonzero_preactivation(forward_hand(net, batch)) > 1e-9)
      return {net, batch};
  }
}

inline std::string describe(const NetworkShape& s) {
  return fmt::format("{} {} {} B={}", fmt::join(s.widths, "-"), name(s.act), s.bias ? "+bias" : "nobias", s.batch);
}

} // namespace backprop_test
