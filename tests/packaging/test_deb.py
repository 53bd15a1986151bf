"""The agent's Debian package (packaging/deb/build.sh), built, installed on this
machine with apt, checked and run from its installed path, then purged.

Installs into the real system (as root, like CI): the package must not be installed
already, and the test leaves nothing behind, which is what it asserts."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGE = "stealbalancer-agent"
PREFIX = Path("/opt/stealbalancer-agent")
UNIT = Path("/lib/systemd/system/stealbalancer-agent.service")
CONFIG_DIR = Path("/etc/stealbalancer")
# What runs under the package must not see this checkout or the dev install.
CLEAN_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="installs a package: root only (CI is)"),
    pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="Debian only"),
]


def run(*command: str, timeout: float = 600, cwd: Path | None = None) -> str:
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, check=False, cwd=cwd,
        env={**CLEAN_ENV, "DEBIAN_FRONTEND": "noninteractive"},
    )  # fmt: skip
    assert result.returncode == 0, f"{command}: {result.stdout[-2000:]}{result.stderr[-3000:]}"
    return result.stdout


def installed() -> bool:
    result = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", PACKAGE], capture_output=True, text=True, check=False
    )
    return "installed" in result.stdout and "not-installed" not in result.stdout


@pytest.fixture(scope="module")
def deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("deb")
    # build.sh uses pip: keep the machine's pip settings (index, find-links, cache).
    result = subprocess.run(
        ["bash", str(REPO / "packaging" / "deb" / "build.sh"), str(out)],
        capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return Path(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def install(deb: Path) -> Iterator[Path]:
    assert not installed(), f"{PACKAGE} is already installed here; remove it first"
    try:
        run("apt-get", "install", "-y", "-q", "--no-install-recommends", str(deb))
        yield deb
    finally:
        if installed():
            subprocess.run(["apt-get", "purge", "-y", "-q", PACKAGE], check=False, timeout=300)


def test_the_package_is_named_and_shaped_as_documented(deb: Path) -> None:
    arch = run("dpkg", "--print-architecture").strip()
    assert deb.name == f"{PACKAGE}_0.1.0_{arch}.deb"
    info = run("dpkg-deb", "--field", str(deb), "Package", "Depends")
    assert "python3 (>= 3." in info and "libvirt0" in info
    contents = run("dpkg-deb", "--contents", str(deb))
    assert f".{UNIT}" in contents and "./etc/stealbalancer/agent.yaml" in contents
    assert "./usr/bin/stealbalancer-agent -> /opt/stealbalancer-agent/bin/" in contents
    assert "/bin/coordctl" not in contents, "the agent package carries the agent only"
    for module in ("libvirt.py", "psutil/", "grpc/", "prometheus_client/"):  # the agent extra
        assert f"/site-packages/{module}" in contents, module
    assert run("dpkg-deb", "--ctrl-tarfile", str(deb))  # control archive readable
    conffiles = subprocess.run(
        ["dpkg-deb", "--info", str(deb), "conffiles"], capture_output=True, text=True, check=True
    ).stdout
    assert conffiles.split() == ["/etc/stealbalancer/agent.yaml"]


def test_installed_unit_passes_systemd_analyze_verify(install: Path) -> None:
    assert UNIT.is_file()
    text = UNIT.read_text()
    assert f"ExecStart={PREFIX}/bin/stealbalancer-agent --config" in text
    analyze = shutil.which("systemd-analyze")
    assert analyze is not None, "tests/setup/10-apt.sh installs systemd"
    result = subprocess.run(
        [analyze, "verify", str(UNIT)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


def test_nothing_is_enabled_or_started(install: Path) -> None:
    wants = list(Path("/etc/systemd/system").rglob("stealbalancer-agent.service"))
    assert wants == [], "the operator enables the unit, not the package"
    ps = run("ps", "-eo", "args")
    assert f"{PREFIX}/bin/stealbalancer-agent --config" not in ps


def test_config_is_installed_private(install: Path) -> None:
    config = CONFIG_DIR / "agent.yaml"
    assert config.is_file() and (config.stat().st_mode & 0o777) == 0o640
    assert (CONFIG_DIR.stat().st_mode & 0o777) == 0o750


@pytest.mark.parametrize(
    "binary",
    [
        pytest.param(PREFIX / "bin" / PACKAGE, id="venv"),
        pytest.param(Path("/usr/bin") / PACKAGE, id="usr-bin"),
    ],
)
def test_once_json_runs_from_the_installed_path(install: Path, binary: Path) -> None:
    output = run(
        str(binary), "--once", "--json", "--libvirt-uri", "test:///default",
        "--once-interval", "0.2", cwd=Path("/"),
    )  # fmt: skip
    # libvirt's test:/// domain has no vCPU counters, so it yields no steal row: the
    # point is that the installed venv runs the agent through libvirt end to end.
    assert json.loads(output) == {"host": socket.gethostname(), "vms": []}


def test_the_code_comes_from_the_package(install: Path) -> None:
    where = run(str(PREFIX / "bin" / "python"), "-c", "import agent; print(agent.__file__)",
                cwd=Path("/"))  # fmt: skip
    assert where.startswith(f"{PREFIX}/lib/python3."), where


def test_purge_leaves_nothing_behind(install: Path) -> None:
    run("apt-get", "purge", "-y", "-q", PACKAGE, timeout=300)
    assert not installed()
    for path in (PREFIX, UNIT, CONFIG_DIR, Path("/usr/bin") / PACKAGE):
        assert not os.path.lexists(path), f"{path} left after purge"
