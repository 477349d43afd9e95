#define BOOST_TEST_MODULE tapegrad nn
#include <boost/test/unit_test.hpp>
