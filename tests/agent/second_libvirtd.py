"""A second libvirtd on this machine, as a migration target.

It runs in a network namespace and a private mount namespace of its own, over a copy
of /etc/libvirt with a distinct host_uuid (libvirt refuses to migrate to "the same
host") and its own run/lib/cache/log directories bind-mounted over the usual paths.
Its control socket and the migration socket sit in a shared directory, so the test
reaches it with qemu+unix:///system?socket=... and migrates over unix:// sockets.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import libvirt

_DIRS = {
    "etc": "/etc/libvirt",
    "run": "/run/libvirt",
    "lib": "/var/lib/libvirt",
    "cache": "/var/cache/libvirt",
    "log": "/var/log/libvirt",
}


@dataclass(frozen=True)
class SecondLibvirtd:
    base: Path
    netns: str

    @property
    def uri(self) -> str:
        return f"qemu+unix:///system?socket={self.base}/run/libvirt-sock"

    @property
    def migration_uri(self) -> str:
        return f"unix://{self.base}/migration.sock"


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=60)


def _start(base: Path, netns: str) -> None:
    for name in _DIRS:
        (base / name).mkdir(parents=True)
    shutil.copytree("/etc/libvirt", base / "etc", dirs_exist_ok=True)
    for link in (base / "etc/qemu/networks/autostart").glob("*"):
        link.unlink()  # no virbr0/dnsmasq in the namespace
    with (base / "etc/libvirtd.conf").open("a") as conf:
        conf.write(f'\nhost_uuid = "{uuid.uuid4()}"\n')
    mounts = "; ".join(f"mount --bind {base / name} {target}" for name, target in _DIRS.items())
    daemons = f"virtlogd -d -p {base}/virtlogd.pid; libvirtd -d -p {base}/libvirtd.pid"
    _run("ip", "netns", "add", netns)
    _run("ip", "netns", "exec", netns, "unshare", "--mount", "--propagation", "private",
         "sh", "-ec", f"{mounts}; {daemons}")  # fmt: skip


def _wait_ready(uri: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            libvirt.open(uri).close()
            return
        except libvirt.libvirtError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.25)


def _stop(base: Path, netns: str) -> None:
    with contextlib.suppress(libvirt.libvirtError):
        conn = libvirt.open(f"qemu+unix:///system?socket={base}/run/libvirt-sock")
        for dom in conn.listAllDomains():
            with contextlib.suppress(libvirt.libvirtError):
                dom.destroy()
        conn.close()
    for name in ("libvirtd", "virtlogd"):
        pidfile = base / f"{name}.pid"
        with contextlib.suppress(OSError, ValueError):
            os.kill(int(pidfile.read_text().strip()), signal.SIGTERM)
    time.sleep(0.5)
    subprocess.run(["ip", "netns", "del", netns], capture_output=True, timeout=30, check=False)
    shutil.rmtree(base, ignore_errors=True)


@contextlib.contextmanager
def second_libvirtd(base: Path) -> Iterator[SecondLibvirtd]:
    netns = f"sbmig{os.getpid()}"
    try:
        _start(base, netns)
        daemon = SecondLibvirtd(base, netns)
        _wait_ready(daemon.uri)
        yield daemon
    finally:
        _stop(base, netns)
