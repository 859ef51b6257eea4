// kube/status.hpp: report the outcome of compiling a custom resource in its status: a Ready
// condition plus status.observedGeneration, written through the status subresource.
//
// Role: build the merge patch and write it only when the object does not already show it, so
// that writing status (which makes the watch deliver a MODIFIED event, which recompiles, which
// writes status...) converges after one write instead of looping. ready_status_patch is pure
// (nlohmann only in the .cpp); StatusWriter does the PATCH through kube::Client. Conditions of
// other types already on the object are kept; lastTransitionTime changes only when the Ready
// status flips.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "common/clock.hpp"
#include "kube/client.hpp"

namespace sigil::kube {

struct ReadyCondition {
  bool ready = false;
  std::string reason;   // CamelCase, metav1.Condition rules: "Compiled", "InvalidPolicy"
  std::string message;  // one line for people; capped at 4096 bytes
  int64_t observed_generation = 0;  // the metadata.generation that was compiled
};

// The merge patch
//   {"status":{"observedGeneration":N,"conditions":[...other types kept...,
//    {"type":"Ready","status":"True|False","reason":..,"message":..,
//     "lastTransitionTime":..,"observedGeneration":N}]}}
// or nullopt when `object` already shows exactly that (same generation, status, reason and
// message). invalid_argument for a reason that metav1.Condition would reject; parse_error
// when the object's JSON does not parse.
Result<std::optional<std::string>> ready_status_patch(const Object& object,
                                                      const ReadyCondition& condition,
                                                      std::chrono::system_clock::time_point now);

// RFC 3339 UTC with second precision: "2024-05-01T12:00:00Z".
std::string rfc3339(std::chrono::system_clock::time_point t);

class StatusWriter {
 public:
  StatusWriter(std::shared_ptr<Client> client, Resource resource, const Clock& clock);

  // Patches `object`'s status when it differs from `condition`; true when a PATCH was sent.
  // Also skips the PATCH when this writer already wrote the same condition for the same
  // resourceVersion of the object (the watch has not delivered our own write yet).
  //
  // Damped when another writer undoes ours: two replicas that compile an object differently
  // (a Secret one of them could not read, two versions during a rolling upgrade) would
  // otherwise rewrite each other's status for as long as they disagree, each write answered by
  // the other's watch within milliseconds. When the object shows something else although this
  // writer already wrote this very condition for it, the write is sent again at most once per
  // backoff (1 s, doubling to 5 min) from the last one. A condition of our own that changed is
  // written at once; the backoff starts over after 10 minutes without a rewrite. (It does not
  // start over when the object shows our write: in a quarrel it does, between the other's.)
  boost::asio::awaitable<Result<bool>> write(Object object, ReadyCondition condition,
                                             Deadline deadline);
  uint64_t patches() const;
  size_t remembered() const;  // objects whose last write is remembered (bounded: see write)

 private:
  struct Written {
    std::string uid, resource_version, fingerprint;
    std::chrono::system_clock::time_point at{};  // when it was sent
    std::chrono::milliseconds backoff{0};  // no rewrite of the same condition before at + this
  };
  std::shared_ptr<Client> client_;
  Resource resource_;
  const Clock& clock_;
  mutable std::mutex mu_;
  std::map<std::string, Written> written_;  // by object key
  uint64_t patches_ = 0;
};

}  // namespace sigil::kube
