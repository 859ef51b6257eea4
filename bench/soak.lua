-- bench/soak.lua: wrk script for bench/soak.py. Cycles through the AdmissionReviews named in
-- $SOAK_BODIES (files separated by ':'; one per request, in order, so "a:a:a:a:d" makes one in
-- five a denial) and waits $SOAK_DELAY_MS between requests on each connection (0: as fast as
-- it goes). Prints wrk.* lines as bench/post.lua does.
local bodies = {}
for path in string.gmatch(os.getenv("SOAK_BODIES") or "", "[^:]+") do
  local f = assert(io.open(path, "rb"))
  bodies[#bodies + 1] = f:read("*a")
  f:close()
end
if #bodies == 0 then
  error("SOAK_BODIES must name AdmissionReview JSON files")
end
local delay_ms = tonumber(os.getenv("SOAK_DELAY_MS") or "0")
local n = 0

function request()
  n = n + 1
  local body = bodies[(n - 1) % #bodies + 1]
  return wrk.format("POST", nil, { ["Content-Type"] = "application/json" }, body)
end

function delay()
  return delay_ms
end

function done(summary, latency, requests)
  local secs = summary.duration / 1e6
  local e = summary.errors
  io.write(string.format("wrk.requests=%d\n", summary.requests))
  io.write(string.format("wrk.rps=%.1f\n", summary.requests / secs))
  io.write(string.format("wrk.p50_ms=%.3f\n", latency:percentile(50) / 1000))
  io.write(string.format("wrk.p99_ms=%.3f\n", latency:percentile(99) / 1000))
  io.write(string.format("wrk.errors=%d\n", e.connect + e.read + e.write + e.timeout))
  io.write(string.format("wrk.non2xx=%d\n", e.status))
end
