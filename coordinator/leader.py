"""Optional leader election over a coordination.k8s.io/v1 Lease.

Two coordinator replicas may run; only the leader plans and acts. Interface for
the service:

    elector = leadership_for(config)          # AlwaysLeader unless leader.enabled
    thread = threading.Thread(target=elector.run, args=(stop,), daemon=True)
    ...
    if elector.is_leader():   # checked right before every action
        act()

`run(stop)` acquires and renews the lease every `retry_period_s` until `stop` is
set, then releases it (clean shutdown: the other replica takes over at once).

Safety: `is_leader()` is true only while the last successful renewal, timed from
*before* its request was sent, is younger than `renew_deadline_s`. A follower
takes over only after it has seen the same lease record, unchanged, for the
lease's full duration, measured from *after* it read it. With renew_deadline <
lease_duration the old leader has stopped acting before anyone else may start,
without trusting either wall clock. A leader that fails to renew in time calls
`on_lost`, which by default exits the process (the Kubernetes client's own
elector keeps the leader callback running after a lost renewal; we would rather
restart than risk two leaders). Losing a race is a 409 from the API server
(resourceVersion check on PUT, AlreadyExists on POST).

Single replica stays the default: with `leader.enabled` false the service does
not construct an elector and always acts.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

import structlog
import urllib3
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from coordinator.config import Config
from coordinator.detach_config import KubernetesConfig, LeaderConfig

log = structlog.get_logger(__name__)

EXIT_LOST_LEADERSHIP = 75
_ERRORS = (ApiException, urllib3.exceptions.HTTPError, OSError, ValueError)


def exit_process() -> None:
    """The default `on_lost`: stop this process now, before anything else is done."""
    log.critical("leader.lost_exiting")
    os._exit(EXIT_LOST_LEADERSHIP)


def default_identity() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class Leadership(Protocol):
    """What the service asks before it plans or acts."""

    def is_leader(self) -> bool: ...

    def run(self, stop: threading.Event) -> None: ...


class AlwaysLeader:
    """A single replica (the default) leads unconditionally."""

    def is_leader(self) -> bool:
        return True

    def run(self, stop: threading.Event) -> None:
        stop.wait()


def leadership_for(config: Config, on_lost: Callable[[], None] | None = None) -> Leadership:
    if not config.leader.enabled:
        return AlwaysLeader()
    leader = config.leader.model_copy(update={"lease_name": lease_name(config)})
    return LeaseElector.from_config(leader, config.kubernetes, on_lost or exit_process)


def lease_name(config: Config) -> str:
    """The Lease this coordinator competes for: `leader.lease_name`, suffixed with the
    AZs it owns (`service.azs`), so each AZ group elects its own leader."""
    base = config.leader.lease_name
    if not config.service.azs:
        return base
    raw = "-".join(sorted(config.service.azs))
    suffix = re.sub(r"[^a-z0-9-]+", "-", raw.lower()).strip("-")
    name = f"{base}-{suffix}"
    if suffix != raw or len(name) > 63:  # a DNS label; keep distinct AZ sets distinct
        digest = hashlib.sha256(raw.encode()).hexdigest()[:8]
        name = f"{base}-{suffix[: 63 - len(base) - 10]}-{digest}".replace("--", "-")
    return name


class LeaseElector:
    def __init__(
        self,
        api: k8s.CoordinationV1Api,
        namespace: str,
        name: str,
        identity: str,
        lease_duration_s: float = 15.0,
        renew_deadline_s: float = 10.0,
        retry_period_s: float = 2.0,
        on_lost: Callable[[], None] = exit_process,
        clock: Callable[[], float] = time.monotonic,
        request_timeout_s: float = 5.0,
    ) -> None:
        if renew_deadline_s >= lease_duration_s:
            raise ValueError("renew_deadline_s must be below lease_duration_s")
        self._api = api
        self._namespace = namespace
        self._name = name
        self.identity = identity
        self._duration = lease_duration_s
        self._deadline = renew_deadline_s
        self._retry = retry_period_s
        self._on_lost = on_lost
        self._clock = clock
        self._timeout = request_timeout_s
        self._lock = threading.Lock()
        self._renewed_at: float | None = None
        self._observed: tuple[Any, ...] | None = None
        self._observed_at = 0.0

    @classmethod
    def from_config(
        cls,
        leader: LeaderConfig,
        kubernetes: KubernetesConfig,
        on_lost: Callable[[], None] = exit_process,
    ) -> LeaseElector:
        from coordinator.adapters.kubernetes import api_client_for  # credentials, one place

        cluster = kubernetes.clusters.get(leader.cluster)
        if cluster is None:
            raise ValueError(f"leader.cluster {leader.cluster!r} is not in kubernetes.clusters")
        return cls(
            k8s.CoordinationV1Api(api_client_for(cluster)),
            leader.namespace,
            leader.lease_name,
            leader.identity or default_identity(),
            leader.lease_duration_s,
            leader.renew_deadline_s,
            leader.retry_period_s,
            on_lost=on_lost,
        )

    # -- what the service uses --------------------------------------------------------

    def is_leader(self) -> bool:
        with self._lock:
            return (
                self._renewed_at is not None and self._clock() - self._renewed_at < self._deadline
            )

    def run(self, stop: threading.Event) -> None:
        """Acquire and renew until `stop`; then release. Returns early when leadership
        is lost (after calling on_lost)."""
        while not stop.is_set():
            was_leader = self._renewed_at is not None
            self.try_acquire_or_renew()
            if was_leader and not self.is_leader():
                self._lose()
                return
            stop.wait(self._retry)
        self.release()

    # -- one round --------------------------------------------------------------------

    def try_acquire_or_renew(self) -> bool:
        started = self._clock()
        try:
            lease = self._api.read_namespaced_lease(
                self._name, self._namespace, _request_timeout=self._timeout
            )
        except ApiException as exc:
            if exc.status == 404:
                return self._create(started)
            return self._failed("read", exc)
        except _ERRORS as exc:
            return self._failed("read", exc)
        if not self._may_write(lease):
            return False
        return self._replace(lease, started)

    def _may_write(self, lease: Any) -> bool:
        holder = lease.spec.holder_identity if lease.spec else None
        record = (
            holder,
            lease.spec.renew_time if lease.spec else None,
            lease.metadata.resource_version,
        )
        if record != self._observed:
            self._observed, self._observed_at = record, self._clock()
        if not holder or holder == self.identity:
            return True
        if self._renewed_at is not None:
            log.warning("leader.taken_over", holder=holder, identity=self.identity)
            with self._lock:
                self._renewed_at = None  # someone else holds it now: stop acting at once
            return False
        duration = float(lease.spec.lease_duration_seconds or self._duration)
        return self._clock() - self._observed_at > duration

    def _spec(self, previous: Any | None) -> k8s.V1LeaseSpec:
        now = datetime.now(UTC)
        acquired, transitions = now, 0
        if previous is not None and previous.holder_identity == self.identity:
            acquired, transitions = previous.acquire_time or now, previous.lease_transitions or 0
        elif previous is not None:
            transitions = (previous.lease_transitions or 0) + 1
        return k8s.V1LeaseSpec(
            holder_identity=self.identity,
            lease_duration_seconds=math.ceil(self._duration),
            acquire_time=acquired,
            renew_time=now,
            lease_transitions=transitions,
        )

    def _create(self, started: float) -> bool:
        body = k8s.V1Lease(
            metadata=k8s.V1ObjectMeta(name=self._name, namespace=self._namespace),
            spec=self._spec(None),
        )
        try:
            self._api.create_namespaced_lease(self._namespace, body, _request_timeout=self._timeout)
        except _ERRORS as exc:
            return self._failed("create", exc)
        return self._won(started)

    def _replace(self, lease: Any, started: float) -> bool:
        lease.spec = self._spec(lease.spec)
        try:
            self._api.replace_namespaced_lease(
                self._name, self._namespace, lease, _request_timeout=self._timeout
            )
        except _ERRORS as exc:
            return self._failed("update", exc)
        return self._won(started)

    def _won(self, started: float) -> bool:
        with self._lock:
            if self._renewed_at is None:
                log.info("leader.acquired", identity=self.identity)
            self._renewed_at = started
        return True

    def _failed(self, what: str, exc: Exception) -> bool:
        conflict = isinstance(exc, ApiException) and exc.status == 409
        log.info(
            "leader.lost_race" if conflict else "leader.api_error", op=what, error=str(exc)[:200]
        )
        return False

    def _lose(self) -> None:
        with self._lock:
            self._renewed_at = None
        log.error("leader.renew_failed", identity=self.identity)
        self._on_lost()

    def release(self) -> None:
        """Hand the lease back (holder cleared) so a follower takes over at once."""
        if not self.is_leader():
            return
        with self._lock:
            self._renewed_at = None
        try:
            lease = self._api.read_namespaced_lease(
                self._name, self._namespace, _request_timeout=self._timeout
            )
            if lease.spec is None or lease.spec.holder_identity != self.identity:
                return
            lease.spec = k8s.V1LeaseSpec(
                lease_duration_seconds=1, lease_transitions=lease.spec.lease_transitions
            )
            self._api.replace_namespaced_lease(
                self._name, self._namespace, lease, _request_timeout=self._timeout
            )
            log.info("leader.released", identity=self.identity)
        except _ERRORS as exc:
            log.warning("leader.release_failed", error=str(exc)[:200])
