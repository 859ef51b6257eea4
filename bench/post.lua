-- bench/post.lua: wrk script for bench/run.sh. POSTs the AdmissionReview in $BENCH_BODY with
-- Content-Type application/json on every request, and at the end prints machine-readable
-- lines (wrk.rps=..., latencies in ms) after wrk's own report.
local path = os.getenv("BENCH_BODY")
if not path then
  error("BENCH_BODY must name the AdmissionReview JSON file")
end
local f = assert(io.open(path, "rb"))
local body = f:read("*a")
f:close()

wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = "application/json"

function done(summary, latency, requests)
  local secs = summary.duration / 1e6
  local e = summary.errors
  io.write(string.format("wrk.requests=%d\n", summary.requests))
  io.write(string.format("wrk.rps=%.1f\n", summary.requests / secs))
  io.write(string.format("wrk.p50_ms=%.3f\n", latency:percentile(50) / 1000))
  io.write(string.format("wrk.p99_ms=%.3f\n", latency:percentile(99) / 1000))
  io.write(string.format("wrk.max_ms=%.3f\n", latency.max / 1000))
  io.write(string.format("wrk.errors=%d\n", e.connect + e.read + e.write + e.timeout))
  io.write(string.format("wrk.non2xx=%d\n", e.status))
end
