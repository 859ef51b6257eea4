// crypto/rekor_merkle.cpp: RFC 6962 / 9162 inclusion proofs of Rekor entries, ending in the
// log's signed checkpoint.
#include "crypto/rekor.hpp"
#include "crypto/rekor_detail.hpp"

#include <cstdint>
#include <new>
#include <string>
#include <utility>
#include <vector>

namespace sigil::crypto {

namespace {

using detail::kHashSize;
using detail::same_log;
using detail::verify_err;

std::string node_hash(std::string_view left, std::string_view right) {
  std::string buf;
  buf.reserve(1 + left.size() + right.size());
  buf.push_back('\x01');
  buf.append(left);
  buf.append(right);
  return sha256(buf);
}

}  // namespace

std::string merkle_leaf_hash(std::string_view leaf) {
  std::string buf;
  buf.reserve(leaf.size() + 1);
  buf.push_back('\0');
  buf.append(leaf);
  return sha256(buf);
}

Result<std::string> merkle_root_from_inclusion_proof(int64_t index, int64_t tree_size,
                                                     std::string_view leaf_hash,
                                                     const std::vector<std::string>& proof) {
  if (tree_size <= 0) return verify_err("inclusion proof is for an empty tree");
  if (index < 0 || index >= tree_size) {
    return verify_err("inclusion proof index " + std::to_string(index) +
                      " is outside the tree of size " + std::to_string(tree_size));
  }
  if (leaf_hash.size() != kHashSize) return verify_err("leaf hash is not 32 bytes");
  // RFC 9162 section 2.1.3.2.
  uint64_t fn = static_cast<uint64_t>(index);
  uint64_t sn = static_cast<uint64_t>(tree_size) - 1;
  std::string r(leaf_hash);
  for (const auto& p : proof) {
    if (p.size() != kHashSize) return verify_err("inclusion proof hash is not 32 bytes");
    if (sn == 0) {
      return verify_err("inclusion proof has " + std::to_string(proof.size()) +
                        " hashes, more than a tree of size " + std::to_string(tree_size) +
                        " needs for index " + std::to_string(index));
    }
    if ((fn & 1) == 1 || fn == sn) {
      r = node_hash(p, r);
      if ((fn & 1) == 0) {
        while ((fn & 1) == 0 && fn != 0) {
          fn >>= 1;
          sn >>= 1;
        }
      }
    } else {
      r = node_hash(r, p);
    }
    fn >>= 1;
    sn >>= 1;
  }
  if (sn != 0) {
    return verify_err("inclusion proof has " + std::to_string(proof.size()) +
                      " hashes, fewer than a tree of size " + std::to_string(tree_size) +
                      " needs for index " + std::to_string(index));
  }
  if (r.size() != kHashSize) return make_error(Errc::internal, "SHA-256 failed");
  return r;
}

Status verify_inclusion_proof(const TlogEntry& entry, const TransparencyLog& log,
                              bool require_checkpoint) {
  try {
    if (!entry.inclusion_proof) {
      return verify_err("log entry " + std::to_string(entry.log_index) + " has no inclusion proof");
    }
    if (auto same = same_log(entry, log); !same) return same;
    const InclusionProof& p = *entry.inclusion_proof;
    if (p.root_hash.size() != kHashSize)
      return verify_err("inclusion proof root hash is not 32 bytes");
    auto root = merkle_root_from_inclusion_proof(
        p.log_index, p.tree_size, merkle_leaf_hash(entry.canonicalized_body), p.hashes);
    if (!root) return std::move(root).error();
    if (*root != p.root_hash) {
      return verify_err("inclusion proof of log entry " + std::to_string(entry.log_index) +
                        " does not lead to its root hash");
    }
    if (p.checkpoint.empty()) {
      if (require_checkpoint) return verify_err("inclusion proof has no checkpoint");
      return {};
    }
    auto cp = verify_checkpoint(p.checkpoint, log);
    if (!cp) return std::move(cp).error();
    if (cp->tree_size != p.tree_size) {
      return verify_err("checkpoint is for a tree of size " + std::to_string(cp->tree_size) +
                        ", the inclusion proof for size " + std::to_string(p.tree_size));
    }
    if (cp->root_hash != p.root_hash) {
      return verify_err("checkpoint root hash differs from the inclusion proof's");
    }
    return {};
  } catch (const std::bad_alloc&) {
    return make_error(Errc::internal, "inclusion proof check exhausted memory");
  }
}

}  // namespace sigil::crypto
