#!/usr/bin/env bash
# Debian packages: libvirt + QEMU for the real-guest agent tests, libvirt-dev and
# pkg-config so pip can build libvirt-python, busybox-static for the test guests'
# initramfs, tmux to drive `coordctl watch` in a real terminal, iproute2 for netns,
# systemd for `systemd-analyze verify` of the agent's unit, prometheus for a real
# Prometheus server and promtool (the dashboard's queries and the alert rules' unit
# tests; the tests start their own server on loopback, never the packaged service),
# python3-dev so packaging/deb/build.sh can build libvirt-python for Debian's python3.
set -euo pipefail
packages=(libvirt-daemon-system libvirt-clients qemu-system-x86 libvirt-dev pkg-config
          busybox-static tmux iproute2 cpio python3-venv systemd prometheus
          python3-dev)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
