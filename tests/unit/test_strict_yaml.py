"""The config files' YAML loader: safe_load's answers, except that a repeated key is an error."""

from __future__ import annotations

from typing import Any

import pytest

from coordinator import strict_yaml


@pytest.mark.parametrize(
    ("text", "key", "lines"),
    [
        pytest.param("limits: {a: 1}\nlimits: {b: 2}\n", "'limits'", (1, 2), id="top-level"),
        pytest.param(
            "service:\n  admin_listen: a\n  token: t\n  admin_listen: b\n",
            "'admin_listen'",
            (2, 4),
            id="nested",
        ),
        pytest.param("{a: 1, b: 2, a: 3}\n", "'a'", (1, 1), id="flow-mapping"),
        pytest.param("1: x\n2: y\n1: z\n", "1", (1, 3), id="integer-key"),
    ],
)
def test_a_repeated_key_is_named_with_both_lines(
    text: str, key: str, lines: tuple[int, int]
) -> None:
    with pytest.raises(strict_yaml.DuplicateKeyError) as caught:
        strict_yaml.load(text)
    assert f"duplicate key {key} at line {lines[0]} and line {lines[1]}" in str(caught.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "base: &b {x: 1, y: 2}\nother:\n  <<: *b\n  x: 3\n",
            {"base": {"x": 1, "y": 2}, "other": {"x": 3, "y": 2}},
            id="merge-override",
        ),
        pytest.param("a: {k: 1}\nb: {k: 2}\n", {"a": {"k": 1}, "b": {"k": 2}}, id="same-key-apart"),
        pytest.param("1: x\n'1': y\n", {1: "x", "1": "y"}, id="int-and-string"),
        pytest.param("", None, id="empty"),
    ],
)
def test_everything_else_loads_as_safe_load_does(text: str, expected: Any) -> None:
    assert strict_yaml.load(text) == expected


def test_it_stays_safe() -> None:
    with pytest.raises(Exception, match="python/object"):
        strict_yaml.load("!!python/object/apply:os.system ['true']\n")
