// verify/detail/kms.hpp: the engine's `key.kms` keys: read them, judge with them, look again.
//
// Role: internal to the verify module (included by engine.cpp and kms.cpp only, never by a
// public verify header or another module). For one verification: read every `key.kms` key the
// matched policies name through the KeyResolver (keys.hpp), and judge a policy on a copy
// holding those keys; when no signature verifies with a key, ask the resolver once to look
// again and judge once more with a changed key. Depends on crypto, policy and keys.hpp.
#pragma once

#include <map>
#include <set>
#include <string>
#include <vector>

#include <boost/asio/awaitable.hpp>

#include "common/deadline.hpp"
#include "common/result.hpp"
#include "crypto/keys.hpp"
#include "policy/policy.hpp"
#include "verify/keys.hpp"

namespace sigil::verify::detail {

// The `key.kms` keys of one verification, by URI: the key, or why it could not be read.
using KmsKeys = std::map<std::string, Result<crypto::PublicKey>>;

// Reads every `key.kms` key the matched policies name (the resolver caches). keys: null when
// no Key Vault access is configured (every such key is then an error). Never throws.
boost::asio::awaitable<KmsKeys> resolve_kms(KeyResolver* keys,
                                            const std::vector<const policy::Policy*>& matched,
                                            Deadline deadline);

// Judges one policy. A policy with `key.kms` authorities is judged on a copy holding the
// keys read for this verification (an authority whose key could not be read is left out);
// when it is not satisfied, each KMS key some signature was checked against is looked at
// again (a rotation: the resolver rate-limits), and a changed key gets one more judgement.
// When the policy still fails and a key was unreadable, the key is the reason
// (POLICY_UNAVAILABLE, never cached). `rotated` is set when a key changed here. `kms` and
// `refetched` are shared by the policies of one verification. Every judgement spends `limits`.
boost::asio::awaitable<policy::PolicyResult> judge_policy(
    KeyResolver* keys, const policy::Policy& p, const std::string& digest,
    const policy::EvidenceFor& evidence_for, const policy::JudgeLimits& limits, KmsKeys& kms,
    std::set<std::string>& refetched, Deadline deadline, bool& rotated);

}  // namespace sigil::verify::detail
