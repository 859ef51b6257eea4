// crypto/sct.cpp: see sct.hpp.
#include "crypto/sct.hpp"
