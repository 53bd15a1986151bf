"""coordctl's global flags (--json, --address, --timeout, ...) go before or after the
command's name; they used to be refused after it (`coordctl status --json`)."""

from __future__ import annotations

import re
import shlex

import pytest

from coordinator.ctl.cli import build_parser, run
from coordinator.ctl.connection import Exit

GLOBAL = ["--json", "--address", "flag:1", "--timeout", "3", "--no-color", "--ca", "ca.pem"]
EXPECTED = {"json": True, "address": "flag:1", "timeout_s": 3.0, "no_color": True,
            "ca_file": "ca.pem"}  # fmt: skip


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param([*GLOBAL, "status"], id="before"),
        pytest.param(["status", *GLOBAL], id="after"),
        pytest.param([*GLOBAL[:3], "status", *GLOBAL[3:]], id="split"),
        pytest.param(["migrations", "--running", *GLOBAL, "--limit", "5"], id="among-own-flags"),
        pytest.param(["explain", "web-1", *GLOBAL], id="after-a-positional"),
    ],
)
def test_global_flags_in_either_position(argv: list[str]) -> None:
    args = build_parser()[0].parse_args(argv)
    assert {key: getattr(args, key) for key in EXPECTED} == EXPECTED


def test_flags_not_given_keep_their_defaults() -> None:
    args = build_parser()[0].parse_args(["vms"])
    assert (args.json, args.address, args.timeout_s, args.no_color) == (False, None, None, False)


def test_a_bad_value_after_the_command_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert run(["status", "--timeout", "nan"]) == Exit.USAGE
    assert "--timeout" in capsys.readouterr().err


def test_watch_json_advises_commands_that_exist(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HOME", "/nonexistent")  # no user config file leaks in
    monkeypatch.setenv("COORDCTL_ADDRESS", "127.0.0.1:1")  # never called
    assert run(["--json", "watch"]) == Exit.USAGE
    advice = re.findall(r"`coordctl ([^`]+)`", capsys.readouterr().err)
    assert "status --json" in advice
    for command in advice:  # each parses (argparse would exit 2 on one that does not)
        assert build_parser()[0].parse_args(shlex.split(command)).json
