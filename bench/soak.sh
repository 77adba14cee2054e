#!/usr/bin/env bash
# Fault soak (issue "Hardening"): mixed load while upstreams are killed, reset, slowed and
# half-opened; checks fds, RSS and connection gauges return to baseline. Not in make test.
# usage: bash bench/soak.sh [SECONDS]   (default 600; build first with make)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
[ -x "$BUILD/xgate" ] || { echo "soak: build first (make)" >&2; exit 2; }
command -v wrk >/dev/null || { echo "soak: wrk missing (make deps)" >&2; exit 2; }
exec /usr/bin/python3 bench/soak.py --duration "${1:-600}" --build "$BUILD"
