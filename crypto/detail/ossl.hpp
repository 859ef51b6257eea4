// crypto/detail/ossl.hpp: owning pointers for OpenSSL objects, and the error helper the
// crypto sources share. PRIVATE to crypto/: included only by its .cpp files, never by another
// module or a public header.
#pragma once

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include <memory>
#include <string>
#include <utility>

#include "common/result.hpp"

namespace sigil::crypto::detail {

// Frees with F.
template <class T, void (*F)(T*)>
struct Free {
  void operator()(T* p) const noexcept { F(p); }
};
template <class T, void (*F)(T*)>
using OsslPtr = std::unique_ptr<T, Free<T, F>>;

using PkeyPtr = OsslPtr<EVP_PKEY, EVP_PKEY_free>;
using PkeyCtxPtr = OsslPtr<EVP_PKEY_CTX, EVP_PKEY_CTX_free>;
using MdCtxPtr = OsslPtr<EVP_MD_CTX, EVP_MD_CTX_free>;
using X509Ptr = OsslPtr<X509, X509_free>;
using StorePtr = OsslPtr<X509_STORE, X509_STORE_free>;
using StoreCtxPtr = OsslPtr<X509_STORE_CTX, X509_STORE_CTX_free>;
using GeneralNamesPtr = OsslPtr<GENERAL_NAMES, GENERAL_NAMES_free>;
using ObjectPtr = OsslPtr<ASN1_OBJECT, ASN1_OBJECT_free>;
using Utf8Ptr = OsslPtr<ASN1_UTF8STRING, ASN1_UTF8STRING_free>;

// sk_X509_* are inline functions per translation unit: their deleters are spelled out.
// A stack that does not own its certificates (they belong to Certificate objects).
struct StackDeleter {
  void operator()(STACK_OF(X509) * p) const noexcept { sk_X509_free(p); }
};
using StackPtr = std::unique_ptr<STACK_OF(X509), StackDeleter>;
// A stack that owns a reference to each certificate (X509_STORE_CTX_get1_chain).
struct OwningStackDeleter {
  void operator()(STACK_OF(X509) * p) const noexcept { sk_X509_pop_free(p, X509_free); }
};
using OwningStackPtr = std::unique_ptr<STACK_OF(X509), OwningStackDeleter>;
// Buffers OpenSSL allocated (i2d_* output).
struct OpensslFree {
  void operator()(unsigned char* p) const noexcept { OPENSSL_free(p); }
};

// Every failure path leaves OpenSSL's thread-local error queue empty, so a later, unrelated
// call never reports a stale error.
inline Error openssl_error(Errc code, std::string message) {
  ERR_clear_error();
  return make_error(code, std::move(message));
}

}  // namespace sigil::crypto::detail
