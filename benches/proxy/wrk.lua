-- wrk script of benches/proxy.sh.
--
-- WRK_DELAY_MS (optional, fractional): each connection waits this long after a
-- response before it sends its next request, which holds the offered rate near
-- connections * 1000 / WRK_DELAY_MS req/s. wrk times a request from the moment it
-- is written, so the wait is not counted in the latency. Fractions are honoured on
-- average (wrk's delay() takes whole milliseconds).
--
-- done() prints one line the script parses:
--   RESULT requests=N duration_us=N errors=N p50_us=N p90_us=N p99_us=N max_us=N mean_us=N

local delay_ms = tonumber(os.getenv("WRK_DELAY_MS") or "")
if delay_ms and delay_ms > 0 then
    math.randomseed(os.time() + math.floor(os.clock() * 1000000))
    function delay()
        return math.floor(delay_ms + math.random())
    end
end

function done(summary, latency, requests)
    local e = summary.errors
    io.write(string.format(
        "RESULT requests=%d duration_us=%d errors=%d p50_us=%d p90_us=%d p99_us=%d max_us=%d mean_us=%.1f\n",
        summary.requests, summary.duration,
        e.connect + e.read + e.write + e.status + e.timeout,
        latency:percentile(50), latency:percentile(90), latency:percentile(99),
        latency.max, latency.mean))
end
