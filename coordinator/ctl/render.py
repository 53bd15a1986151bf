"""Human output: aligned rich tables, colour only where the terminal supports it.

Each function takes an Admin response and returns a renderable, so `watch` can put
the same tables in a refreshing Live view that one-shot commands print once. Every
string reaches rich as a `Text` made by `literal`: names, roles, hosts and reasons come
from tenants and agents, and a `str` cell would be parsed as rich markup.
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from coordinator.ctl.literal import literal

# Steal above this is shown red: operators call a VM contended at 10%.
_STEAL_HOT = 0.10
_STEAL_WARM = 0.05


def pct(ratio: float) -> str:
    return f"{ratio * 100:.1f}%"


def steal_text(ratio: float) -> Text:
    style = "red" if ratio >= _STEAL_HOT else "yellow" if ratio >= _STEAL_WARM else "green"
    return Text(pct(ratio), style=style)


def age(seconds: float) -> str:
    if seconds < 0:
        return "never"
    return f"{seconds:.0f}s" if seconds < 120 else f"{seconds / 60:.0f}m"


def when(unix_ns: int) -> str:
    if unix_ns <= 0:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(unix_ns / 1e9))


# Free-text columns wrap; every other column keeps one line so rows stay aligned.
_WRAPPING = {"why", "why not", "OUTCOME"}


def _table(title: str, *columns: str) -> Table:
    table = Table(title=title, title_justify="left", header_style="bold")
    for column in columns:
        numeric = column.endswith(("%", "s", "GiB", "MiB/s")) or column in ("VMs", "vCPUs")
        table.add_column(column, justify="right" if numeric else "left",
                         no_wrap=column not in _WRAPPING)  # fmt: skip
    return table


def _add(table: Table, *cells: str | Text) -> None:
    table.add_row(*(literal(c) if isinstance(c, str) else c for c in cells))


def status(s: Any) -> RenderableType:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    paused = literal(_paused(s), "bold yellow") if s.paused else "no"
    rows: list[tuple[str, str | Text]] = [
        ("hosts", f"{s.hosts_total} total, {s.hosts_up} up, {s.hosts_stale} stale"),
        ("VMs", f"{s.vms_total} total, {s.vms_contended} contended now"),
        ("cluster steal", steal_text(s.cluster_steal)),
        (
            "migrations",
            f"{s.migrations_running} running, {s.migrations_queued} queued, "
            f"{s.migrations_retrying} retrying after an error",
        ),
        ("detached", _detached(s)),
        ("parked VMs", str(s.vms_parked)),
        ("bandwidth", f"{s.bandwidth_in_use_mib_s:.0f} / {s.bandwidth_budget_mib_s:.0f} MiB/s"),
        ("paused", paused),
        ("leader", ("yes" if s.leader else "no") + _suffix(s.leader_identity)),
        ("snapshot", f"{when(s.snapshot_unix_ns)} UTC (coordinator {s.version})"),
    ]
    for key, value in rows:
        _add(table, key, value)
    return table


def _paused(s: Any) -> str:
    by = f" by {s.paused_by}" if s.paused_by else ""
    at = f" at {when(s.paused_unix_ns)} UTC" if s.paused_unix_ns else ""
    return f"PAUSED ({s.paused_reason}){by}{at}"


def _detached(s: Any) -> str | Text:
    """The longest time an open migration has kept its VM out of its orchestrator, in red
    when some exceed workflow.max_detached_s (a reattach that keeps failing)."""
    longest = f"longest {s.detached_seconds_max:.0f}s" if s.detached_seconds_max else "none"
    if not s.migrations_detached_overdue:
        return longest
    return literal(f"{s.migrations_detached_overdue} OVERDUE ({longest})", "bold red")


def _suffix(identity: str) -> str:
    return f" ({identity})" if identity else ""


def hosts(response: Any) -> RenderableType:
    table = _table("hosts", "HOST", "AZ", "steal %", "demand/pCPUs", "VMs", "vCPUs", "agent age s")
    for h in response.hosts:
        flags = "" if h.up and h.enabled else " (down)" if not h.up else " (disabled)"
        _add(
            table,
            h.name + flags,
            h.availability_zone,
            steal_text(h.steal),
            f"{h.cpu_demand:.1f}/{h.pcpus} ({h.cpu_demand / max(h.pcpus, 1):.0%})",
            str(h.vms),
            str(h.vcpus_used),
            # Marked in words too: colour is lost in a pipe, with NO_COLOR and to some eyes.
            literal(age(h.agent_age_s) + ("" if h.fresh else " STALE"), "" if h.fresh else "red"),
        )
    return table


def vms(response: Any) -> RenderableType:
    table = _table("VMs", "NAME", "HOST", "AZ", "ROLE", "vCPUs", "steal %", "load %", "STATE")
    for v in response.vms:
        _add(
            table,
            literal(v.name, "bold red" if v.contended else ""),
            v.host,
            v.availability_zone,
            v.role,
            str(v.vcpus),
            steal_text(v.steal),
            pct(v.load),
            v.state + (" (contended)" if v.contended else ""),
        )
    return table


def migrations(response: Any, title: str = "migrations") -> RenderableType:
    table = _table(title, "ID", "VM", "SOURCE → TARGET", "STATE", "duration s", "GiB",
                   "steal before → after", "OUTCOME")  # fmt: skip
    for m in response.migrations:
        _add(
            table,
            m.id[:8],
            m.vm_name or m.vm_uuid[:8],
            f"{m.source} → {m.target}",
            literal(_state(m), _STATE_STYLE.get(m.state, "")),
            _duration(m),
            f"{m.gib_moved:.1f}",
            f"{pct(m.steal_before)} → {pct(m.steal_after) if m.steal_after >= 0 else '?'}",
            _outcome(m),
        )
    return table


_STATE_STYLE = {"DONE": "green", "FAILED": "red", "ABORTED": "yellow"}


def _state(m: Any) -> str:
    state = str(m.state) + (" (manual)" if m.manual else "")
    return state + (f", detached {m.detached_seconds:.0f}s" if m.detached_seconds else "")


def _outcome(m: Any) -> str:
    """An open migration that failed a step says so, and when it tries again."""
    if not m.last_error or m.finished_unix_ns:
        return str(m.outcome)
    again = f", next try {when(m.retry_unix_ns)} UTC" if m.retry_unix_ns else ""
    return f"retrying (attempt {m.attempts}{again}): {m.last_error!s}"


def _duration(m: Any) -> str:
    end = m.finished_unix_ns or time.time_ns()
    return f"{max(end - m.created_unix_ns, 0) / 1e9:.0f}" + ("" if m.finished_unix_ns else "+")


def plan(response: Any) -> RenderableType:
    header = Text("paused: nothing will start until `coordctl resume`\n", style="yellow")
    moves = _table(
        "would move now", "VM", "SOURCE → TARGET", "steal %", "load %", "GiB", "est s", "why"
    )
    for m in response.moves:
        _add(
            moves,
            m.vm_name,
            f"{m.source} → {m.target}",
            steal_text(m.steal),
            pct(m.load),
            f"{m.gib_to_move:.1f}",
            f"{m.seconds_estimate:.0f}",
            m.reason,
        )
    skipped = _table("detected but not moved", "VM", "why not")
    for s in response.skipped:
        _add(skipped, s.vm_name or s.vm_uuid, s.reason)
    parts: list[RenderableType] = [header] if response.paused else []
    if not response.moves and not response.skipped:
        return Group(*parts, Text("nothing to move: no VM is contended now"))
    return Group(*parts, moves, skipped)


def explain(response: Any) -> RenderableType:
    parts: list[RenderableType] = [
        literal(f"{response.vm_name} ({response.vm_uuid})", "bold"),
        literal(response.verdict),
    ]
    parts += [literal(f"  • {reason}") for reason in response.reasons]
    if response.HasField("move"):
        targets = _table(
            "targets", "HOST", "eligible", "steal %", "headroom", "at peaks", "why not"
        )
        for t in response.move.targets:
            _add(
                targets,
                t.host,
                "yes" if t.eligible else "no",
                steal_text(t.steal),
                f"{t.headroom_cpus:.1f}",
                f"{t.peak_headroom_cpus:.1f}",
                t.rejected_because,
            )
        parts.append(targets)
    if response.history:
        parts.append(migrations(_History(response.history), title="history"))
    return Group(*parts)


class _History:
    """Adapts ExplainResponse.history to what `migrations` reads."""

    def __init__(self, items: Any) -> None:
        self.migrations = items


def watch(status_response: Any, vms_response: Any, running: Any) -> RenderableType:
    return Group(
        status(status_response),
        Text(""),
        vms(vms_response),
        migrations(running, title="running migrations"),
    )
