// Newton's method with the exact Hessian from tapegrad (autodiff::hessian) against gradient
// descent, both with the same backtracking line search, on the 2-D and 100-D Rosenbrock function.

#include <autodiff/autodiff.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <random>
#include <string>
#include <vector>

using namespace autodiff;

namespace {

using Vec = std::vector<double>;

// The chained Rosenbrock function; its minimum is f(1, ..., 1) = 0.
template <class T> T rosenbrock(const std::vector<T>& x) {
  T sum = 0.0 * x[0];
  for (std::size_t i = 0; i + 1 < x.size(); ++i)
    sum = sum + 100.0 * square(x[i + 1] - square(x[i])) + square(1.0 - x[i]);
  return sum;
}

double norm(const Vec& v) {
  double s = 0;
  for (double e : v)
    s += e * e;
  return std::sqrt(s);
}
double dot(const Vec& a, const Vec& b) {
  double s = 0;
  for (std::size_t i = 0; i < a.size(); ++i)
    s += a[i] * b[i];
  return s;
}
double distance_to_ones(const Vec& x) {
  double s = 0;
  for (double e : x)
    s += (e - 1) * (e - 1);
  return std::sqrt(s);
}

struct Counts {
  int iterations = 0, f_evals = 0, grad_evals = 0, hessians = 0;
};

Vec gradient_at(const Vec& x, Counts& c) {
  Tape tape;
  std::vector<Var> v(x.begin(), x.end());
  ++c.grad_evals;
  return gradient(rosenbrock(v), v);
}

// Cholesky factor of A + tau I, in place in the lower triangle; false when it is not positive
// definite (a pivot <= 0).
bool cholesky(const Matrix& A, double tau, Matrix& L) {
  const std::size_t n = A.size();
  L.assign(n, Vec(n, 0.0));
  for (std::size_t j = 0; j < n; ++j) {
    double d = A[j][j] + tau;
    for (std::size_t k = 0; k < j; ++k)
      d -= L[j][k] * L[j][k];
    if (!(d > 0)) return false;
    L[j][j] = std::sqrt(d);
    for (std::size_t i = j + 1; i < n; ++i) {
      double s = A[i][j];
      for (std::size_t k = 0; k < j; ++k)
        s -= L[i][k] * L[j][k];
      L[i][j] = s / L[j][j];
    }
  }
  return true;
}

// Solves (H + tau I) p = -g. Cholesky rather than LU because away from the minimum the Rosenbrock
// Hessian can be indefinite, and there the exact Newton step (which LU would happily return) may
// point uphill or to a saddle. Shifting by tau I until Cholesky succeeds (Levenberg) always gives a
// descent direction, and tau = 0 near the minimum, where the Hessian is positive definite, keeps
// Newton's quadratic convergence. Returns the shift used.
double newton_direction(const Matrix& H, const Vec& g, Vec& p) {
  const std::size_t n = H.size();
  double min_diag = H[0][0], max_diag = std::fabs(H[0][0]);
  for (std::size_t i = 0; i < n; ++i) {
    min_diag = std::min(min_diag, H[i][i]);
    max_diag = std::max(max_diag, std::fabs(H[i][i]));
  }
  const double beta = 1e-3 * std::max(1.0, max_diag);
  double tau = min_diag > 0 ? 0.0 : beta - min_diag;
  Matrix L;
  while (!cholesky(H, tau, L))
    tau = std::max(2 * tau, beta);
  Vec z(n);
  for (std::size_t i = 0; i < n; ++i) { // L z = -g
    double s = -g[i];
    for (std::size_t k = 0; k < i; ++k)
      s -= L[i][k] * z[k];
    z[i] = s / L[i][i];
  }
  p.assign(n, 0.0);
  for (std::size_t i = n; i-- > 0;) { // L^T p = z
    double s = z[i];
    for (std::size_t k = i + 1; k < n; ++k)
      s -= L[k][i] * p[k];
    p[i] = s / L[i][i];
  }
  return tau;
}

// Armijo backtracking: the first t in t0, t0/2, t0/4, ... with f(x + t p) <= f(x) + 1e-4 t g.p.
double backtrack(const Vec& x, double fx, const Vec& g, const Vec& p, double t0, Counts& c, Vec& x_new, double& f_new) {
  const double slope = dot(g, p);
  double t = t0;
  x_new.resize(x.size());
  for (int halvings = 0; halvings < 60; ++halvings, t *= 0.5) {
    for (std::size_t i = 0; i < x.size(); ++i)
      x_new[i] = x[i] + t * p[i];
    f_new = rosenbrock(x_new);
    ++c.f_evals;
    if (f_new <= fx + 1e-4 * t * slope) return t;
  }
  return 0.0; // no decrease found: the caller stops
}

struct Result {
  std::string method;
  std::size_t n;
  Counts counts;
  double f, error, grad_norm, ms;
  bool converged;
  double max_shift = 0;
  Vec x; // where it stopped
};

constexpr double gtol = 1e-8;

Result newton(Vec x) {
  const auto start = std::chrono::steady_clock::now();
  Result r{"Newton (exact Hessian)", x.size(), {}, 0, 0, 0, 0, false, 0, {}};
  auto fn = [](const std::vector<Var>& v) { return rosenbrock(v); };
  double fx = rosenbrock(x);
  ++r.counts.f_evals;
  Vec g = gradient_at(x, r.counts), p, x_new;
  for (; r.counts.iterations < 1000 && norm(g) > gtol; ++r.counts.iterations) {
    const Matrix H = hessian(fn, x);
    ++r.counts.hessians;
    r.max_shift = std::max(r.max_shift, newton_direction(H, g, p));
    double f_new = 0;
    if (backtrack(x, fx, g, p, 1.0, r.counts, x_new, f_new) == 0) break;
    x = x_new;
    fx = f_new;
    g = gradient_at(x, r.counts);
  }
  r.f = fx;
  r.x = x;
  r.error = distance_to_ones(x);
  r.grad_norm = norm(g);
  r.converged = r.grad_norm <= gtol;
  r.ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  return r;
}

Result gradient_descent(Vec x, int max_iterations) {
  const auto start = std::chrono::steady_clock::now();
  Result r{"gradient descent", x.size(), {}, 0, 0, 0, 0, false, 0, {}};
  double fx = rosenbrock(x);
  ++r.counts.f_evals;
  Vec g = gradient_at(x, r.counts), p(x.size()), x_new;
  double t = 1.0;
  for (; r.counts.iterations < max_iterations && norm(g) > gtol; ++r.counts.iterations) {
    for (std::size_t i = 0; i < x.size(); ++i)
      p[i] = -g[i];
    double f_new = 0;
    // Start each search at twice the last accepted step instead of at 1: restarting at 1 would
    // spend ~10 halvings per iteration here, which is unfair to gradient descent.
    t = backtrack(x, fx, g, p, std::min(1.0, 2 * t), r.counts, x_new, f_new);
    if (t == 0) break;
    x = x_new;
    fx = f_new;
    g = gradient_at(x, r.counts);
  }
  r.f = fx;
  r.x = x;
  r.error = distance_to_ones(x);
  r.grad_norm = norm(g);
  r.converged = r.grad_norm <= gtol;
  r.ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  return r;
}

Vec start_point(std::size_t n) {
  Vec x(n);
  for (std::size_t i = 0; i < n; ++i)
    x[i] = i % 2 == 0 ? -1.2 : 1.0;
  return x;
}

} // namespace

int main() {
  // Hessian-vector products two ways, as a check of the Hessians Newton is about to use.
  {
    const Vec x = start_point(100);
    auto fn = [](const std::vector<Var>& v) { return rosenbrock(v); };
    std::mt19937 rng(1);
    std::normal_distribution<double> normal;
    Vec v(x.size());
    for (double& e : v)
      e = normal(rng);
    const Matrix H = hessian(fn, x);
    const Vec Hv = hvp(fn, x, v);
    double worst = 0;
    for (std::size_t i = 0; i < x.size(); ++i)
      worst = std::max(worst, std::fabs(dot(H[i], v) - Hv[i]) / std::max(1.0, std::fabs(Hv[i])));
    std::size_t nonzero = 0;
    for (const Vec& row : H)
      nonzero += static_cast<std::size_t>(std::count_if(row.begin(), row.end(), [](double e) { return e != 0; }));
    // The same Hessian from tensor code: Rosenbrock on slices, one create_graph gradient and a
    // sweep per row (tensor_derivatives.hpp).
    const auto tensor_rosenbrock = [](const Tensor& t) {
      const std::int64_t m = t.numel();
      const Tensor head = slice(t, 0, 0, m - 1), tail = slice(t, 0, 1, m);
      return sum(100.0 * square(tail - square(head)) + square(1.0 - head));
    };
    const Tensor Ht = hessian(tensor_rosenbrock, from_vector(x, {static_cast<std::int64_t>(x.size())}, DType::float64));
    double tensor_diff = 0;
    for (std::size_t i = 0; i < x.size(); ++i)
      for (std::size_t j = 0; j < x.size(); ++j)
        tensor_diff =
            std::max(tensor_diff,
                     std::fabs(Ht.at<double>({static_cast<std::int64_t>(i), static_cast<std::int64_t>(j)}) - H[i][j]));
    fmt::print("100-D start point: hessian() has {} nonzeros (tridiagonal: {}); max |H v - hvp(v)| (scaled) = {:.1e}; "
               "max |H - tensor hessian()| = {:.1e}\n\n",
               nonzero, 3 * x.size() - 2, worst, tensor_diff);
  }

  std::vector<Result> results;
  for (std::size_t n : {std::size_t{2}, std::size_t{100}}) {
    results.push_back(newton(start_point(n)));
    results.push_back(gradient_descent(start_point(n), 1'000'000));
  }

  fmt::print("Rosenbrock, start (-1.2, 1, -1.2, 1, ...), stop when ||grad f|| <= {:.0e}; Armijo backtracking (c = "
             "1e-4, halving) for both\n",
             gtol);
  fmt::print("{:>4}  {:<24} {:>10} {:>9} {:>9} {:>8} {:>12} {:>12} {:>10} {:>10}\n", "n", "method", "iterations",
             "f evals", "grad ev", "Hessians", "final f", "||x - 1||", "||grad||", "time [ms]");
  fmt::print("{:->4}  {:-<24} {:->10} {:->9} {:->9} {:->8} {:->12} {:->12} {:->10} {:->10}\n", "", "", "", "", "", "",
             "", "", "", "");
  for (const Result& r : results)
    fmt::print("{:>4}  {:<24} {:>10} {:>9} {:>9} {:>8} {:>12.3e} {:>12.3e} {:>10.1e} {:>10.2f}{}\n", r.n, r.method,
               r.counts.iterations, r.counts.f_evals, r.counts.grad_evals, r.counts.hessians, r.f, r.error, r.grad_norm,
               r.ms, r.converged ? "" : "  (not converged)");
  fmt::print("\nwhere each run stopped (first components of x):\n");
  for (const Result& r : results)
    fmt::print("  n = {:>3}, {:<24} x = ({:.6f}, ...){}\n", r.n, r.method,
               fmt::join(r.x.begin(), r.x.begin() + static_cast<std::ptrdiff_t>(std::min<std::size_t>(4, r.n)), ", "),
               r.error > 1e-3 ? "  <- a local minimum, not (1, ..., 1)" : "");
  // For n >= 4 the chained Rosenbrock function has a second, local minimizer near (-1, 1, ..., 1)
  // with f ~ 3.99. Which one a method reaches depends on its path, not on its speed.
  for (const Result& r : results)
    if (r.counts.hessians > 0 && r.max_shift > 0)
      fmt::print("  n = {}: Newton needed a Levenberg shift (Hessian not positive definite), largest tau = {:.3g}\n",
                 r.n, r.max_shift);
  return 0;
}
