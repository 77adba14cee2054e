#!/bin/bash
# Runs the libFuzzer harnesses one at a time at the lowest CPU priority.
#   scripts/fuzz.sh run SECONDS [NAME...]    fuzz each for SECONDS (FUZZ_RUNS=N stops at N
#                                            executions first); new inputs are kept in
#                                            $FUZZ_BUILD/corpus/NAME for the next run
#   scripts/fuzz.sh smoke SECONDS [NAME...]  every checked-in seed, then SECONDS of mutation
#                                            from a throw-away corpus (make test)
# Each harness prints one line: executions, coverage (cov: edges, ft: features), corpus
# size and the exit status; its full output stays in $FUZZ_BUILD/logs/NAME.log and any
# crashing input in $FUZZ_BUILD/artifacts/NAME/. Exits non-zero if any harness failed.
set -u

mode=${1:?usage: fuzz.sh run|smoke SECONDS [NAME...]}
secs=${2:?usage: fuzz.sh run|smoke SECONDS [NAME...]}
shift 2
build=${FUZZ_BUILD:-build/fuzz}
runs=${FUZZ_RUNS:--1}
seeds=tests/fuzz/corpus

if [ $# -gt 0 ]; then
	names=("$@")
else
	names=()
	for f in tests/fuzz/fuzz_*.c; do
		n=${f#tests/fuzz/fuzz_}
		names+=("${n%.c}")
	done
fi

case $mode in
run | smoke) ;;
*)
	echo "fuzz.sh: unknown mode $mode" >&2
	exit 2
	;;
esac

mkdir -p "$build/logs"
tmp=$(mktemp -d /tmp/xgate-fuzz-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
failed=0

for n in "${names[@]}"; do
	bin=$build/fuzz/fuzz_$n
	log=$build/logs/$n.log
	art=$build/artifacts/$n
	if [ ! -x "$bin" ] || [ ! -d "$seeds/$n" ]; then
		echo "fuzz $n: no harness $bin or no seeds $seeds/$n" >&2
		failed=1
		continue
	fi
	if [ "$mode" = run ]; then
		work=$build/corpus/$n
	else
		work=$tmp/$n
	fi
	mkdir -p "$work" "$art"
	start=$(date +%s)
	# stdin from /dev/null: a config naming /dev/stdin as a file must not block the run
	nice -n 19 "$bin" -max_total_time="$secs" -runs="$runs" -timeout=10 -rss_limit_mb=2048 \
		-print_final_stats=1 -artifact_prefix="$art/" "$work" "$seeds/$n" \
		</dev/null >"$log" 2>&1
	rc=$?
	elapsed=$(($(date +%s) - start))
	execs=$(awk '/stat::number_of_executed_units/ {print $2}' "$log")
	last=$(grep -E '^#[0-9]+' "$log" | grep 'cov: ' | tail -1)
	cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
	ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
	corp=$(sed -n 's/.* corp: \([0-9]*\/[0-9A-Za-z]*\).*/\1/p' <<<"$last")
	printf 'fuzz %-14s execs=%s cov=%s ft=%s corpus=%s seconds=%s rc=%s\n' "$n" \
		"${execs:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "$elapsed" "$rc"
	if [ "$rc" -ne 0 ]; then
		failed=1
		grep -E 'ERROR|invariant failed|runtime error|SUMMARY|Test unit written' "$log" | head -8
		echo "fuzz $n: full output in $log" >&2
	fi
done
exit $failed
