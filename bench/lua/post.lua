-- wrk script for djllm's benchmark: POSTs one JSON body, prints the run's figures as one JSON line.
--
-- Environment (read by every wrk thread):
--   BENCH_BODY_FILE   path of the request body (JSON)
--   BENCH_TOKEN       bearer token (optional)
--   BENCH_HEADERS     more request headers (optional), one `Name: value` a line (a gateway's routing headers)
--   BENCH_TIMESTAMPS  "1": also record when each thread started and when its last response arrived
--                     (monotonic clock via LuaJIT's ffi), so throughput can be taken over the span in which
--                     requests actually completed instead of wrk's fixed duration (see bench/loadgen.py).
-- Without BENCH_TIMESTAMPS no per-request Lua runs: wrk sends its pre-built request, as fast as it can.

local body_file = assert(os.getenv("BENCH_BODY_FILE"), "BENCH_BODY_FILE is not set")
local f = assert(io.open(body_file, "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
local token = os.getenv("BENCH_TOKEN")
if token and token ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. token
end
for line in (os.getenv("BENCH_HEADERS") or ""):gmatch("[^\n]+") do
  local name, value = line:match("^%s*([^:]+):%s*(.-)%s*$")
  if name then
    wrk.headers[name] = value
  end
end

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

if os.getenv("BENCH_TIMESTAMPS") == "1" then
  local ffi = require("ffi")
  ffi.cdef [[
    typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
    int clock_gettime(int clk_id, bench_timespec *tp);
  ]]
  local ts = ffi.new("bench_timespec")
  local function now()
    ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
    return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) * 1e-9
  end

  function init(args)
    started = now()
    finished = 0
  end

  function response(status, headers, body)
    finished = now()
  end
end

function done(summary, latency, requests)
  local first, last = nil, nil
  for _, thread in ipairs(threads) do
    local s, e = thread:get("started"), thread:get("finished")
    if s and (first == nil or s < first) then first = s end
    if e and e > 0 and (last == nil or e > last) then last = e end
  end
  local errors = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"mean":%.1f,"stdev":%.1f,"min":%d,"max":%d,"p50":%d,"p90":%d,"p95":%d,"p99":%d},' ..
    '"span_s":%s}\n',
    summary.requests, summary.duration, summary.bytes,
    errors.connect, errors.read, errors.write, errors.status, errors.timeout,
    latency.mean, latency.stdev, latency.min, latency.max,
    latency:percentile(50), latency:percentile(90), latency:percentile(95), latency:percentile(99),
    (first and last) and string.format("%.6f", last - first) or "null"))
end
