// crypto/rekor.cpp: see rekor.hpp.
#include "crypto/rekor.hpp"
