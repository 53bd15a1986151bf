"""YAML for configuration files: safe, and a key named twice in one mapping is an error.

`yaml.safe_load` keeps the last of two equal keys and drops the earlier block without a
word, so a `limits:` section added at the end of a file silently discards the one at the
top. Every config file reader (the coordinator's, the agent's, scenarios, coordctl's)
goes through `load` instead. This module imports only PyYAML: coordctl's start-up time
depends on it staying that small.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import yaml

_MERGE_TAG = "tag:yaml.org,2002:merge"


class DuplicateKeyError(yaml.YAMLError):
    """A mapping names the same key twice (the message names it and both lines)."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys instead of keeping the last one."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        # Checked before SafeLoader flattens `<<` merges: a key that overrides a merged
        # one is how merges are meant to be used, not a duplicate.
        self._refuse_duplicate_keys(node)
        return super().construct_mapping(node, deep=deep)

    def _refuse_duplicate_keys(self, node: yaml.MappingNode) -> None:
        first_line: dict[Hashable, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _MERGE_TAG:
                continue  # complex keys are refused by SafeLoader itself
            key = self.construct_object(key_node)
            line = key_node.start_mark.line + 1
            if key in first_line:
                raise DuplicateKeyError(
                    f"duplicate key {key!r} at line {first_line[key]} and line {line}"
                    " (only one may be given)"
                )
            first_line[key] = line


def load(text: str) -> Any:
    """Parse `text` like `yaml.safe_load`, refusing a key repeated within one mapping."""
    return yaml.load(text, Loader=_UniqueKeyLoader)  # safe: a SafeLoader subclass


def problem(exc: yaml.YAMLError) -> str:
    """What is wrong, on one line (PyYAML's own message spans several, with an excerpt)."""
    mark = getattr(exc, "problem_mark", None)
    what = getattr(exc, "problem", None)
    if what and mark is not None:
        return f"{what} at line {mark.line + 1}, column {mark.column + 1}"
    return " ".join(str(exc).split())
