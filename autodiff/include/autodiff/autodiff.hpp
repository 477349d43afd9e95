#pragma once
// tapegrad's autodiff: everything public, in one include.

#include <autodiff/derivatives.hpp>
#include <autodiff/error.hpp>
#include <autodiff/format.hpp>
#include <autodiff/gradcheck.hpp>
#include <autodiff/tape.hpp>
#include <autodiff/tensor.hpp>
#include <autodiff/tensor_derivatives.hpp>
#include <autodiff/tensor_gradcheck.hpp>
#include <autodiff/var.hpp>
