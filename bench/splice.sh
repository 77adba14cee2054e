#!/usr/bin/env bash
# Throughput and CPU per GB of one L4 flow: xgate spliced through pipes (auto), through sockmap,
# and relayed in userspace vs HAProxy "mode tcp" with and without splice-auto, in one run, on loopback. Needs root (sockmap), build/xgate, haproxy.
# Usage: bench/splice.sh [MB per run, default 2000]
set -euo pipefail
cd "$(dirname "$0")/.."
MB=${1:-2000}
BUILD=${XGATE_BUILD:-build}
PY=/usr/bin/python3
WORK=$(mktemp -d /tmp/xgate-bench-splice.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

port() { $PY -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
SINK=$(port); XS=$(port); XK=$(port); XR=$(port); HA=$(port); HS=$(port)
ADMIN1=$(port); ADMIN2=$(port); ADMIN3=$(port)

# Sink: reads everything each connection sends, with large buffers (not the bottleneck).
$PY - "$SINK" <<'PY' &
import socket, sys, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(64)
def drain(c):
    buf = bytearray(4 << 20)
    while c.recv_into(buf): pass
    c.close()
while True:
    c, _ = s.accept(); threading.Thread(target=drain, args=(c,), daemon=True).start()
PY
PIDS+=($!)

xgate_cfg() { # $1 listen port, $2 admin port, $3 splice mode
	cat <<JSON
{"workers": 1, "listeners": [{"name": "l4", "address": "127.0.0.1:$1", "mode": "tcp",
  "upstream": "sink", "splice": "$3"}], "admin": {"address": "127.0.0.1:$2"},
 "limits": {"splice_max_inflight_bytes": 1073741824},
 "upstreams": [{"name": "sink", "targets": [{"address": "127.0.0.1:$SINK"}]}], "routes": []}
JSON
}
xgate_cfg "$XS" "$ADMIN1" auto >"$WORK/splice.json"
xgate_cfg "$XR" "$ADMIN2" off >"$WORK/relay.json"
xgate_cfg "$XK" "$ADMIN3" sockmap >"$WORK/sockmap.json"
"$BUILD/xgate" -c "$WORK/splice.json" 2>"$WORK/splice.log" & PIDS+=($!); XS_PID=$!
"$BUILD/xgate" -c "$WORK/relay.json" 2>"$WORK/relay.log" & PIDS+=($!); XR_PID=$!
"$BUILD/xgate" -c "$WORK/sockmap.json" 2>"$WORK/sockmap.log" & PIDS+=($!); XK_PID=$!
cat >"$WORK/haproxy.cfg" <<CFG
global
    nbthread 1
defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s
listen l4
    bind 127.0.0.1:$HA
    server sink 127.0.0.1:$SINK
listen l4splice
    bind 127.0.0.1:$HS
    option splice-auto
    server sink 127.0.0.1:$SINK
CFG
haproxy -f "$WORK/haproxy.cfg" -db >"$WORK/haproxy.log" 2>&1 & PIDS+=($!); HA_PID=$!
sleep 1

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
run() { # $1 name, $2 port, $3 pid
	local t0 c0 t1 c1 hz secs
	hz=$(getconf CLK_TCK)
	c0=$(cpu_ticks "$3"); t0=$(date +%s.%N)
	$PY - "$2" "$MB" <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
buf = b"\xa5" * (4 << 20)
left = int(sys.argv[2]) << 20
while left > 0:
    n = s.send(buf[:min(left, len(buf))]); left -= n
s.shutdown(socket.SHUT_WR); s.recv(1); s.close()
PY
	t1=$(date +%s.%N); c1=$(cpu_ticks "$3")
	secs=$(echo "$t1 - $t0" | bc -l)
	printf "%-22s %8.0f MB/s   proxy CPU %6.2f s per GB\n" "$1" \
		"$(echo "$MB / $secs" | bc -l)" "$(echo "($c1 - $c0) / $hz / ($MB / 1024)" | bc -l)"
}
echo "one flow, $MB MB client -> proxy -> sink on loopback ($(nproc) cores, $(uname -r))"
run "xgate splice=auto" "$XS" "$XS_PID"
run "xgate splice=sockmap" "$XK" "$XK_PID"
run "xgate splice=off" "$XR" "$XR_PID"
run "haproxy mode tcp" "$HA" "$HA_PID"
run "haproxy splice-auto" "$HS" "$HA_PID"
curl -s "http://127.0.0.1:$ADMIN1/metrics" | grep -E '^xgate_splice' || true
