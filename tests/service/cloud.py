"""A cloud the tests can build in: the real Nova fixture or the simulated Nova.

Both expose the Compute port under test plus the few admin actions a test needs to
set the scene (boot a server on a host, make a server group). The real one starts
`tests/nova/serve_nova.py` in the Nova virtualenv and points openstacksdk at it.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from coordinator.adapters.nova import NovaCompute
from coordinator.adapters.sim.compute import SimCompute
from coordinator.model import GroupPolicy
from coordinator.ports import Compute

NOVA_VENV = Path(os.environ.get("STEALBALANCER_NOVA_VENV", "/opt/stealbalancer/nova-venv"))
SERVE_NOVA = Path(__file__).resolve().parents[1] / "nova" / "serve_nova.py"
# The glance fixture's default image.
IMAGE = "155d900f-4e14-4e4c-a73d-069cbf4541e6"
# The Neutron fixture's one network ("private"): a server booted on it gets a port, so
# Nova lists an address for it (`network=True`; others boot with no network at all).
PRIVATE_NETWORK = "3cb9bc59-5699-4588-a4b1-b87f96708bc6"
# host → AZ, the same in both clouds.
HOSTS: Mapping[str, str] = {"host-a": "az1", "host-b": "az1", "host-c": "az1", "host-d": "az2"}
STARTUP_TIMEOUT_S = 120.0


class Cloud(Protocol):
    compute: Compute
    migration_s: float

    def boot(
        self,
        host: str,
        metadata: Mapping[str, str] | None = None,
        group: str = "",
        network: bool = False,
    ) -> str: ...

    def make_group(self, policy: GroupPolicy) -> str: ...


class SimCloud:
    def __init__(self, clock: Callable[[], float] = time.monotonic, migration_s: float = 0.5):
        self.sim = SimCompute(clock=clock, migration_s=migration_s)
        self.compute: Compute = self.sim
        self.migration_s = migration_s
        for host, az in HOSTS.items():
            self.sim.add_hypervisor(host, az)

    def boot(
        self,
        host: str,
        metadata: Mapping[str, str] | None = None,
        group: str = "",
        network: bool = False,
    ) -> str:
        """Every simulated server has an address of its own: `network` changes nothing."""
        server = str(uuid.uuid4())
        self.sim.add_server(server, host, name=f"vm-{server[:6]}", metadata=metadata, group=group,
                            project_id="project-of-the-tests")  # fmt: skip
        return server

    def make_group(self, policy: GroupPolicy) -> str:
        group = str(uuid.uuid4())
        self.sim.add_group(group, policy)
        return group


class NovaProcess:
    """`serve_nova.py` as a child process; closing its stdin stops it."""

    def __init__(self) -> None:
        python = NOVA_VENV / "bin" / "python"
        if not python.exists():
            raise RuntimeError(f"{python} missing: run tests/setup/40-nova.sh")
        args = [str(python), str(SERVE_NOVA)]
        for host, az in HOSTS.items():
            args += ["--compute", f"{az}:{host}"]
        self.proc = subprocess.Popen(
            args,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env={**os.environ, "OS_NOVA_DISABLE_EVENTLET_PATCHING": "1"},
        )
        self.port = self._read_port()

    def _read_port(self) -> int:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            if line.startswith("PORT "):
                return int(line.split()[1])
        self.stop()
        raise RuntimeError("serve_nova.py did not start")

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/v2.1"

    def stop(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=15)


def sdk_connection(endpoint: str) -> Any:
    import openstack

    warnings.filterwarnings("ignore", module="openstack")
    return openstack.connection.Connection(auth_type="none", compute_endpoint_override=endpoint)


class NovaCloud:
    # FakeLiveMigrateDriver: ~5 s per migration.
    migration_s = 5.0

    def __init__(self, endpoint: str) -> None:
        self.conn = sdk_connection(endpoint)
        self.compute: Compute = NovaCompute(self.conn)

    def boot(
        self,
        host: str,
        metadata: Mapping[str, str] | None = None,
        group: str = "",
        network: bool = False,
    ) -> str:
        hints = {"group": group} if group else {}
        server = self.conn.compute.create_server(
            name=f"vm-{uuid.uuid4().hex[:6]}",
            image_id=IMAGE,
            flavor_id="1",
            networks=[{"uuid": PRIVATE_NETWORK}] if network else "none",
            availability_zone=f"{HOSTS[host]}:{host}",
            metadata=dict(metadata or {}),
            scheduler_hints=hints,
        )
        server = self.conn.compute.wait_for_server(server, interval=0.3, wait=60)
        return str(server.id)

    def make_group(self, policy: GroupPolicy) -> str:
        group = self.conn.compute.create_server_group(
            name=f"g-{uuid.uuid4().hex[:6]}", policy=policy.value
        )
        return str(group.id)
