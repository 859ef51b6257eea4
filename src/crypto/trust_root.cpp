// crypto/trust_root.cpp: see trust_root.hpp.
#include "crypto/trust_root.hpp"
