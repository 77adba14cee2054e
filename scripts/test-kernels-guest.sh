#!/bin/bash
# Test runner inside the `make test-kernels` guest, started by test-kernels-init.sh as the
# guest's pid 1 in the host's root (read-only 9p + tmpfs overlay) with the work tree
# shared read-write at its host path. Prints the lines SPEC "Tooling" fixes:
#   guest uname: <release>
#   suite NAME: N passed, N failed
#   kTLS: ... (after the TLS suite)
# and "test-kernels: guest done" last, then powers the guest off.
set -u
exec </dev/null 2>&1
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8
export TERM=dumb

arg() {
	local kv
	for kv in $(cat /proc/cmdline); do
		case "$kv" in "$1"=*) echo "${kv#*=}" ;; esac
	done
}

# Exiting pid 1 panics the kernel, and panic=-1 with QEMU's -no-reboot ends the VM too.
poweroff_now() {
	sync
	echo o >/proc/sysrq-trigger
	sleep 30
	exit 1
}

setup() {
	mount -t tmpfs -o mode=1777 tmpfs /tmp &&
		mount -t tmpfs -o mode=0755 tmpfs /run &&
		mkdir -p /dev/shm && mount -t tmpfs -o mode=1777 tmpfs /dev/shm &&
		mkdir -p /dev/pts && mount -t devpts devpts /dev/pts &&
		mount -t bpf bpf /sys/fs/bpf &&
		mount -t cgroup2 cgroup2 /sys/fs/cgroup || return 1
	# A work tree under /tmp or /run (a CI checkout, say) was just hidden: put it back.
	if [ ! -d "$REPO/scripts" ]; then
		mkdir -p "$REPO" && mount -o bind /.xgate-worktree "$REPO" || return 1
	fi
	ip link set lo up || return 1
	hostname xgate-guest
	# The kernel runs this for module autoloading (veth, TLS ULP, schedulers).
	echo /usr/sbin/modprobe >/proc/sys/kernel/modprobe
}

REPO=$(arg xgate_repo)
CONF=$(arg xgate_conf)
SUITES="unit bpf edge tls websocket l4"
SUITE_TIMEOUT_S=900
XGATE_TIME_SCALE=1
PYTEST_ARGS=""
BUILD=build
KTLS_BENCH_MB=1024
KTLS_BENCH_ROUNDS=2
# shellcheck disable=SC1090
[ -n "$CONF" ] && [ -f "$REPO/$CONF" ] && . "$REPO/$CONF"
export XGATE_TIME_SCALE

if ! setup; then
	echo "test-kernels: guest setup failed"
	poweroff_now
fi
cd "$REPO" || poweroff_now
export XGATE_BUILD="$REPO/$BUILD"
# The firmware leaves its last console line unterminated: start a fresh one.
echo
echo "guest uname: $(uname -r)"

# "suite NAME: N passed, N failed" from a run-unit-tests.sh run.
unit_suite() {
	local name=$1 out rc line
	shift
	out=$(timeout "$SUITE_TIMEOUT_S" bash scripts/run-unit-tests.sh "$@")
	rc=$?
	printf '%s\n' "$out" | grep -v '^unit: '
	line=$(printf '%s\n' "$out" | sed -nE 's/^unit: ([0-9]+) passed, ([0-9]+) failed$/\1 \2/p')
	set -- $line
	if [ -z "$line" ]; then
		set -- 0 1
	elif [ "$rc" -ne 0 ] && [ "$2" -eq 0 ]; then
		set -- "$1" 1 # a binary crashed or timed out without a summary line
	fi
	echo "suite $name: $1 passed, $2 failed"
}

# pytest suite; counts come from its JUnit report (errors count as failures, skips are
# listed by name so none hides).
e2e_suite() {
	local name=$1 file=$2 xml=/tmp/junit-$1.xml rc counts
	rm -f "$xml"
	# shellcheck disable=SC2086
	timeout "$SUITE_TIMEOUT_S" /usr/bin/python3 -m pytest -q -p no:cacheprovider -rs \
		--junitxml="$xml" "tests/e2e/$file" $PYTEST_ARGS
	rc=$?
	counts=$(/usr/bin/python3 - "$xml" <<-'EOF'
		import sys
		import xml.etree.ElementTree as ET
		try:
		    root = ET.parse(sys.argv[1]).getroot()
		except (OSError, ET.ParseError):
		    print("0 1 0")
		    sys.exit()
		suites = [root] if root.tag == "testsuite" else list(root)
		n = sum(int(s.get("tests", 0)) for s in suites)
		bad = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
		skip = sum(int(s.get("skipped", 0)) for s in suites)
		print(n - bad - skip, bad, skip)
	EOF
	)
	set -- $counts
	if [ "$rc" -ne 0 ] && [ "$2" -eq 0 ]; then
		set -- "$1" 1 "$3" # pytest itself failed (collection error, timeout)
	fi
	[ "$3" -gt 0 ] && echo "skipped in $name: $3 (reasons above)"
	echo "suite $name: $1 passed, $2 failed"
}

# test_ktls_offload_engaged appends one JSON line per connection case it ran to
# $XGATE_KTLS_REPORT: negotiated version, cipher, and the gateway's kTLS TX/RX counts.
ktls_line() {
	if [ ! -s "$XGATE_KTLS_REPORT" ]; then
		echo "kTLS: not engaged (the TLS suite ran no kTLS offload case)"
		return
	fi
	/usr/bin/python3 - "$XGATE_KTLS_REPORT" <<-'EOF'
		import json, sys
		cases = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
		both = [c for c in cases if c["tx"] and c["rx"]]
		tx_only = [c for c in cases if c["tx"] and not c["rx"]]
		none = [c for c in cases if not c["tx"]]
		name = lambda c: "%s %s" % (c["version"], c["cipher"])
		if len(both) == len(cases):
		    print("kTLS: TX+RX engaged (%d connections)" % len(both))
		elif not none:
		    print("kTLS: TX engaged (%d connections); RX too on %d [%s]; TX only on [%s] (%s)"
		          % (len(cases), len(both), ", ".join(map(name, both)),
		             ", ".join(map(name, tx_only)), cases[0]["openssl"]))
		else:
		    print("kTLS: not engaged (%d of %d connections not offloaded: %s)"
		          % (len(none), len(cases), ", ".join(map(name, none))))
	EOF
}

export XGATE_KTLS_REPORT=/tmp/ktls-report.jsonl
for s in $SUITES; do
	case "$s" in
	unit) unit_suite unit "$BUILD"/tests/unit/test_* ;;
	bpf) unit_suite bpf "$BUILD"/tests/bpf/test_* ;;
	edge | tls | websocket | l4)
		e2e_suite "$s" "test_$s.py"
		[ "$s" = tls ] && ktls_line
		;;
	ktlsbench)
		# bench/ktls.sh (make bench-ktls): a figure, not a test; the suite line says
		# whether it ran to the end.
		if XGATE_IN_GUEST=1 KTLS_BENCH_MB=$KTLS_BENCH_MB KTLS_BENCH_ROUNDS=$KTLS_BENCH_ROUNDS \
			timeout "$SUITE_TIMEOUT_S" bash bench/ktls.sh; then
			echo "suite ktlsbench: 1 passed, 0 failed"
		else
			echo "suite ktlsbench: 0 passed, 1 failed"
		fi
		;;
	*) echo "suite $s: 0 passed, 1 failed (unknown suite)" ;;
	esac
done
echo "test-kernels: guest done"
poweroff_now
