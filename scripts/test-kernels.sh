#!/usr/bin/env bash
# `make test-kernels`: boots Debian kernels under QEMU and runs the kernel-facing suites
# inside each (unit, BPF, e2e edge/TLS/WebSocket/L4), with the host's own binaries.
#
#   KERNELS   space-separated list; each is a Debian version of linux-image-amd64
#             ("6.1.176-1"), a kernel package ("linux-image-6.1.0-50-amd64", optionally
#             "=VERSION") or a path to a linux-image .deb. Default: the newest 6.1
#             linux-image-amd64 apt knows.
#   ACCEL     kvm | tcg | auto (default): KVM when a probe boot works, else TCG.
#   SUITES    subset of "unit bpf edge tls websocket l4" (default all); "ktlsbench" runs
#             bench/ktls.sh in the guest instead (KTLS_BENCH_MB, KTLS_BENCH_ROUNDS).
#   BUILD     the build directory whose binaries run in the guest (default build; it
#             must be inside the work tree).
#   PYTEST_ARGS  extra pytest arguments for the e2e suites (e.g. "-k tls13").
#   XGATE_TIME_SCALE  multiplies the e2e harness's waits; default 1 under KVM, 4 under TCG.
#
# Kernels are fetched with `apt-get download` and unpacked under build/kernels/; nothing
# is installed into the host's /boot or /lib/modules. Exit status is non-zero if any
# suite of any kernel fails or a guest does not finish.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
KDIR=build/kernels
SUITES=${SUITES:-unit bpf edge tls websocket l4}
BUILD=${BUILD:-build}
ACCEL=${ACCEL:-auto}
GUEST_TIMEOUT_S=${GUEST_TIMEOUT_S:-1500}
# Modules the initramfs needs to reach the 9p shares and build the overlay root.
INITRD_MODULES="virtio_pci 9pnet_virtio 9p overlay"

log() { echo "test-kernels: $*"; }

# Prints "PACKAGE VERSION" for one KERNELS entry (not for .deb paths).
resolve() {
	local spec=$1 pkg ver
	case "$spec" in
	linux-image-*=*) pkg=${spec%%=*} ver=${spec#*=} ;;
	linux-image-*) pkg=$spec ver=$(apt-cache policy "$pkg" | sed -n 's/^  Candidate: //p') ;;
	*)
		ver=$spec
		pkg=$(apt-cache show "linux-image-amd64=$ver" 2>/dev/null |
			sed -nE 's/^Depends: (linux-image-[^ ,]+).*/\1/p' | head -1)
		;;
	esac
	if [ -z "$pkg" ] || [ -z "$ver" ] || [ "$ver" = "(none)" ]; then
		log "cannot resolve kernel '$spec' (apt-cache knows: $(apt-cache madison linux-image-amd64 |
			awk '{print $3}' | tr '\n' ' '))" >&2
		return 1
	fi
	echo "$pkg $ver"
}

default_kernel() {
	apt-cache madison linux-image-amd64 | awk '{print $3}' | grep '^6\.1\.' | sort -V | tail -1
}

# Fetches and unpacks one kernel; prints its directory under build/kernels.
prepare_kernel() {
	local spec=$1 deb dir pkg ver rel
	if [ -f "$spec" ]; then
		deb=$(realpath "$spec")
	else
		read -r pkg ver < <(resolve "$spec") || return 1
		deb=$(ls "$KDIR/${pkg}_${ver//:/%3a}_"*.deb 2>/dev/null | head -1 || true)
		if [ -z "$deb" ]; then
			log "downloading $pkg $ver" >&2
			(cd "$KDIR" && apt-get download -q "$pkg=$ver" >/dev/null 2>&1) ||
				{ log "apt-get download $pkg=$ver failed" >&2; return 1; }
			deb=$(ls "$KDIR/${pkg}_${ver//:/%3a}_"*.deb | head -1)
		fi
	fi
	dir="$KDIR/$(basename "$deb" .deb)"
	if [ ! -f "$dir/ready" ]; then
		rm -rf "$dir" && mkdir -p "$dir"
		dpkg-deb -x "$deb" "$dir/root"
		rel=$(ls "$dir/root/lib/modules" | head -1)
		# Debian's postinst runs depmod; the guest's modprobe needs modules.dep.
		depmod -b "$dir/root" "$rel"
		extract_vmlinux "$dir/root/boot/vmlinuz-$rel" "$dir/vmlinux" >&2 || return 1
		build_initrd "$dir" "$rel" >&2 || return 1
		echo "$rel" >"$dir/ready"
	fi
	# The unpacked kernel is kept between runs; the initramfs follows its init script.
	if [ scripts/test-kernels-init.sh -nt "$dir/initrd.img" ]; then
		build_initrd "$dir" "$(cat "$dir/ready")" >&2 || return 1
	fi
	echo "$dir"
}

# The uncompressed ELF boots through its PVH entry, skipping the bzImage decompressor
# (about 10 s under TCG). Same approach as the kernel's scripts/extract-vmlinux.
extract_vmlinux() {
	/usr/bin/python3 - "$1" "$2" <<-'EOF'
		import bz2, gzip, lzma, sys, zlib
		img = open(sys.argv[1], "rb").read()
		magics = [(b"\xfd7zXZ\x00", lambda d: lzma.LZMADecompressor().decompress(d)),
		          (b"\x1f\x8b\x08", lambda d: zlib.decompressobj(31).decompress(d)),
		          (b"BZh", lambda d: bz2.BZ2Decompressor().decompress(d))]
		for magic, unpack in magics:
		    pos = img.find(magic)
		    while pos >= 0:
		        try:
		            out = unpack(img[pos:])
		        except (lzma.LZMAError, zlib.error, OSError, EOFError, ValueError):
		            out = b""
		        if out[:4] == b"\x7fELF":
		            open(sys.argv[2], "wb").write(out)
		            sys.exit(0)
		        pos = img.find(magic, pos + 1)
		sys.exit("test-kernels: no vmlinux found in " + sys.argv[1])
	EOF
}

build_initrd() {
	local dir=$1 rel=$2 tmp mod path
	tmp=$(mktemp -d)
	mkdir -p "$tmp/bin" "$tmp/modules"
	cp /bin/busybox "$tmp/bin/busybox"
	install -m 0755 scripts/test-kernels-init.sh "$tmp/init"
	: >"$tmp/modules.order"
	for mod in $INITRD_MODULES; do
		# insmod lines in dependency order; built-in modules print "builtin".
		while read -r kind path _; do
			[ "$kind" = insmod ] || continue
			grep -qx "$(basename "$path")" "$tmp/modules.order" && continue
			cp "$path" "$tmp/modules/"
			basename "$path" >>"$tmp/modules.order"
		done < <(modprobe -d "$dir/root" -S "$rel" --show-depends "$mod")
	done
	(cd "$tmp" && find . | cpio -o -H newc --quiet) | gzip -1 >"$dir/initrd.img"
	rm -rf "$tmp"
}

qemu_cmd() {
	local dir=$1 accel=$2 mode=$3 cpu=max
	[ "$accel" = kvm ] && cpu=host
	echo qemu-system-x86_64 -accel "$accel" -cpu "$cpu" -m 2048 -smp 1 -nographic -no-reboot \
		-nic none -kernel "$dir/vmlinux" -initrd "$dir/initrd.img" \
		-virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap \
		-virtfs "local,path=$REPO,mount_tag=worktree,security_model=none" \
		-append "'console=ttyS0 panic=-1 quiet xgate_mode=$mode xgate_repo=$REPO xgate_kdir=$dir/root xgate_conf=$dir/guest.conf'"
}

# KVM only when this kernel boots under it: a nested hypervisor may expose /dev/kvm
# and still fail to run a stock kernel (emulation failures).
pick_accel() {
	local dir=$1 out pid i
	case "$ACCEL" in kvm | tcg) echo "$ACCEL"; return ;; esac
	if [ -w /dev/kvm ]; then
		out=$(mktemp)
		# exec: $! is QEMU itself, so the kill below reaches it (not only a subshell).
		eval "exec $(qemu_cmd "$dir" kvm probe)" </dev/null >"$out" 2>&1 &
		pid=$!
		# A working KVM boots the probe in 1-2 s; a failing one hangs or reports an error.
		for ((i = 0; i < 50; i++)); do
			grep -qE '^test-kernels: probe ok|KVM internal error|emulation failure' "$out" && break
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.3
		done
		kill "$pid" 2>/dev/null || true
		for ((i = 0; i < 20; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
		if grep -q '^test-kernels: probe ok' "$out"; then
			rm -f "$out"
			echo kvm
			return
		fi
		log "KVM cannot boot this kernel here, using TCG ($(grep -m1 -oE 'KVM internal error.*|emulation failure.*' "$out" || echo "no answer from a probe boot in 15 s"))" >&2
		rm -f "$out"
	fi
	echo tcg
}

run_kernel() {
	local spec=$1 dir accel scale out rc=0 line bad=0 seen=0
	dir=$(prepare_kernel "$spec") || return 1
	accel=$(pick_accel "$dir")
	scale=${XGATE_TIME_SCALE:-$([ "$accel" = tcg ] && echo 4 || echo 1)}
	cat >"$dir/guest.conf" <<-EOF
		SUITES="$SUITES"
		XGATE_TIME_SCALE=$scale
		PYTEST_ARGS="${PYTEST_ARGS:-}"
		BUILD="$BUILD"
		KTLS_BENCH_MB="${KTLS_BENCH_MB:-1024}"
		KTLS_BENCH_ROUNDS="${KTLS_BENCH_ROUNDS:-2}"
	EOF
	out="$dir/console.log"
	log "booting $(basename "$dir") under ${accel^^} (time scale $scale)"
	local start=$SECONDS
	eval "timeout $GUEST_TIMEOUT_S $(qemu_cmd "$dir" "$accel" run)" </dev/null 2>&1 |
		tr -d '\r' | tee "$out" || rc=$?
	log "$(basename "$dir"): guest ran $((SECONDS - start)) s"
	while read -r line; do
		seen=$((seen + 1))
		[[ "$line" =~ \ 0\ failed$ ]] || bad=1
	done < <(grep -E '^suite [a-z0-9]+: [0-9]+ passed, [0-9]+ failed' "$out")
	if ! grep -q '^test-kernels: guest done' "$out"; then
		log "$(basename "$dir"): the guest did not finish (qemu exit $rc)"
		return 1
	fi
	if [ "$seen" -ne "$(wc -w <<<"$SUITES")" ]; then
		log "$(basename "$dir"): $seen suite results for $(wc -w <<<"$SUITES") suites"
		return 1
	fi
	return $bad
}

bash scripts/install-kernel-test-deps.sh
mkdir -p "$KDIR"
KERNELS=${KERNELS:-$(default_kernel)}
[ -n "$KERNELS" ] || { log "apt knows no 6.1 linux-image-amd64; set KERNELS"; exit 1; }
status=0
for k in $KERNELS; do
	run_kernel "$k" || status=1
done
[ $status -eq 0 ] && log "all kernels passed" || log "FAILED"
exit $status
