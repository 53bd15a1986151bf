"""The shipped example config loads, and the unit file keeps its hardening."""

from __future__ import annotations

import configparser
from pathlib import Path

import pytest

from agent.config import load_agent_config

SYSTEMD = Path(__file__).resolve().parents[2] / "packaging" / "systemd"


def test_example_config_is_valid() -> None:
    config = load_agent_config(SYSTEMD / "agent.yaml", {})
    assert config.coordinator is not None and not config.coordinator.plaintext
    assert config.coordinator.ca == Path("/etc/stealbalancer/tls/ca.pem")
    assert config.interval_s == 10 and config.libvirt.uri == "qemu:///system"


def _unit() -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read(SYSTEMD / "stealbalancer-agent.service")
    return parser


@pytest.mark.parametrize(
    ("key", "value"),
    [
        pytest.param("NoNewPrivileges", "yes", id="no-new-privileges"),
        pytest.param("ProtectSystem", "strict", id="protect-system"),
        pytest.param("ProtectHome", "yes", id="protect-home"),
        pytest.param("Restart", "on-failure", id="restart"),
        pytest.param("Type", "notify", id="readiness"),
        pytest.param("ReadOnlyPaths", "/etc/stealbalancer", id="only-its-config"),
    ],
)
def test_unit_is_hardened(key: str, value: str) -> None:
    assert _unit()["Service"][key] == value


def test_unit_runs_the_console_script_with_the_example_config() -> None:
    exec_start = _unit()["Service"]["ExecStart"]
    assert exec_start.split()[0].endswith("/stealbalancer-agent")
    assert "/etc/stealbalancer/agent.yaml" in exec_start


def test_systemd_accepts_the_unit_and_rates_it_hardened(tmp_path: Path) -> None:
    import re
    import shutil
    import subprocess
    import sys

    if not sys.platform.startswith("linux"):
        pytest.skip("systemd is Linux only")
    analyze = shutil.which("systemd-analyze")
    assert analyze is not None, "tests/setup/10-apt.sh installs systemd"
    binary = shutil.which("stealbalancer-agent")
    assert binary is not None, "the console script is installed by tests/setup/20-pip.sh"
    unit = tmp_path / "stealbalancer-agent.service"
    text = (SYSTEMD / "stealbalancer-agent.service").read_text()
    unit.write_text(text.replace("/usr/local/bin/stealbalancer-agent", binary))
    verify = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False
    )
    assert verify.returncode == 0 and not verify.stderr.strip(), verify.stderr
    security = subprocess.run(
        [analyze, "security", "--offline=yes", str(unit)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+)", security.stdout)
    assert match is not None, security.stdout[-500:] + security.stderr
    assert float(match.group(1)) <= 3.0, "systemd's own exposure score (0 safest, 10 worst)"
