"""The Admin API's answers to what a request may carry: a VM name several VMs share,
over-long fields, page tokens; and listings too large for one gRPC message.

A real coordinator service (real gRPC, the simulated Nova) runs in a background
thread; the real coordctl runs in its own process against it.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from coordinator.adapters.sim.compute import SimCompute
from coordinator.api.v1 import admin_pb2, admin_pb2_grpc
from coordinator.ctl.connection import Exit
from coordinator.journal import MigrationRecord, State
from coordinator.journal import SqliteJournal as Journal
from tests.ctl.inprocess import coordctl, one_line, running_service
from tests.service.harness import service_config

DB_A = "00000000-0000-4000-8000-00000000000a"
DB_B = "00000000-0000-4000-8000-00000000000b"
HOSTS = 12
VMS = 3000
MIGRATIONS = 1500


def _nova(vms: int) -> SimCompute:
    nova = SimCompute(clock=time.time)
    for i in range(HOSTS):
        nova.add_hypervisor(f"hv-{i:02d}", "az1" if i % 2 else "az2")
    # Two projects each have a "db-1": Nova names are not unique.
    nova.add_server(DB_A, "hv-00", name="db-1", project_id="team-payments")
    nova.add_server(DB_B, "hv-01", name="db-1", project_id="team-search")
    for i in range(vms):
        host = f"hv-{i % HOSTS:02d}"
        nova.add_server(str(uuid.UUID(int=i + 1000)), host, name=f"web-server-{i:06d}")
    return nova


def _journal(path: Path, count: int) -> None:
    journal = Journal(path)
    for i in range(count):
        journal.create(MigrationRecord(
            id=f"m{i:06d}", vm_uuid=DB_A, vm_name="db-1", source="hv-00", target="hv-02",
            az="az2", bandwidth_mib_s=100, manual=False, orchestrator="none",
            orchestrator_ref="", state=State.DONE, outcome="ok " * 20, created_at=1e9 + i,
        ))  # fmt: skip
    journal.close()


@pytest.fixture(scope="module")
def admin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A coordinator whose gRPC messages are small (64 KiB): 3,000 VMs and 1,500
    migrations do not fit in one, as 400,000 would not fit in the default 4 MiB."""
    directory = tmp_path_factory.mktemp("admin")
    _journal(directory / "journal.sqlite", MIGRATIONS)
    config = service_config(directory, service={"max_message_bytes": 65536})
    with running_service(config, _nova(VMS)) as address:
        yield address


def as_json(address: str, *args: str) -> dict[str, Any]:
    done = coordctl(address, "--json", *args)
    assert done.returncode == Exit.OK, done.stderr
    document: dict[str, Any] = json.loads(done.stdout)
    return document


# A name shared by several VMs --------------------------------------------------------
@pytest.mark.parametrize("command", ["migrate", "explain"])
def test_a_shared_name_is_refused_with_the_candidates(admin: str, command: str) -> None:
    done = coordctl(admin, command, "db-1")
    assert done.returncode == Exit.USAGE
    error = one_line(done)
    assert "2 VMs are named 'db-1'" in error
    assert f"{DB_A} ('db-1' on hv-00, az2, project team-payments)" in error
    assert f"{DB_B} ('db-1' on hv-01, az1, project team-search)" in error
    assert as_json(admin, "migrations", "--running")["migrations"] == []


def test_a_uuid_is_accepted_where_the_name_is_ambiguous(admin: str) -> None:
    explained = as_json(admin, "explain", DB_B)
    assert explained["vm_uuid"] == DB_B and explained["vm_name"] == "db-1"
    refused = coordctl(admin, "migrate", DB_B)  # no agent reports it: refused, not ambiguous
    assert refused.returncode == Exit.REFUSED and "named" not in refused.stderr
    unique = "web-server-000007"  # names only one VM has still work
    assert as_json(admin, "explain", unique)["vm_name"] == unique


# Over-long fields ----------------------------------------------------------------------
@pytest.mark.parametrize(
    "args",
    [
        pytest.param(("explain", "x" * 10_000), id="vm"),
        pytest.param(("migrate", "db-1", "--to", "h" * 5_000), id="target"),
        pytest.param(("vms", "--host", "h" * 10_000), id="host-filter"),
        pytest.param(("pause", "--reason", "r" * 5_000), id="reason"),
    ],
)
def test_over_long_fields_are_refused_not_echoed(admin: str, args: tuple[str, ...]) -> None:
    done = coordctl(admin, *args)
    assert done.returncode == Exit.USAGE
    error = one_line(done)
    assert "characters, at most" in error and len(error) < 300


def test_a_huge_name_is_answered_in_one_short_status(admin: str) -> None:
    """Without the limit the NOT_FOUND echoed the name until the metadata limit broke."""
    with grpc.insecure_channel(admin) as channel:
        stub = admin_pb2_grpc.AdminStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            stub.Explain(admin_pb2.ExplainRequest(vm="n" * 60_000), timeout=30)
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert len(refused.value.details() or "") < 200


# Paging --------------------------------------------------------------------------------
def test_every_vm_and_migration_lists_page_by_page(admin: str) -> None:
    vms = as_json(admin, "vms", "--sort", "name")["vms"]
    assert len({v["uuid"] for v in vms}) == len(vms) == VMS + 2
    assert [v["name"] for v in vms] == sorted(v["name"] for v in vms)
    assert len(as_json(admin, "vms", "--limit", "2500")["vms"]) == 2500
    migrations = as_json(admin, "migrations", "--limit", "0")["migrations"]
    assert [m["id"] for m in migrations] == [f"m{i:06d}" for i in reversed(range(MIGRATIONS))]
    assert len(as_json(admin, "migrations")["migrations"]) == 50  # the default --limit


def test_a_listing_continues_from_its_token(admin: str) -> None:
    seen: list[str] = []
    token = ""
    while True:
        page = as_json(admin, "hosts", "--page-size", "5", "--page-token", token)
        seen += [h["name"] for h in page["hosts"]]
        token = page["next_page_token"]
        if not token:
            break
    assert seen == [f"hv-{i:02d}" for i in range(HOSTS)]
    human = coordctl(admin, "vms", "--page-size", "3")
    assert human.returncode == Exit.OK and "more follow: --page-token vms." in human.stderr


def test_an_expired_listing_is_refused_in_one_line(admin: str) -> None:
    gone = "vms." + "0" * 32 + ".2"  # well-formed, but this server holds no such listing
    done = coordctl(admin, "vms", "--page-size", "2", "--page-token", gone)
    assert done.returncode == Exit.REFUSED
    assert "expired; list again without a page token" in one_line(done)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(
            ("vms", "--page-size", "2", "--page-token", "vms.zz.1"), "not a page token", id="token"
        ),
        pytest.param(("vms", "--limit", "-1"), "--limit", id="negative-limit"),
        pytest.param(("vms", "--limit", "nan"), "--limit", id="nan-limit"),
        pytest.param(("migrations", "--limit", "1e3"), "--limit", id="float-limit"),
        pytest.param(("watch", "--interval", "-1"), "--interval", id="negative-interval"),
        pytest.param(("watch", "--interval", "nan"), "--interval", id="nan-interval"),
        pytest.param(("--timeout", "-1", "status"), "--timeout", id="negative-timeout"),
        pytest.param(("--timeout", "nan", "status"), "--timeout", id="nan-timeout"),
        pytest.param(("--timeout", "0", "status"), "--timeout", id="zero-timeout"),
    ],
)
def test_bad_numbers_are_one_line(admin: str, args: tuple[str, ...], message: str) -> None:
    done = coordctl(admin, *args)
    assert done.returncode == Exit.USAGE
    assert message in one_line(done)


def test_fifty_thousand_vms_list_at_the_default_message_limit(tmp_path: Path) -> None:
    """One answer of 50,000 VMs is ~4.3 MiB, over gRPC's default 4 MiB: only paging lists them.
    (400,000: tests/benchmarks/bench_paging.py.)"""
    with running_service(service_config(tmp_path), _nova(50_000)) as address:
        done = coordctl(address, "--json", "vms", "--limit", "0", "--sort", "load")
        assert done.returncode == Exit.OK, done.stderr
        vms = json.loads(done.stdout)["vms"]
    assert len({v["uuid"] for v in vms}) == len(vms) == 50_002
