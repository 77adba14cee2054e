-- Shared wrk done() hook: one machine-readable line that bench/run.sh parses.
-- Latencies are in microseconds; errors.status counts non-2xx/3xx responses.
return function(summary, latency, requests)
	local e = summary.errors
	io.write(string.format(
		"XGBENCH requests=%d duration_us=%d bytes=%d p50_us=%d p90_us=%d p99_us=%d " ..
		"max_us=%d connect_err=%d read_err=%d write_err=%d status_err=%d timeout_err=%d\n",
		summary.requests, summary.duration, summary.bytes,
		latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
		e.connect, e.read, e.write, e.status, e.timeout))
end
