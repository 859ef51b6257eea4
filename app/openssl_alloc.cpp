// app/openssl_alloc.cpp: see app/openssl_alloc.hpp.
#include "app/openssl_alloc.hpp"

#include <openssl/crypto.h>

#include <atomic>
#include <cstdlib>

namespace sigil::app {

namespace {
std::atomic<bool> installed{false};
}  // namespace

namespace openssl_alloc {

void* allocate(size_t num, const char* /*file*/, int /*line*/) {
  return num == 0 ? nullptr : std::malloc(num);  // NOLINT(cppcoreguidelines-no-malloc)
}

void* reallocate(void* p, size_t num, const char* file, int line) {
  if (p == nullptr) return allocate(num, file, line);
  if (num == 0) {
    release(p, file, line);
    return nullptr;
  }
  return std::realloc(p, num);  // NOLINT(cppcoreguidelines-no-malloc)
}

void release(void* p, const char* /*file*/, int /*line*/) {
  if (p != nullptr) std::free(p);  // NOLINT(cppcoreguidelines-no-malloc)
}

}  // namespace openssl_alloc

bool install_openssl_allocator() noexcept {
  const bool ok = CRYPTO_set_mem_functions(&openssl_alloc::allocate, &openssl_alloc::reallocate,
                                           &openssl_alloc::release) == 1;
  if (ok) installed.store(true);
  return ok;
}

bool openssl_allocator_installed() noexcept {
  return installed.load();
}

}  // namespace sigil::app
