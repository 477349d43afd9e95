#define BOOST_TEST_MODULE tapegrad tensor engine
#include <boost/test/unit_test.hpp>
