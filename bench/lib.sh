# Helpers shared by the benchmark scripts (sourced; set BENCH_NAME and RUN_DIR first).

die() { echo "$BENCH_NAME: $*" >&2; exit 1; }
note() { echo "$BENCH_NAME: $*" >&2; }

# SIGTERM, up to 5 s of grace, then SIGKILL; reaps the process.
stop_pid() {
	local pid=$1
	kill -TERM "$pid" 2>/dev/null || return 0
	for _ in $(seq 50); do
		kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

# A free TCP port below the ephemeral range and away from the e2e harness's 20000-32000,
# never handed out twice in one run.
pick_port() {
	local port
	for _ in $(seq 200); do
		port=$((15000 + RANDOM % 5000))
		if [ -z "$(ss -Hltn "sport = :$port")" ] && ! grep -qx "$port" "$RUN_DIR/ports" 2>/dev/null; then
			echo "$port" >>"$RUN_DIR/ports"
			echo "$port"
			return 0
		fi
	done
	die "no free port"
}

wait_port() { # port [seconds, default 10]
	local deadline=$((SECONDS + ${2:-10}))
	while ((SECONDS < deadline)); do
		[ -n "$(ss -Hltn "sport = :$1")" ] && return 0
		sleep 0.05
	done
	return 1
}

# utime+stime of a process and its children (nginx master + worker), in clock ticks.
cpu_ticks() {
	local total=0 pid ticks
	for pid in "$1" $(pgrep -P "$1" || true); do
		ticks=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | awk '{print $12 + $13}') || continue
		total=$((total + ${ticks:-0}))
	done
	echo "$total"
}

# Requests/s and the median latency in microseconds from a `wrk --latency` output file.
wrk_rps() { awk '/^Requests\/sec:/ { print $2 }' "$1"; }
wrk_p50_us() {
	awk '$1 == "50%" { v = $2
		if (v ~ /us$/) { sub(/us$/, "", v) } else if (v ~ /ms$/) { sub(/ms$/, "", v); v *= 1000 }
		else if (v ~ /s$/) { sub(/s$/, "", v); v *= 1000000 }
		print v }' "$1"
}

# The median of the numbers on stdin, one per line.
median() {
	sort -g | awk '{ v[NR] = $1 } END { if (!NR) exit; print NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
