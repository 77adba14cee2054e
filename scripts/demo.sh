#!/usr/bin/env bash
# The `make run` demo: demo services, a demo namespace + veth for the XDP shield, and
# xgate with config/xgate.json in the foreground. Ctrl-C (or any exit) cleans up.
#
#   services   users 127.0.0.1:9101 + :9102, orders :9201, payments :9301, bank :9401
#   namespace  xgdemo, veth xg0 (host, 198.18.0.1/24) <-> xg0-peer (xgdemo, 198.18.0.2/24)
#   gateway    :8080 (HTTP), :8443 (TLS, demo cert), admin 127.0.0.1:9901
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD=${BUILD:-build}
CONFIG=${CONFIG:-config/xgate.json}
PY=/usr/bin/python3
NS=xgdemo HOST_IF=xg0 NS_IF=xg0-peer
HOST_IP=198.18.0.1 NS_IP=198.18.0.2
RUN_DIR=$(mktemp -d /tmp/xgate-demo.XXXXXX)
services_pid="" gateway_pid=""

die() { echo "demo: $*" >&2; exit 1; }

cleanup() {
	trap - EXIT INT TERM
	if [ -n "$gateway_pid" ] && kill -0 "$gateway_pid" 2>/dev/null; then
		kill -TERM "$gateway_pid" 2>/dev/null || true
		for _ in $(seq 100); do kill -0 "$gateway_pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$gateway_pid" 2>/dev/null || true
	fi
	if [ -n "$services_pid" ]; then
		kill -TERM "$services_pid" 2>/dev/null || true
		wait "$services_pid" 2>/dev/null || true
	fi
	ip netns del "$NS" 2>/dev/null || true
	ip link del "$HOST_IF" 2>/dev/null || true
	rm -rf "$RUN_DIR"
	echo "demo: stopped, namespace $NS and veth $HOST_IF removed" >&2
	# Pinned maps outlive the gateway on purpose (deny lists survive restarts).
	[ -d /sys/fs/bpf/xgate ] && echo "demo: XDP maps stay pinned in /sys/fs/bpf/xgate" \
		"(rm -r it to reset deny/allow lists)" >&2
	return 0
}

wait_port() { # host port seconds
	local deadline=$((SECONDS + $3))
	while ((SECONDS < deadline)); do
		(exec 3<>"/dev/tcp/$1/$2") 2>/dev/null && return 0
		sleep 0.1
	done
	return 1
}

[ "$(id -u)" -eq 0 ] || die "needs root (network namespace, XDP)"
[ -x "$BUILD/xgate" ] || die "$BUILD/xgate not built; run make"
for port in 8080 8443 9901 9101 9102 9201 9301 9401; do
	if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
		die "port $port is already in use (another demo running?)"
	fi
done
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

$PY scripts/demo-token.py init

$PY scripts/demo_services.py users:9101 users:9102 orders:9201 payments:9301 bank:9401 \
	2>"$RUN_DIR/services.log" &
services_pid=$!
for port in 9101 9102 9201 9301 9401; do
	wait_port 127.0.0.1 "$port" 10 || die "demo service on :$port did not start: $(cat "$RUN_DIR/services.log")"
done

# A stale namespace from a killed run would make `ip netns add` fail; start clean.
ip netns del "$NS" 2>/dev/null || true
ip link del "$HOST_IF" 2>/dev/null || true
ip netns add "$NS"
ip link add "$HOST_IF" type veth peer name "$NS_IF" netns "$NS"
ip addr add "$HOST_IP/24" dev "$HOST_IF"
ip link set "$HOST_IF" up
ip -n "$NS" link set lo up
ip -n "$NS" addr add "$NS_IP/24" dev "$NS_IF"
ip -n "$NS" link set "$NS_IF" up

MOBILE_APP_KEY=${MOBILE_APP_KEY:-demo-mobile-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')}
export MOBILE_APP_KEY

"$BUILD/xgate" -c "$CONFIG" &
gateway_pid=$!
for port in 8080 8443 9901; do
	if ! wait_port 127.0.0.1 "$port" 15; then
		kill -0 "$gateway_pid" 2>/dev/null || die "xgate exited at start (see its log above)"
		die "xgate is not accepting on :$port"
	fi
done

TOKEN=$($PY scripts/demo-token.py --sub alice --roles user)
PAY_TOKEN=$($PY scripts/demo-token.py --alg EdDSA --sub bob --roles user,payments)
cat >&2 <<EOF

================================================================================
 xgate demo is running (Ctrl-C stops everything). Try:

  curl -i http://127.0.0.1:8080/api/catalog                      # open route, cached 30 s
  curl -i http://127.0.0.1:8080/api/users                        # 401: needs a JWT
  TOKEN=\$($PY scripts/demo-token.py --sub alice --roles user)
  curl -s -H "Authorization: Bearer \$TOKEN" http://127.0.0.1:8080/api/users/1
  for i in 1 2 3 4 5 6; do curl -s -H "Authorization: Bearer \$TOKEN" \\
      http://127.0.0.1:8080/api/users/1 | grep instance; done         # two users instances
  curl -s -H "Authorization: Bearer \$TOKEN" -d '{"name":"carol"}' \\
      http://127.0.0.1:8080/api/users                             # POST, X-User-Id forwarded
  curl -s -H "X-API-Key: $MOBILE_APP_KEY" http://127.0.0.1:8080/api/orders
  curl -i -H "Authorization: Bearer \$TOKEN" http://127.0.0.1:8080/api/payments/1   # 403
  curl -si -H "Authorization: Bearer \$TOKEN" 'http://127.0.0.1:8080/api/profile?id=1'
      # composed (BFF, web): user 1 + orders + alice's payments, one response
  curl -s -H "Authorization: Bearer \$TOKEN" -H 'X-Client: mobile' \
      'http://127.0.0.1:8080/api/profile?id=1'    # the mobile shape: name + orders only
  curl -s -H "Authorization: Bearer \$TOKEN" http://127.0.0.1:8080/api/dashboard
      # account balance + last 5 transactions + investments (chained on the account id)
  curl -s -H "Authorization: Bearer $PAY_TOKEN" \\
      -d '{"order_id":1,"amount_cents":1200}' http://127.0.0.1:8080/api/payments
  curl -sk https://127.0.0.1:8443/api/catalog                    # TLS (demo cert)
  curl -i http://127.0.0.1:8080/nowhere                          # 404 JSON error

 Through the XDP shield (namespace $NS -> veth $HOST_IF):
  ip netns exec $NS curl -i http://$HOST_IP:8080/api/catalog
  ip netns exec $NS curl -sk https://$HOST_IP:8443/api/catalog
  bpftool map dump pinned /sys/fs/bpf/xgate/stats
  $BUILD/xgatectl stats
  $BUILD/xgatectl deny add $NS_IP/32   # now the namespace is dropped in XDP
  $BUILD/xgatectl deny del $NS_IP/32

 Dashboard (live charts of the traffic above, fed by /stats):
  http://127.0.0.1:9901/dashboard
  curl -s http://127.0.0.1:9901/stats

 Operations:
  curl -s http://127.0.0.1:9901/metrics | grep ^xgate_
  curl -s http://127.0.0.1:9901/status
  kill -HUP $gateway_pid          # reload config/xgate.json
================================================================================

EOF

set +e
wait "$gateway_pid"
rc=$?
gateway_pid=""
exit $rc
