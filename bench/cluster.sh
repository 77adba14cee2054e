#!/usr/bin/env bash
# Cost of a cluster rate limit (Redis GCRA round trip, batched per key) against the same
# limit kept locally: one xgate process (1 worker), one backend, one redis-server, wrk
# driving GET /cluster and GET /local in alternating phases of the same run (A B, B A, ...).
# The limit is far above the offered load, so every request is a 200 and the numbers are
# the limiter's cost. Prints per phase req/s, xgate CPU-seconds, requests per xgate
# CPU-second, p50 latency, and Redis CPU; then the medians per route.
#
#   bench/cluster.sh
#   DURATION=10 ROUNDS=3 CONNECTIONS=64 bench/cluster.sh
#
# Environment: DURATION (s per phase, 5), ROUNDS (3), CONNECTIONS (64), WRK_THREADS (1),
# BY ("route": every request the same key, the most batching; "ip" is the same here),
# BUILD (build), PROXY_CPU (last CPU), CLIENT_CPU (the others: wrk, backend, redis).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-64}
WRK_THREADS=${WRK_THREADS:-1}
BY=${BY:-route}
BUILD=${BUILD:-build}
NCPU=$(nproc)
PROXY_CPU=${PROXY_CPU:-$((NCPU - 1))}
CLIENT_CPU=${CLIENT_CPU:-$(seq 0 $((NCPU - 1)) | grep -vx "$PROXY_CPU" | paste -sd, || true)}
CLIENT_CPU=${CLIENT_CPU:-0}
CLK_TCK=$(getconf CLK_TCK)
RUN_DIR=$(mktemp -d /tmp/xgate-cluster-bench.XXXXXX)
BENCH_NAME=cluster-bench
. "$(dirname "$0")/lib.sh"
pids=()

cleanup() {
	local pid
	for pid in "${pids[@]}"; do stop_pid "$pid"; done
	rm -rf "$RUN_DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

[ -x "$BUILD/xgate" ] || die "$BUILD/xgate not built (make)"
for tool in wrk curl redis-server taskset; do
	command -v "$tool" >/dev/null || die "$tool missing (make deps)"
done

BACKEND_PORT=$(pick_port)
LISTEN_PORT=$(pick_port)
ADMIN_PORT=$(pick_port)
REDIS_PORT=$(pick_port)

backend=$BUILD/bench/backend
if [ ! -x "$backend" ]; then
	backend=$RUN_DIR/backend
	gcc -O2 -D_GNU_SOURCE -o "$backend" bench/backend.c || die "cannot build bench/backend.c"
fi
taskset -c "$CLIENT_CPU" "$backend" "127.0.0.1:$BACKEND_PORT" 2>"$RUN_DIR/backend.log" &
pids+=($!)
taskset -c "$CLIENT_CPU" redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$RUN_DIR" \
	--save "" --appendonly no --logfile "$RUN_DIR/redis.log" &
REDIS_PID=$!
pids+=("$REDIS_PID")

LIMIT='"per_s": 100000000, "burst": 100000000, "by": "'$BY'"'
cat >"$RUN_DIR/xgate.json" <<JSON
{
  "workers": 1,
  "listeners": [{"name": "bench", "address": "127.0.0.1:$LISTEN_PORT"}],
  "admin": {"address": "127.0.0.1:$ADMIN_PORT"},
  "upstreams": [{"name": "backend", "targets": [{"address": "127.0.0.1:$BACKEND_PORT"}],
                 "keepalive": 256}],
  "cluster": {"redis": {"address": "127.0.0.1:$REDIS_PORT", "timeout_ms": 200},
              "nodes": 1, "on_redis_error": "closed"},
  "routes": [
    {"name": "cluster", "paths": ["/cluster"], "upstream": "backend",
     "rate_limit": {$LIMIT, "scope": "cluster"}},
    {"name": "local", "paths": ["/local"], "upstream": "backend",
     "rate_limit": {$LIMIT}}
  ]
}
JSON
wait_port "$REDIS_PORT" || die "redis-server did not start"
taskset -c "$PROXY_CPU" "$BUILD/xgate" -c "$RUN_DIR/xgate.json" 2>"$RUN_DIR/xgate.log" &
XGATE_PID=$!
pids+=("$XGATE_PID")
wait_port "$BACKEND_PORT" && wait_port "$LISTEN_PORT" && wait_port "$ADMIN_PORT" ||
	die "xgate or backend did not start: $(tail -5 "$RUN_DIR/xgate.log")"
for _ in $(seq 50); do
	curl -fsS -o "$RUN_DIR/metrics" "http://127.0.0.1:$ADMIN_PORT/metrics" || true
	grep -q '^xgate_cluster_redis_up 1' "$RUN_DIR/metrics" && break
	sleep 0.1
done
for path in cluster local; do
	curl -fsS -o /dev/null "http://127.0.0.1:$LISTEN_PORT/$path" || die "/$path does not answer"
done

# Prints "req/s cpu_s req_per_cpu_s p50_us redis_cpu_s" for one phase on route $1.
phase() {
	local t0 t1 r0 r1 rps p50
	t0=$(cpu_ticks "$XGATE_PID") r0=$(cpu_ticks "$REDIS_PID")
	taskset -c "$CLIENT_CPU" wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency \
		"http://127.0.0.1:$LISTEN_PORT/$1" >"$RUN_DIR/wrk.out" 2>&1 || true
	t1=$(cpu_ticks "$XGATE_PID") r1=$(cpu_ticks "$REDIS_PID")
	grep -q "Non-2xx" "$RUN_DIR/wrk.out" && die "non-2xx answers on /$1: $(cat "$RUN_DIR/wrk.out")"
	rps=$(wrk_rps "$RUN_DIR/wrk.out")
	p50=$(wrk_p50_us "$RUN_DIR/wrk.out")
	awk -v rps="$rps" -v d="$DURATION" -v t="$((t1 - t0))" -v r="$((r1 - r0))" -v hz="$CLK_TCK" \
		-v p50="$p50" 'BEGIN { cpu = t / hz
		printf "%.0f %.2f %.0f %.0f %.2f\n", rps, cpu, cpu ? rps * d / cpu : 0, p50, r / hz }'
}

echo "cluster-bench: xgate (1 worker) on CPU $PROXY_CPU; wrk, backend, redis on CPU $CLIENT_CPU;" \
	"$CONNECTIONS connections, $ROUNDS x ${DURATION}s per route, by=$BY"
taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNECTIONS" -d2s "http://127.0.0.1:$LISTEN_PORT/local" >/dev/null
printf '%-6s %-8s %10s %8s %14s %8s %10s\n' round route req/s cpu_s req/cpu_s p50_us redis_cpu
declare -A rows
run() { # round route
	local v
	v=$(phase "$2")
	rows[$2]+="$v"$'\n'
	# shellcheck disable=SC2086
	printf '%-6s %-8s %10s %8s %14s %8s %10s\n' "$1" "$2" $v
}
for r in $(seq "$ROUNDS"); do
	if ((r % 2)); then run "$r" cluster; run "$r" local; else run "$r" local; run "$r" cluster; fi
done
echo
for route in cluster local; do
	printf '%s' "${rows[$route]}" | awk -v route="$route" '
		{ rps[NR] = $1; rpc[NR] = $3; p50[NR] = $4 }
		function med(a, n,   i, j, t) {
			for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
			return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
		END { printf "median %-8s req/s %.0f  req per xgate CPU-second %.0f  p50 %.0f us\n",
			route, med(rps, NR), med(rpc, NR), med(p50, NR) }'
done
fb=$(curl -fsS "http://127.0.0.1:$ADMIN_PORT/metrics" |
	awk '/^xgate_ratelimit_fallback_total/ { s += $2 } END { print s + 0 }')
echo "fallbacks (Redis unusable) during the run: $fb"
