// crypto/jcs.cpp: see jcs.hpp.
#include "crypto/jcs.hpp"
