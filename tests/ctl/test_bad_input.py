"""Every bad input to the command lines is one line on stderr and exit code 2.

Each case runs the real entry point in its own process (`stealbalancer-coordinator
serve|simulate`, the agent's `main`, `coordctl`) on real files: a config, scenario or
token that is not UTF-8, listen addresses that are not addresses or are taken, TLS files
that are missing or garbage, journals that cannot be opened, read or written, a
kubeconfig that is not one, numbers that are infinite, NaN or absurd.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from coordinator.journal import MigrationRecord
from coordinator.journal import SqliteJournal as Journal
from tests.ctl.coordinator_process import REPO

NOT_UTF8 = b"service:\n  admin_token: \xff\xfe\n"
# Reaching Nova is not attempted before these checks; the address only has to parse.
NOVA = "nova:\n  compute_endpoint_override: http://127.0.0.1:1\n"


def run(*command: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "PYTHONPATH": str(REPO), "HOME": "/nonexistent", **(env or {})}
    return subprocess.run(command, env=environment, capture_output=True, text=True, timeout=60,
                          check=False, cwd=REPO)  # fmt: skip


def coordinator(*args: str) -> subprocess.CompletedProcess[str]:
    return run(sys.executable, "-m", "coordinator.cli", *args)


def one_line(done: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert done.returncode == 2, (done.returncode, done.stderr[-3000:])
    assert "Traceback" not in done.stderr, done.stderr
    assert done.stderr.endswith("\n") and done.stderr.count("\n") == 1, done.stderr
    for fragment in fragments:
        assert fragment in done.stderr


def config(tmp_path: Path, service: str = "", extra: str = "") -> Path:
    """A serve config whose listeners are free loopback ports unless `service` overrides."""
    defaults = {"agent_listen": "127.0.0.1:0", "admin_listen": "127.0.0.1:0",
                "metrics_listen": "''", "journal_path": str(tmp_path / "j.sqlite")}  # fmt: skip
    lines = dict(defaults)
    for line in filter(None, service.splitlines()):
        key, _, value = line.partition(":")
        lines[key.strip()] = value.strip()
    body = "service:\n" + "".join(f"  {k}: {v}\n" for k, v in lines.items())
    path = tmp_path / "coordinator.yaml"
    path.write_text(body + NOVA + extra, encoding="utf-8")
    return path


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield taken.getsockname()[1]


def _journal(tmp_path: Path, records: int = 200) -> Path:
    path = tmp_path / "old.sqlite"
    journal = Journal(path)
    for i in range(records):
        journal.create(MigrationRecord(
            id=f"m{i:05d}", vm_uuid="vm", vm_name="vm", source="a", target="b", az="az1",
            bandwidth_mib_s=100, manual=False, orchestrator="none", orchestrator_ref="",
            outcome="x" * 200, created_at=float(i),
        ))  # fmt: skip
    journal.close()
    return path


def _truncated(tmp_path: Path) -> str:
    path = _journal(tmp_path)
    with path.open("r+b") as f:
        f.truncate(path.stat().st_size // 2)
    return str(path)


def _corrupt(tmp_path: Path) -> str:
    path = tmp_path / "corrupt.sqlite"
    path.write_bytes(b"SQLite format 3\x00" + os.urandom(8192))
    return str(path)


def _directory(tmp_path: Path) -> str:
    (tmp_path / "a-directory").mkdir()
    return str(tmp_path / "a-directory")


SERVE_CASES: list[object] = [
    pytest.param("agent_listen: garbage", "service.agent_listen", id="agent-listen-garbage"),
    pytest.param("admin_listen: 127.0.0.1:http", "service.admin_listen", id="admin-listen-name"),
    pytest.param(
        "admin_listen: localhost",
        "service.admin_listen: 'localhost' is not host:port",
        id="admin-listen-without-port",
    ),
    pytest.param("metrics_listen: abc", "service.metrics_listen", id="metrics-abc"),
    pytest.param("metrics_listen: ':99999'", "service.metrics_listen", id="metrics-port-range"),
    pytest.param("max_message_bytes: 1e11", "max_message_bytes", id="max-message-1e11"),
    pytest.param("max_message_bytes: 100000000000", "max_message_bytes", id="max-message-int"),
    pytest.param(
        "tls: {cert_file: /nonexistent.pem, key_file: /nonexistent.key}",
        "service.tls.cert_file",
        id="tls-missing",
    ),
    pytest.param(
        "journal_path: /proc/stealbalancer.sqlite", "service.journal_path", id="journal-on-proc"
    ),
    pytest.param(
        "record_reports: /proc/reports.jsonl", "service.record_reports", id="record-reports-on-proc"
    ),
]


@pytest.mark.parametrize(("service", "names"), SERVE_CASES)
def test_serve_settings(tmp_path: Path, service: str, names: str) -> None:
    one_line(coordinator("serve", "--config", str(config(tmp_path, service))), names)


def test_serve_refuses_a_recording_it_cannot_write(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-directory" / "reports.jsonl"
    done = coordinator("serve", "--config", str(config(tmp_path, f"record_reports: {missing}")))
    one_line(done, f"service.record_reports: {missing}: No such file or directory")


def test_serve_garbage_tls_files(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    tls = f"admin_tls: {{cert_file: {garbage}, key_file: {garbage}}}"
    done = coordinator("serve", "--config", str(config(tmp_path, tls)))
    one_line(done, "service.admin_tls", "PEM")
    assert "Failed to bind" not in done.stderr


def test_serve_metrics_port_in_use(tmp_path: Path, busy_port: int) -> None:
    done = coordinator(
        "serve", "--config", str(config(tmp_path, f"metrics_listen: 127.0.0.1:{busy_port}"))
    )
    one_line(done, "service.metrics_listen", "in use")


@pytest.mark.parametrize(
    "journal",
    [
        pytest.param(_directory, id="directory"),
        pytest.param(_corrupt, id="corrupt"),
        pytest.param(_truncated, id="truncated"),
    ],
)
def test_serve_refuses_a_journal_it_cannot_use(
    tmp_path: Path, journal: Callable[[Path], str]
) -> None:
    path = journal(tmp_path)
    done = coordinator("serve", "--config", str(config(tmp_path, f"journal_path: {path}")))
    one_line(done, "service.journal_path", path)


def _immutable(path: Path) -> bool:
    """chattr +i: read-only even for root (a read-only mount, without mounting)."""
    if shutil.which("chattr") is None:
        return False
    return run("chattr", "+i", str(path)).returncode == 0


def test_serve_refuses_a_read_only_journal(tmp_path: Path) -> None:
    path = _journal(tmp_path, records=1)
    if not _immutable(path):
        pytest.skip("chattr +i is not available here")
    try:
        done = coordinator("serve", "--config", str(config(tmp_path, f"journal_path: {path}")))
        one_line(done, "service.journal_path", "cannot write")
    finally:
        run("chattr", "-i", str(path))


def test_serve_with_a_kubeconfig_that_is_not_one(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("just a string\n")
    extra = (
        "leader:\n  enabled: true\n"
        f"kubernetes:\n  clusters:\n    default: {{kubeconfig: {kubeconfig}}}\n"
    )
    done = coordinator("serve", "--config", str(config(tmp_path, extra=extra)))
    one_line(done, "leader", str(kubeconfig))


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        pytest.param(("serve",), "--config FILE is required", id="serve-without-config"),
        pytest.param(("serve", "--simulate", "--speed", "nan"), "--speed", id="speed-nan"),
        pytest.param(("serve", "--simulate", "--speed", "inf"), "--speed", id="speed-inf"),
        pytest.param(
            ("serve", "--simulate", "--start-hour", "nan"), "--start-hour", id="start-hour-nan"
        ),
        pytest.param(
            ("serve", "--simulate", "--start-hour", "25"), "--start-hour", id="start-hour-25"
        ),
        pytest.param(("simulate", "--hours", "nan"), "--hours", id="hours-nan"),
        pytest.param(("simulate", "--bogus"), "unrecognized", id="usage"),
    ],
)
def test_coordinator_arguments(args: tuple[str, ...], fragment: str) -> None:
    one_line(coordinator(*args), fragment)


def test_serve_refuses_a_section_given_twice(tmp_path: Path) -> None:
    # YAML's own rule would keep the second `limits:` and drop the first without a word.
    extra = "limits:\n  max_concurrent: 2\npolicy: {}\nlimits:\n  max_per_az: 1\n"
    path = config(tmp_path, extra=extra)
    first = path.read_text().splitlines().index("limits:") + 1
    done = coordinator("serve", "--config", str(path))
    one_line(done, "duplicate key 'limits'", f"line {first} and line {first + 3}")


def test_coordctl_refuses_a_setting_given_twice(tmp_path: Path) -> None:
    path = tmp_path / "coordctl.yaml"
    path.write_text("address: 127.0.0.1:1\ntimeout_s: 3\naddress: 127.0.0.1:2\n")
    done = coordctl("--config", str(path), "status")
    one_line(done, "duplicate key 'address'", "line 1 and line 3")


@pytest.mark.parametrize("command", ["serve", "simulate"])
def test_files_that_are_not_utf8(tmp_path: Path, command: str) -> None:
    path = tmp_path / "not-utf8.yaml"
    path.write_bytes(NOT_UTF8)
    flag = "--config" if command == "serve" else "--scenario"
    one_line(coordinator(command, flag, str(path)), str(path), "not UTF-8")


SCENARIO = """\
seed: 1
step_s: 60
hosts:
  - {{prefix: hv, count: 2, az: az1, pcpus: {pcpus}, ram_gib: {host_ram}}}
roles:
  web: {{base: 0.5}}
vms:
  - {{prefix: web, count: 2, role: web, vcpus: [2], ram_gib: [{vm_ram}]}}
"""


@pytest.mark.parametrize(
    ("sizes", "field"),
    [
        pytest.param({"host_ram": "1.0e308"}, "hosts.0.ram_gib", id="host-ram-1e308"),
        pytest.param({"vm_ram": "1.0e308"}, "vms.0.ram_gib", id="vm-ram-1e308"),
        pytest.param({"pcpus": "100000000000000000000000"}, "hosts.0.pcpus", id="pcpus-1e23"),
        pytest.param({"pcpus": "1e23"}, "hosts.0.pcpus", id="pcpus-1e23-string"),
    ],
)
def test_simulate_absurd_sizes(tmp_path: Path, sizes: dict[str, str], field: str) -> None:
    path = tmp_path / "scenario.yaml"
    path.write_text(SCENARIO.format(**{"pcpus": 8, "host_ram": 64, "vm_ram": 4, **sizes}))
    done = coordinator("simulate", "--scenario", str(path), "--quiet", "--no-plot",
                       "--hours", "0.1", "--out", str(tmp_path))  # fmt: skip
    one_line(done, field)


def agent(*args: str) -> subprocess.CompletedProcess[str]:
    return run(sys.executable, "-c", "from agent.cli import main; raise SystemExit(main())", *args)


def test_agent_once_interval_inf() -> None:
    one_line(agent("--once", "--source", "sim", "--once-interval", "inf"), "--once-interval")


def test_agent_config_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_bytes(b"host: \xff\n")
    one_line(agent("--config", str(path), "--once", "--source", "sim"), "not UTF-8")


# coordctl: its files and token -----------------------------------------------------------
def coordctl(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {"COORDCTL_ADDRESS": "127.0.0.1:1", "COORDCTL_TOKEN": "", "COORDCTL_TOKEN_FILE": ""}
    return run(sys.executable, "-m", "coordinator.ctl", *args, env={**base, **(env or {})})


def test_coordctl_files_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "bad"
    path.write_bytes(b"\xff\xfe")
    one_line(coordctl("--config", str(path), "status"), "not UTF-8")
    one_line(coordctl("--token-file", str(path), "status"), "not UTF-8")


@pytest.mark.parametrize(
    "token",
    [
        pytest.param("one\ntwo", id="newline-inside"),
        pytest.param("tökén", id="non-ascii"),
        pytest.param("tab\there", id="control"),
    ],
)
def test_coordctl_token_that_cannot_be_a_header(tmp_path: Path, token: str) -> None:
    one_line(coordctl("status", env={"COORDCTL_TOKEN": token}), "token")
    path = tmp_path / "token"
    path.write_text(token + "\n", encoding="utf-8")
    one_line(coordctl("--token-file", str(path), "status"), "token")
