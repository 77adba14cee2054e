#!/bin/busybox sh
# /init of the `make test-kernels` guest (busybox initramfs built by test-kernels.sh).
#
# Loads the virtio/9p/overlay modules listed in /modules.order (dependency order, computed
# on the host), mounts the host's root read-only over 9p under a tmpfs overlay, puts the
# work tree's read-write 9p share at the same path, makes the unpacked kernel's modules
# the guest's /lib/modules, and switches into that root to run the guest test runner. The
# tests therefore use the host's own binaries, Python and build directory.
/bin/busybox mkdir -p /proc /sys /dev /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

die() {
	echo "test-kernels-init: $*"
	echo "test-kernels: guest failed"
	echo o >/proc/sysrq-trigger
	sleep 10
}

arg() {
	for kv in $(cat /proc/cmdline); do
		case "$kv" in "$1"=*) echo "${kv#*=}" ;; esac
	done
}

repo=$(arg xgate_repo)
mode=$(arg xgate_mode)
kdir=$(arg xgate_kdir)

for m in $(cat /modules.order); do
	insmod "/modules/$m" || die "insmod $m failed"
done

if [ "$mode" = probe ]; then
	echo "test-kernels: probe ok $(uname -r)"
	echo o >/proc/sysrq-trigger
	sleep 10
fi

opts=trans=virtio,version=9p2000.L,msize=524288
mkdir -p /lower /upper /newroot
mount -t 9p -o "$opts,ro,cache=loose" hostroot /lower || die "cannot mount the host root"
mount -t tmpfs -o mode=0755 tmpfs /upper || die "cannot mount the overlay's tmpfs"
mkdir -p /upper/data /upper/work
mount -t overlay -o lowerdir=/lower,upperdir=/upper/data,workdir=/upper/work overlay /newroot ||
	die "cannot mount the overlay root"
mount -t 9p -o "$opts,cache=none" worktree "/newroot$repo" || die "cannot mount the work tree"
# A second handle on it: the guest's fresh /tmp and /run would hide a tree that lives there.
mkdir -p /newroot/.xgate-worktree
mount -o bind "/newroot$repo" /newroot/.xgate-worktree || die "cannot bind the work tree"
# /lib is a symlink to usr/lib on Debian 12; the host may have no modules directory.
mkdir -p /newroot/usr/lib/modules
mount -o bind "/newroot$repo/$kdir/lib/modules" /newroot/usr/lib/modules ||
	die "cannot bind the guest kernel's modules"
for d in tmp run; do
	mkdir -p "/newroot/$d"
done
mount -o move /dev /newroot/dev
mount -o move /proc /newroot/proc
mount -o move /sys /newroot/sys
exec switch_root /newroot /bin/bash "$repo/scripts/test-kernels-guest.sh"
