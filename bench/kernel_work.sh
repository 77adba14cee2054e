#!/usr/bin/env bash
# Kernel work per proxied request: io_uring SQEs and CQEs (tracepoints io_uring_submit_req and
# io_uring_complete), syscalls (raw_syscalls:sys_enter), minor page faults and proxy CPU per
# request, for xgate (one worker; several builds may be given to compare them) and, in the
# same run, syscalls/faults/CPU for HAProxy (nbthread 1). wrk -c32 keep-alive GETs against
# bench/backend. Needs root (perf tracepoints), wrk, haproxy, perf.
#   bench/kernel_work.sh [XGATE_BINARY ...]     # default build/xgate
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
SECS=${SECS:-5}
BENCH_NAME=kernel_work
RUN_DIR=$(mktemp -d /tmp/xgate-kernel-work.XXXXXX)
. bench/lib.sh
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do stop_pid "$p"; done; rm -rf "$RUN_DIR"; }
trap cleanup EXIT
command -v perf >/dev/null || die "perf is needed (apt-get install linux-perf)"
[ $# -gt 0 ] || set -- "$BUILD/xgate"

BP=$(pick_port)
"$BUILD/bench/backend" "127.0.0.1:$BP" >/dev/null 2>&1 & PIDS+=($!)
wait_port "$BP" || die "backend did not start"

measure() { # name pid port: one warm-up, then SECS seconds under perf
	local name=$1 pid=$2 port=$3 c0 c1 f0 f1 req out
	wrk -t1 -c32 -d2s "http://127.0.0.1:$port/" >/dev/null
	c0=$(cpu_ticks "$pid"); f0=$(awk '{print $10}' "/proc/$pid/stat")
	perf stat -x, -e io_uring:io_uring_submit_req,io_uring:io_uring_complete,raw_syscalls:sys_enter \
		-p "$pid" -o "$RUN_DIR/perf.txt" -- sleep "$SECS" &
	out=$(wrk -t1 -c32 -d"${SECS}s" "http://127.0.0.1:$port/")
	wait $!
	c1=$(cpu_ticks "$pid"); f1=$(awk '{print $10}' "/proc/$pid/stat")
	req=$(echo "$out" | awk '/requests in/ {print $1}')
	awk -F, -v name="$name" -v req="$req" -v cpu=$((c1 - c0)) -v flt=$((f1 - f0)) \
		-v hz="$(getconf CLK_TCK)" '
		/submit_req/ {sq = $1} /io_uring_complete/ {cq = $1} /sys_enter/ {sc = $1}
		END {printf "| %s | %d | %.2f | %.2f | %.3f | %.4f | %.2f |\n", name, req, sq / req,
			cq / req, sc / req, flt / req, cpu / hz * 1e6 / req}' "$RUN_DIR/perf.txt"
}

echo "| proxy | requests | SQEs/req | CQEs/req | syscalls/req | minor faults/req | CPU µs/req |"
echo "|---|---:|---:|---:|---:|---:|---:|"
for x in "$@"; do
	P=$(pick_port); A=$(pick_port)
	cat >"$RUN_DIR/xgate.json" <<JSON
{"workers": 1, "listeners": [{"name": "http", "address": "127.0.0.1:$P"}],
 "admin": {"address": "127.0.0.1:$A"},
 "upstreams": [{"name": "b", "targets": [{"address": "127.0.0.1:$BP"}]}],
 "routes": [{"name": "all", "paths": ["/"], "upstream": "b"}]}
JSON
	"$x" -c "$RUN_DIR/xgate.json" 2>"$RUN_DIR/xgate.log" & pid=$!; PIDS+=($pid)
	wait_port "$P" || die "$x did not start"
	measure "xgate ($x)" "$pid" "$P"
	stop_pid "$pid"
done
H=$(pick_port)
cat >"$RUN_DIR/haproxy.cfg" <<CFG
global
    nbthread 1
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    option http-keep-alive
listen web
    bind 127.0.0.1:$H
    server b 127.0.0.1:$BP
CFG
haproxy -f "$RUN_DIR/haproxy.cfg" -db >"$RUN_DIR/haproxy.log" 2>&1 & pid=$!; PIDS+=($pid)
wait_port "$H" || die "haproxy did not start"
measure "haproxy (nbthread 1)" "$pid" "$H"
