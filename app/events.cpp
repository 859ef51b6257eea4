// app/events.cpp: see events.hpp.
#include "app/events.hpp"

#include <string>
#include <utility>

namespace sigil::app {

namespace {

kube::ObjectReference the_object(const admission::Request& r, bool with_uid) {
  kube::ObjectReference o;
  o.api_version = r.group.empty() ? r.version : r.group + "/" + r.version;
  o.kind = r.kind;
  o.namespace_ = r.namespace_;
  o.name = r.name;
  if (with_uid) o.uid = r.object_uid;
  return o;
}

}  // namespace

std::optional<kube::Event> admission_event(const admission::Request& request,
                                           const admission::Response& response,
                                           const std::vector<verify::Verdict>& verdicts) {
  if (request.dry_run || request.namespace_.empty()) return std::nullopt;
  kube::Event e;
  e.type = "Warning";
  if (!response.allowed) {
    e.reason = kReasonDenied;
    e.action = "Deny";
    const bool created = request.operation == "CREATE";
    if (created && !request.controller.name.empty()) {
      e.involved.api_version = request.controller.api_version;
      e.involved.kind = request.controller.kind;
      e.involved.namespace_ = request.namespace_;
      e.involved.name = request.controller.name;
      e.involved.uid = request.controller.uid;
      e.message = request.kind + " " +
                  (request.name.empty() ? "(name not yet generated)" : request.name) +
                  " denied: " + response.message;
    } else {
      e.involved = the_object(request, !created);
      e.message = response.message;
    }
    return e;
  }
  std::string msg;
  for (const auto& v : verdicts) {
    if (v.outcome != verify::Outcome::warned) continue;
    if (!msg.empty()) msg += "; ";
    msg += verify::message(v);
    if (msg.size() > kube::kMaxEventMessage) break;
  }
  if (msg.empty()) return std::nullopt;
  e.reason = kReasonWarned;
  e.action = "Warn";
  if (request.operation == "CREATE" && !request.controller.name.empty()) {
    // As for a denial: one Event per controller and interval, not one per Pod it creates.
    e.involved = {request.controller.api_version, request.controller.kind, request.namespace_,
                  request.controller.name, request.controller.uid};
    e.message = request.kind + " " +
                (request.name.empty() ? "(name not yet generated)" : request.name) +
                " admitted with a warning: " + msg;
  } else {
    e.involved = the_object(request, true);
    e.message = std::move(msg);
  }
  return e;
}

}  // namespace sigil::app
