"""Whatever a client sends, the Admin API answers with a status and keeps serving
(hypothesis over every method and every request field, on a real service over gRPC).

Strings mix control characters, rich markup, names that exist (shared or not) and
lengths far past the limits; numbers span their whole type. An unhandled exception in
a handler would surface as UNKNOWN, a hang as DEADLINE_EXCEEDED: both fail the test.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coordinator.adapters.sim.compute import SimCompute
from coordinator.api.v1 import admin_pb2, admin_pb2_grpc
from tests.ctl.inprocess import running_service
from tests.service.harness import service_config

ANSWERS = {
    grpc.StatusCode.RESOURCE_EXHAUSTED,  # gRPC's own refusal of a message over 4 MiB
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
}
VMS = {
    "00000000-0000-4000-8000-000000000001": "db-1",
    "00000000-0000-4000-8000-000000000002": "db-1",  # a name two VMs share
    "00000000-0000-4000-8000-000000000003": "web-1",
}

short = st.text(max_size=40)  # every code point but surrogates: C0, C1, bidi, ...
hostile = st.sampled_from(["[/bold]x", "[/]role", "\x1b]0;title\x07", "\x9b2J", "\u202e", "\x00"])
known = st.sampled_from([*VMS, *VMS.values(), "hv-0", "hv-1", "az1", "steal", "name", "load"])
huge = st.builds(lambda s, n: (s or "x") * n, short, st.integers(1, 50_000))
strings = st.one_of(short, hostile, known, huge, st.lists(st.one_of(short, hostile)).map("".join))
uint32 = st.one_of(st.integers(0, 3), st.integers(0, 2**32 - 1))

REQUESTS: dict[str, st.SearchStrategy[Any]] = {
    "Status": st.just(admin_pb2.StatusRequest()),
    "ListHosts": st.builds(admin_pb2.ListHostsRequest, availability_zone=strings,
                           page_size=uint32, page_token=strings),
    "ListVms": st.builds(admin_pb2.ListVmsRequest, host=strings, availability_zone=strings,
                         role=strings, sort_by=strings, limit=uint32, page_size=uint32,
                         page_token=strings),
    "ListMigrations": st.builds(admin_pb2.ListMigrationsRequest, running_only=st.booleans(),
                                limit=uint32, page_size=uint32, page_token=strings),
    "PreviewPlan": st.just(admin_pb2.PreviewPlanRequest()),
    "Explain": st.builds(admin_pb2.ExplainRequest, vm=strings),
    "Migrate": st.builds(admin_pb2.MigrateRequest, vm=strings, target_host=strings),
    "Pause": st.builds(admin_pb2.PauseRequest, reason=strings),
    "Resume": st.just(admin_pb2.ResumeRequest()),
}  # fmt: skip
calls = st.sampled_from(sorted(REQUESTS)).flatmap(
    lambda method: st.tuples(st.just(method), REQUESTS[method])
)


@pytest.fixture(scope="module")
def stub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[admin_pb2_grpc.AdminStub]:
    nova = SimCompute(clock=time.time)
    nova.add_hypervisor("hv-0", "az1")
    nova.add_hypervisor("hv-1", "az1")
    for i, (uuid, name) in enumerate(VMS.items()):
        nova.add_server(uuid, f"hv-{i % 2}", name=name, metadata={"role": "[/]role"})
    config = service_config(Path(tmp_path_factory.mktemp("fuzz")))
    with running_service(config, nova) as address, grpc.insecure_channel(address) as channel:
        yield admin_pb2_grpc.AdminStub(channel)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow,
          HealthCheck.function_scoped_fixture, HealthCheck.data_too_large])  # fmt: skip
@given(st.lists(calls, min_size=1, max_size=5))
def test_every_request_gets_an_answer(
    stub: admin_pb2_grpc.AdminStub, sequence: list[tuple[str, Any]]
) -> None:
    for method, request in sequence:
        rpc: Callable[..., Any] = getattr(stub, method)
        try:
            rpc(request, timeout=20)
        except grpc.RpcError as exc:
            assert exc.code() in ANSWERS, (method, exc.code(), exc.details())
            assert len(exc.details() or "") < 2000
    assert stub.Status(admin_pb2.StatusRequest(), timeout=20).vms_total == len(VMS)
