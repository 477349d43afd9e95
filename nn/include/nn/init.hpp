#pragma once
// Parameter initialisers, with PyTorch's formulas. They draw from autodiff's thread generator, so
// autodiff::manual_seed makes them reproducible.

#include <autodiff/tensor.hpp>

#include <string_view>

namespace nn::init {

using autodiff::Tensor;

// fan_in and fan_out of a weight as PyTorch computes them: [out, in, k...] -> in*k, out*k.
std::pair<double, double> fans(const Tensor& w);
// The recommended gain for a nonlinearity: "linear"/"sigmoid" 1, "tanh" 5/3, "relu" sqrt(2),
// "leaky_relu" sqrt(2 / (1 + slope^2)).
double gain(std::string_view nonlinearity, double param = 0.01);

void uniform_(Tensor& t, double lo, double hi);
void normal_(Tensor& t, double mean, double stddev);
void constant_(Tensor& t, double value);
void zeros_(Tensor& t);
void xavier_uniform_(Tensor& t, double gain = 1.0);
void xavier_normal_(Tensor& t, double gain = 1.0);
// mode fan_in; `a` is the negative slope of the leaky_relu that follows (0 for relu).
void kaiming_uniform_(Tensor& t, double a = 0, std::string_view nonlinearity = "leaky_relu");
void kaiming_normal_(Tensor& t, double a = 0, std::string_view nonlinearity = "leaky_relu");

} // namespace nn::init
