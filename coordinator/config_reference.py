"""The configuration reference, generated from the pydantic models themselves.

    python -m coordinator.config_reference                 # Markdown tables (README)
    python -m coordinator.config_reference --format yaml   # a commented config file

Each key's meaning is the docstring written under its field in coordinator/config.py
(read with `ast`, since pydantic keeps only `description=`), so the reference cannot
drift from the code: adding a field with a docstring adds a row.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import itertools
import json
import re
import textwrap
import types
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any, Union, get_args, get_origin

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from coordinator.config import Config


@dataclass(frozen=True, slots=True)
class Key:
    """One documented configuration key."""

    path: str  # dotted, e.g. "limits.max_per_az"
    type: str
    default: Any
    required: bool
    bounds: str  # e.g. "≥ 0, ≤ 1"
    meaning: str


@dataclass(frozen=True, slots=True)
class Section:
    path: str
    summary: str
    keys: tuple[Key, ...]
    optional: bool = False  # a sub-section that is absent (null) by default
    mapping: bool = False  # one such section per name, e.g. kubernetes.clusters.<name>


@cache
def field_docs(model: type[BaseModel]) -> dict[str, str]:
    """The string literal right under each annotated field of `model`'s own body."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(model)))
    body = tree.body[0].body if isinstance(tree.body[0], ast.ClassDef) else []
    docs: dict[str, str] = {}
    for field, following in itertools.pairwise(body):
        if not (isinstance(field, ast.AnnAssign) and isinstance(field.target, ast.Name)):
            continue
        if isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant):
            docs[field.target.id] = " ".join(str(following.value.value).split())
    return docs


def _doc(model: type[BaseModel], name: str) -> str:
    for klass in model.__mro__:
        if isinstance(klass, type) and issubclass(klass, BaseModel) and klass is not BaseModel:
            text = field_docs(klass).get(name)
            if text:
                return text
    return ""


def _submodel(annotation: Any) -> tuple[type[BaseModel] | None, str]:
    """The model inside `X`, `X | None` or `dict[str, X]`, and which of those it is."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is dict and _is_model(args[-1]):
        return args[-1], "mapping"
    if origin in (Union, types.UnionType):
        inner = [a for a in args if _is_model(a)]
        return (inner[0], "optional") if inner else (None, "")
    return (annotation, "plain") if _is_model(annotation) else (None, "")


def _is_model(candidate: Any) -> bool:
    return isinstance(candidate, type) and issubclass(candidate, BaseModel)


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, type) and not get_args(annotation):
        return annotation.__name__
    text = str(annotation).replace("typing.", "").replace("NoneType", "None")
    return re.sub(r"\b(?:[a-z_]+\.)+([A-Za-z_]+)", r"\1", text)


_BOUNDS = ((annotated_types.Ge, "≥", "ge"), (annotated_types.Gt, ">", "gt"),
           (annotated_types.Le, "≤", "le"), (annotated_types.Lt, "<", "lt"))  # fmt: skip


def _bounds(info: FieldInfo) -> str:
    parts = []
    for constraint in info.metadata:
        for kind, symbol, attribute in _BOUNDS:
            if isinstance(constraint, kind):
                parts.append(f"{symbol} {getattr(constraint, attribute)}")
    return ", ".join(parts)


def _key(model: type[BaseModel], prefix: str, name: str, info: FieldInfo) -> Key:
    required = info.default is PydanticUndefined and info.default_factory is None
    default = None if required else info.get_default(call_default_factory=True)
    if isinstance(default, BaseModel):
        default = "(section)"
    return Key(f"{prefix}{name}", _type_name(info.annotation), default, required,
               _bounds(info), _doc(model, name))  # fmt: skip


def sections(
    model: type[BaseModel] = Config, prefix: str = "", kind: str = "plain"
) -> Iterator[Section]:
    """Every section of `model`, depth first: its scalar keys, then its sub-sections."""
    keys, nested = [], []
    for name, info in model.model_fields.items():
        sub, sub_kind = _submodel(info.annotation)
        if sub is None:
            keys.append(_key(model, prefix, name, info))
        elif sub_kind == "mapping":
            nested.append((f"{prefix}{name}.<name>", sub, sub_kind))
        else:
            nested.append((f"{prefix}{name}", sub, sub_kind))
    if keys:
        summary = " ".join((model.__doc__ or "").split())
        yield Section(prefix.rstrip("."), summary, tuple(keys),
                      optional=kind == "optional", mapping=kind == "mapping")  # fmt: skip
    for path, sub, sub_kind in nested:
        yield from sections(sub, f"{path}.", sub_kind)


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|")


def _shown(key: Key) -> str:
    if key.required:
        return "*(required)*"
    return f"`{_yaml_value(key.default)}`"


def markdown() -> str:
    header = ["| key | type | default | allowed | meaning |", "|---|---|---|---|---|"]
    out = []
    for section in sections():
        note = _section_note(section)
        out += [f"### `{section.path}`", "", section.summary + note, "", *header]
        out += [_row(k) for k in section.keys]
        out.append("")
    return "\n".join(out)


def _section_note(section: Section) -> str:
    if section.optional:
        return " Absent by default (null): set it to turn this on."
    if section.mapping:
        return " One entry per name."
    return ""


def _row(k: Key) -> str:
    cells = (f"`{k.path}`", k.type, _shown(k), k.bounds, k.meaning)
    return "| " + " | ".join(_cell(c) for c in cells) + " |"


def yaml_example() -> str:
    """Every key with its default, commented, in the file's own layout; sections that
    are absent by default (TLS, named clusters) are shown commented out."""
    out = ["# stealbalancer coordinator configuration: every key, at its default."]
    for section in sections():
        out += _yaml_section(section)
    return "\n".join(out) + "\n"


def _yaml_section(section: Section) -> list[str]:
    names = section.path.split(".")
    off = "# " if section.optional or section.mapping else ""
    if section.mapping:
        names[-1] = "example"  # the <name> placeholder, as a YAML key
    indent = "  " * (len(names) - 1)
    lines = [""]
    if section.mapping:  # the mapping itself is empty by default
        lines.append(f"{indent[:-2]}{names[-2]}: {{}}")
    lines += [f"{indent}# {section.summary}", f"{indent}{off}{names[-1]}:"]
    for k in section.keys:
        meaning = " ".join(filter(None, (k.meaning, f"({k.bounds})" if k.bounds else "")))
        lines += [f"{indent}  # {line}" for line in textwrap.wrap(meaning, 88)]
        value = "<required>" if k.required else _yaml_value(k.default)
        lines.append(f"{indent}{off}  {k.path.split('.')[-1]}: {value}")
    return lines


def _yaml_value(value: Any) -> str:
    # JSON is YAML: strings quoted, booleans and null spelled the YAML way, {} for maps.
    return json.dumps(value, ensure_ascii=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m coordinator.config_reference",
        description="Print the coordinator's configuration reference.",
    )
    parser.add_argument("--format", choices=["markdown", "yaml"], default="markdown")
    args = parser.parse_args(argv)
    print(markdown() if args.format == "markdown" else yaml_example(), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
