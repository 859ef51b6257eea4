// sigil: a Kubernetes validating admission webhook that admits a pod only if every image in it
// carries a cosign signature the cluster's policies trust.
#include <cstdlib>

#include "app/commands.hpp"
#include "app/openssl_alloc.hpp"

#if defined(SIGIL_WITH_TCMALLOC)
#include <gperftools/malloc_extension.h>
#endif

// OpenSSL's allocator is replaceable only before its first allocation: this runs before the
// binary's static initialisers (priority 101, the first not reserved), some of which use OpenSSL.
__attribute__((constructor(101))) static void use_openssl_allocator() {
  (void)sigil::app::install_openssl_allocator();
}

int main(int argc, char** argv) {
#if defined(SIGIL_WITH_TCMALLOC)
  // tcmalloc lets its per-thread caches hold up to 32 MiB of freed memory by default and gives
  // it back slowly: RSS crept up by about 10 MiB over a 10-minute soak while the live heap
  // stayed near 3 MB (bench/README.md, the soak). 2 MiB keeps RSS flat at the same instruction
  // count per cached admission. The environment variable still wins.
  if (std::getenv("TCMALLOC_MAX_TOTAL_THREAD_CACHE_BYTES") == nullptr) {
    MallocExtension::instance()->SetNumericProperty("tcmalloc.max_total_thread_cache_bytes",
                                                    size_t{2} << 20);
  }
#endif
  return sigil::app::run(argc, argv);
}
