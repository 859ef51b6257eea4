// The single translation unit holding the compiled implementation of Boost.Asio (with SSL)
// and Boost.Beast. See asio/CMakeLists.txt.
#include <boost/asio/impl/src.hpp>
#include <boost/asio/ssl/impl/src.hpp>
#include <boost/beast/src.hpp>
