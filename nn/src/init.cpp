// Initialisers: draw a fresh random tensor from autodiff's generator and copy it in place.

#include <nn/init.hpp>

#include <autodiff/error.hpp>
#include <fmt/format.h>

#include <cmath>
#include <cstring>

namespace nn::init {

namespace {
void assign(Tensor& dst, const Tensor& src) {
  const Tensor s = src.to(dst.dtype());
  Tensor d = dst;
  if (d.dtype() == autodiff::DType::float32)
    std::memcpy(d.mutable_data<float>().data(), s.data<float>().data(),
                sizeof(float) * static_cast<std::size_t>(d.numel()));
  else if (d.dtype() == autodiff::DType::float64)
    std::memcpy(d.mutable_data<double>().data(), s.data<double>().data(),
                sizeof(double) * static_cast<std::size_t>(d.numel()));
  else
    throw autodiff::Error("nn: init: cannot initialise an int64 tensor");
}
Tensor noise_like(const Tensor& t, bool normal) {
  autodiff::NoGradGuard guard;
  return normal ? autodiff::randn(t.shape(), autodiff::DType::float64)
                : autodiff::rand(t.shape(), autodiff::DType::float64);
}
} // namespace

std::pair<double, double> fans(const Tensor& w) {
  if (w.dim() < 2)
    throw autodiff::Error(fmt::format("nn: init: fan in and fan out need at least 2 dims, got shape {}", w.shape()));
  double field = 1;
  for (int i = 2; i < w.dim(); ++i)
    field *= static_cast<double>(w.size(i));
  return {static_cast<double>(w.size(1)) * field, static_cast<double>(w.size(0)) * field};
}

double gain(std::string_view nl, double param) {
  if (nl == "linear" || nl == "sigmoid" || nl == "identity") return 1.0;
  if (nl == "tanh") return 5.0 / 3.0;
  if (nl == "relu") return std::sqrt(2.0);
  if (nl == "leaky_relu") return std::sqrt(2.0 / (1 + param * param));
  if (nl == "selu") return 3.0 / 4.0;
  throw autodiff::Error(fmt::format("nn: init: unknown nonlinearity '{}'", nl));
}

void uniform_(Tensor& t, double lo, double hi) { assign(t, noise_like(t, false) * (hi - lo) + lo); }
void normal_(Tensor& t, double mean, double stddev) { assign(t, noise_like(t, true) * stddev + mean); }
void constant_(Tensor& t, double value) { assign(t, autodiff::full(t.shape(), value, autodiff::DType::float64)); }
void zeros_(Tensor& t) { constant_(t, 0.0); }

void xavier_uniform_(Tensor& t, double g) {
  const auto [in, out] = fans(t);
  const double a = g * std::sqrt(6.0 / (in + out));
  uniform_(t, -a, a);
}
void xavier_normal_(Tensor& t, double g) {
  const auto [in, out] = fans(t);
  normal_(t, 0.0, g * std::sqrt(2.0 / (in + out)));
}
void kaiming_uniform_(Tensor& t, double a, std::string_view nl) {
  const double bound = gain(nl, a) * std::sqrt(3.0 / fans(t).first);
  uniform_(t, -bound, bound);
}
void kaiming_normal_(Tensor& t, double a, std::string_view nl) {
  normal_(t, 0.0, gain(nl, a) / std::sqrt(fans(t).first));
}

} // namespace nn::init
