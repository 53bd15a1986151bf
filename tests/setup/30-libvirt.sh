#!/usr/bin/env bash
# libvirtd + QEMU for the agent's real-guest tests, without systemd, and the test
# guest: a Debian kernel plus a busybox-static initramfs whose init burns every vCPU.
# Idempotent: daemons are started only when not running, artefacts built only once.
set -euo pipefail
cache="${STEALBALANCER_TEST_CACHE:-/var/cache/stealbalancer-tests}"
mkdir -p "$cache"

# /dev/kvm is root-only and there is no udev: as the default qemu user every domain
# start waits ~45 s on device permission probing.
conf=/etc/libvirt/qemu.conf
for key in user group; do
    if ! grep -Eq "^${key} = \"root\"" "$conf"; then
        sed -i -E "/^#?${key} = /d" "$conf"
        echo "${key} = \"root\"" >>"$conf"
    fi
done

# Live (not zombie) processes of that name.
running() { ps -eo stat=,comm= | awk -v n="$1" '$1 !~ /^Z/ && $2 == n {f=1} END {exit !f}'; }
running virtlogd || virtlogd -d
running libvirtd || libvirtd -d
for _ in $(seq 1 60); do
    virsh -c qemu:///system version >/dev/null 2>&1 && break
    sleep 0.5
done
virsh -c qemu:///system version >/dev/null

# The kernel: whatever linux-image-amd64 currently depends on.
if [ ! -s "$cache/vmlinuz" ]; then
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
    kernel_pkg() { apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-/{print $2; exit}'; }
    pkg="$(kernel_pkg)"
    if [ -z "$pkg" ]; then
        apt-get update -qq
        pkg="$(kernel_pkg)"
    fi
    (cd "$work" && apt-get download -qq "$pkg")
    dpkg-deb -x "$work"/linux-image-*.deb "$work/root"
    cp "$work"/root/boot/vmlinuz-* "$cache/vmlinuz.tmp"
    mv "$cache/vmlinuz.tmp" "$cache/vmlinuz"
fi

# The initramfs: busybox and an init that announces itself on the serial console
# (the tests wait for that line) and then spins one shell loop per vCPU. With
# sbfill=<MiB> on the kernel command line it first writes that much non-zero data
# into a tmpfs and says so: QEMU skips zero pages, so without it a live migration
# moves only the few tens of MiB the kernel occupies and is over in about a second.
if [ ! -s "$cache/burn.cpio.gz" ] || ! zcat "$cache/burn.cpio.gz" | cpio -i --to-stdout --quiet init 2>/dev/null | grep -q FILLED; then
    root="$(mktemp -d)"
    mkdir -p "$root/bin" "$root/proc" "$root/dev"
    cp /bin/busybox "$root/bin/busybox"
    cat >"$root/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t devtmpfs dev /dev
for arg in $(/bin/busybox cat /proc/cmdline); do
    case "$arg" in
    sbfill=*)
        # Its own tmpfs: the root one stops at half the RAM.
        mib=${arg#sbfill=}
        /bin/busybox mkdir -p /fill
        /bin/busybox mount -t tmpfs -o size=$((mib + 1))m fill /fill
        /bin/busybox yes stealbalancer | /bin/busybox head -c $((mib * 1048576)) >/fill/data &&
            echo "STEALBALANCER-FILLED $mib" >/dev/ttyS0
        ;;
    esac
done
n=$(/bin/busybox grep -c ^processor /proc/cpuinfo)
i=0
while [ "$i" -lt "$n" ]; do
    (while :; do :; done) &
    i=$((i + 1))
done
echo "STEALBALANCER-BURNING $n" >/dev/ttyS0
while :; do /bin/busybox sleep 3600; done
INIT
    chmod +x "$root/init"
    ln -s busybox "$root/bin/sh"
    (cd "$root" && find . | cpio -o -H newc --quiet | gzip -1 >"$cache/burn.cpio.gz.tmp")
    mv "$cache/burn.cpio.gz.tmp" "$cache/burn.cpio.gz"
    rm -rf "$root"
fi
echo "libvirt ready; guest artefacts in $cache"
