// crypto/tsa.cpp: see tsa.hpp.
#include "crypto/tsa.hpp"
