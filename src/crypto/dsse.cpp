// crypto/dsse.cpp: see dsse.hpp.
#include "crypto/dsse.hpp"
