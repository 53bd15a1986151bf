"""coordctl against a real coordinator process on loopback, over real gRPC.

The coordinator runs `serve --simulate` on tests/ctl/scenario.yaml (one overloaded
hypervisor, three quiet ones), started paused, with an admin token. Tests that change
its state (migrate, pause/resume) leave it paused again.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from coordinator.api.v1 import admin_pb2
from coordinator.ctl.cli import run
from coordinator.ctl.connection import Exit
from coordinator.ctl.views import SCHEMA
from tests.ctl.coordinator_process import TOKEN, CoordinatorProcess
from tests.polling import eventually

pytestmark = pytest.mark.usefixtures("ctl_env")
REPO = str(Path(__file__).resolve().parents[2])

Ctl = Callable[..., tuple[int, str, str]]


@pytest.fixture
def ctl(capsys: pytest.CaptureFixture[str]) -> Ctl:
    def call(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = run(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    return call


def as_json(ctl: Ctl, *args: str) -> dict[str, Any]:
    code, out, err = ctl("--json", *args)
    assert code == Exit.OK, err
    document: dict[str, Any] = json.loads(out)
    return document


def fields(message: type[Any]) -> set[str]:
    return {f.name for f in message.DESCRIPTOR.fields}


# --json: one schema per command, the proto's field names, numbers as numbers --------
@pytest.mark.parametrize(
    ("args", "list_key", "item"),
    [
        pytest.param(("status",), None, admin_pb2.StatusResponse, id="status"),
        pytest.param(("hosts",), "hosts", admin_pb2.HostView, id="hosts"),
        pytest.param(("vms",), "vms", admin_pb2.VmView, id="vms"),
        pytest.param(("plan",), "moves", admin_pb2.PlannedMove, id="plan"),
    ],
)
def test_json_schema(ctl: Ctl, args: tuple[str, ...], list_key: str | None, item: Any) -> None:
    document = as_json(ctl, *args)
    assert document["schema"] == SCHEMA
    assert document["command"] == args[0]
    if list_key is None:
        assert set(document) == fields(item) | {"schema", "command"}
        return
    for entry in eventually(lambda: document[list_key] or as_json(ctl, *args)[list_key]):
        assert set(entry) == fields(item)


def test_status_numbers_are_numbers(ctl: Ctl) -> None:
    status = eventually(
        lambda: (s := as_json(ctl, "status"))["hosts_total"] == 4 and s["vms_total"] == 12 and s,
        what="inventory",
    )
    assert isinstance(status["snapshot_unix_ns"], int) and status["snapshot_unix_ns"] > 0
    assert isinstance(status["cluster_steal"], float)
    assert status["paused"] is True and status["leader"] is True


def test_status_human(ctl: Ctl) -> None:
    code, out, _ = ctl("status")
    assert code == Exit.OK
    for label in ("hosts", "4 total", "12 total", "cluster steal", "PAUSED", "bandwidth"):
        assert label in out


def test_hosts_table_lists_every_host_with_the_hot_one_stealing(ctl: Ctl) -> None:
    def hot() -> dict[str, Any] | None:
        hosts = {h["name"]: h for h in as_json(ctl, "hosts")["hosts"]}
        return hosts if hosts.get("az1-hv-000", {}).get("steal", 0) > 0.1 else None

    hosts = eventually(hot, what="steal on the hot host")
    assert sorted(hosts) == [f"az1-hv-{i:03d}" for i in range(4)]
    assert all(h["fresh"] for h in hosts.values())
    code, out, _ = ctl("--no-color", "hosts", "--az", "az1")
    assert code == Exit.OK
    assert all(name in out for name in hosts)
    assert as_json(ctl, "hosts", "--az", "az9")["hosts"] == []


@pytest.mark.parametrize(
    ("args", "check"),
    [
        pytest.param(("--host", "az1-hv-000"), lambda v: v["host"] == "az1-hv-000", id="host"),
        pytest.param(("--role", "idle"), lambda v: v["role"] == "idle", id="role"),
        pytest.param(("--az", "az1"), lambda v: v["availability_zone"] == "az1", id="az"),
    ],
)
def test_vms_filters(ctl: Ctl, args: tuple[str, ...], check: Callable[[Any], bool]) -> None:
    vms = as_json(ctl, "vms", *args)["vms"]
    assert vms and all(check(v) for v in vms)


@pytest.mark.parametrize("key", ["steal", "load"])
def test_vms_sorted(ctl: Ctl, key: str) -> None:
    values = [v[key] for v in as_json(ctl, "vms", "--sort", key)["vms"]]
    assert values == sorted(values, reverse=True) and len(values) == 12
    assert len(as_json(ctl, "vms", "--sort", key, "--limit", "3")["vms"]) == 3


def test_vms_human_marks_contended(ctl: Ctl) -> None:
    eventually(lambda: any(v["contended"] for v in as_json(ctl, "vms")["vms"]), what="contention")
    code, out, _ = ctl("vms", "--host", "az1-hv-000")
    assert code == Exit.OK and "hot-0000" in out and "(contended)" in out


def test_plan_moves_a_hot_vm_off_the_hot_host(ctl: Ctl) -> None:
    moves = eventually(lambda: as_json(ctl, "plan")["moves"], what="a planned move")
    assert all(m["source"] == "az1-hv-000" != m["target"] for m in moves)
    assert all(m["vm_name"].startswith("hot-") and m["reason"] for m in moves)
    code, out, _ = ctl("plan")
    assert code == Exit.OK and "would move now" in out and "paused" in out


def test_explain(ctl: Ctl) -> None:
    explained = as_json(ctl, "explain", "hot-0000")
    assert explained["vm_name"] == "hot-0000" and explained["verdict"]
    code, out, _ = ctl("explain", explained["vm_uuid"])
    assert code == Exit.OK and "hot-0000" in out and explained["verdict"] in out


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        pytest.param(("explain", "no-such-vm"), Exit.USAGE, "no VM", id="explain-unknown"),
        pytest.param(("migrate", "no-such-vm"), Exit.USAGE, "no VM", id="migrate-unknown"),
        pytest.param(
            ("migrate", "hot-0002", "--to", "az1-hv-000"), Exit.REFUSED, "", id="to-own-host"
        ),
        pytest.param(
            ("migrate", "hot-0002", "--to", "nowhere"), Exit.REFUSED, "", id="unknown-target"
        ),
        pytest.param(("frobnicate",), Exit.USAGE, "invalid choice", id="bad-command"),
        pytest.param(("vms", "--sort", "size"), Exit.USAGE, "invalid choice", id="bad-sort"),
    ],
)
def test_refusals_and_bad_input(ctl: Ctl, args: tuple[str, ...], code: int, message: str) -> None:
    got, _out, err = ctl(*args)
    assert got == code, err
    assert message in err
    assert err.startswith(("coordctl: ", "usage: "))


def test_migrate_runs_to_done(ctl: Ctl) -> None:
    code, _out, err = ctl("migrate", "hot-0001", "--to", "az1-hv-003")
    assert code != Exit.OK and "--force" in err  # paused: an operator must say so
    code, out, err = ctl("--json", "migrate", "hot-0001", "--to", "az1-hv-003", "--force")
    assert code == Exit.OK, err
    started = json.loads(out)
    assert started["target"] == "az1-hv-003" and started["migration_id"]

    def finished() -> dict[str, Any] | None:
        history = as_json(ctl, "migrations")["migrations"]
        mine = [m for m in history if m["id"] == started["migration_id"]]
        return mine[0] if mine and mine[0]["finished_unix_ns"] else None

    record = eventually(finished, timeout_s=60, what="the migration to finish")
    assert record["state"] == "DONE", record["outcome"]
    assert set(record) == fields(admin_pb2.MigrationView)
    assert record["manual"] is True and record["source"] == "az1-hv-000"
    assert record["gib_moved"] > 0 and record["steal_before"] > 0.05
    assert as_json(ctl, "migrations", "--running")["migrations"] == []
    vm = eventually(
        lambda: [
            v for v in as_json(ctl, "vms", "--host", "az1-hv-003")["vms"] if v["name"] == "hot-0001"
        ],
        what="the VM on its new host",
    )
    assert vm[0]["reported_by_agent"]
    code, out, _ = ctl("migrations")
    assert "az1-hv-000 → az1-hv-003" in out and "DONE (manual)" in out
    assert record["outcome"] in out
    assert started["migration_id"] in as_json(ctl, "explain", "hot-0001")["history"][0]["id"]


def test_pause_and_resume(ctl: Ctl) -> None:
    try:
        code, out, _ = ctl("resume")
        assert code == Exit.OK and "resumed" in out
        assert as_json(ctl, "status")["paused"] is False
        assert as_json(ctl, "pause", "--reason", "lunch peak freeze")["paused"] is True
        status = as_json(ctl, "status")
        assert status["paused"] and status["paused_reason"] == "lunch peak freeze"
        assert "@" in status["paused_by"] and status["paused_unix_ns"] > 0
        human = ctl("status")[1]
        assert "lunch peak freeze" in human and f"by {status['paused_by']}" in human
    finally:
        ctl("pause", "--reason", "tests")


# Connection errors ------------------------------------------------------------------
def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_unreachable(ctl: Ctl) -> None:
    code, _, err = ctl("--address", f"127.0.0.1:{_closed_port()}", "--timeout", "3", "status")
    assert code == Exit.UNREACHABLE
    assert "cannot reach the coordinator at 127.0.0.1:" in err


def test_wrong_token(ctl: Ctl, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COORDCTL_TOKEN", "not-the-token")
    code, _, err = ctl("status")
    assert code == Exit.AUTH and "wrong token" in err


def test_missing_token(ctl: Ctl, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COORDCTL_TOKEN")
    code, _, err = ctl("vms")
    assert code == Exit.AUTH and "no token given" in err


def test_settings_from_a_config_file_and_token_file(
    ctl: Ctl, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, coordinator: CoordinatorProcess
) -> None:
    monkeypatch.delenv("COORDCTL_TOKEN")
    monkeypatch.delenv("COORDCTL_ADDRESS")
    (tmp_path / "token").write_text(TOKEN + "\n")
    config = tmp_path / "coordctl.yaml"
    config.write_text(f"address: {coordinator.admin}\ntoken_file: {tmp_path / 'token'}\n")
    assert as_json(ctl, "--config", str(config), "status")["hosts_total"] == 4
    monkeypatch.setenv("COORDCTL_CONFIG", str(config))
    assert as_json(ctl, "status")["hosts_total"] == 4


def test_config_file_typo_is_a_usage_error(ctl: Ctl, tmp_path: Path) -> None:
    config = tmp_path / "coordctl.yaml"
    config.write_text("adress: 127.0.0.1:1\n")
    code, _, err = ctl("--config", str(config), "status")
    assert code == Exit.USAGE and "adress: unknown key" in err


def test_console_script_exit_codes(coordinator: CoordinatorProcess) -> None:
    """The installed entry point, in its own process: output and exit status."""
    env = {**os.environ, "COORDCTL_ADDRESS": coordinator.admin, "COORDCTL_TOKEN": TOKEN,
           "PYTHONPATH": REPO}  # this checkout, whatever `pip -e` points at  # fmt: skip
    script = Path(sys.executable).parent / "coordctl"
    ok = subprocess.run([str(script), "--json", "status"], env=env, capture_output=True,
                        text=True, timeout=30, check=False)  # fmt: skip
    assert ok.returncode == 0 and json.loads(ok.stdout)["command"] == "status"
    env["COORDCTL_ADDRESS"] = f"127.0.0.1:{_closed_port()}"
    down = subprocess.run([str(script), "--timeout", "2", "status"], env=env,
                          capture_output=True, text=True, timeout=30, check=False)  # fmt: skip
    assert down.returncode == Exit.UNREACHABLE and "cannot reach" in down.stderr
