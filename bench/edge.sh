#!/usr/bin/env bash
# Legitimate req/s through xgate while a SYN flood and a UDP flood hit the same interface:
# without protection, with the XDP shield, and with an equivalent iptables hashlimit rule
# set, each as a ratio of the no-flood baseline, all in one run.
#
# Topology: a namespace joined to the host by a veth pair created here (198.19.254.0/24);
# xgate listens on the host end, nginx on loopback is its upstream, wrk (legitimate load)
# and hping3 (floods from two fixed sources, bounded by `timeout`) run in the namespace.
# The per-source packet limit is set high (200k/s) in both the shield and iptables so that
# the keep-alive load of the single legitimate source is never limited itself.
# usage: bench/edge.sh [seconds per measurement]   (root; BUILD=build by default)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
SECS=${1:-5}
XGATE=$BUILD/xgate
for tool in wrk hping3 nginx iptables bpftool; do
  command -v "$tool" >/dev/null || { echo "edge.sh: $tool is missing (make deps)" >&2; exit 1; }
done
[ -x "$XGATE" ] || { echo "edge.sh: $XGATE not built (make)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "edge.sh: needs root" >&2; exit 1; }

ID=$$
NS=xgb-$ID
HIF=xbh$ID
NIF=xbn$ID
HOST_IP=198.19.254.1
NS_IP=198.19.254.2
SYN_SRC=198.19.254.50
UDP_SRC=198.19.254.51
PORT=18080
UP_PORT=18090
ADMIN_PORT=18091
TMP=$(mktemp -d /tmp/xgate-edge-bench.XXXXXX)
PIN_DIR=/sys/fs/bpf/xgate-bench-$ID
HL=xgb$ID
GW_PID= NGINX_PID= FLOOD_PIDS=()

iptables_rules() { # $1: -A or -D
  iptables "$1" INPUT -i "$HIF" -p tcp --syn -m hashlimit --hashlimit-above 100/sec \
    --hashlimit-burst 200 --hashlimit-mode srcip --hashlimit-name "${HL}s" -j DROP
  iptables "$1" INPUT -i "$HIF" -p udp -m hashlimit --hashlimit-above 100/sec \
    --hashlimit-burst 100 --hashlimit-mode srcip --hashlimit-name "${HL}u" -j DROP
  iptables "$1" INPUT -i "$HIF" -m hashlimit --hashlimit-above 200000/sec \
    --hashlimit-burst 400000 --hashlimit-mode srcip --hashlimit-name "${HL}p" -j DROP
}

stop_floods() {
  for p in "${FLOOD_PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  FLOOD_PIDS=()
}

stop_gateway() {
  if [ -n "$GW_PID" ]; then
    kill -TERM "$GW_PID" 2>/dev/null || true
    wait "$GW_PID" 2>/dev/null || true
    GW_PID=
  fi
}

cleanup() {
  stop_floods
  stop_gateway
  [ -n "$NGINX_PID" ] && kill "$NGINX_PID" 2>/dev/null || true
  iptables_rules -D 2>/dev/null || true
  ip netns del "$NS" 2>/dev/null || true
  ip link del "$HIF" 2>/dev/null || true
  rm -rf "$PIN_DIR" "$TMP"
}
trap cleanup EXIT INT TERM

ip netns add "$NS"
ip link add "$HIF" type veth peer name "$NIF" netns "$NS"
ip addr add "$HOST_IP/24" dev "$HIF"
ip link set "$HIF" up
ip -n "$NS" link set lo up
for a in "$NS_IP" "$SYN_SRC" "$UDP_SRC"; do ip -n "$NS" addr add "$a/24" dev "$NIF"; done
ip -n "$NS" link set "$NIF" up

mkdir -p "$TMP/nginx"
cat >"$TMP/nginx.conf" <<EOF
daemon off; worker_processes 1; pid $TMP/nginx.pid; error_log $TMP/nginx.err;
events { worker_connections 1024; }
http { access_log off; client_body_temp_path $TMP/nginx; proxy_temp_path $TMP/nginx;
       fastcgi_temp_path $TMP/nginx; uwsgi_temp_path $TMP/nginx; scgi_temp_path $TMP/nginx;
       server { listen 127.0.0.1:$UP_PORT; location / { return 200 "ok\n"; } } }
EOF
nginx -c "$TMP/nginx.conf" -p "$TMP" &
NGINX_PID=$!

write_config() { # $1: "shield" or "plain"
  local edge=""
  if [ "$1" = shield ]; then
    edge=", \"edge\": {\"interfaces\": [\"$HIF\"], \"mode\": \"native\", \"pin_dir\": \"$PIN_DIR\",
      \"allow_tcp_ports\": [$PORT],
      \"per_ip\": {\"syn_per_s\": 100, \"syn_burst\": 200, \"packets_per_s\": 200000, \"packets_burst\": 400000},
      \"udp_per_ip_per_s\": 100, \"udp_per_ip_burst\": 100, \"icmp_per_ip_per_s\": 10}"
  fi
  cat >"$TMP/xgate.json" <<EOF
{"workers": 0, "listeners": [{"name": "public", "address": "0.0.0.0:$PORT"}],
 "admin": {"address": "127.0.0.1:$ADMIN_PORT"},
 "upstreams": [{"name": "svc", "targets": [{"address": "127.0.0.1:$UP_PORT"}], "keepalive": 64}],
 "routes": [{"name": "all", "paths": ["/"], "upstream": "svc"}]$edge}
EOF
}

start_gateway() { # $1: shield|plain
  write_config "$1"
  "$XGATE" -c "$TMP/xgate.json" 2>>"$TMP/xgate.log" &
  GW_PID=$!
  for _ in $(seq 100); do
    ip netns exec "$NS" bash -c "exec 3<>/dev/tcp/$HOST_IP/$PORT" 2>/dev/null && return 0
    kill -0 "$GW_PID" 2>/dev/null || break
    sleep 0.1
  done
  echo "edge.sh: gateway did not start:" >&2
  tail -20 "$TMP/xgate.log" >&2
  exit 1
}

start_floods() {
  local n=$((SECS + 3))
  ip netns exec "$NS" timeout "$n" hping3 -q -S --flood -p "$PORT" -a "$SYN_SRC" "$HOST_IP" \
    >/dev/null 2>&1 & FLOOD_PIDS+=($!)
  ip netns exec "$NS" timeout "$n" hping3 -q --udp --flood -p 9999 -a "$UDP_SRC" "$HOST_IP" \
    >/dev/null 2>&1 & FLOOD_PIDS+=($!)
  sleep 1
}

measure() { # prints legitimate req/s and the share of non-2xx/errors
  local out rps
  out=$(ip netns exec "$NS" wrk -t2 -c32 -d"${SECS}s" --timeout 2s "http://$HOST_IP:$PORT/" 2>&1)
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  echo "${rps:-0}"
}

declare -A RPS
start_gateway plain
RPS[baseline]=$(measure)
start_floods; RPS[flood_unprotected]=$(measure); stop_floods
iptables_rules -A
start_floods; RPS[flood_iptables]=$(measure); stop_floods
iptables_rules -D
stop_gateway
start_gateway shield
RPS[shield_no_flood]=$(measure)
start_floods; RPS[flood_shield]=$(measure); stop_floods
DROPS=$(bpftool -j map dump pinned "$PIN_DIR/stats" | /usr/bin/python3 -c '
import json, sys
d = {}
for e in json.load(sys.stdin):
    for c in e["formatted"]["values"]:
        for k, v in c["value"].items():
            d[k] = d.get(k, 0) + v
print(", ".join("%s=%d" % (k, v) for k, v in sorted(d.items()) if v))')
stop_gateway

ratio() { awk -v a="$1" -v b="${RPS[baseline]}" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }
echo
echo "legitimate req/s through xgate (wrk -c32, ${SECS}s each; SYN + UDP hping3 --flood from two sources)"
echo
printf '| %-34s | %10s | %8s |\n' "scenario" "req/s" "ratio"
printf '|%s|%s|%s|\n' "------------------------------------" "------------" "----------"
for k in baseline shield_no_flood flood_unprotected flood_iptables flood_shield; do
  printf '| %-34s | %10s | %8s |\n' "$k" "${RPS[$k]}" "$(ratio "${RPS[$k]}")"
done
echo
echo "shield counters after the run: $DROPS"
