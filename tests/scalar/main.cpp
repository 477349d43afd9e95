#define BOOST_TEST_MODULE tapegrad scalar engine
#include <boost/test/unit_test.hpp>
