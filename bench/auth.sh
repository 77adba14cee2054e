#!/usr/bin/env bash
# JWT benchmark: xgate (RS256 / ES256, verified-token cache on and off) side by side with
# HAProxy 2.6 `jwt_verify` on the same token, in one run, each proxy alone on one core in
# front of the same keep-alive backend (bench/backend.c). Prints req/s and the proxy's
# CPU microseconds per request (utime+stime deltas from /proc/PID/stat).
#
#   bench/auth.sh
#   DURATION=20 CONNECTIONS=128 ALGS=RS256 bench/auth.sh
#
# Environment: DURATION (s, 10), WARMUP (s, 2), CONNECTIONS (64), WRK_THREADS (1),
# ROUNDS (3: every system runs once per round, interleaved, and the table shows medians),
# ALGS ("RS256 ES256"), SYSTEMS ("xgate-open xgate-cache xgate-nocache haproxy";
# xgate-open is the same route without auth, the proxying cost alone), BUILD (build),
# PROXY_CPU (last CPU), CLIENT_CPU (the other CPUs: wrk and the backend).
# Keys are generated for each run; only public keys touch the disk (a private temp dir).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
CONNECTIONS=${CONNECTIONS:-64}
WRK_THREADS=${WRK_THREADS:-1}
ROUNDS=${ROUNDS:-3}
ALGS=${ALGS:-"RS256 ES256"}
SYSTEMS=${SYSTEMS:-"xgate-open xgate-cache xgate-nocache haproxy"}
BUILD=${BUILD:-build}
NCPU=$(nproc)
PROXY_CPU=${PROXY_CPU:-$((NCPU - 1))}
CLIENT_CPU=${CLIENT_CPU:-$(seq 0 $((NCPU - 1)) | grep -vx "$PROXY_CPU" | paste -sd, || true)}
CLIENT_CPU=${CLIENT_CPU:-0}
CLK_TCK=$(getconf CLK_TCK)
ISSUER="https://auth.bench.xgate.test"
AUDIENCE="bench"
RUN_DIR=$(mktemp -d /tmp/xgate-bench-auth.XXXXXX)
BENCH_NAME=bench-auth
. "$(dirname "$0")/lib.sh"
pids=()
declare -A RPS CPU

for tool in wrk haproxy curl taskset ss /usr/bin/python3; do
	command -v "$tool" >/dev/null || die "$tool is not installed (scripts/install-deps.sh)"
done
[ -x "$BUILD/xgate" ] || die "$BUILD/xgate does not exist: run make first"

cleanup() {
	local pid
	for pid in "${pids[@]}"; do stop_pid "$pid"; done
	rm -rf "$RUN_DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start_backend() {
	local bin=$BUILD/bench/backend
	if [ ! -x "$bin" ]; then
		bin=$RUN_DIR/backend
		gcc -D_GNU_SOURCE -std=gnu11 -O2 -Wall -Wextra -Werror -Wno-unused-parameter \
			bench/backend.c -o "$bin" || die "cannot build bench/backend.c"
	fi
	BACKEND_PORT=$(pick_port)
	taskset -c "$CLIENT_CPU" "$bin" "127.0.0.1:$BACKEND_PORT" 2>"$RUN_DIR/backend.log" &
	pids+=($!)
	wait_port "$BACKEND_PORT" 10 || die "backend did not start"
}

write_xgate_config() { # cache_size route_auth
	cat >"$RUN_DIR/xgate.json" <<JSON
{
  "workers": 1,
  "listeners": [{"name": "bench", "address": "127.0.0.1:$PROXY_PORT"}],
  "admin": {"address": "127.0.0.1:$(pick_port)"},
  "limits": {"max_connections": 8000},
  "upstreams": [{"name": "users", "targets": [{"address": "127.0.0.1:$BACKEND_PORT"}],
                 "keepalive": 64, "timeouts_ms": {"connect": 1000, "read": 30000}, "retries": 0}],
  "routes": [{"name": "users", "paths": ["/api/users"], "upstream": "users",
              "auth": $2}],
  "auth": {"jwt": {"jwks_file": "$RUN_DIR/jwks.json", "algorithms": ["RS256", "ES256"],
                   "issuer": "$ISSUER", "audience": "$AUDIENCE", "leeway_s": 30,
                   "forward_claims": {"sub": "X-User-Id"}, "cache_size": $1}}
}
JSON
}

start_proxy() { # system alg; sets PROXY_PID
	PROXY_PORT=$(pick_port)
	case $1 in
	xgate-open | xgate-cache | xgate-nocache)
		write_xgate_config "$([ "$1" = xgate-nocache ] && echo 0 || echo 4096)" \
			"$([ "$1" = xgate-open ] && echo '"none"' || echo '{"jwt": {}}')"
		taskset -c "$PROXY_CPU" "$BUILD/xgate" -c "$RUN_DIR/xgate.json" 2>"$RUN_DIR/$1.log" &
		;;
	haproxy)
		local pem=$RUN_DIR/rsa.pem
		[ "$2" = ES256 ] && pem=$RUN_DIR/ec.pem
		sed -e "s|@PROXY_PORT@|$PROXY_PORT|g" -e "s|@BACKEND_PORT@|$BACKEND_PORT|g" \
			-e "s|@ALG@|$2|g" -e "s|@KEY_PEM@|$pem|g" -e "s|@ISSUER@|$ISSUER|g" \
			-e "s|@AUDIENCE@|$AUDIENCE|g" bench/auth/haproxy.cfg.in >"$RUN_DIR/haproxy.cfg"
		taskset -c "$PROXY_CPU" haproxy -db -f "$RUN_DIR/haproxy.cfg" 2>"$RUN_DIR/$1.log" &
		;;
	*) die "unknown system $1" ;;
	esac
	PROXY_PID=$!
	pids+=("$PROXY_PID")
	if ! wait_port "$PROXY_PORT" 15; then
		tail -20 "$RUN_DIR/$1.log" >&2 || true
		die "$1 did not start listening on $PROXY_PORT"
	fi
}

# The token must pass and anything else must be refused: a proxy that answers errors
# fast would otherwise win.
sanity_check() { # system token
	local url="http://127.0.0.1:$PROXY_PORT/api/users/1" code
	code=$(curl -sS -m 5 -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $2" "$url")
	[ "$code" = 200 ] || die "$1: valid token gave $code"
	[ "$1" = xgate-open ] && return 0
	code=$(curl -sS -m 5 -o /dev/null -w '%{http_code}' "$url")
	[ "$code" = 401 ] || die "$1: no token gave $code, want 401"
	code=$(curl -sS -m 5 -o /dev/null -w '%{http_code}' -H "Authorization: Bearer ${2%?}A" "$url")
	[ "$code" = 401 ] || code=$(curl -sS -m 5 -o /dev/null -w '%{http_code}' \
		-H "Authorization: Bearer ${2%??}AA" "$url")
	[ "$code" = 401 ] || die "$1: tampered token gave $code, want 401"
}

run_wrk() { # token seconds output
	taskset -c "$CLIENT_CPU" wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"${2}s" \
		-H "Authorization: Bearer $1" -H "Host: bench.xgate.test" \
		"http://127.0.0.1:$PROXY_PORT/api/users/42" >"$3"
}

measure() { # system alg token
	local out=$RUN_DIR/wrk-$1-$2.txt t0 t1 reqs rps non2xx cpu_us
	start_proxy "$1" "$2"
	sanity_check "$1" "$3"
	run_wrk "$3" "$WARMUP" /dev/null
	t0=$(cpu_ticks "$PROXY_PID")
	run_wrk "$3" "$DURATION" "$out"
	t1=$(cpu_ticks "$PROXY_PID")
	stop_pid "$PROXY_PID"
	reqs=$(awk '/requests in/ {print $1}' "$out")
	rps=$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' "$out")
	non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$out")
	non2xx=${non2xx:-0}
	errors=$(awk '/Socket errors:/ {print $0}' "$out")
	cpu_us=$(awk -v t="$((t1 - t0))" -v hz="$CLK_TCK" -v n="$reqs" \
		'BEGIN { if (n > 0) printf "%.1f", t * 1e6 / hz / n; else print "n/a" }')
	note "round $round: $1 $2: $rps req/s, $cpu_us us/req, non-2xx $non2xx $errors"
	[ "$non2xx" = 0 ] || die "$1 $2: $non2xx non-2xx responses: the result is not valid"
	RPS[$1/$2]+="$rps "
	CPU[$1/$2]+="$cpu_us "
}

median() {
	tr ' ' '\n' | grep -v '^$' | sort -g | awk '{v[NR] = $1} END {
		if (!NR) print "n/a"; else if (NR % 2) print v[(NR + 1) / 2];
		else printf "%.1f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

/usr/bin/python3 bench/auth/mktokens.py "$RUN_DIR" >"$RUN_DIR/tokens" ||
	die "cannot make keys/tokens (python3-jwt, python3-cryptography)"
start_backend
note "proxy on CPU $PROXY_CPU, wrk and backend on CPU $CLIENT_CPU; ${DURATION}s per run," \
	"$CONNECTIONS connections, $WRK_THREADS wrk thread(s)"
for round in $(seq "$ROUNDS"); do
	for alg in $ALGS; do
		token=$(awk -v a="$alg" '$1 == a {print $2}' "$RUN_DIR/tokens")
		[ -n "$token" ] || die "no token for $alg"
		for system in $SYSTEMS; do
			measure "$system" "$alg" "$token"
		done
	done
done
echo "median of $ROUNDS rounds, ${DURATION}s each, $CONNECTIONS connections:"
printf "%-14s %-6s %10s %12s %s\n" system alg "req/s" "CPU us/req" "(req/s per round)"
for alg in $ALGS; do
	for system in $SYSTEMS; do
		printf "%-14s %-6s %10s %12s (%s)\n" "$system" "$alg" \
			"$(median <<<"${RPS[$system/$alg]}")" "$(median <<<"${CPU[$system/$alg]}")" \
			"${RPS[$system/$alg]% }"
	done
done
