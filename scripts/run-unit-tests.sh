#!/usr/bin/env bash
# Runs every unit/BPF test binary given, sums their "N passed, N failed" lines.
set -u
pass=0 fail=0 bad=()
for t in "$@"; do
  out=$("$t" 2>&1); rc=$?
  line=$(printf '%s\n' "$out" | grep -E '[0-9]+ passed, [0-9]+ failed' | tail -1)
  p=$(sed -nE 's/.* ([0-9]+) passed.*/\1/p' <<<"$line"); f=$(sed -nE 's/.* ([0-9]+) failed.*/\1/p' <<<"$line")
  pass=$((pass + ${p:-0})); fail=$((fail + ${f:-0}))
  if [ $rc -ne 0 ] || [ -z "$line" ]; then bad+=("$(basename "$t")"); printf '%s\n' "$out" | tail -40; fi
  echo "$(basename "$t"): ${p:-0} passed, ${f:-0} failed (exit $rc)"
done
echo "unit: $pass passed, $fail failed"
[ ${#bad[@]} -eq 0 ] || { echo "failing test binaries: ${bad[*]}"; exit 1; }
