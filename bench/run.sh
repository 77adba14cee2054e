#!/usr/bin/env bash
# Core benchmark: xgate vs HAProxy 2.6 vs NGINX, each alone on one core, in front of
# the same two keep-alive backends with the same route, driven by wrk with the
# bundled Lua scripts. Prints req/s, p50/p99 latency and proxy CPU µs per request.
#
#   bench/run.sh                       # everything, defaults below
#   DURATION=30 CONNECTIONS=128 bench/run.sh
#   SYSTEMS="haproxy nginx" SCRIPTS=get bench/run.sh
#
# Environment: DURATION (s, 10), WARMUP (s, 2), ROUNDS (3; systems are interleaved per
# round and the table shows medians), CONNECTIONS (64), WRK_THREADS (1),
# SYSTEMS ("direct xgate haproxy nginx"; "direct" is wrk straight at one backend, the
# ceiling that the client core can drive: a proxy near it is client-bound, compare CPU/req), SCRIPTS ("get post"), BUILD (build),
# PROXY_CPU (last CPU), CLIENT_CPU (CPUs other than PROXY_CPU: wrk and backends),
# BACKEND ("c": bench/backend.c, i.e. $BUILD/bench/backend or built on the fly; or "nginx").
# Raw outputs and the table land in bench/out/<timestamp>/.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-64}
WRK_THREADS=${WRK_THREADS:-1}
SYSTEMS=${SYSTEMS:-"direct xgate haproxy nginx"}
SCRIPTS=${SCRIPTS:-"get post"}
BUILD=${BUILD:-build}
BACKEND=${BACKEND:-c}
NCPU=$(nproc)
PROXY_CPU=${PROXY_CPU:-$((NCPU - 1))}
CLIENT_CPU=${CLIENT_CPU:-$(seq 0 $((NCPU - 1)) | grep -vx "$PROXY_CPU" | paste -sd, || true)}
CLIENT_CPU=${CLIENT_CPU:-0}
CLK_TCK=$(getconf CLK_TCK)
BENCH_DIR=$PWD/bench
RUN_DIR=$(mktemp -d /tmp/xgate-bench.XXXXXX)
BENCH_NAME=bench
. "$(dirname "$0")/lib.sh"
OUT_DIR=bench/out/$(date +%Y%m%d-%H%M%S)
export XGB_BENCH_DIR=$BENCH_DIR

pids=()
declare -A RPS P50 P99 CPU ERRS BUSY

forget_pid() {
	local keep=() pid
	for pid in "${pids[@]}"; do [ "$pid" = "$1" ] || keep+=("$pid"); done
	pids=("${keep[@]}")
}

cleanup() {
	local pid
	for pid in "${pids[@]}"; do stop_pid "$pid"; done
	mkdir -p "$OUT_DIR"
	cp "$RUN_DIR"/*.log "$RUN_DIR"/*.cfg "$RUN_DIR"/*.conf "$RUN_DIR"/*.json "$OUT_DIR"/ 2>/dev/null || true
	rm -rf "$RUN_DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

render() { # template output
	sed -e "s|@RUN_DIR@|$RUN_DIR|g" -e "s|@PROXY_PORT@|${PROXY_PORT:-}|g" \
		-e "s|@BACKEND1_PORT@|$BACKEND1_PORT|g" -e "s|@BACKEND2_PORT@|$BACKEND2_PORT|g" \
		-e "s|@BACKEND_PORT@|${BACKEND_PORT:-}|g" "$1" >"$2"
}

# Busy and total ticks of one CPU from /proc/stat ("busy total").
cpu_core_ticks() {
	awk -v c="cpu$1" '$1 == c { t = 0; for (i = 2; i <= 9; i++) t += $i; print t - $5 - $6, t }' /proc/stat
}

start_backends() {
	case $BACKEND in
	nginx)
		for BACKEND_PORT in $BACKEND1_PORT $BACKEND2_PORT; do
			render bench/backend-nginx.conf.in "$RUN_DIR/backend-$BACKEND_PORT.conf"
			taskset -c "$CLIENT_CPU" nginx -c "$RUN_DIR/backend-$BACKEND_PORT.conf" -p "$RUN_DIR" \
				-e "$RUN_DIR/backend-$BACKEND_PORT.error.log" &
			pids+=($!)
		done
		;;
	c)
		local bin=$BUILD/bench/backend
		if [ ! -x "$bin" ]; then
			bin=$RUN_DIR/backend
			gcc -D_GNU_SOURCE -std=gnu11 -O2 -Wall -Wextra -Werror -Wno-unused-parameter \
				bench/backend.c -o "$bin" || die "cannot build bench/backend.c"
		fi
		for BACKEND_PORT in $BACKEND1_PORT $BACKEND2_PORT; do
			taskset -c "$CLIENT_CPU" "$bin" "127.0.0.1:$BACKEND_PORT" \
				2>"$RUN_DIR/backend-$BACKEND_PORT.log" &
			pids+=($!)
		done
		;;
	*) die "BACKEND must be nginx or c" ;;
	esac
	wait_port "$BACKEND1_PORT" 10 && wait_port "$BACKEND2_PORT" 10 || die "backends did not start"
}

write_xgate_config() {
	cat >"$RUN_DIR/xgate.json" <<EOF
{
  "workers": 1,
  "listeners": [{"name": "bench", "address": "127.0.0.1:$PROXY_PORT"}],
  "admin": {"address": "127.0.0.1:$ADMIN_PORT"},
  "limits": {"max_connections": 8000},
  "upstreams": [
    {"name": "users", "balance": "round_robin",
     "targets": [{"address": "127.0.0.1:$BACKEND1_PORT"}, {"address": "127.0.0.1:$BACKEND2_PORT"}],
     "keepalive": 64, "timeouts_ms": {"connect": 1000, "read": 30000}, "retries": 0}
  ],
  "routes": [{"name": "users", "paths": ["/api/users"], "upstream": "users"}]
}
EOF
}

start_proxy() { # system; sets PROXY_PID
	case $1 in
	direct)
		PROXY_PORT=$BACKEND1_PORT PROXY_PID=""
		return 0
		;;
	xgate)
		ADMIN_PORT=$(pick_port)
		write_xgate_config
		taskset -c "$PROXY_CPU" "$BUILD/xgate" -c "$RUN_DIR/xgate.json" 2>"$RUN_DIR/xgate.log" &
		;;
	haproxy)
		render bench/haproxy.cfg.in "$RUN_DIR/haproxy.cfg"
		taskset -c "$PROXY_CPU" haproxy -db -f "$RUN_DIR/haproxy.cfg" 2>"$RUN_DIR/haproxy.log" &
		;;
	nginx)
		render bench/nginx.conf.in "$RUN_DIR/nginx.conf"
		render bench/nginx-proxy.inc.in "$RUN_DIR/nginx-proxy.inc"
		taskset -c "$PROXY_CPU" nginx -c "$RUN_DIR/nginx.conf" -p "$RUN_DIR" \
			-e "$RUN_DIR/nginx.error.log" &
		;;
	esac
	PROXY_PID=$!
	pids+=("$PROXY_PID")
	if ! wait_port "$PROXY_PORT" 15; then
		tail -20 "$RUN_DIR/$1.log" "$RUN_DIR/$1.error.log" 2>/dev/null >&2 || true
		die "$1 did not start listening on $PROXY_PORT"
	fi
}

# The route must reach both backends and anything else must be a 404: a proxy that
# answers errors fast would otherwise win the benchmark.
sanity_check() { # system
	local url="http://127.0.0.1:$PROXY_PORT" seen="" body code i
	for i in 1 2 3 4; do
		body=$(curl -sS -m 5 "$url/api/users/$i") || die "$1: GET failed"
		seen+=$(grep -o '"backend":"[0-9]*"' <<<"$body")
	done
	grep -q "\"$BACKEND1_PORT\"" <<<"$seen" && grep -q "\"$BACKEND2_PORT\"" <<<"$seen" ||
		die "$1: round robin did not reach both backends ($seen)"
	code=$(curl -sS -m 5 -o /dev/null -w '%{http_code}' -d '{"x":1}' "$url/api/users")
	[ "$code" = 200 ] || die "$1: POST /api/users gave $code"
	code=$(curl -sS -m 5 -o /dev/null -w '%{http_code}' "$url/api/usersX")
	[ "$code" = 404 ] || die "$1: GET /api/usersX gave $code, want 404"
}

run_wrk() { # system script round
	local sys=$1 script=$2 k="$1,$2,$3" out="$RUN_DIR/wrk-$1-$2-$3.log" t0 t1 line requests
	local core_busy0 core_total0 core_busy1 core_total1
	taskset -c "$CLIENT_CPU" wrk -t "$WRK_THREADS" -c "$CONNECTIONS" -d "${WARMUP}s" \
		-s "bench/$script.lua" "http://127.0.0.1:$PROXY_PORT" >/dev/null
	[ -z "$PROXY_PID" ] || t0=$(cpu_ticks "$PROXY_PID")
	read -r core_busy0 core_total0 < <(cpu_core_ticks "$PROXY_CPU")
	taskset -c "$CLIENT_CPU" wrk -t "$WRK_THREADS" -c "$CONNECTIONS" -d "${DURATION}s" \
		--latency -s "bench/$script.lua" "http://127.0.0.1:$PROXY_PORT" >"$out"
	read -r core_busy1 core_total1 < <(cpu_core_ticks "$PROXY_CPU")
	if [ -n "$PROXY_PID" ]; then
		t1=$(cpu_ticks "$PROXY_PID")
		kill -0 "$PROXY_PID" 2>/dev/null || die "$sys died during the $script run"
	fi
	line=$(grep '^XGBENCH ' "$out") || die "$sys/$script: no XGBENCH line in wrk output"
	eval "$(sed 's/^XGBENCH //' <<<"$line" | tr ' ' '\n' | sed 's/^/local w_/')"
	requests=$w_requests
	((requests > 0)) || die "$sys/$script: wrk completed no requests"
	RPS[$k]=$(awk -v r="$requests" -v d="$w_duration_us" 'BEGIN{printf "%.0f", r*1e6/d}')
	P50[$k]=$(awk -v v="$w_p50_us" 'BEGIN{printf "%.3f", v/1000}')
	P99[$k]=$(awk -v v="$w_p99_us" 'BEGIN{printf "%.3f", v/1000}')
	CPU[$k]=""
	[ -z "$PROXY_PID" ] || CPU[$k]=$(awk -v t=$((t1 - t0)) -v hz="$CLK_TCK" \
		-v r="$requests" 'BEGIN{printf "%.2f", t*1e6/hz/r}')
	BUSY[$k]=$(awk -v b=$((core_busy1 - core_busy0)) -v t=$((core_total1 - core_total0)) \
		'BEGIN{ if (t > 0) printf "%.0f", 100*b/t; else print "-" }')
	ERRS[$k]=$((w_connect_err + w_read_err + w_write_err + w_status_err + w_timeout_err))
	note "round $3: $sys $script: ${RPS[$k]} req/s, p50 ${P50[$k]} ms, p99 ${P99[$k]} ms," \
		"${CPU[$k]:--} CPU µs/req, proxy core ${BUSY[$k]}% busy, ${ERRS[$k]} errors"
}

median() { # printf-format values... -> the median (values are numbers, or "" for none)
	local fmt=$1
	shift
	printf '%s\n' "$@" | { grep -v '^$' || true; } | sort -g |
		awk -v f="$fmt" '{ a[NR] = $1 } END { if (NR) printf f "\n", a[int((NR + 1) / 2)] }'
}

# Medians over the rounds, so that load from elsewhere in one round does not decide.
aggregate() {
	local sys script r rps p50 p99 cpu busy errs
	for sys in $SYSTEMS; do
		for script in $SCRIPTS; do
			rps=() p50=() p99=() cpu=() busy=() errs=0
			for r in $(seq "$ROUNDS"); do
				rps+=("${RPS[$sys,$script,$r]}") p50+=("${P50[$sys,$script,$r]}")
				p99+=("${P99[$sys,$script,$r]}") cpu+=("${CPU[$sys,$script,$r]}")
				busy+=("${BUSY[$sys,$script,$r]}")
				errs=$((errs + ${ERRS[$sys,$script,$r]}))
			done
			RPS[$sys,$script]=$(median %.0f "${rps[@]}")
			P50[$sys,$script]=$(median %.3f "${p50[@]}")
			P99[$sys,$script]=$(median %.3f "${p99[@]}")
			CPU[$sys,$script]=$(median %.2f "${cpu[@]}")
			BUSY[$sys,$script]=$(median %.0f "${busy[@]}")
			ERRS[$sys,$script]=$errs
		done
	done
}

ratio() { # a b -> a/b or "-"
	if [ -n "$1" ] && [ -n "$2" ]; then
		awk -v a="$1" -v b="$2" 'BEGIN{ if (b > 0) printf "%.2f", a/b; else print "-" }'
	else
		echo "-"
	fi
}

print_table() {
	local script sys
	echo "| script | system | req/s | p50 ms | p99 ms | CPU µs/req | proxy core busy | errors |" \
		"req/s ÷ HAProxy | req/s ÷ NGINX | CPU ÷ HAProxy | CPU ÷ NGINX |"
	echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
	for script in $SCRIPTS; do
		for sys in $SYSTEMS; do
			[ -n "${RPS[$sys,$script]:-}" ] || continue
			echo "| $script | $sys | ${RPS[$sys,$script]} | ${P50[$sys,$script]} |" \
				"${P99[$sys,$script]} | ${CPU[$sys,$script]:--} | ${BUSY[$sys,$script]}% |" \
				"${ERRS[$sys,$script]} |" \
				"$(ratio "${RPS[$sys,$script]}" "${RPS[haproxy,$script]:-}") |" \
				"$(ratio "${RPS[$sys,$script]}" "${RPS[nginx,$script]:-}") |" \
				"$(ratio "${CPU[$sys,$script]}" "${CPU[haproxy,$script]:-}") |" \
				"$(ratio "${CPU[$sys,$script]}" "${CPU[nginx,$script]:-}") |"
		done
	done
}

main() {
	local sys script round
	for sys in $SYSTEMS; do
		case $sys in
		xgate) [ -x "$BUILD/xgate" ] || die "$BUILD/xgate not built (make), or set SYSTEMS" ;;
		direct) ;;
		haproxy | nginx) command -v "$sys" >/dev/null || die "$sys not installed (make deps)" ;;
		*) die "unknown system $sys" ;;
		esac
	done
	command -v wrk >/dev/null || die "wrk not installed (make deps)"
	ulimit -n "$(ulimit -Hn)" 2>/dev/null || note "could not raise the open files limit"
	BACKEND1_PORT=$(pick_port)
	BACKEND2_PORT=$(pick_port)
	note "proxy on CPU $PROXY_CPU; wrk and backends ($BACKEND) on CPU $CLIENT_CPU;" \
		"$ROUNDS rounds of ${DURATION}s runs, $CONNECTIONS connections, $WRK_THREADS wrk thread(s)"
	start_backends
	for round in $(seq "$ROUNDS"); do
		for sys in $SYSTEMS; do
			PROXY_PORT=$(pick_port)
			start_proxy "$sys"
			[ "$sys" = direct ] || sanity_check "$sys"
			for script in $SCRIPTS; do run_wrk "$sys" "$script" "$round"; done
			[ -z "$PROXY_PID" ] || { stop_pid "$PROXY_PID"; forget_pid "$PROXY_PID"; }
		done
	done
	aggregate
	mkdir -p "$OUT_DIR"
	{
		echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -r), $NCPU CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'))"
		echo "command: DURATION=$DURATION WARMUP=$WARMUP ROUNDS=$ROUNDS CONNECTIONS=$CONNECTIONS WRK_THREADS=$WRK_THREADS" \
			"BACKEND=$BACKEND SYSTEMS=\"$SYSTEMS\" SCRIPTS=\"$SCRIPTS\" bench/run.sh" \
			"(proxy CPU $PROXY_CPU, client CPU $CLIENT_CPU)"
		echo "versions: $(haproxy -v 2>/dev/null | head -1 | cut -d' ' -f1-3); $(nginx -v 2>&1);" \
			"xgate $("$BUILD/xgate" --version 2>/dev/null | head -1 || echo n/a)"
		echo "values: median of $ROUNDS rounds (systems interleaved per round); errors: sum"
		echo
		print_table
	} | tee "$OUT_DIR/results.md"
	echo "bench: raw wrk output and configs in $OUT_DIR" >&2
}

main "$@"
