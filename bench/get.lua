-- Small GET on the proxied route: measures per-request proxy overhead.
local dir = os.getenv("XGB_BENCH_DIR") or "bench"
wrk.method = "GET"
wrk.path = "/api/users/42"
wrk.headers["Host"] = "bench.xgate.test"
wrk.headers["User-Agent"] = "wrk-xgate-bench"
done = dofile(dir .. "/report.lua")
