#pragma once
// Independent reference computations for the tensor tests: plain loops over std::vector<double>,
// sharing no code with the engine.

#include <autodiff/tensor.hpp>
#include <autodiff/tensor_gradcheck.hpp>

#include <boost/test/unit_test.hpp>
#include <fmt/format.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <vector>

namespace tapegrad_test {

using autodiff::DType;
using autodiff::Shape;
using autodiff::Tensor;

inline std::vector<std::int64_t> dims(const Shape& s) { return s.vec(); }
inline std::int64_t count(const std::vector<std::int64_t>& d) {
  std::int64_t n = 1;
  for (auto v : d)
    n *= v;
  return n;
}
// Row-major multi-index of flat position p.
inline std::vector<std::int64_t> unflat(std::int64_t p, const std::vector<std::int64_t>& d) {
  std::vector<std::int64_t> idx(d.size());
  for (std::size_t k = d.size(); k-- > 0;) {
    idx[k] = p % d[k];
    p /= d[k];
  }
  return idx;
}
inline std::int64_t flat(const std::vector<std::int64_t>& idx, const std::vector<std::int64_t>& d) {
  std::int64_t p = 0;
  for (std::size_t k = 0; k < d.size(); ++k)
    p = p * d[k] + idx[k];
  return p;
}

// Numpy broadcasting, written out: the value of x (shape xd) read at out index oi.
inline double read_broadcast(const std::vector<double>& x, const std::vector<std::int64_t>& xd,
                             const std::vector<std::int64_t>& oi) {
  std::vector<std::int64_t> xi(xd.size());
  const std::size_t off = oi.size() - xd.size();
  for (std::size_t k = 0; k < xd.size(); ++k)
    xi[k] = xd[k] == 1 ? 0 : oi[k + off];
  return x[static_cast<std::size_t>(flat(xi, xd))];
}
inline std::vector<std::int64_t> broadcast_dims(std::vector<std::int64_t> a, std::vector<std::int64_t> b) {
  while (a.size() < b.size())
    a.insert(a.begin(), 1);
  while (b.size() < a.size())
    b.insert(b.begin(), 1);
  std::vector<std::int64_t> o(a.size());
  for (std::size_t k = 0; k < a.size(); ++k)
    o[k] = a[k] == 1 ? b[k] : a[k];
  return o;
}

// Inputs in a domain: values of |x| in [lo, hi) with random signs (or only positive).
inline Tensor random_in(const Shape& s, double lo, double hi, bool signs, DType d = DType::float64) {
  Tensor u = autodiff::rand(s, DType::float64);
  std::vector<double> v = u.to_vector();
  Tensor sg = autodiff::rand(s, DType::float64);
  std::vector<double> sv = sg.to_vector();
  for (std::size_t i = 0; i < v.size(); ++i) {
    v[i] = lo + (hi - lo) * v[i];
    if (signs && sv[i] < 0.5) v[i] = -v[i];
  }
  return autodiff::from_vector(v, s, d);
}

inline void check_close(const std::vector<double>& got, const std::vector<double>& want, double tol,
                        const std::string& what) {
  BOOST_TEST_CONTEXT(what) {
    BOOST_TEST_REQUIRE(got.size() == want.size());
    for (std::size_t i = 0; i < got.size(); ++i) {
      const double scale = std::max(1.0, std::fabs(want[i]));
      // NaN and the infinities are results too (the mean or the logsumexp of nothing): exact matches.
      const bool exact = std::isnan(want[i]) ? std::isnan(got[i]) : std::isinf(want[i]) ? got[i] == want[i] : false;
      BOOST_TEST_CONTEXT("element " << i) {
        BOOST_TEST((exact || std::fabs(got[i] - want[i]) <= tol * scale), "got " << got[i] << ", want " << want[i]);
      }
    }
  }
}

// The message of the autodiff::Error that f throws ("" if none).
template <class F> std::string error_of(F&& f) {
  try {
    f();
  } catch (const autodiff::Error& e) {
    return e.what();
  }
  return "";
}
inline bool starts_with(const std::string& s, const std::string& p) { return s.rfind(p, 0) == 0; }
inline bool contains(const std::string& s, const std::string& p) { return s.find(p) != std::string::npos; }

// "[2,3] [3] " for a list of input shapes, in test contexts.
inline std::string describe(const std::vector<autodiff::Shape>& shapes) {
  std::string s;
  for (const autodiff::Shape& x : shapes)
    s += fmt::format("{} ", x);
  return s;
}

} // namespace tapegrad_test
