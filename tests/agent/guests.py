"""Tiny real QEMU guests for the agent's tests: a Debian kernel and a busybox
initramfs that burns every vCPU (built by tests/setup/30-libvirt.sh).

TCG only (no KVM here): each guest's vCPU is one QEMU thread that is always
runnable once init runs, which is exactly what a known-steal experiment needs.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import libvirt
import libvirt_qemu
import pytest

CACHE = Path(os.environ.get("STEALBALANCER_TEST_CACHE", "/var/cache/stealbalancer-tests"))
NOVA_NS = "http://openstack.org/xmlns/libvirt/nova/1.1"
BURNING = "STEALBALANCER-BURNING"
FILLED = "STEALBALANCER-FILLED"


def require_root_linux() -> None:
    """The only acceptable skip: elsewhere CI must have made libvirtd present."""
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        pytest.skip("real libvirt tests need root on Linux")


def open_system(uri: str = "qemu:///system") -> libvirt.virConnect:
    require_root_linux()
    try:
        return libvirt.open(uri)
    except libvirt.libvirtError as exc:
        pytest.fail(f"libvirtd not reachable at {uri} (run tests/setup/30-libvirt.sh): {exc}")


@dataclass(frozen=True)
class Guest:
    dom: libvirt.virDomain
    name: str
    uuid: str
    console: Path

    def burning(self) -> bool:
        return self.console.exists() and BURNING in self.console.read_text(errors="replace")


def domain_xml(
    name: str,
    domain_uuid: str,
    console: Path,
    cpuset: str,
    vcpus: int = 1,
    fill_mib: int = 0,
    guest_agent: bool = False,
    dirty_mib: int | None = None,
) -> str:
    """A burning guest; `fill_mib` MiB of non-zero RAM give a migration that much to move;
    with `guest_agent`, a qemu-ga channel and Debian's qemu-ga answering on it; with
    `dirty_mib` (0 included), it burns nothing and rewrites that many MiB pass after
    pass, one "STEALBALANCER-PASS <n>" console line each."""
    options = (
        (f" sbfill={fill_mib}" if fill_mib else "")
        + (" sbga=1" if guest_agent else "")
        + (f" sbdirty={dirty_mib}" if dirty_mib is not None else "")
    )
    channel = (
        "<channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>"
        if guest_agent
        else ""
    )
    pins = "".join(f"<vcpupin vcpu='{n}' cpuset='{cpuset}'/>" for n in range(vcpus))
    return f"""
<domain type='qemu'>
  <name>{name}</name>
  <uuid>{domain_uuid}</uuid>
  <memory unit='MiB'>{128 + fill_mib + (dirty_mib or 0)}</memory>
  <vcpu>{vcpus}</vcpu>
  <metadata>
    <nova:instance xmlns:nova='{NOVA_NS}'><nova:name>{name}-display</nova:name></nova:instance>
  </metadata>
  <cputune>{pins}</cputune>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{CACHE / "vmlinuz"}</kernel>
    <initrd>{CACHE / "burn.cpio.gz"}</initrd>
    <cmdline>console=ttyS0 quiet panic=-1{options}</cmdline>
  </os>
  <on_poweroff>destroy</on_poweroff>
  <devices>
    <serial type='file'><source path='{console}'/><target port='0'/></serial>
    {channel}
    <memballoon model='none'/>
  </devices>
</domain>"""


@contextmanager
def burning_guests(
    conn: libvirt.virConnect,
    count: int,
    workdir: Path,
    cpuset: str,
    boot_timeout_s: float = 90,
    fill_mib: int = 0,
    guest_agent: bool = False,
    dirty_mib: int | None = None,
) -> Iterator[list[Guest]]:
    """`count` running, burning 1-vCPU guests; destroyed on exit whatever happens."""
    guests: list[Guest] = []
    try:
        for index in range(count):
            name = f"sbtest-{os.getpid()}-{index}"
            guest_uuid = str(uuid.uuid4())
            console = workdir / f"{name}.console"
            xml = domain_xml(
                name,
                guest_uuid,
                console,
                cpuset,
                fill_mib=fill_mib,
                guest_agent=guest_agent,
                dirty_mib=dirty_mib,
            )
            dom = conn.createXML(xml, 0)
            guests.append(Guest(dom, name, guest_uuid, console))
        deadline = time.monotonic() + boot_timeout_s
        while not all(guest.burning() for guest in guests):
            if time.monotonic() > deadline:
                pytest.fail(f"guests did not reach init within {boot_timeout_s} s")
            time.sleep(0.2)
        for guest in guests:
            said = guest.console.read_text(errors="replace")
            if fill_mib and f"{FILLED} {fill_mib}" not in said:
                pytest.fail(f"{guest.name} did not fill {fill_mib} MiB of RAM: {said}")
            if guest_agent:
                _wait_for_guest_agent(guest, deadline)
        yield guests
    finally:
        for guest in guests:
            destroy(guest.dom)


def guest_agent_command(guest: Guest, command: str) -> Any:
    """`command`'s return value, straight from the guest's qemu-ga."""
    reply = libvirt_qemu.qemuAgentCommand(guest.dom, json.dumps({"execute": command}), 5, 0)
    return json.loads(reply)["return"]


def _wait_for_guest_agent(guest: Guest, deadline: float) -> None:
    # libvirt calls the agent connected once qemu-ga opens its port, a second or two
    # after init started it.
    while True:
        try:
            guest_agent_command(guest, "guest-ping")
            return
        except libvirt.libvirtError as exc:
            if time.monotonic() > deadline:
                said = guest.console.read_text(errors="replace")
                pytest.fail(f"{guest.name}: qemu-ga never answered ({exc}): {said}")
            time.sleep(0.5)


def destroy(dom: libvirt.virDomain) -> None:
    with contextlib.suppress(libvirt.libvirtError):  # already gone
        dom.destroy()


def pin(guest: Guest, cpu: int, host_cpus: int) -> None:
    guest.dom.pinVcpu(0, tuple(n == cpu for n in range(host_cpus)))


def cpu_idle_fractions(window_s: float) -> list[float]:
    """Idle share of each host CPU over `window_s`, from /proc/stat."""

    def read() -> list[tuple[int, int]]:
        rows = []
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith("cpu") and line[3:4].isdigit():
                ticks = [int(v) for v in line.split()[1:9]]
                rows.append((ticks[3] + ticks[4], sum(ticks)))
        return rows

    before = read()
    time.sleep(window_s)
    after = read()
    return [
        (a_idle - b_idle) / max(1, a_total - b_total)
        for (b_idle, b_total), (a_idle, a_total) in zip(before, after, strict=True)
    ]
