-- bench/mutate_validate.lua: wrk script for bench/pinning.py. Each connection alternates
-- POST /mutate of a Pod by tag ($BENCH_MUTATE_BODY) and POST /validate of the same Pod as the
-- API server sends it after applying /mutate's patch ($BENCH_VALIDATE_BODY): one Pod admitted
-- with pinning is two requests. Prints the machine-readable lines of post.lua at the end.
local function slurp(var)
  local path = os.getenv(var)
  if not path then
    error(var .. " must name an AdmissionReview JSON file")
  end
  local f = assert(io.open(path, "rb"))
  local body = f:read("*a")
  f:close()
  return body
end

local headers = { ["Content-Type"] = "application/json" }
local mutate = wrk.format("POST", "/mutate?timeout=10s", headers, slurp("BENCH_MUTATE_BODY"))
local validate = wrk.format("POST", "/validate?timeout=10s", headers, slurp("BENCH_VALIDATE_BODY"))
local n = 0

function request()
  n = n + 1
  if n % 2 == 1 then
    return mutate
  end
  return validate
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
