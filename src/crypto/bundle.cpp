// crypto/bundle.cpp: see bundle.hpp.
#include "crypto/bundle.hpp"
