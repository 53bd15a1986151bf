"""The coordinator's Containerfile, checked statically (no image builder here)."""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CONTAINERFILE = REPO / "packaging" / "container" / "Containerfile"


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs with continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", text)
    result = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


def _final_stage(parsed: list[tuple[str, str]]) -> list[tuple[str, str]]:
    last_from = max(i for i, (keyword, _) in enumerate(parsed) if keyword == "FROM")
    return parsed[last_from:]


def _exec_form(argument: str) -> list[str]:
    assert argument.startswith("["), f"use the exec form, not a shell: {argument}"
    words: list[str] = json.loads(argument)  # the exec form is a JSON array
    return words


@pytest.fixture(scope="module")
def parsed() -> list[tuple[str, str]]:
    return instructions(CONTAINERFILE.read_text(encoding="utf-8"))


def test_every_base_image_is_pinned_python_311_slim(parsed: list[tuple[str, str]]) -> None:
    bases = [arg.split()[0] for keyword, arg in parsed if keyword == "FROM"]
    assert bases
    for image in bases:
        digest = "@sha256:" in image
        tag = image.rsplit(":", 1)[-1]
        assert digest or re.fullmatch(r"3\.11\.\d+-slim-\w+", tag), f"unpinned base {image}"


def test_runs_as_a_numeric_non_root_user(parsed: list[tuple[str, str]]) -> None:
    users = [arg for keyword, arg in _final_stage(parsed) if keyword == "USER"]
    assert users, "the final stage sets no USER: it would run as root"
    user = users[-1].split(":")[0]
    assert user.isdigit() and int(user) != 0, "numeric, so runAsNonRoot can verify it"
    deployment = (REPO / "packaging/kubernetes/base/deployment.yaml").read_text()
    assert f"runAsUser: {user}" in deployment


def test_no_remote_add_and_no_curl_pipes(parsed: list[tuple[str, str]]) -> None:
    for keyword, arg in parsed:
        assert keyword != "ADD", "COPY is explicit; ADD fetches URLs and unpacks archives"
        if keyword == "RUN":
            assert not re.search(r"\b(curl|wget)\b", arg), arg


def test_installs_the_coordinator_extra(parsed: list[tuple[str, str]]) -> None:
    runs = " ".join(arg for keyword, arg in parsed if keyword == "RUN")
    assert re.search(r"pip install .*\"\.\[coordinator\]\"", runs)


def test_entrypoint_is_a_console_script_serving_the_mounted_config(
    parsed: list[tuple[str, str]],
) -> None:
    final = dict(_final_stage(parsed))
    command = _exec_form(final["ENTRYPOINT"]) + _exec_form(final["CMD"])
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert command[0] in scripts
    assert command[1:] == shlex.split("serve --config /etc/stealbalancer/coordinator.yaml")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("FROM a\nRUN x \\\n  y\n", [("FROM", "a"), ("RUN", "x    y")], id="join"),
        pytest.param("# c\nuser 1\n", [("USER", "1")], id="comment-and-case"),
    ],
)
def test_instruction_parser(text: str, expected: list[tuple[str, str]]) -> None:
    assert instructions(text) == expected
