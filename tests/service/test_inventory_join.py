"""The inventory join takes a VM's telemetry only from where Nova places it (pure)."""

from __future__ import annotations

import pytest

from coordinator.config import Config, InventoryConfig
from coordinator.model import Bookkeeping, InFlight, VmMetrics
from coordinator.policy import is_contended, plan
from coordinator.policy.detect import ineligibility
from coordinator.ports import HypervisorInfo, ServerInfo
from coordinator.service.inventory import HostTelemetry, Inventory, ReportedVm, join

NOW = 10_000.0
HOSTS = ("hv-a", "hv-b", "hv-c")


def _inventory() -> Inventory:
    return Inventory(
        hypervisors=tuple(HypervisorInfo(h, "az1", 32, 65536, True, True) for h in HOSTS),
        servers=(ServerInfo("vm-x", "x", "hv-b", "az1", "ACTIVE", None, 2, 2048, 10.0),),
    )


def _telemetry(steal_by_host: dict[str, float], age_s: float = 5.0) -> dict[str, HostTelemetry]:
    return {
        host: HostTelemetry(host, "az1", 32, 65536, NOW - age_s, {"vm-x": ReportedVm(
            "vm-x", "x", 2, 2048, 10.0, VmMetrics(steal=steal, sampled_at=NOW - age_s))})
        for host, steal in steal_by_host.items()
    }  # fmt: skip


MOVING = Bookkeeping(in_flight=(InFlight("vm-x", "hv-b", "hv-c", "az1", 100, NOW - 30),))


@pytest.mark.parametrize(
    ("reports", "books", "age_s", "steal", "reported", "wrong"),
    [
        pytest.param({"hv-b": 0.02}, Bookkeeping(), 5.0, 0.02, True, (), id="own-host"),
        pytest.param({"hv-a": 0.5}, Bookkeeping(), 5.0, 0.0, False, ("hv-a",),
                     id="only-another-host"),
        pytest.param({"hv-a": 0.5, "hv-b": 0.02}, Bookkeeping(), 5.0, 0.02, True, ("hv-a",),
                     id="own-host-wins-other-flagged"),
        pytest.param({"hv-c": 0.01}, MOVING, 5.0, 0.01, True, (), id="migration-target"),
        pytest.param({"hv-c": 0.01, "hv-b": 0.3}, MOVING, 5.0, 0.3, True, (),
                     id="source-first-while-migrating"),
        pytest.param({"hv-c": 0.01}, Bookkeeping(moved_to={"vm-x": "hv-c"}), 5.0, 0.01, True,
                     (), id="moved-before-the-inventory-knew"),
        pytest.param({"hv-a": 0.5}, Bookkeeping(), 600.0, 0.0, False, (),
                     id="silent-host-no-longer-flags"),
    ],
)  # fmt: skip
def test_telemetry_counts_only_from_where_nova_places_the_vm(
    reports: dict[str, float],
    books: Bookkeeping,
    age_s: float,
    steal: float,
    reported: bool,
    wrong: tuple[str, ...],
) -> None:
    snap = join(NOW, _inventory(), _telemetry(reports, age_s), InventoryConfig(), books)
    vm = snap.vms["vm-x"]
    assert (vm.metrics.steal, vm.reported_by_agent, vm.telemetry_from_wrong_host) == (
        steal, reported, wrong,
    )  # fmt: skip


def test_a_vm_another_host_reports_is_not_moved_even_when_contended() -> None:
    contended = VmMetrics(steal=0.4, load=0.9, contended_s=50.0, sampled_at=NOW - 1)
    own = HostTelemetry(
        "hv-b",
        "az1",
        32,
        65536,
        NOW - 1,
        {"vm-x": ReportedVm("vm-x", "x", 2, 2048, 10.0, contended)},
    )
    calm = {h: HostTelemetry(h, "az1", 32, 65536, NOW - 1) for h in ("hv-a", "hv-c")}
    config = Config()
    # Control: hv-b's own report of a contended VM gets it moved.
    snap = join(NOW, _inventory(), {"hv-b": own, **calm}, config.inventory)
    assert [m.vm_uuid for m in plan(snap, config).moves] == ["vm-x"]
    # hv-a also reporting the VM makes it unmovable, with hv-a named.
    calm["hv-a"] = _telemetry({"hv-a": 0.5}, age_s=1.0)["hv-a"]
    snap = join(NOW, _inventory(), {"hv-b": own, **calm}, config.inventory)
    vm = snap.vms["vm-x"]
    assert is_contended(vm, config.policy)
    assert "hv-a" in (ineligibility(vm, snap, config.policy) or "")
    assert plan(snap, config).moves == ()


@pytest.mark.parametrize(
    ("status", "running"),
    [("ACTIVE", True), ("MIGRATING", True), ("BUILD", True), ("SOME_NEW_STATUS", True),
     ("SHUTOFF", False), ("PAUSED", False), ("SHELVED_OFFLOADED", False), ("ERROR", False)],
)  # fmt: skip
def test_a_vm_nova_runs_is_marked_running_so_missing_numbers_mean_unknown_demand(
    status: str, running: bool
) -> None:
    """A running VM with no telemetry has unknown demand (a target counts it busy); a
    shut-off one wants no CPU. A status this code does not know is taken as running."""
    inventory = _inventory()
    (server,) = inventory.servers
    stopped = Inventory(hypervisors=inventory.hypervisors,
                        servers=(ServerInfo(server.uuid, server.name, server.host, server.az,
                                            status, None, 2, 2048, 10.0),))  # fmt: skip
    snap = join(NOW, stopped, {}, InventoryConfig())
    assert snap.vms["vm-x"].running is running
