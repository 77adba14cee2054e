-- 1 KiB JSON POST on the proxied route: adds request-body forwarding.
local dir = os.getenv("XGB_BENCH_DIR") or "bench"
local prefix, suffix = '{"name":"bench","pad":"', '"}'
local filler = string.rep("x", 1024 - #prefix - #suffix)
wrk.method = "POST"
wrk.path = "/api/users"
wrk.headers["Host"] = "bench.xgate.test"
wrk.headers["User-Agent"] = "wrk-xgate-bench"
wrk.headers["Content-Type"] = "application/json"
wrk.body = prefix .. filler .. suffix
assert(#wrk.body == 1024)
done = dofile(dir .. "/report.lua")
