"""Lease leader election against the API server double, through the real client."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from kubernetes import client as k8s
from pydantic import ValidationError

from coordinator.config import Config, ConfigError, parse_model
from coordinator.detach_config import KubernetesClusterConfig, KubernetesConfig, LeaderConfig
from coordinator.leader import LeaseElector, leadership_for
from tests.detach.conftest import write_kubeconfig
from tests.doubles.kube_apiserver import KubeApiServer

NS, NAME = "stealbalancer", "coordinator"


@dataclass
class FakeClock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def kube() -> KubeApiServer:
    return KubeApiServer(tokens={"token-a", "token-b", "token-c"})


@pytest.fixture
def url(kube: KubeApiServer) -> Iterator[str]:
    with kube.serve() as base:
        yield base


def api(url: str, token: str) -> k8s.CoordinationV1Api:
    configuration = k8s.Configuration()
    configuration.host = url
    configuration.api_key = {"BearerToken": token}
    configuration.api_key_prefix = {"BearerToken": "Bearer"}
    return k8s.CoordinationV1Api(k8s.ApiClient(configuration))


@dataclass
class Lost:
    calls: list[str] = field(default_factory=list)


def elector(
    url: str, who: str, clock: FakeClock | None = None, lost: Lost | None = None, scale: float = 1.0
) -> LeaseElector:
    """Lease 1 s, renew deadline 0.6 s (times `scale` for tests on the real clock)."""
    sink = lost if lost is not None else Lost()
    return LeaseElector(
        api(url, f"token-{who}"),
        NS,
        NAME,
        identity=who,
        lease_duration_s=1.0 * scale,
        renew_deadline_s=0.6 * scale,
        retry_period_s=0.05,
        on_lost=lambda: sink.calls.append(who),
        clock=clock or time.monotonic,
    )


def holder(kube: KubeApiServer) -> str | None:
    spec = kube.leases[(NS, NAME)].get("spec", {})
    value = spec.get("holderIdentity")
    return str(value) if value is not None else None


def test_first_replica_creates_the_lease_and_leads(kube: KubeApiServer, url: str) -> None:
    a, b = elector(url, "a"), elector(url, "b")

    assert a.try_acquire_or_renew()
    assert not b.try_acquire_or_renew()

    assert a.is_leader() and not b.is_leader()
    assert holder(kube) == "a"
    assert [m for m, p, _ in kube.requests if m == "POST"] == ["POST"]


def test_takeover_only_after_the_leader_stops_renewing(kube: KubeApiServer, url: str) -> None:
    clock = FakeClock()
    a, b = elector(url, "a", clock), elector(url, "b", clock)
    assert a.try_acquire_or_renew()

    clock.now += 0.4
    assert a.try_acquire_or_renew(), "renewal"
    assert not b.try_acquire_or_renew()
    clock.now += 0.9  # a renewed 0.9 s ago, but b first saw that record only now
    assert not b.try_acquire_or_renew()
    assert not a.is_leader(), "past its renew deadline the old leader stops acting"

    clock.now += 0.2  # b has now seen the record unchanged for longer than the lease
    assert b.try_acquire_or_renew()
    assert b.is_leader() and holder(kube) == "b"
    assert kube.leases[(NS, NAME)]["spec"]["leaseTransitions"] == 1

    assert not a.try_acquire_or_renew(), "the old leader sees the new holder"
    assert not a.is_leader()


def test_lost_race_is_a_409(kube: KubeApiServer, url: str) -> None:
    clock = FakeClock()
    a, b, c = elector(url, "a", clock), elector(url, "b", clock), elector(url, "c", clock)
    assert a.try_acquire_or_renew()
    assert not b.try_acquire_or_renew() and not c.try_acquire_or_renew()
    clock.now += 2.0
    lease = b._api.read_namespaced_lease(NAME, NS)  # both read the same version...
    assert c.try_acquire_or_renew()
    assert not b._replace(lease, clock()), "...only one update wins"
    assert holder(kube) == "c"
    assert any(m == "PUT" for m, _, _ in kube.requests)


def test_release_on_clean_shutdown_hands_over_at_once(kube: KubeApiServer, url: str) -> None:
    a, b = elector(url, "a"), elector(url, "b")
    stop = threading.Event()
    runner = threading.Thread(target=a.run, args=(stop,))
    runner.start()
    try:
        deadline = time.monotonic() + 5
        while not a.is_leader() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert a.is_leader()
    finally:
        stop.set()
        runner.join(timeout=5)
    assert holder(kube) is None and not a.is_leader()
    assert b.try_acquire_or_renew(), "no need to wait for the lease to expire"


def test_two_replicas_never_act_at_once(kube: KubeApiServer, url: str) -> None:
    """Each replica acts (records a timestamp) only while is_leader(); the leader is
    then cut off from the API server. Its last act must precede the new leader's first."""
    lost = Lost()
    # Generous timings: a loaded CI machine must not make a healthy leader miss renewals.
    replicas = {who: elector(url, who, lost=lost, scale=2.0) for who in ("a", "b")}
    acts: dict[str, list[float]] = {"a": [], "b": []}
    stop = threading.Event()

    def work(who: str) -> None:
        while not stop.is_set():
            if replicas[who].is_leader():
                acts[who].append(time.monotonic())
            time.sleep(0.005)

    threads = [threading.Thread(target=replicas[w].run, args=(stop,)) for w in replicas]
    threads += [threading.Thread(target=work, args=(w,)) for w in replicas]
    for thread in threads:
        thread.start()
    try:
        first = wait_for_leader(replicas)
        time.sleep(0.3)
        kube.tokens.discard(f"token-{first}")  # partition the leader from the API server
        second = "b" if first == "a" else "a"
        deadline = time.monotonic() + 10
        while not acts[second] and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=5)

    assert acts[first] and acts[second], "both led, one after the other"
    assert max(acts[first]) < min(acts[second])
    assert min(acts[second]) - max(acts[first]) > 0.6, "the lease had to expire in between"
    assert lost.calls == [first], "the cut-off leader gave up through on_lost"


def wait_for_leader(replicas: dict[str, LeaseElector]) -> str:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        leaders = [who for who, e in replicas.items() if e.is_leader()]
        if leaders:
            assert len(leaders) == 1
            return leaders[0]
        time.sleep(0.01)
    raise AssertionError("no leader elected within 5 s")


def test_renew_deadline_must_be_below_lease_duration() -> None:
    with pytest.raises(ValidationError):
        LeaderConfig(lease_duration_s=10, renew_deadline_s=10)
    with pytest.raises(ConfigError, match="leader"):
        parse_model(Config, {"leader": {"lease_duration_s": 5, "renew_deadline_s": 8}}, "c.yaml")
    assert not Config().leader.enabled, "single replica is the default"


def test_from_config_uses_the_clusters_kubeconfig(
    kube: KubeApiServer, url: str, tmp_path: Path
) -> None:
    kubeconfig = write_kubeconfig(tmp_path / "kc", url, "token-a")
    clusters = KubernetesConfig(
        clusters={"lab": KubernetesClusterConfig(kubeconfig=str(kubeconfig))}
    )
    leader = LeaderConfig(enabled=True, cluster="lab", namespace=NS, lease_name=NAME)

    elector = LeaseElector.from_config(leader, clusters, on_lost=lambda: None)

    assert elector.try_acquire_or_renew()
    assert holder(kube) == elector.identity != ""
    with pytest.raises(ValueError, match=r"not in kubernetes\.clusters"):
        LeaseElector.from_config(leader.model_copy(update={"cluster": "nope"}), clusters)


def test_single_replica_is_always_leader(kube: KubeApiServer, url: str, tmp_path: Path) -> None:
    alone = leadership_for(Config())
    stop = threading.Event()
    stop.set()
    alone.run(stop)
    assert alone.is_leader()
    kubeconfig = write_kubeconfig(tmp_path / "kc", url, "token-b")
    config = Config(
        kubernetes=KubernetesConfig(
            clusters={"default": KubernetesClusterConfig(kubeconfig=str(kubeconfig))}
        ),
        leader=LeaderConfig(enabled=True, namespace=NS, lease_name=NAME, identity="b"),
    )
    elected = leadership_for(config, on_lost=lambda: None)
    assert isinstance(elected, LeaseElector) and not elected.is_leader()
    assert elected.try_acquire_or_renew() and elected.is_leader()
