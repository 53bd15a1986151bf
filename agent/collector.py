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
        domains = tuple(self.domain_source.domains())
        # Stamped after the domain call: the counters are as of (about) now.
        stamp = self._monotonic_ns()
        host = self.host_source.host()
        return Collection(
            monotonic_ns=stamp,
            wall_time_unix_ns=self._wall_ns(),
            host=host,
            domains=domains,
            collection_ns=time.perf_counter_ns() - started,
        )
