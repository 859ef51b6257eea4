// crypto/x509.cpp: see x509.hpp.
#include "crypto/x509.hpp"
