"""One collection cycle: every source read once, stamped with the monotonic clock."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from agent.sources.base import DomainReading, DomainSource, HostReading, HostSource


@dataclass(frozen=True)
class Collection:
    """What one cycle saw, before it is turned into a HostReport."""

    monotonic_ns: int
    wall_time_unix_ns: int
    host: HostReading
    domains: tuple[DomainReading, ...]
    collection_ns: int


class Collector:
    """Reads the host and domain sources; blocking, so callers run it in a thread."""

    def __init__(
        self,
        domains: DomainSource,
        host: HostSource,
        monotonic_ns: Callable[[], int] = time.monotonic_ns,
        wall_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.domain_source = domains
        self.host_source = host
        self._monotonic_ns = monotonic_ns
        self._wall_ns = wall_ns

    def collect(self) -> Collection:
        started = time.perf_counter_ns()
        before = self._monotonic_ns()
        domains = tuple(self.domain_source.domains())
        # Stamped mid-call: one bulk call reads every domain somewhere inside it, and a
        # call slowed by a busy libvirtd must not bias the interval either way.
        stamp = (before + self._monotonic_ns()) // 2
        host = self.host_source.host()
        return Collection(
            monotonic_ns=stamp,
            wall_time_unix_ns=self._wall_ns(),
            host=host,
            domains=domains,
            collection_ns=time.perf_counter_ns() - started,
        )
