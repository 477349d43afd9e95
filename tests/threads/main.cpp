#define BOOST_TEST_MODULE tapegrad threads
#include <boost/test/unit_test.hpp>
