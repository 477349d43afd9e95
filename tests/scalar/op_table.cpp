// The scalar op table's rows (declared in op_table.hpp).

#include "op_table.hpp"

namespace tapegrad_test {

std::vector<OpInfo> op_table() {
  using V = const std::vector<Var>&;
  using D = const std::vector<double>&;
  const std::vector<std::vector<double>> anywhere{{-3.7}, {-0.4}, {1e-3}, {0.8}, {2.5}, {40.0}};
  const std::vector<std::vector<double>> positive{{1e-3}, {0.3}, {1.0}, {7.5}, {1e3}};
  const std::vector<std::vector<double>> unit{{-0.95}, {-0.3}, {0.0}, {0.5}, {0.97}};
  const std::vector<std::vector<double>> pairs{{1.5, -2.0}, {-0.3, 0.7}, {3.0, 3.5}, {-4.0, -1e-2}, {1e2, 3e-2}};
  const std::vector<std::vector<double>> pos_pairs{{1.5, 2.0}, {0.3, -0.7}, {3.0, 0.5}, {20.0, 1.5}, {0.01, 3.0}};
  // Points a little off a kink at 0 on both sides; the gradient there is one-sided but exact.
  const std::vector<std::vector<double>> kinks{{-2.0}, {-1e-4}, {1e-4}, {0.6}, {25.0}};
  const std::vector<std::vector<double>> wide{{-1000.0}, {-30.0}, {-1.0}, {0.0}, {2.0}, {35.0}, {1000.0}};

  std::vector<OpInfo> t;
  auto unary = [&](std::string name, std::function<Var(const Var&)> f, double (*ref)(double), auto pts,
                   bool smooth = true) {
    t.push_back({std::move(name), 1, [f](V x) { return f(x[0]); }, [ref](D x) { return ref(x[0]); }, pts, smooth});
  };
  auto binary = [&](std::string name, std::function<Var(const Var&, const Var&)> f,
                    std::function<double(double, double)> ref, auto pts, bool smooth = true) {
    t.push_back(
        {std::move(name), 2, [f](V x) { return f(x[0], x[1]); }, [ref](D x) { return ref(x[0], x[1]); }, pts, smooth});
  };
  // clang-format off
  unary("neg",      [](const Var& a) { return -a; },              [](double a) { return -a; }, anywhere);
  unary("exp",      [](const Var& a) { return exp(a); },          [](double a) { return std::exp(a); }, std::vector<std::vector<double>>{{-30.0}, {-1.0}, {0.0}, {0.7}, {20.0}});
  unary("log",      [](const Var& a) { return log(a); },          [](double a) { return std::log(a); }, positive);
  unary("log1p",    [](const Var& a) { return log1p(a); },        [](double a) { return std::log1p(a); }, std::vector<std::vector<double>>{{-0.9}, {-1e-8}, {1e-10}, {3.0}, {1e4}});
  unary("expm1",    [](const Var& a) { return expm1(a); },        [](double a) { return std::expm1(a); }, std::vector<std::vector<double>>{{-20.0}, {-1e-9}, {1e-9}, {0.5}, {10.0}});
  unary("sqrt",     [](const Var& a) { return sqrt(a); },         [](double a) { return std::sqrt(a); }, positive);
  unary("cbrt",     [](const Var& a) { return cbrt(a); },         [](double a) { return std::cbrt(a); }, std::vector<std::vector<double>>{{-8.0}, {-0.01}, {0.02}, {1.0}, {1e3}});
  unary("square",   [](const Var& a) { return square(a); },       [](double a) { return a * a; }, anywhere);
  unary("sin",      [](const Var& a) { return sin(a); },          [](double a) { return std::sin(a); }, anywhere);
  unary("cos",      [](const Var& a) { return cos(a); },          [](double a) { return std::cos(a); }, anywhere);
  unary("tan",      [](const Var& a) { return tan(a); },          [](double a) { return std::tan(a); }, std::vector<std::vector<double>>{{-1.2}, {-0.3}, {0.0}, {0.9}, {1.5}});
  unary("asin",     [](const Var& a) { return asin(a); },         [](double a) { return std::asin(a); }, unit);
  unary("acos",     [](const Var& a) { return acos(a); },         [](double a) { return std::acos(a); }, unit);
  unary("atan",     [](const Var& a) { return atan(a); },         [](double a) { return std::atan(a); }, anywhere);
  unary("sinh",     [](const Var& a) { return sinh(a); },         [](double a) { return std::sinh(a); }, std::vector<std::vector<double>>{{-10.0}, {-0.5}, {0.0}, {1.0}, {15.0}});
  unary("cosh",     [](const Var& a) { return cosh(a); },         [](double a) { return std::cosh(a); }, std::vector<std::vector<double>>{{-10.0}, {-0.5}, {0.0}, {1.0}, {15.0}});
  unary("tanh",     [](const Var& a) { return tanh(a); },         [](double a) { return std::tanh(a); }, std::vector<std::vector<double>>{{-8.0}, {-0.5}, {0.0}, {1.0}, {5.0}});
  unary("asinh",    [](const Var& a) { return asinh(a); },        [](double a) { return std::asinh(a); }, anywhere);
  unary("acosh",    [](const Var& a) { return acosh(a); },        [](double a) { return std::acosh(a); }, std::vector<std::vector<double>>{{1.01}, {1.5}, {3.0}, {50.0}, {1e4}});
  unary("atanh",    [](const Var& a) { return atanh(a); },        [](double a) { return std::atanh(a); }, unit);
  unary("sigmoid",  [](const Var& a) { return sigmoid(a); },      [](double a) { return 1 / (1 + std::exp(-a)); }, wide);
  unary("relu",     [](const Var& a) { return relu(a); },         [](double a) { return a > 0 ? a : 0.0; }, kinks, false);
  unary("softplus", [](const Var& a) { return softplus(a); },     [](double a) { return a > 30 ? a + std::exp(-a) : std::log1p(std::exp(a)); }, wide);
  unary("abs",      [](const Var& a) { return abs(a); },          [](double a) { return std::fabs(a); }, kinks, false);
  unary("erf",      [](const Var& a) { return erf(a); },          [](double a) { return std::erf(a); }, std::vector<std::vector<double>>{{-3.0}, {-0.5}, {0.0}, {0.7}, {4.0}});
  unary("erfc",     [](const Var& a) { return erfc(a); },         [](double a) { return std::erfc(a); }, std::vector<std::vector<double>>{{-3.0}, {-0.5}, {0.0}, {0.7}, {4.0}});
  unary("add_scalar",  [](const Var& a) { return a + 2.5; },       [](double a) { return a + 2.5; }, anywhere);
  unary("sub_const",  [](const Var& a) { return a - 2.5; },       [](double a) { return a - 2.5; }, anywhere);
  unary("rsub_scalar", [](const Var& a) { return 2.5 - a; },       [](double a) { return 2.5 - a; }, anywhere);
  unary("mul_scalar",  [](const Var& a) { return a * -1.75; },     [](double a) { return a * -1.75; }, anywhere);
  unary("div_scalar",  [](const Var& a) { return a / 0.3; },       [](double a) { return a / 0.3; }, anywhere);
  unary("rdiv_scalar", [](const Var& a) { return 0.3 / a; },       [](double a) { return 0.3 / a; }, std::vector<std::vector<double>>{{-3.0}, {-0.2}, {0.05}, {2.0}, {1e3}});
  unary("pow_scalar",  [](const Var& a) { return pow(a, 2.7); },   [](double a) { return std::pow(a, 2.7); }, positive);
  unary("pow_const2", [](const Var& a) { return pow(a, 2.0); },   [](double a) { return a * a; }, anywhere);
  unary("pow_const_neg", [](const Var& a) { return pow(a, -1.5); }, [](double a) { return std::pow(a, -1.5); }, positive);
  unary("rpow_scalar", [](const Var& a) { return pow(2.5, a); },   [](double a) { return std::pow(2.5, a); }, std::vector<std::vector<double>>{{-10.0}, {-0.5}, {0.0}, {1.0}, {20.0}});
  unary("max_scalar",  [](const Var& a) { return max(a, 0.5); },   [](double a) { return std::fmax(a, 0.5); }, std::vector<std::vector<double>>{{-2.0}, {0.4999}, {0.5001}, {3.0}}, false);
  unary("min_scalar",  [](const Var& a) { return min(a, 0.5); },   [](double a) { return std::fmin(a, 0.5); }, std::vector<std::vector<double>>{{-2.0}, {0.4999}, {0.5001}, {3.0}}, false);
  binary("add",   [](const Var& a, const Var& b) { return a + b; }, [](double a, double b) { return a + b; }, pairs);
  binary("sub",   [](const Var& a, const Var& b) { return a - b; }, [](double a, double b) { return a - b; }, pairs);
  binary("mul",   [](const Var& a, const Var& b) { return a * b; }, [](double a, double b) { return a * b; }, pairs);
  binary("div",   [](const Var& a, const Var& b) { return a / b; }, [](double a, double b) { return a / b; }, pairs);
  binary("pow",   [](const Var& a, const Var& b) { return pow(a, b); }, [](double a, double b) { return std::pow(a, b); }, pos_pairs);
  binary("atan2", [](const Var& a, const Var& b) { return atan2(a, b); }, [](double a, double b) { return std::atan2(a, b); }, pairs);
  binary("hypot", [](const Var& a, const Var& b) { return hypot(a, b); }, [](double a, double b) { return std::hypot(a, b); }, pairs);
  binary("max",   [](const Var& a, const Var& b) { return max(a, b); }, [](double a, double b) { return std::fmax(a, b); }, pairs, false);
  binary("min",   [](const Var& a, const Var& b) { return min(a, b); }, [](double a, double b) { return std::fmin(a, b); }, pairs, false);
  // clang-format on
  return t;
}

} // namespace tapegrad_test
