"""The README's shell lines do what they say when pasted."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"

# `VAR=value cmd1 && cmd2` sets VAR for cmd1 only: the commands after the `&&` (or `;`,
# `|`) run without it, e.g. a coordctl without its token.
_PREFIX_THEN_CHAIN = re.compile(r"^\s*(?:[A-Z_][A-Z0-9_]*=\S*\s+)+[^=\s]\S*.*?(&&|\|\||;|\|)")


def _shell_lines() -> list[str]:
    lines, fenced = [], False
    for line in README.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if fenced or line.startswith("    "):
            lines.append(line.split(" #", 1)[0])
    return lines


def test_a_variable_set_for_one_command_is_not_expected_by_the_next() -> None:
    chained = [line for line in _shell_lines() if _PREFIX_THEN_CHAIN.match(line)]
    assert chained == [], "use `export VAR=...` on its own line: " + "; ".join(chained)
