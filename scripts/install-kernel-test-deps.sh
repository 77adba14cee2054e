#!/usr/bin/env bash
# Installs what `make test-kernels` needs on top of scripts/install-deps.sh: QEMU, a
# static busybox for the guest's initramfs, kmod (depmod for the unpacked kernel's
# modules, modprobe inside the guest) and cpio. Kept out of install-deps.sh so that
# `make test` does not pull in QEMU. Idempotent.
set -euo pipefail
PKGS=(qemu-system-x86 busybox-static kmod cpio xz-utils)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "install-kernel-test-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
