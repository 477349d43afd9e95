#define BOOST_TEST_MODULE tapegrad command - line tool
#include <boost/test/unit_test.hpp>
