#pragma once
// tapegrad's nn: everything public, in one include.

#include <nn/checkpoint.hpp>
#include <nn/data.hpp>
#include <nn/init.hpp>
#include <nn/layers.hpp>
#include <nn/loss.hpp>
#include <nn/module.hpp>
#include <nn/optim.hpp>
#include <nn/parallel.hpp>
#include <nn/scheduler.hpp>
