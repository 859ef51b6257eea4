// app/openssl_alloc.hpp: OpenSSL's allocations through functions that skip free(NULL).
//
// Why: Asio calls ERR_clear_error() before every SSL_read and SSL_write, about six times per
// admission, and OpenSSL 3's ERR_clear_error frees 32 slots of the thread's error state that are
// almost always NULL. glibc's free(NULL) returns at once; tcmalloc's (the server binary's
// allocator) costs about 30 instructions, so those calls were about 6k of the 124k instructions
// of a cached admission (bench/README.md). OpenSSL lets a program replace its allocator before
// its first allocation (CRYPTO_set_mem_functions): these call malloc, realloc and free with
// OpenSSL's own semantics (a zero-size malloc is NULL, realloc of NULL allocates, realloc to 0
// frees), and free only what is not NULL.
#pragma once

#include <cstddef>

namespace sigil::app {

// Installs the functions below as OpenSSL's allocator. Must run before OpenSSL allocates
// anything (main.cpp calls it from a constructor that runs before static initialisers); false
// when it was too late, and then OpenSSL keeps its own (nothing else changes).
bool install_openssl_allocator() noexcept;

// Whether install_openssl_allocator() succeeded in this process.
bool openssl_allocator_installed() noexcept;

namespace openssl_alloc {
void* allocate(size_t num, const char* file, int line);
void* reallocate(void* p, size_t num, const char* file, int line);
void release(void* p, const char* file, int line);
}  // namespace openssl_alloc

}  // namespace sigil::app
