"""The agent's exceptions.

    AgentError
    ├── SourceError          a measurement source failed (libvirt down, /proc unreadable)
    │   └── DomainNotFound   no running domain with that instance or domain UUID
    ├── CommandError         a coordinator command could not be executed
    └── StreamStopped        the report stream ended while the agent was running

Sources wrap their library's exceptions (libvirt.libvirtError, OSError) in these, so
the collector and the command executor handle one tree, and nothing escapes to crash
the daemon.
"""

from __future__ import annotations


class AgentError(Exception):
    """Base of every error the agent raises on purpose."""


class SourceError(AgentError):
    """A measurement source failed; the message carries the library's own words."""


class DomainNotFound(SourceError):
    """No running domain has this instance UUID (or libvirt UUID)."""


class CommandError(AgentError):
    """A coordinator command was malformed or could not be carried out."""


class StreamStopped(AgentError):
    """The task streaming reports to the coordinator ended although nobody stopped the
    agent; the process exits non-zero so that systemd restarts it."""
