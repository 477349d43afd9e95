// Tape lifetime: tapes destroyed in any order, generations that never wrap, and the scratch tape
// of hessian/gradcheck mixed with user tapes. Both were memory errors or silently wrong values.

#include <autodiff/autodiff.hpp>

#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

using namespace autodiff;

BOOST_AUTO_TEST_SUITE(tape_lifetime)

BOOST_AUTO_TEST_CASE(tapes_destroyed_front_to_back) {
  Tape& base = Tape::active();
  std::vector<std::unique_ptr<Tape>> tapes;
  tapes.push_back(std::make_unique<Tape>());
  tapes.push_back(std::make_unique<Tape>());
  BOOST_TEST(&Tape::active() == tapes[1].get());
  tapes.clear(); // destroys the bottom one first: it used to leave a dangling pointer in the top one
  BOOST_TEST(&Tape::active() == &base);
  Var x = 1.0; // was a heap-use-after-free in Tape::push_node
  BOOST_TEST(gradient(x * x, {x})[0] == 2.0);
}

BOOST_AUTO_TEST_CASE(any_destruction_order_keeps_the_stack) {
  std::mt19937 rng(11);
  for (int trial = 0; trial < 200; ++trial) {
    Tape& base = Tape::active();
    std::vector<std::unique_ptr<Tape>> live;
    const int n = 1 + trial % 6;
    for (int k = 0; k < n; ++k)
      live.push_back(std::make_unique<Tape>());
    while (!live.empty()) {
      const auto k = static_cast<std::size_t>(rng() % live.size());
      live.erase(live.begin() + static_cast<std::ptrdiff_t>(k));
      // The active tape is always the newest tape still alive.
      BOOST_TEST(&Tape::active() == (live.empty() ? &base : live.back().get()));
      Var y = 3.0;
      BOOST_TEST(gradient(y * 2.0, {y})[0] == 2.0);
    }
  }
}

BOOST_AUTO_TEST_CASE(a_scratch_tape_ending_below_a_user_tape) {
  Tape& base = Tape::active();
  auto scratch = std::make_unique<ScratchTape>(); // what hessian/gradcheck push for their call
  auto user = std::make_unique<Tape>();           // made during the call, kept after it
  scratch.reset();
  BOOST_TEST(&Tape::active() == user.get());
  Var z = 1.0;
  BOOST_TEST(gradient(exp(z), {z})[0] == std::exp(1.0));
  user.reset();
  BOOST_TEST(&Tape::active() == &base);
  // The scratch tape is pushed again by the next call, on top of whatever is active then.
  const Matrix h = hessian([](const std::vector<Var>& x) { return x[0] * x[0] * x[0]; }, std::vector<double>{2.0});
  BOOST_TEST(h[0][0] == 12.0);
  BOOST_TEST(&Tape::active() == &base);
}

BOOST_AUTO_TEST_CASE(generations_are_64_bits_and_never_wrap) {
  static_assert(std::is_same_v<decltype(Tape::active().generation()), std::uint64_t>);
  static_assert(std::is_same_v<decltype(Var().generation()), std::uint64_t>);
  Tape tape;
  Var stale = 5.0;
  const std::uint64_t g = stale.generation();
  // 2^32 resets later: a 32-bit generation would equal the stale value's again and accept it.
  detail::set_next_generation_for_testing(g + (std::uint64_t{1} << 32));
  tape.reset();
  BOOST_TEST(tape.generation() == g + (std::uint64_t{1} << 32));
  Var fresh = 1.0;
  BOOST_CHECK_THROW((void)(stale * fresh), Error);
  BOOST_CHECK_THROW((void)exp(stale), Error);
}

BOOST_AUTO_TEST_SUITE_END()
