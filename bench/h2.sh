#!/usr/bin/env bash
# HTTP/2 to clients: h2load against xgate, HAProxy and NGINX, each with one worker/thread,
# in front of the same two HTTP/1.1 backends (bench/backend), over TLS (ALPN h2) and h2c
# (prior knowledge), in alternating phases of one run. Reports requests per CPU-second of
# each proxy process and the ratio to HAProxy's (issue goal: xgate >= 1.2x HAProxy).
#
#   bench/h2.sh
#   DURATION=10 ROUNDS=3 CLIENTS=16 STREAMS=10 bench/h2.sh
#
# Environment: DURATION (s per phase, 5), ROUNDS (3), CLIENTS (h2load -c, 16), STREAMS
# (h2load -m, 10), BUILD (build), PROXY_CPU (last CPU), CLIENT_CPU (the others).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-3}
CLIENTS=${CLIENTS:-16}
STREAMS=${STREAMS:-10}
BUILD=${BUILD:-build}
NCPU=$(nproc)
PROXY_CPU=${PROXY_CPU:-$((NCPU - 1))}
CLIENT_CPU=${CLIENT_CPU:-$(seq 0 $((NCPU - 1)) | grep -vx "$PROXY_CPU" | paste -sd, || true)}
CLIENT_CPU=${CLIENT_CPU:-0}
CLK_TCK=$(getconf CLK_TCK)
RUN_DIR=$(mktemp -d /tmp/xgate-h2-bench.XXXXXX)
BENCH_NAME=h2-bench
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
for tool in h2load haproxy nginx curl openssl taskset; do
	command -v "$tool" >/dev/null || die "$tool missing (make deps)"
done
backend=$BUILD/bench/backend
[ -x "$backend" ] || die "$backend not built (make)"

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
	-subj /CN=localhost -keyout "$RUN_DIR/key.pem" -out "$RUN_DIR/cert.pem" 2>/dev/null
cat "$RUN_DIR/cert.pem" "$RUN_DIR/key.pem" >"$RUN_DIR/haproxy.pem"

B1=$(pick_port)
B2=$(pick_port)
for port in "$B1" "$B2"; do
	taskset -c "$CLIENT_CPU" "$backend" "127.0.0.1:$port" 2>>"$RUN_DIR/backend.log" &
	pids+=($!)
done

declare -A TLS_PORT H2C_PORT PID
for proxy in xgate haproxy nginx; do
	TLS_PORT[$proxy]=$(pick_port)
	H2C_PORT[$proxy]=$(pick_port)
done
ADMIN_PORT=$(pick_port)

cat >"$RUN_DIR/xgate.json" <<JSON
{
  "workers": 1,
  "listeners": [
    {"name": "tls", "address": "127.0.0.1:${TLS_PORT[xgate]}", "http2": true,
     "tls": {"certificates": [{"cert": "$RUN_DIR/cert.pem", "key": "$RUN_DIR/key.pem"}]}},
    {"name": "h2c", "address": "127.0.0.1:${H2C_PORT[xgate]}", "http2": true}],
  "admin": {"address": "127.0.0.1:$ADMIN_PORT"},
  "limits": {"h2_max_concurrent_streams": 128},
  "upstreams": [{"name": "users", "keepalive": 256,
    "targets": [{"address": "127.0.0.1:$B1"}, {"address": "127.0.0.1:$B2"}]}],
  "routes": [{"name": "users", "paths": ["/api/users"], "upstream": "users"}]
}
JSON

cat >"$RUN_DIR/haproxy.cfg" <<CFG
global
	nbthread 1
	maxconn 8000
	tune.h2.max-concurrent-streams 128
defaults
	mode http
	timeout connect 1s
	timeout client 30s
	timeout server 30s
	option http-keep-alive
	http-reuse always
	option forwardfor
	unique-id-format %{+X}o%ci:%cp_%fi:%fp_%Ts_%rt:%pid
	unique-id-header X-Request-Id
frontend bench
	bind 127.0.0.1:${TLS_PORT[haproxy]} ssl crt $RUN_DIR/haproxy.pem alpn h2,http/1.1
	bind 127.0.0.1:${H2C_PORT[haproxy]} proto h2
	http-request set-header X-Forwarded-Proto https if { ssl_fc }
	http-request set-header X-Forwarded-Proto http if !{ ssl_fc }
	acl users_route path /api/users
	acl users_route path_beg /api/users/
	http-request return status 404 content-type application/json string "{\"error\":\"no route\",\"status\":404}" if !users_route
	use_backend users if users_route
backend users
	balance roundrobin
	server b1 127.0.0.1:$B1 maxconn 1000
	server b2 127.0.0.1:$B2 maxconn 1000
CFG

mkdir -p "$RUN_DIR/ng"
cat >"$RUN_DIR/nginx.conf" <<CFG
worker_processes 1;
pid $RUN_DIR/nginx.pid;
error_log $RUN_DIR/nginx.err warn;
events { worker_connections 8000; }
http {
	access_log off;
	client_body_temp_path $RUN_DIR/ng/body;
	proxy_temp_path $RUN_DIR/ng/proxy;
	fastcgi_temp_path $RUN_DIR/ng/fastcgi;
	uwsgi_temp_path $RUN_DIR/ng/uwsgi;
	scgi_temp_path $RUN_DIR/ng/scgi;
	keepalive_requests 1000000;
	http2_max_concurrent_streams 128;
	upstream users {
		server 127.0.0.1:$B1;
		server 127.0.0.1:$B2;
		keepalive 64;
		keepalive_requests 1000000;
	}
	server {
		listen 127.0.0.1:${TLS_PORT[nginx]} ssl http2;
		listen 127.0.0.1:${H2C_PORT[nginx]} http2;
		ssl_certificate $RUN_DIR/cert.pem;
		ssl_certificate_key $RUN_DIR/key.pem;
		location /api/users {
			proxy_pass http://users;
			proxy_http_version 1.1;
			proxy_set_header Connection "";
			proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
			proxy_set_header X-Forwarded-Proto \$scheme;
			proxy_set_header X-Request-Id \$request_id;
		}
		location / {
			default_type application/json;
			return 404 '{"error":"no route","status":404}';
		}
	}
}
CFG

taskset -c "$PROXY_CPU" "$BUILD/xgate" -c "$RUN_DIR/xgate.json" 2>"$RUN_DIR/xgate.log" &
PID[xgate]=$!
taskset -c "$PROXY_CPU" haproxy -f "$RUN_DIR/haproxy.cfg" -db >"$RUN_DIR/haproxy.log" 2>&1 &
PID[haproxy]=$!
taskset -c "$PROXY_CPU" nginx -c "$RUN_DIR/nginx.conf" -p "$RUN_DIR/ng" -g 'daemon off;' &
PID[nginx]=$!
pids+=("${PID[xgate]}" "${PID[haproxy]}" "${PID[nginx]}")
for proxy in xgate haproxy nginx; do
	for port in "${TLS_PORT[$proxy]}" "${H2C_PORT[$proxy]}"; do
		wait_port "$port" || die "$proxy did not start (port $port): $(tail -3 "$RUN_DIR/$proxy.log" 2>/dev/null)"
	done
	curl -fsS --http2 -k -o /dev/null "https://127.0.0.1:${TLS_PORT[$proxy]}/api/users/1" ||
		die "$proxy does not answer h2 over TLS"
	curl -fsS --http2-prior-knowledge -o /dev/null "http://127.0.0.1:${H2C_PORT[$proxy]}/api/users/1" ||
		die "$proxy does not answer h2c"
done

# h2load on URL for DURATION; prints "req/s cpu_s req_per_cpu_s".
phase() { # proxy url
	local t0 t1 rps
	t0=$(cpu_ticks "${PID[$1]}")
	taskset -c "$CLIENT_CPU" h2load -c"$CLIENTS" -m"$STREAMS" -D"$DURATION" -t1 "$2" \
		>"$RUN_DIR/h2load.out" 2>&1 || true
	t1=$(cpu_ticks "${PID[$1]}")
	grep -q "status codes: [0-9]* 2xx, 0 3xx, 0 4xx, 0 5xx" "$RUN_DIR/h2load.out" ||
		die "$1: not every answer was 2xx: $(grep -E 'requests:|status codes' "$RUN_DIR/h2load.out")"
	rps=$(awk '/^finished in/ { gsub(",", ""); print $4 }' "$RUN_DIR/h2load.out")
	awk -v rps="$rps" -v t="$((t1 - t0))" -v hz="$CLK_TCK" -v d="$DURATION" \
		'BEGIN { cpu = t / hz; printf "%.0f %.2f %.0f\n", rps, cpu, cpu ? rps * d / cpu : 0 }'
}

echo "h2-bench: proxies (1 worker/thread) on CPU $PROXY_CPU; h2load -c$CLIENTS -m$STREAMS and" \
	"2 backends on CPU $CLIENT_CPU; $ROUNDS rounds x ${DURATION}s per phase"
printf '%-6s %-14s %10s %8s %14s\n' round phase req/s cpu_s req/cpu_s
declare -A rows
for r in $(seq "$ROUNDS"); do
	order="xgate haproxy nginx"
	((r % 2)) || order="nginx haproxy xgate"
	for proxy in $order; do
		for mode in tls h2c; do
			if [ "$mode" = tls ]; then
				url="https://127.0.0.1:${TLS_PORT[$proxy]}/api/users/1"
			else
				url="http://127.0.0.1:${H2C_PORT[$proxy]}/api/users/1"
			fi
			v=$(phase "$proxy" "$url")
			rows[$proxy-$mode]+="$v"$'\n'
			# shellcheck disable=SC2086
			printf '%-6s %-14s %10s %8s %14s\n' "$r" "$proxy-$mode" $v
		done
	done
done
echo
col() { printf '%s' "${rows[$1]}" | awk -v c="$2" '{ print $c }' | median; }
for mode in tls h2c; do
	awk -v x="$(col "xgate-$mode" 3)" -v h="$(col "haproxy-$mode" 3)" -v n="$(col "nginx-$mode" 3)" \
		-v xr="$(col "xgate-$mode" 1)" -v hr="$(col "haproxy-$mode" 1)" -v nr="$(col "nginx-$mode" 1)" \
		-v m="$mode" 'BEGIN {
		printf "%s: median req per CPU-second xgate %.0f, haproxy %.0f, nginx %.0f: xgate = %.2fx haproxy, %.2fx nginx (goal >= 1.2x haproxy)\n", m, x, h, n, x / h, x / n
		printf "%s: median req/s xgate %.0f, haproxy %.0f, nginx %.0f\n", m, xr, hr, nr
	}'
done
