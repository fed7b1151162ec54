-- wrk script: POST one 100-span batch per request, with fresh ids every time.
-- The body template is read from BODY_FILE (written by ingest_bench.py); each
-- request replaces the 8-hex-digit id prefix PPPPPPPP, so the store sees new
-- traces and spans rather than the same ones again.
local body_file = os.getenv("BODY_FILE") or "/tmp/rastir-bench-body.json"
local token = os.getenv("INGEST_TOKEN")
-- HONOR_RETRY_AFTER=1: after a 429 a connection waits Retry-After seconds before its
-- next request, as the SDK exporter does. Unset: retry at once (an adversarial client).
local honor = os.getenv("HONOR_RETRY_AFTER") == "1"
local backoffs = 0     -- 429s answered and not yet waited for
local backoff_ms = 1000
local pieces = {}   -- the template split at each PPPPPPPP, prefixes in between
local holes = {}    -- indexes in pieces where a prefix goes
local counter = 0
statuses = {}
local thread_id = 0
local threads = {}

function setup(thread)
  thread_id = thread_id + 1
  thread:set("tid", thread_id)
  table.insert(threads, thread)
end

function init(args)
  local f = assert(io.open(body_file, "rb"))
  local template = f:read("*a")
  f:close()
  -- Split once; per request only the prefixes change, and table.concat copies the
  -- body once (string.gsub would scan it with the pattern matcher every time).
  local pos = 1
  while true do
    local s, e = string.find(template, "PPPPPPPP", pos, true)
    if not s then break end
    table.insert(pieces, string.sub(template, pos, s - 1))
    table.insert(pieces, "")
    table.insert(holes, #pieces)
    pos = e + 1
  end
  table.insert(pieces, string.sub(template, pos))
  math.randomseed(os.time() * 1000 + tid)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  if token and token ~= "" then
    wrk.headers["Authorization"] = "Bearer " .. token
  end
  statuses = {}
end

function request()
  counter = counter + 1
  -- tid (1..15) in the first digit, a counter and randomness after: unique per request
  local prefix = string.format("%x%07x", tid % 15 + 1, (counter * 7919 + math.random(0, 65535)) % 0x10000000)
  for i = 1, #holes do
    pieces[holes[i]] = prefix
  end
  return wrk.format(nil, "/v1/telemetry", nil, table.concat(pieces))
end

if honor then
  -- Defined only when needed: wrk then runs every request through a timer.
  function delay()
    -- Called before a connection's next request, soon after its response (another
    -- connection's delay() may run in between: one wait per 429 either way).
    if backoffs > 0 then
      backoffs = backoffs - 1
      return backoff_ms
    end
    return 0
  end
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  if honor and status == 429 then
    backoffs = backoffs + 1
    backoff_ms = 1000 * (tonumber(headers["Retry-After"] or headers["retry-after"]) or 1)
  end
end

function done(summary, latency, requests)
  local merged = {}
  for _, thread in ipairs(threads) do
    local s = thread:get("statuses")
    for code, n in pairs(s) do
      merged[code] = (merged[code] or 0) + n
    end
  end
  local parts = {}
  for code, n in pairs(merged) do
    table.insert(parts, string.format("\"%d\": %d", code, n))
  end
  io.write(string.format(
    "RESULT {\"requests\": %d, \"duration_us\": %d, \"errors_connect\": %d, \"errors_read\": %d, \"errors_write\": %d, \"errors_status\": %d, \"errors_timeout\": %d, \"p50_us\": %d, \"p90_us\": %d, \"p99_us\": %d, \"max_us\": %d, \"statuses\": {%s}}\n",
    summary.requests, summary.duration, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.status, summary.errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    table.concat(parts, ", ")))
end
