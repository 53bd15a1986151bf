"""Length limits of the Admin API's request fields, checked before anything else.

A name is at most what Nova accepts (255), a free-text reason a little more. An
over-long value is refused with a message that quotes only its beginning, so the
answer cannot grow past the client's metadata limit however long the request was.
"""

from __future__ import annotations

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

NAME_MAX = 255
"""VM names and UUIDs, hosts, availability zones, roles (Nova's own limit on names)."""
_MAX = {"reason": 1024, "page_token": 128, "sort_by": 16}
_QUOTED = 40


def too_long(request: Message) -> str:
    """Why `request` is refused for a string field that is too long; "" when it is not."""
    for field in request.DESCRIPTOR.fields:
        if field.type != FieldDescriptor.TYPE_STRING:
            continue
        value = getattr(request, field.name)
        limit = _MAX.get(field.name, NAME_MAX)
        if isinstance(value, str) and len(value) > limit:
            return (
                f"{field.name}: {len(value)} characters, at most {limit} allowed "
                f"(starts {value[:_QUOTED]!r}…)"
            )
    return ""
