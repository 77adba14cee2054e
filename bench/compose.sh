#!/usr/bin/env bash
# Cost of composition: a route composing three backend calls (BFF) against a route proxying
# one of them, on the same backends, in alternating phases of one run.
#   - throughput phases (CONNECTIONS, default 64): xgate CPU per request, composed vs single
#     (issue goal: a composed request costs at most 2.5x a proxied one);
#   - latency phases (1 connection): p50 of each backend called directly, of the proxied
#     route and of the composed route (goal: composed p50 <= slowest call + 0.3 ms).
#
#   bench/compose.sh
#   DURATION=10 ROUNDS=3 bench/compose.sh
#
# Environment: DURATION (s per phase, 5), ROUNDS (3), CONNECTIONS (64), BUILD (build),
# PROXY_CPU (last CPU), CLIENT_CPU (the others: wrk and the backends).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-64}
BUILD=${BUILD:-build}
NCPU=$(nproc)
PROXY_CPU=${PROXY_CPU:-$((NCPU - 1))}
CLIENT_CPU=${CLIENT_CPU:-$(seq 0 $((NCPU - 1)) | grep -vx "$PROXY_CPU" | paste -sd, || true)}
CLIENT_CPU=${CLIENT_CPU:-0}
CLK_TCK=$(getconf CLK_TCK)
RUN_DIR=$(mktemp -d /tmp/xgate-compose-bench.XXXXXX)
BENCH_NAME=compose-bench
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
for tool in wrk curl taskset; do
	command -v "$tool" >/dev/null || die "$tool missing (make deps)"
done
backend=$BUILD/bench/backend
[ -x "$backend" ] || die "$backend not built (make)"

ports=()
for name in a b c; do
	port=$(pick_port)
	ports+=("$port")
	taskset -c "$CLIENT_CPU" "$backend" "127.0.0.1:$port" 2>"$RUN_DIR/backend-$name.log" &
	pids+=($!)
done
LISTEN_PORT=$(pick_port)
ADMIN_PORT=$(pick_port)
cat >"$RUN_DIR/xgate.json" <<JSON
{
  "workers": 1,
  "listeners": [{"name": "bench", "address": "127.0.0.1:$LISTEN_PORT"}],
  "admin": {"address": "127.0.0.1:$ADMIN_PORT"},
  "upstreams": [
    {"name": "a", "targets": [{"address": "127.0.0.1:${ports[0]}"}], "keepalive": 256},
    {"name": "b", "targets": [{"address": "127.0.0.1:${ports[1]}"}], "keepalive": 256},
    {"name": "c", "targets": [{"address": "127.0.0.1:${ports[2]}"}], "keepalive": 256}],
  "routes": [
    {"name": "single", "paths": ["/single"], "upstream": "a"},
    {"name": "composed", "paths": ["/composed"], "compose": {"calls": [
      {"name": "a", "upstream": "a", "path": "/a", "group": "a"},
      {"name": "b", "upstream": "b", "path": "/b", "group": "b"},
      {"name": "c", "upstream": "c", "path": "/c", "group": "c"}]}}
  ]
}
JSON
taskset -c "$PROXY_CPU" "$BUILD/xgate" -c "$RUN_DIR/xgate.json" 2>"$RUN_DIR/xgate.log" &
XGATE_PID=$!
pids+=("$XGATE_PID")
for port in "${ports[@]}" "$LISTEN_PORT" "$ADMIN_PORT"; do
	wait_port "$port" || die "xgate or a backend did not start: $(tail -5 "$RUN_DIR/xgate.log")"
done
curl -fsS "http://127.0.0.1:$LISTEN_PORT/composed" | grep -q '"c"' ||
	die "/composed does not answer the three calls"

# wrk on URL with N connections; prints "req/s xgate_cpu_s us_per_req p50_us".
phase() {
	local t0 t1 rps p50
	t0=$(cpu_ticks "$XGATE_PID")
	taskset -c "$CLIENT_CPU" wrk -t1 -c"$2" -d"${DURATION}s" --latency "$1" \
		>"$RUN_DIR/wrk.out" 2>&1 || true
	t1=$(cpu_ticks "$XGATE_PID")
	grep -q "Non-2xx" "$RUN_DIR/wrk.out" && die "non-2xx answers on $1: $(cat "$RUN_DIR/wrk.out")"
	rps=$(wrk_rps "$RUN_DIR/wrk.out")
	p50=$(wrk_p50_us "$RUN_DIR/wrk.out")
	awk -v rps="$rps" -v d="$DURATION" -v t="$((t1 - t0))" -v hz="$CLK_TCK" -v p50="$p50" \
		'BEGIN { cpu = t / hz; printf "%.0f %.2f %.2f %.0f\n", rps, cpu, rps ? cpu * 1e6 / (rps * d) : 0, p50 }'
}

echo "compose-bench: xgate (1 worker) on CPU $PROXY_CPU; wrk and 3 backends on CPU $CLIENT_CPU;" \
	"$ROUNDS rounds x ${DURATION}s per phase"
taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNECTIONS" -d2s "http://127.0.0.1:$LISTEN_PORT/composed" >/dev/null
printf '%-6s %-22s %10s %8s %12s %8s\n' round phase req/s cpu_s cpu_us/req p50_us
declare -A rows
run() { # round label url connections
	local v
	v=$(phase "$3" "$4")
	rows[$2]+="$v"$'\n'
	# shellcheck disable=SC2086
	printf '%-6s %-22s %10s %8s %12s %8s\n' "$1" "$2" $v
}
for r in $(seq "$ROUNDS"); do
	order="single composed"
	((r % 2)) || order="composed single"
	for route in $order; do
		run "$r" "$route@$CONNECTIONS" "http://127.0.0.1:$LISTEN_PORT/$route" "$CONNECTIONS"
	done
	for i in 0 1 2; do
		run "$r" "backend-$i@1" "http://127.0.0.1:${ports[$i]}/x" 1
	done
	for route in $order; do
		run "$r" "$route@1" "http://127.0.0.1:$LISTEN_PORT/$route" 1
	done
done
echo
col() { printf '%s' "${rows[$1]}" | awk -v c="$2" '{ print $c }' | median; }
single_cpu=$(col "single@$CONNECTIONS" 3)
composed_cpu=$(col "composed@$CONNECTIONS" 3)
slowest=0
for i in 0 1 2; do
	p=$(col "backend-$i@1" 4)
	slowest=$(awk -v a="$slowest" -v b="$p" 'BEGIN { print (b > a) ? b : a }')
done
awk -v s="$single_cpu" -v c="$composed_cpu" -v sp="$(col single@1 4)" -v cp="$(col composed@1 4)" \
	-v slow="$slowest" -v sr="$(col "single@$CONNECTIONS" 1)" -v cr="$(col "composed@$CONNECTIONS" 1)" 'BEGIN {
	printf "median xgate CPU per request: single %.2f us, composed (3 calls) %.2f us = %.2fx (goal <= 2.5x)\n", s, c, c / s
	printf "median req/s at load: single %.0f, composed %.0f\n", sr, cr
	printf "median p50, 1 connection: slowest backend called directly %.0f us, single %.0f us, composed %.0f us = slowest + %.0f us (goal <= +300 us)\n", slow, sp, cp, cp - slow
}'
