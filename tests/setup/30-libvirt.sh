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

# Debian packages are fetched, never installed on this host: `apt-get download` of the
# candidate version, unpacked into a scratch directory.
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
fetch() { # fetch <package> <dir>: unpack the package's files into <dir>
    (cd "$work" && apt-get download -qq "$1" 2>/dev/null) || {
        apt-get update -qq
        (cd "$work" && apt-get download -qq "$1")
    }
    dpkg-deb -x "$work/$1"_*.deb "$2"
}

# The kernel: whatever linux-image-amd64 currently depends on, and the virtio modules
# a guest agent's channel needs (Debian builds them as modules), in load order.
modules="virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_console"
if [ ! -s "$cache/vmlinuz" ] || [ ! -s "$cache/modules/virtio_console.ko" ]; then
    kernel_pkg() { apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-/{print $2; exit}'; }
    pkg="$(kernel_pkg)"
    if [ -z "$pkg" ]; then
        apt-get update -qq
        pkg="$(kernel_pkg)"
    fi
    fetch "$pkg" "$work/kernel"
    mkdir -p "$cache/modules"
    for m in $modules; do
        cp "$(find "$work/kernel/lib/modules" -name "$m.ko")" "$cache/modules/"
    done
    cp "$work"/kernel/boot/vmlinuz-* "$cache/vmlinuz.tmp"
    mv "$cache/vmlinuz.tmp" "$cache/vmlinuz"
fi

# The initramfs: busybox and an init that announces itself on the serial console
# (the tests wait for that line) and then spins one shell loop per vCPU.
# - sbfill=<MiB> on the kernel command line: it first writes that much non-zero data
#   into a tmpfs and says so. QEMU skips zero pages, so without it a live migration
#   moves only the few tens of MiB the kernel occupies and is over in about a second.
# - sbdirty=<MiB>: it rewrites that much of a tmpfs with new content, pass after pass
#   with a second's pause, for ever, saying so after each pass, and burns no vCPU (a
#   TCG vCPU has little to spare): a guest whose dirty rate the host can time, for the
#   agent's dirty-rate measurement.
# - sbga=1: it loads the virtio modules and runs Debian's qemu-ga (with the shared
#   libraries it links, taken from this host, where QEMU needs the same ones) on the
#   port named org.qemu.guest_agent.0, when the domain has that channel.
if [ ! -s "$cache/burn.cpio.gz" ] || ! zcat "$cache/burn.cpio.gz" | cpio -i --to-stdout --quiet init 2>/dev/null | grep -q STEALBALANCER-PASS; then
    root="$work/initramfs"
    mkdir -p "$root/bin" "$root/proc" "$root/dev" "$root/sys" "$root/tmp" "$root/lib/modules"
    cp /bin/busybox "$root/bin/busybox"
    ln -s busybox "$root/bin/sh"
    cp "$cache"/modules/*.ko "$root/lib/modules/"
    fetch qemu-guest-agent "$work/ga"
    cp "$work/ga/usr/sbin/qemu-ga" "$root/bin/qemu-ga"
    for lib in $(ldd "$work/ga/usr/sbin/qemu-ga" | grep -o '/[^ ]*'); do
        mkdir -p "$root$(dirname "$lib")"
        cp -L "$lib" "$root$lib"
    done
    cat >"$root/init" <<INIT
#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t devtmpfs dev /dev
/bin/busybox mount -t sysfs sys /sys
modules="$modules"
INIT
    cat >>"$root/init" <<'INIT'
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
    sbdirty=*)
        mib=${arg#sbdirty=}
        /bin/busybox mkdir -p /dirty
        /bin/busybox mount -t tmpfs -o size=$((mib + 1))m dirty /dirty
        (
            i=0
            while :; do
                i=$((i + 1))
                # New content every pass: QEMU's sampling compares page hashes.
                /bin/busybox yes "pass $i" | /bin/busybox head -c $((mib * 1048576)) |
                    /bin/busybox dd of=/dirty/data bs=1048576 conv=notrunc 2>/dev/null
                # A TCG guest takes seconds per pass: the host times the passes.
                echo "STEALBALANCER-PASS $i" >/dev/ttyS0
                /bin/busybox sleep 1
            done
        ) &
        echo "STEALBALANCER-DIRTYING $mib" >/dev/ttyS0
        noburn=1
        ;;
    sbga=1)
        for m in $modules; do /bin/busybox insmod "/lib/modules/$m.ko"; done
        for port in /sys/class/virtio-ports/*; do
            if [ "$(/bin/busybox cat "$port/name" 2>/dev/null)" = org.qemu.guest_agent.0 ]; then
                /bin/qemu-ga -m virtio-serial -p "/dev/${port##*/}" -t /tmp >/dev/ttyS0 2>&1 &
                echo "STEALBALANCER-GUEST-AGENT ${port##*/}" >/dev/ttyS0
            fi
        done
        ;;
    esac
done
n=$(/bin/busybox grep -c ^processor /proc/cpuinfo)
[ -n "$noburn" ] && n=0
i=0
while [ "$i" -lt "$n" ]; do
    (while :; do :; done) &
    i=$((i + 1))
done
echo "STEALBALANCER-BURNING $n" >/dev/ttyS0
while :; do /bin/busybox sleep 3600; done
INIT
    chmod +x "$root/init"
    (cd "$root" && find . | cpio -o -H newc --quiet | gzip -1 >"$cache/burn.cpio.gz.tmp")
    mv "$cache/burn.cpio.gz.tmp" "$cache/burn.cpio.gz"
fi
echo "libvirt ready; guest artefacts in $cache"
