#!/usr/bin/env bash
# WAF cost: xgate with the OWASP CRS (config/waf/crs.conf: libmodsecurity3 + Debian's CRS
# 3.3, paranoia level 1) on and off, and NGINX with libnginx-mod-http-modsecurity and the
# same rules file on and off when that module is installed, in one run. Each proxy runs
# alone on one core in front of the same keep-alive backend (bench/backend.c); wrk sends
# benign traffic (every response must be 2xx). Prints req/s and requests per proxy
# CPU-second (utime+stime deltas from /proc/PID/stat).
#
#   bench/waf.sh
#   DURATION=20 WORKLOADS=get SYSTEMS="xgate-off xgate-crs" bench/waf.sh
#
# Environment: DURATION (s, 10), WARMUP (s, 2), CONNECTIONS (64), WRK_THREADS (1),
# ROUNDS (3, interleaved; the table shows medians), WORKLOADS ("get post": a GET with a
# query string and browser headers, a 1 KiB JSON POST), SYSTEMS ("xgate-off xgate-crs
# nginx-off nginx-crs"; the nginx ones are skipped without the module), BUILD (build),
# PROXY_CPU (last CPU), CLIENT_CPU (the other CPUs: wrk and the backend).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
CONNECTIONS=${CONNECTIONS:-64}
WRK_THREADS=${WRK_THREADS:-1}
ROUNDS=${ROUNDS:-3}
WORKLOADS=${WORKLOADS:-"get post"}
SYSTEMS=${SYSTEMS:-"xgate-off xgate-crs nginx-off nginx-crs"}
BUILD=${BUILD:-build}
NCPU=$(nproc)
PROXY_CPU=${PROXY_CPU:-$((NCPU - 1))}
CLIENT_CPU=${CLIENT_CPU:-$(seq 0 $((NCPU - 1)) | grep -vx "$PROXY_CPU" | paste -sd, || true)}
CLIENT_CPU=${CLIENT_CPU:-0}
CLK_TCK=$(getconf CLK_TCK)
NGINX_MODSEC=/usr/lib/nginx/modules/ngx_http_modsecurity_module.so
CRS=$PWD/config/waf/crs.conf
RUN_DIR=$(mktemp -d /tmp/xgate-bench-waf.XXXXXX)
BENCH_NAME=bench-waf
. "$(dirname "$0")/lib.sh"
pids=()
declare -A RPS PERCPU

for tool in wrk curl taskset ss; do
	command -v "$tool" >/dev/null || die "$tool is not installed (scripts/install-deps.sh)"
done
[ -x "$BUILD/xgate" ] || die "$BUILD/xgate does not exist: run make first"
if [ ! -f "$NGINX_MODSEC" ] || ! command -v nginx >/dev/null; then
	note "no NGINX ModSecurity module ($NGINX_MODSEC): nginx systems skipped"
	SYSTEMS=$(tr ' ' '\n' <<<"$SYSTEMS" | grep -v '^nginx' | paste -sd' ')
fi

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

write_xgate_config() { # waf: 1 or 0
	local waf=""
	[ "$1" = 1 ] && waf="\"waf\": {\"rules\": [\"$CRS\"]},"
	cat >"$RUN_DIR/xgate.json" <<JSON
{
  "workers": 1,
  "listeners": [{"name": "bench", "address": "127.0.0.1:$PROXY_PORT"}],
  "admin": {"address": "127.0.0.1:$(pick_port)"},
  "limits": {"max_connections": 8000},
  $waf
  "upstreams": [{"name": "users", "targets": [{"address": "127.0.0.1:$BACKEND_PORT"}],
                 "keepalive": 64, "timeouts_ms": {"connect": 1000, "read": 30000}, "retries": 0}],
  "routes": [{"name": "users", "paths": ["/api/users"], "upstream": "users"}]
}
JSON
}

write_nginx_config() { # waf: 1 or 0
	local modsec="" load=""
	if [ "$1" = 1 ]; then
		load="load_module $NGINX_MODSEC;"
		modsec="modsecurity on; modsecurity_rules_file $CRS;"
	fi
	cat >"$RUN_DIR/nginx.conf" <<CONF
$load
worker_processes 1;
daemon off;
pid $RUN_DIR/nginx.pid;
error_log $RUN_DIR/nginx.error.log warn;
worker_rlimit_nofile 16384;
events { worker_connections 8000; }
http {
	access_log off;
	client_body_temp_path $RUN_DIR/nginx-body;
	proxy_temp_path $RUN_DIR/nginx-proxy;
	fastcgi_temp_path $RUN_DIR/nginx-fastcgi;
	uwsgi_temp_path $RUN_DIR/nginx-uwsgi;
	scgi_temp_path $RUN_DIR/nginx-scgi;
	keepalive_requests 1000000;
	client_body_buffer_size 128k;
	upstream users { server 127.0.0.1:$BACKEND_PORT; keepalive 64; keepalive_requests 1000000; }
	server {
		listen 127.0.0.1:$PROXY_PORT backlog=4096;
		$modsec
		location /api/users {
			proxy_pass http://users;
			proxy_http_version 1.1;
			proxy_set_header Connection "";
			proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
			proxy_set_header X-Forwarded-Proto \$scheme;
			proxy_set_header X-Request-Id \$request_id;
		}
	}
}
CONF
}

start_proxy() { # system; sets PROXY_PID
	PROXY_PORT=$(pick_port)
	case $1 in
	xgate-off | xgate-crs)
		write_xgate_config "$([ "$1" = xgate-crs ] && echo 1 || echo 0)"
		taskset -c "$PROXY_CPU" "$BUILD/xgate" -c "$RUN_DIR/xgate.json" 2>"$RUN_DIR/$1.log" &
		;;
	nginx-off | nginx-crs)
		write_nginx_config "$([ "$1" = nginx-crs ] && echo 1 || echo 0)"
		taskset -c "$PROXY_CPU" nginx -e "$RUN_DIR/nginx.error.log" -c "$RUN_DIR/nginx.conf" \
			2>"$RUN_DIR/$1.log" &
		;;
	*) die "unknown system $1" ;;
	esac
	PROXY_PID=$!
	pids+=("$PROXY_PID")
	if ! wait_port "$PROXY_PORT" 15; then
		tail -20 "$RUN_DIR/$1.log" "$RUN_DIR/nginx.error.log" >&2 2>/dev/null || true
		die "$1 did not start listening on $PROXY_PORT"
	fi
}

# Benign traffic must pass and an attack must be refused where the WAF is on: a proxy
# that skipped the rules would otherwise win.
sanity_check() { # system
	local base="http://127.0.0.1:$PROXY_PORT/api/users" code want=200
	code=$(curl -sS -m 5 -o /dev/null -w '%{http_code}' -H "Host: bench.xgate.test" \
		"$base/42?page=2&sort=name")
	[ "$code" = 200 ] || die "$1: benign GET gave $code"
	[ "${1#*-}" = crs ] && want=403
	code=$(curl -sS -m 5 -o /dev/null -w '%{http_code}' -H "Host: bench.xgate.test" \
		"$base/42?id=1%27%20OR%20%271%27%3D%271")
	[ "$code" = "$want" ] || die "$1: SQL injection gave $code, want $want"
}

write_lua() {
	cat >"$RUN_DIR/get.lua" <<'LUA'
wrk.method = "GET"
wrk.path = "/api/users/42?page=2&sort=name&fields=id,name,email"
wrk.headers["Host"] = "bench.xgate.test"
wrk.headers["User-Agent"] = "Mozilla/5.0 (X11; Linux x86_64) wrk-xgate-bench"
wrk.headers["Accept"] = "application/json"
wrk.headers["Accept-Language"] = "en-US,en;q=0.9"
wrk.headers["Cookie"] = "session=3f2a9c1e7b; theme=dark"
LUA
	cat >"$RUN_DIR/post.lua" <<'LUA'
local prefix, suffix = '{"name":"bench","email":"a.b@example.com","pad":"', '"}'
wrk.method = "POST"
wrk.path = "/api/users"
wrk.headers["Host"] = "bench.xgate.test"
wrk.headers["User-Agent"] = "Mozilla/5.0 (X11; Linux x86_64) wrk-xgate-bench"
wrk.headers["Accept"] = "application/json"
wrk.headers["Content-Type"] = "application/json"
wrk.body = prefix .. string.rep("x", 1024 - #prefix - #suffix) .. suffix
LUA
}

run_wrk() { # workload seconds output
	taskset -c "$CLIENT_CPU" wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"${2}s" \
		-s "$RUN_DIR/$1.lua" "http://127.0.0.1:$PROXY_PORT" >"$3"
}

measure() { # system workload
	local out=$RUN_DIR/wrk-$1-$2.txt t0 t1 reqs rps non2xx percpu
	start_proxy "$1"
	sanity_check "$1"
	run_wrk "$2" "$WARMUP" /dev/null
	t0=$(cpu_ticks "$PROXY_PID")
	run_wrk "$2" "$DURATION" "$out"
	t1=$(cpu_ticks "$PROXY_PID")
	stop_pid "$PROXY_PID"
	reqs=$(awk '/requests in/ {print $1}' "$out")
	rps=$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' "$out")
	non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$out")
	non2xx=${non2xx:-0}
	percpu=$(awk -v t="$((t1 - t0))" -v hz="$CLK_TCK" -v n="$reqs" \
		'BEGIN { if (t > 0) printf "%.0f", n * hz / t; else print "n/a" }')
	note "round $round: $1 $2: $rps req/s, $percpu req/CPU-s, non-2xx $non2xx"
	[ "$non2xx" = 0 ] || die "$1 $2: $non2xx non-2xx responses (a false positive?): not valid"
	RPS[$1/$2]+="$rps "
	PERCPU[$1/$2]+="$percpu "
}

median() {
	tr ' ' '\n' | grep -v '^$' | sort -g | awk '{v[NR] = $1} END {
		if (!NR) print "n/a"; else if (NR % 2) print v[(NR + 1) / 2];
		else printf "%.0f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

write_lua
start_backend
note "proxy on CPU $PROXY_CPU, wrk and backend on CPU $CLIENT_CPU; ${DURATION}s per run," \
	"$CONNECTIONS connections; systems: $SYSTEMS"
for round in $(seq "$ROUNDS"); do
	for workload in $WORKLOADS; do
		for system in $SYSTEMS; do
			measure "$system" "$workload"
		done
	done
done
echo "median of $ROUNDS rounds, ${DURATION}s each, $CONNECTIONS connections:"
printf "%-10s %-5s %10s %12s %s\n" system load "req/s" "req/CPU-s" "(req/s per round)"
for workload in $WORKLOADS; do
	for system in $SYSTEMS; do
		printf "%-10s %-5s %10s %12s (%s)\n" "$system" "$workload" \
			"$(median <<<"${RPS[$system/$workload]}")" \
			"$(median <<<"${PERCPU[$system/$workload]}")" "${RPS[$system/$workload]% }"
	done
done
