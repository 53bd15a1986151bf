"""The `--json` output: every response as plain JSON, one schema per command.

The schema is the Admin proto's own field names and types (numbers stay numbers,
int64 included, unlike protobuf's JSON mapping which quotes them), wrapped in an
object naming the command and the schema version. Because .proto changes are
additive only, a script written against schema 1 keeps working.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

SCHEMA = "stealbalancer.coordctl/v1"


def to_plain(message: Message) -> dict[str, Any]:
    """Every field of `message`, defaults included, as JSON-ready Python values."""
    return {f.name: _field(message, f) for f in message.DESCRIPTOR.fields}


def _field(message: Message, field: Any) -> Any:
    value = getattr(message, field.name)
    is_message = field.type == FieldDescriptor.TYPE_MESSAGE
    if _is_repeated(field):
        return [to_plain(v) if is_message else v for v in value]
    if is_message:
        return to_plain(value) if message.HasField(field.name) else None
    return value


def _is_repeated(field: Any) -> bool:
    # `is_repeated` is the protobuf ≥ 6 spelling; older ones only have `label`.
    if hasattr(field, "is_repeated"):
        return bool(field.is_repeated)
    return bool(field.label == FieldDescriptor.LABEL_REPEATED)


def document(command: str, body: dict[str, Any]) -> dict[str, Any]:
    """The top-level object every `--json` output is."""
    return {"schema": SCHEMA, "command": command, **body}
