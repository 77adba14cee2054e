#!/usr/bin/env bash
# Cost of metrics collection on the request path: one xgate process, one backend, wrk
# driving GET /bench in alternating phases with and without a GET /metrics scrape every
# second (A B, B A, ... so drift and order hit both sides alike). Prints req/s per phase, the mean
# of each side, the difference, and the scrape size and latency.
#
#   bench/metrics.sh
#   DURATION=10 ROUNDS=3 CONNECTIONS=64 bench/metrics.sh
#
# Environment: DURATION (s per phase, 5), ROUNDS (pairs of phases, 5), CONNECTIONS (64),
# WRK_THREADS (1), BUILD (build), PROXY_CPU (last CPU), CLIENT_CPU (the others).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-5}
CONNECTIONS=${CONNECTIONS:-64}
WRK_THREADS=${WRK_THREADS:-1}
BUILD=${BUILD:-build}
NCPU=$(nproc)
PROXY_CPU=${PROXY_CPU:-$((NCPU - 1))}
CLIENT_CPU=${CLIENT_CPU:-$(seq 0 $((NCPU - 1)) | grep -vx "$PROXY_CPU" | paste -sd, || true)}
CLIENT_CPU=${CLIENT_CPU:-0}
RUN_DIR=$(mktemp -d /tmp/xgate-metrics-bench.XXXXXX)
BENCH_NAME=metrics-bench
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
command -v wrk >/dev/null || die "wrk missing (make deps)"
command -v curl >/dev/null || die "curl missing (make deps)"

BACKEND_PORT=$(pick_port)
LISTEN_PORT=$(pick_port)
ADMIN_PORT=$(pick_port)

backend=$BUILD/bench/backend
if [ ! -x "$backend" ]; then
	backend=$RUN_DIR/backend
	gcc -O2 -D_GNU_SOURCE -o "$backend" bench/backend.c || die "cannot build bench/backend.c"
fi
taskset -c "$CLIENT_CPU" "$backend" "127.0.0.1:$BACKEND_PORT" 2>"$RUN_DIR/backend.log" &
pids+=($!)

cat >"$RUN_DIR/xgate.json" <<EOF
{
  "workers": 1,
  "listeners": [{"name": "bench", "address": "127.0.0.1:$LISTEN_PORT"}],
  "admin": {"address": "127.0.0.1:$ADMIN_PORT"},
  "upstreams": [{"name": "backend", "targets": [{"address": "127.0.0.1:$BACKEND_PORT"}],
                 "keepalive": 256}],
  "routes": [{"name": "bench", "paths": ["/bench"], "upstream": "backend"}]
}
EOF
taskset -c "$PROXY_CPU" "$BUILD/xgate" -c "$RUN_DIR/xgate.json" 2>"$RUN_DIR/xgate.log" &
pids+=($!)
wait_port "$BACKEND_PORT" && wait_port "$LISTEN_PORT" && wait_port "$ADMIN_PORT" ||
	die "xgate or backend did not start: $(tail -5 "$RUN_DIR/xgate.log")"
curl -fsS "http://127.0.0.1:$LISTEN_PORT/bench" >/dev/null || die "route /bench does not answer"

# Scrapes every second until killed; logs "bytes seconds" per scrape.
scraper() {
	while :; do
		curl -fsS -o /dev/null -w '%{size_download} %{time_total}\n' \
			"http://127.0.0.1:$ADMIN_PORT/metrics" >>"$RUN_DIR/scrapes" || echo "fail 0" >>"$RUN_DIR/scrapes"
		sleep 1
	done
}

phase() { # $1 = none|scrape; prints req/s
	local spid=
	if [ "$1" = scrape ]; then
		taskset -c "$CLIENT_CPU" bash -c "$(declare -f scraper); ADMIN_PORT=$ADMIN_PORT RUN_DIR=$RUN_DIR scraper" &
		spid=$!
	fi
	taskset -c "$CLIENT_CPU" wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"${DURATION}s" \
		"http://127.0.0.1:$LISTEN_PORT/bench" >"$RUN_DIR/wrk.out" 2>&1 || true
	if [ -n "$spid" ]; then
		kill "$spid" 2>/dev/null || true
		wait "$spid" 2>/dev/null || true
	fi
	grep -q "Non-2xx" "$RUN_DIR/wrk.out" && die "non-2xx answers during the run: $(cat "$RUN_DIR/wrk.out")"
	awk '/^Requests\/sec:/ { print $2 }' "$RUN_DIR/wrk.out"
}

echo "metrics-bench: xgate on CPU $PROXY_CPU, wrk/backend/scraper on CPU $CLIENT_CPU," \
	"$CONNECTIONS connections, $ROUNDS x ${DURATION}s per side"
taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNECTIONS" -d2s "http://127.0.0.1:$LISTEN_PORT/bench" >/dev/null
none=() scrape=()
printf '%-6s %-12s %s\n' round phase req/s
run_none() { v=$(phase none); none+=("$v"); printf '%-6s %-12s %s\n' "$1" "no scrape" "$v"; }
run_scrape() { v=$(phase scrape); scrape+=("$v"); printf '%-6s %-12s %s\n' "$1" "scrape 1/s" "$v"; }
# A B, B A, A B, ...: neither side always runs first.
for r in $(seq "$ROUNDS"); do
	if ((r % 2)); then run_none "$r"; run_scrape "$r"; else run_scrape "$r"; run_none "$r"; fi
done
mean() { printf '%s\n' "$@" | awk '{ s += $1 } END { printf "%.0f", s / NR }'; }
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { printf "%.2f", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
mn=$(mean "${none[@]}") ms=$(mean "${scrape[@]}")
# Each pair ran back to back, so its ratio cancels slow drift (other load on the box).
ratios=()
for i in "${!none[@]}"; do
	ratios+=("$(awk -v a="${none[$i]}" -v b="${scrape[$i]}" 'BEGIN { print (b - a) * 100 / a }')")
done
echo
printf 'mean req/s without scrapes: %s\n' "$mn"
printf 'mean req/s with a scrape every second: %s\n' "$ms"
printf 'median per-pair change with scrapes: %+.2f%% (pairs: %s)\n' "$(median "${ratios[@]}")" \
	"$(printf '%+.1f%% ' "${ratios[@]}")"
awk '$1 != "fail" { n++; b += $1; t += $2; if ($2 > m) m = $2 } $1 == "fail" { f++ }
     END { printf "scrapes: %d ok, %d failed, %.0f bytes, mean %.2f ms, max %.2f ms\n",
           n, f, n ? b / n : 0, n ? t * 1000 / n : 0, m * 1000 }' "$RUN_DIR/scrapes"
