"""Where coordctl connects and with what: flags over environment over config file."""

from __future__ import annotations

from pathlib import Path

import pytest

from coordinator.ctl.connection import DEFAULT_ADDRESS, ConfigError, resolve


@pytest.fixture
def config(tmp_path: Path) -> Path:
    (tmp_path / "token").write_text("from-token-file\n")
    path = tmp_path / "coordctl.yaml"
    path.write_text(f"address: file:1\ntoken_file: {tmp_path / 'token'}\ntimeout_s: 7\n")
    return path


@pytest.mark.parametrize(
    ("flags", "env", "address", "token"),
    [
        pytest.param({}, {}, "file:1", "from-token-file", id="file"),
        pytest.param({}, {"COORDCTL_ADDRESS": "env:1"}, "env:1", "from-token-file", id="env"),
        pytest.param(
            {"address": "flag:1"},
            {"COORDCTL_ADDRESS": "env:1"},
            "flag:1",
            "from-token-file",
            id="flag-wins",
        ),
        pytest.param({}, {"COORDCTL_TOKEN": "env-token"}, "file:1", "env-token", id="env-token"),
    ],
)
def test_precedence(
    config: Path, flags: dict[str, str], env: dict[str, str], address: str, token: str
) -> None:
    settings = resolve(flags, env, config)
    assert (settings.address, settings.token, settings.timeout_s) == (address, token, 7.0)


def test_defaults_without_any_file(tmp_path: Path) -> None:
    settings = resolve({}, {"HOME": str(tmp_path)}, None)
    assert settings.address == DEFAULT_ADDRESS and settings.token == ""


def test_user_config_file_in_home(tmp_path: Path) -> None:
    path = tmp_path / ".config" / "stealbalancer" / "coordctl.yaml"
    path.parent.mkdir(parents=True)
    path.write_text("address: home:1\n")
    assert resolve({}, {"HOME": str(tmp_path)}, None).address == "home:1"


def test_explicit_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        resolve({}, {}, tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("adress: x\n", "adress: unknown key", id="typo"),
        pytest.param("- a\n", "expected a mapping", id="not-a-mapping"),
        pytest.param("timeout_s: 0\n", "timeout_s: must be a positive number", id="timeout"),
        pytest.param("address: 50052\n", "address: must be a string", id="type"),
        pytest.param("address: [\n", "not valid YAML", id="yaml"),
    ],
)
def test_bad_files_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        resolve({}, {}, path)


def test_client_certificate_needs_its_key(tmp_path: Path) -> None:
    from coordinator.ctl.connection import open_channel

    (tmp_path / "cert.pem").write_text("x")
    settings = resolve({"cert_file": str(tmp_path / "cert.pem")}, {"HOME": str(tmp_path)}, None)
    with pytest.raises(ConfigError, match="both --cert and --key"):
        open_channel(settings)
