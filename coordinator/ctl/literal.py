"""Text that came from tenants or agents, made safe to show on an operator's terminal.

VM names, roles, host names, reasons and server messages are data. `escape` turns every
character that is not printable (C0 and C1 controls, ESC and so CSI/OSC sequences, DEL,
bidi overrides and other format characters, line separators) into a visible Python-style
escape (`\\x1b`, `\\u202e`); `literal` wraps the result in a rich `Text`, which rich never
parses for markup, so `[/bold]` is shown as typed instead of raising MarkupError.
"""

from __future__ import annotations

from rich.text import Text


def escape(text: str) -> str:
    """`text` with every non-printable character written as a visible escape."""
    if text.isprintable():  # the common case, in C
        return text
    return "".join(ch if ch.isprintable() else _visible(ch) for ch in text)


def _visible(ch: str) -> str:
    code = ord(ch)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def literal(text: str, style: str = "") -> Text:
    """A rich Text showing `text` exactly (escaped), never interpreted as markup."""
    return Text(escape(text), style=style)
