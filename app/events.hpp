// app/events.hpp: which Kubernetes Event a /validate decision gets, and on which object.
//
// Role: the bridge from server::Validator's decision observer to kube::EventRecorder. Pure
// choice of the Event (no I/O here): the recorder rate-limits, queues and sends it.
//
// The involvedObject is what a person runs `kubectl describe` on:
// - a denied CREATE of an object with a controller (a Pod of a ReplicaSet, Job, StatefulSet or
//   DaemonSet): the controller, by ownerReference (name and uid). The Pod never exists, and its
//   controller is where its owner looks (next to the controller's own FailedCreate Event). The
//   message names the Pod;
// - a denied CREATE without a controller (`kubectl run`, a Deployment, a CronJob): the object
//   itself by kind, namespace and name, without a uid, as it never exists. `kubectl get events`
//   shows it (kubectl describe of a missing object cannot);
// - a warned CREATE with a controller: the controller too (one Event per controller and
//   interval during a `mode: warn` rollout, not one per Pod);
// - a denied UPDATE, or a warned admission without controller (the object is or will be
//   stored): the object itself, with its uid, so `kubectl describe` lists it.
// Kyverno for comparison emits on the policy for blocked resources (kyverno#3279: an Event on an
// object that does not exist), and policy-controller emits none; sigil's policies are
// cluster-scoped, so an Event on the policy would land in `default` for everyone to read.
// Dry-run requests get no Event (no side effects on dry run).
#pragma once

#include <optional>
#include <vector>

#include "admission/admission.hpp"
#include "kube/events.hpp"
#include "verify/verdict.hpp"

namespace sigil::app {

inline constexpr const char* kReasonDenied = "ImageNotVerified";
inline constexpr const char* kReasonWarned = "ImageVerificationWarning";

// The Event for one decision; nullopt when there is none to report (allowed without a warned
// verdict, a dry run, no namespace).
std::optional<kube::Event> admission_event(const admission::Request& request,
                                           const admission::Response& response,
                                           const std::vector<verify::Verdict>& verdicts);

}  // namespace sigil::app
