#define BOOST_TEST_MODULE tapegrad expression parser
#include <boost/test/unit_test.hpp>
