// OpenSSL's allocator as build/sigil installs it (app/openssl_alloc.hpp): OpenSSL's own
// semantics for zero sizes and NULL.
#include <cstring>

#include <openssl/crypto.h>
#include <catch2/catch.hpp>

#include "app/openssl_alloc.hpp"

using namespace sigil::app;

TEST_CASE("openssl allocator: OpenSSL's semantics for zero sizes and NULL") {
  namespace a = openssl_alloc;
  CHECK(a::allocate(0, __FILE__, __LINE__) == nullptr);
  void* p = a::allocate(16, __FILE__, __LINE__);
  REQUIRE(p != nullptr);
  std::memset(p, 'x', 16);
  p = a::reallocate(p, 4096, __FILE__, __LINE__);  // grows, keeps the bytes
  REQUIRE(p != nullptr);
  CHECK(static_cast<const char*>(p)[15] == 'x');
  CHECK(a::reallocate(p, 0, __FILE__, __LINE__) == nullptr);  // frees (ASan: no leak)
  void* q = a::reallocate(nullptr, 8, __FILE__, __LINE__);    // allocates
  REQUIRE(q != nullptr);
  a::release(q, __FILE__, __LINE__);
  a::release(nullptr, __FILE__, __LINE__);  // nothing
}

TEST_CASE("openssl allocator: too late once OpenSSL has allocated, and says so") {
  // build/sigil installs it from a constructor, before anything else (the end-to-end tests read
  // its startup line); here OpenSSL allocates first, and the install must then refuse.
  const bool before = openssl_allocator_installed();
  CRYPTO_free(CRYPTO_malloc(32, __FILE__, __LINE__), __FILE__, __LINE__);
  CHECK_FALSE(install_openssl_allocator());
  CHECK(openssl_allocator_installed() == before);
  void* m = CRYPTO_malloc(32, __FILE__, __LINE__);  // OpenSSL goes on working
  CHECK(m != nullptr);
  CRYPTO_free(m, __FILE__, __LINE__);
}
