#define BOOST_TEST_MODULE tapegrad backpropagation
#include <boost/test/unit_test.hpp>
