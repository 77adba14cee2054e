#!/usr/bin/env bash
# TLS: keep-alive requests/s and new handshakes/s, xgate vs HAProxy vs NGINX, same
# certificate (P-256) and cipher (TLS 1.3 TLS_AES_128_GCM_SHA256), one worker/thread each,
# the same NGINX static backend behind all three. Needs build/xgate, haproxy, nginx, wrk.
# Usage: bench/tls.sh [seconds per run, default 10]
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
BUILD=${XGATE_BUILD:-build}
PY=/usr/bin/python3
WORK=$(mktemp -d /tmp/xgate-bench-tls.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
port() { $PY -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
BACK=$(port); XG=$(port); XADM=$(port); HA=$(port); NG=$(port)

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
	-subj /CN=bench.test -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null
cat "$WORK/cert.pem" "$WORK/key.pem" >"$WORK/both.pem"

mkdir -p "$WORK/ng"
cat >"$WORK/nginx.conf" <<CFG
worker_processes 1;
pid $WORK/nginx.pid;
error_log $WORK/nginx.err;
events { worker_connections 4096; }
http {
    access_log off;
    server { listen 127.0.0.1:$BACK; location / { return 200 "ok\n"; } }
    upstream back { server 127.0.0.1:$BACK; keepalive 32; }
    server {
        listen 127.0.0.1:$NG ssl;
        ssl_certificate $WORK/cert.pem; ssl_certificate_key $WORK/key.pem;
        ssl_protocols TLSv1.3; ssl_conf_command Ciphersuites TLS_AES_128_GCM_SHA256;
        location / { proxy_pass http://back; proxy_http_version 1.1;
                     proxy_set_header Connection ""; }
    }
}
CFG
nginx -c "$WORK/nginx.conf" -p "$WORK/ng" -g 'daemon off;' & PIDS+=($!)
cat >"$WORK/haproxy.cfg" <<CFG
global
    nbthread 1
    ssl-default-bind-ciphersuites TLS_AES_128_GCM_SHA256
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend f
    bind 127.0.0.1:$HA ssl crt $WORK/both.pem ssl-min-ver TLSv1.3
    default_backend b
backend b
    http-reuse always
    server s 127.0.0.1:$BACK
CFG
haproxy -f "$WORK/haproxy.cfg" -db >"$WORK/haproxy.log" 2>&1 & PIDS+=($!)
cat >"$WORK/xgate.json" <<JSON
{"workers": 1,
 "listeners": [{"name": "tls", "address": "127.0.0.1:$XG",
   "tls": {"certificates": [{"cert": "$WORK/cert.pem", "key": "$WORK/key.pem"}],
           "min_version": "1.3", "ciphersuites": "TLS_AES_128_GCM_SHA256", "ktls": "auto"}}],
 "admin": {"address": "127.0.0.1:$XADM"},
 "upstreams": [{"name": "back", "targets": [{"address": "127.0.0.1:$BACK"}], "keepalive": 32}],
 "routes": [{"name": "all", "paths": ["/"], "upstream": "back"}]}
JSON
"$BUILD/xgate" -c "$WORK/xgate.json" 2>"$WORK/xgate.log" & PIDS+=($!)
sleep 1

printf "%-8s %18s %22s\n" proxy "keep-alive req/s" "new handshakes/s"
for p in "xgate $XG" "haproxy $HA" "nginx $NG"; do
	set -- $p
	ka=$(wrk -t1 -c50 -d"${SECS}s" "https://127.0.0.1:$2/" | awk '/Requests\/sec/ {print $2}')
	hs=$(wrk -t1 -c50 -d"${SECS}s" -H "Connection: close" "https://127.0.0.1:$2/" |
		awk '/Requests\/sec/ {print $2}')
	printf "%-8s %18s %22s\n" "$1" "$ka" "$hs"
done
