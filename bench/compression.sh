#!/usr/bin/env bash
# Compression cost: xgate gzip (level 6) and br (quality 4) against NGINX's gzip (levels 1
# and 6) in the same run, same NGINX static backend, same files:
#   - a 20 KB JSON document under wrk: proxy CPU µs per request, identity vs encoded;
#   - a ~12 MB JSON document fetched whole N times: proxy CPU ms per MB and output size.
# CPU is utime+stime of the proxy process (and NGINX's worker), so other load on the
# machine does not count; req/s does and is printed only for orientation.
#
#   bench/compression.sh            # DURATION (s, 5), CONNECTIONS (16), FETCHES (5), BUILD (build)
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-5}
CONNECTIONS=${CONNECTIONS:-16}
FETCHES=${FETCHES:-5}
BUILD=${BUILD:-build}
BENCH_NAME=compression
RUN_DIR=$(mktemp -d /tmp/xgate-compression.XXXXXX)
chmod 755 "$RUN_DIR" # NGINX workers (nobody) read the documents from here
. "$(dirname "$0")/lib.sh"
CLK_TCK=$(getconf CLK_TCK)
pids=()

cleanup() {
	local pid
	for pid in "${pids[@]}"; do stop_pid "$pid"; done
	rm -rf "$RUN_DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

[ -x "$BUILD/xgate" ] || die "build $BUILD/xgate first (make all)"
command -v nginx >/dev/null && command -v wrk >/dev/null || die "needs nginx and wrk (make deps)"

/usr/bin/python3 - "$RUN_DIR" <<'PY'
import json, random, sys
d = sys.argv[1]
r = random.Random(1)
rows = [{"id": i, "name": "user-%d" % r.randint(0, 10**6), "email": "u%d@example.test" %
         r.randint(0, 10**6), "score": r.random(), "active": r.random() < 0.3} for i in range(110000)]
big = json.dumps(rows)
open(d + "/big.json", "w").write(big)
small = json.dumps(rows[:400])[:20478] + '"]'
open(d + "/small.json", "w").write(small)
PY

BE=$(pick_port); XG=$(pick_port); NG1=$(pick_port); NG6=$(pick_port)
nginx_conf() { # file port body
	cat >"$1" <<NGX
daemon off;
worker_processes 1;
pid $1.pid;
error_log $1.err;
events { worker_connections 1024; }
http {
  access_log off;
  types { application/json json; }
  $3
}
NGX
}
nginx_conf "$RUN_DIR/backend.conf" "$BE" \
	"server { listen 127.0.0.1:$BE; root $RUN_DIR; keepalive_requests 1000000; }"
for lvl in 1 6; do
	port=$NG1
	[ "$lvl" = 6 ] && port=$NG6
	nginx_conf "$RUN_DIR/nginx$lvl.conf" "$port" "upstream be { server 127.0.0.1:$BE; keepalive 64; }
  server { listen 127.0.0.1:$port; keepalive_requests 1000000;
    location / { proxy_pass http://be; proxy_http_version 1.1; proxy_set_header Connection \"\";
      gzip on; gzip_types application/json; gzip_comp_level $lvl; gzip_proxied any; } }"
done
cat >"$RUN_DIR/xgate.json" <<JSON
{"workers": 1, "listeners": [{"name": "public", "address": "127.0.0.1:$XG"}],
 "upstreams": [{"name": "be", "targets": [{"address": "127.0.0.1:$BE"}], "keepalive": 64}],
 "routes": [
   {"name": "identity", "paths": ["/identity"], "upstream": "be", "strip_prefix": true},
   {"name": "gzip", "paths": ["/gzip"], "upstream": "be", "strip_prefix": true,
    "compression": {"algorithms": ["gzip"]}},
   {"name": "br", "paths": ["/br"], "upstream": "be", "strip_prefix": true,
    "compression": {"algorithms": ["br"]}}]}
JSON

nginx -c "$RUN_DIR/backend.conf" -p "$RUN_DIR" & pids+=($!)
nginx -c "$RUN_DIR/nginx1.conf" -p "$RUN_DIR" & pids+=($!); NG1_PID=$!
nginx -c "$RUN_DIR/nginx6.conf" -p "$RUN_DIR" & pids+=($!); NG6_PID=$!
"$BUILD/xgate" -c "$RUN_DIR/xgate.json" >"$RUN_DIR/xgate.log" 2>&1 & pids+=($!); XG_PID=$!
for p in "$BE" "$XG" "$NG1" "$NG6"; do wait_port "$p" || die "port $p did not open"; done
code=$(curl -s -o /dev/null -w "%{http_code}" "http://127.0.0.1:$XG/identity/small.json")
[ "$code" = 200 ] || die "backend answers $code, not 200"

# name pid url accept-encoding
measure_small() {
	local a b out req rps
	a=$(cpu_ticks "$2")
	out=$(wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" -H "Accept-Encoding: $4" "$3" 2>&1)
	b=$(cpu_ticks "$2")
	req=$(awk '/requests in/{print $1}' <<<"$out")
	rps=$(awk '/Requests\/sec/{print $2}' <<<"$out")
	awk -v n="$1" -v d=$((b - a)) -v t="$CLK_TCK" -v r="$req" -v rps="$rps" \
		'BEGIN { printf "| %s | %.0f | %.1f |\n", n, rps, d / t * 1e6 / r }'
}

measure_big() {
	local a b size mb
	size=$(curl -s -H "Accept-Encoding: $4" "$3" | wc -c)
	a=$(cpu_ticks "$2")
	for _ in $(seq "$FETCHES"); do curl -s -o /dev/null -H "Accept-Encoding: $4" "$3"; done
	b=$(cpu_ticks "$2")
	mb=$(stat -c %s "$RUN_DIR/big.json")
	awk -v n="$1" -v d=$((b - a)) -v t="$CLK_TCK" -v f="$FETCHES" -v mb="$mb" -v s="$size" \
		'BEGIN { printf "| %s | %.1f | %d | %.3f |\n", n, d / t * 1e3 / (f * mb / 1048576), s, s / mb }'
}

echo "20 KB JSON, wrk -c$CONNECTIONS -d${DURATION}s"
echo "| proxy / encoding | req/s | CPU µs/req |"
echo "|---|---:|---:|"
measure_small "xgate identity" "$XG_PID" "http://127.0.0.1:$XG/identity/small.json" ""
measure_small "xgate gzip 6" "$XG_PID" "http://127.0.0.1:$XG/gzip/small.json" "gzip"
measure_small "xgate br 4" "$XG_PID" "http://127.0.0.1:$XG/br/small.json" "br"
measure_small "nginx identity" "$NG6_PID" "http://127.0.0.1:$NG6/small.json" ""
measure_small "nginx gzip 1" "$NG1_PID" "http://127.0.0.1:$NG1/small.json" "gzip"
measure_small "nginx gzip 6" "$NG6_PID" "http://127.0.0.1:$NG6/small.json" "gzip"
echo
echo "$(stat -c %s "$RUN_DIR/big.json") bytes of JSON, fetched $FETCHES times"
echo "| proxy / encoding | CPU ms/MB | bytes out | ratio |"
echo "|---|---:|---:|---:|"
measure_big "xgate identity" "$XG_PID" "http://127.0.0.1:$XG/identity/big.json" ""
measure_big "xgate gzip 6" "$XG_PID" "http://127.0.0.1:$XG/gzip/big.json" "gzip"
measure_big "xgate br 4" "$XG_PID" "http://127.0.0.1:$XG/br/big.json" "br"
measure_big "nginx gzip 1" "$NG1_PID" "http://127.0.0.1:$NG1/big.json" "gzip"
measure_big "nginx gzip 6" "$NG6_PID" "http://127.0.0.1:$NG6/big.json" "gzip"
