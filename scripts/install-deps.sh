#!/usr/bin/env bash
# Installs the Debian packages xgate's build, demo, tests and benchmarks need.
# Idempotent: when everything is present it only runs dpkg-query once.
set -euo pipefail
PKGS=(
  build-essential pkg-config clang clang-14 libclang-rt-14-dev llvm bpftool libbpf-dev libxdp-dev xdp-tools
  liburing-dev libjansson-dev libssl-dev openssl zlib1g-dev libbrotli-dev linux-libc-dev libc6-dev-i386
  iproute2 iptables nftables ethtool procps curl wrk haproxy nginx-light prometheus hping3
  python3 python3-pytest python3-brotli python3-jwt python3-cryptography python3-websockets python3-scapy
  tzdata
  libnghttp2-dev nghttp2-client libhiredis-dev redis-server libc-ares-dev libxml2-dev libpcre2-dev
  libmodsecurity-dev modsecurity-crs protobuf-compiler libprotobuf-dev libprotobuf-c-dev protobuf-c-compiler
  python3-h2 python3-grpcio python3-grpc-tools python3-protobuf chromium
)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # Package scripts must not start nginx/haproxy/prometheus services on this host.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  rm -f /usr/sbin/policy-rc.d
fi
# BPF filesystem for pinned maps.
if ! mountpoint -q /sys/fs/bpf 2>/dev/null; then
  mkdir -p /sys/fs/bpf && mount -t bpf bpf /sys/fs/bpf
fi
