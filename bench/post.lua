-- wrk script: POST one RFC 7662 introspection request, again and again.
--
-- The request comes from the environment (set by bench/loads.py), so one script serves
-- every scenario:
--   BENCH_BODY    form body, e.g. token=...&token_type_hint=access_token
--   BENCH_ACCEPT  Accept header (empty: none)
--   BENCH_AUTH    Authorization header (empty: none)
--
-- Quirks worth knowing:
--   * No request() or response() function is defined on purpose: either one makes wrk call
--     into Lua for every request/response, which costs wrk CPU on a core it shares with the
--     upstream. Without them wrk formats the request once per thread and reuses the bytes.
--   * wrk adds Host and Content-Length itself, but not Content-Type.
--   * done() runs in a fresh Lua state of the main thread after the run: globals set by the
--     worker threads are not visible there; only its three arguments are.
--   * wrk counts non-2xx/3xx answers in `requests` too (and in errors.status): the harness
--     treats errors.status > 0 as an invalid run rather than a fast one.

wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY") or "token=bench-token"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"

local accept = os.getenv("BENCH_ACCEPT") or ""
if accept ~= "" then
  wrk.headers["Accept"] = accept
end

local authorization = os.getenv("BENCH_AUTH") or ""
if authorization ~= "" then
  wrk.headers["Authorization"] = authorization
end

-- One machine-readable line for the harness; latency figures are in microseconds.
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"p50":%.1f,"p90":%.1f,"p99":%.1f,"p999":%.1f,"max":%.1f,"mean":%.1f}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, latency.mean))
end
