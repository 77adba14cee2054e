#!/usr/bin/env bash
# kTLS vs userspace TLS: CPU seconds of the xgate process per GB of response bodies sent to
# a TLS 1.3 client (TLS_AES_128_GCM_SHA256) over keep-alive, "ktls": "auto" against
# "ktls": "off", in the same kernel and the same run (rounds alternate).
#
# The kernel needs the TLS ULP. Without it (this build host) the script boots the
# `make test-kernels` guest (Debian 12's 6.1 kernel under QEMU) and runs itself there:
#   bench/ktls.sh                      # or: make bench-ktls
#   KTLS_BENCH_MB=1024 KTLS_BENCH_ROUNDS=2 bench/ktls.sh
# Under TCG the absolute figures are emulated CPU time: only the ratio means anything.
#
# Origin: NGINX serving a 64 MiB file (sendfile) on loopback; client: Python's ssl module
# downloading it over one keep-alive connection until KTLS_BENCH_MB MiB arrived. CPU comes
# from /proc/PID/stat (utime + stime of all xgate threads) before and after each download.
set -euo pipefail
cd "$(dirname "$0")/.."
MB=${KTLS_BENCH_MB:-1024}
ROUNDS=${KTLS_BENCH_ROUNDS:-2}
BUILD=${XGATE_BUILD:-build}
PY=/usr/bin/python3

has_ulp() {
	$PY - <<-'EOF'
		import socket, sys
		srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(1)
		cli = socket.create_connection(srv.getsockname()); conn, _ = srv.accept()
		try:
		    cli.setsockopt(socket.SOL_TCP, 31, b"tls")
		except OSError:
		    sys.exit(1)
	EOF
}

if ! has_ulp; then
	if [ -n "${XGATE_IN_GUEST:-}" ]; then
		echo "ktls bench: this kernel has no TLS ULP" >&2
		exit 1
	fi
	echo "ktls bench: no TLS ULP on $(uname -r): running in the test-kernels guest"
	# The guest reads KTLS_BENCH_* from its config file (scripts/test-kernels.sh).
	export KTLS_BENCH_MB=$MB KTLS_BENCH_ROUNDS=$ROUNDS
	SUITES=ktlsbench BUILD=$BUILD exec bash scripts/test-kernels.sh
fi

# A Debian boot loads the CPU's crypto drivers through udev's CPU modalias; the guest has
# no udev, and without them the kernel's gcm(aes) is the generic C code. Load them as a
# real boot would, and say which implementation the kernel used.
if [ -n "${XGATE_IN_GUEST:-}" ]; then
	modprobe -q aesni_intel 2>/dev/null || true
	modprobe -q ghash_clmulni_intel 2>/dev/null || true
fi
gcm_driver() {
	awk '/^name/ {n=$3} /^driver/ {d=$3} /^priority/ {if (n=="gcm(aes)" && $3+0>best) {best=$3+0; drv=d}}
	     END {print drv ? drv : "not loaded yet"}' /proc/crypto
}

WORK=$(mktemp -d /tmp/xgate-bench-ktls.XXXXXX)
PIDS=()
XPID=
cleanup() {
	[ -n "$XPID" ] && kill "$XPID" 2>/dev/null
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	rm -rf "$WORK"
}
trap cleanup EXIT
port() { $PY -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
BACK=$(port)

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
	-subj /CN=bench.test -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null
mkdir -p "$WORK/www" "$WORK/ng"
head -c $((64 << 20)) /dev/urandom >"$WORK/www/big"
# NGINX workers run unprivileged: they must be able to read the file.
chmod 755 "$WORK" "$WORK/www" && chmod 644 "$WORK/www/big"
cat >"$WORK/nginx.conf" <<CFG
worker_processes 1;
pid $WORK/nginx.pid;
error_log $WORK/nginx.err;
events { worker_connections 64; }
http {
    access_log off;
    sendfile on;
    keepalive_requests 100000;
    server { listen 127.0.0.1:$BACK; root $WORK/www; }
}
CFG
nginx -c "$WORK/nginx.conf" -p "$WORK/ng" -g 'daemon off;' & PIDS+=($!)

cat >"$WORK/client.py" <<'EOF'
import http.client, ssl, sys, time
port, total = int(sys.argv[1]), int(sys.argv[2]) << 20
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
ctx.minimum_version = ssl.TLSVersion.TLSv1_3
conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=600)
got, t0, buf = 0, time.monotonic(), bytearray(1 << 20)
while got < total:
    conn.request("GET", "/big")
    resp = conn.getresponse()
    if resp.status != 200:
        sys.exit("status %d" % resp.status)
    while True:
        n = resp.readinto(buf)
        if not n:
            break
        got += n
print(got, time.monotonic() - t0)
EOF

# Starts xgate with the given ktls mode; sets XPID and XG (TLS port), ADM (admin port).
start_xgate() {
	XG=$(port)
	ADM=$(port)
	cat >"$WORK/xgate.json" <<-JSON
		{"workers": 1,
		 "listeners": [{"name": "tls", "address": "127.0.0.1:$XG",
		   "tls": {"certificates": [{"cert": "$WORK/cert.pem", "key": "$WORK/key.pem"}],
		           "min_version": "1.3", "ciphersuites": "TLS_AES_128_GCM_SHA256",
		           "ktls": "$1"}}],
		 "admin": {"address": "127.0.0.1:$ADM"},
		 "upstreams": [{"name": "back", "targets": [{"address": "127.0.0.1:$BACK"}],
		                "keepalive": 4}],
		 "routes": [{"name": "all", "paths": ["/"], "upstream": "back"}]}
	JSON
	"$BUILD/xgate" -c "$WORK/xgate.json" 2>"$WORK/xgate-$1.log" &
	XPID=$!
	for _ in $(seq 100); do
		curl -sf "http://127.0.0.1:$ADM/status" >/dev/null 2>&1 && return 0
		sleep 0.2
	done
	echo "ktls bench: xgate (ktls $1) did not start" >&2
	cat "$WORK/xgate-$1.log" >&2
	return 1
}

stop_xgate() {
	kill "$XPID"
	wait "$XPID" 2>/dev/null || true
	XPID=
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

declare -A CPU=([auto]=0 [off]=0) BYTES=([auto]=0 [off]=0) WALL=([auto]=0 [off]=0)
TICK=$(getconf CLK_TCK)
for ((r = 1; r <= ROUNDS; r++)); do
	for mode in auto off; do
		start_xgate "$mode"
		before=$(cpu_ticks "$XPID")
		# No process substitution: the guest has no /dev/fd.
		out=$($PY "$WORK/client.py" "$XG" "$MB")
		read -r got secs <<<"$out"
		after=$(cpu_ticks "$XPID")
		engaged=$(curl -sf "http://127.0.0.1:$ADM/status" |
			$PY -c 'import json,sys; t=json.load(sys.stdin)["tls"]; print(t["ktls_tx_connections"], t["ktls_tx_bytes"])')
		stop_xgate
		if [ "$mode" = auto ] && [ "${engaged%% *}" -lt 1 ]; then
			echo "ktls bench: kTLS did not engage with ktls auto (status: $engaged)" >&2
			exit 1
		fi
		CPU[$mode]=$((CPU[$mode] + after - before))
		BYTES[$mode]=$((BYTES[$mode] + got))
		WALL[$mode]=$($PY -c "print(${WALL[$mode]} + $secs)")
		printf "round %d ktls %-4s %6d MiB  xgate CPU %6.2f s  wall %6.1f s  (kTLS TX conns, bytes: %s)\n" \
			"$r" "$mode" $((got >> 20)) "$($PY -c "print(($after - $before) / $TICK)")" "$secs" "$engaged"
	done
done
echo "kernel gcm(aes) driver: $(gcm_driver); OpenSSL: $(openssl version)"
$PY - "${CPU[auto]}" "${BYTES[auto]}" "${CPU[off]}" "${BYTES[off]}" "$TICK" "$(uname -r)" <<-'EOF'
	import sys
	ca, ba, co, bo, tick = (int(x) for x in sys.argv[1:6])
	per_gb = lambda c, b: c / tick / (b / 2**30)
	a, o = per_gb(ca, ba), per_gb(co, bo)
	print("kernel %s: xgate CPU per GiB: ktls auto %.2f s, ktls off %.2f s; "
	      "userspace TLS costs %.2fx kTLS" % (sys.argv[6], a, o, o / a))
EOF
