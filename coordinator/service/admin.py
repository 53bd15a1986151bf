"""The Admin gRPC service (what coordctl talks to).

Status, the listings and finding a VM read the newest snapshot (no older than a
planning or an agent interval; a fresh one when older), `plan` and `explain` a fresh one, and
all of them the journal as it is now; `Migrate` goes through the same
policy filters and caps as automatic moves (minus the cooldown) and the same
workflow. With `service.admin_token` set, every call needs the bearer token.
Reads run in threads of their own (`READ_THREADS`), never on the event loop: a
snapshot takes seconds at 400,000 VMs and a networked journal may hang until its
timeout, and the agents' streams and the leader's lease share that loop.
Every request's string fields are length-checked (`request_limits`), the List calls
answer page by page (`paging`), and a VM is found by UUID or by a name only one VM has.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

import grpc
from google.protobuf.message import Message

from coordinator import rpc
from coordinator.api.v1 import admin_pb2, admin_pb2_grpc
from coordinator.controller.controller import granted_mib_s
from coordinator.journal import MigrationRecord, PauseState, State
from coordinator.model import ClusterSnapshot, Host, Skipped, Vm, mean_steal
from coordinator.policy import explain, is_contended, plan
from coordinator.policy.detect import is_fresh
from coordinator.service.agents import VERSION
from coordinator.service.core import Coordinator
from coordinator.service.paging import BadPageToken, Builder, ListingGone, Listings, Page
from coordinator.service.request_limits import too_long

if TYPE_CHECKING:
    Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]

T = TypeVar("T")

# Threads for the admin reads. Their own pool, not asyncio's default one the
# controller's tick runs in: a burst of `coordctl` calls queues here and never delays
# a tick. Two, so one slow listing does not hold up a `status` (listings build one at
# a time, under the Listings lock: two at once take both threads until they are done).
READ_THREADS = 2


class AdminService(admin_pb2_grpc.AdminServicer):  # type: ignore[misc]  # generated base is untyped
    def __init__(self, coordinator: Coordinator) -> None:
        self._c = coordinator
        self._listings = Listings(coordinator.config.service.max_message_bytes)
        self._reads = ThreadPoolExecutor(READ_THREADS, thread_name_prefix="admin-read")

    def close(self) -> None:
        """Stop taking reads; one under way finishes in its thread."""
        self._reads.shutdown(wait=False, cancel_futures=True)

    async def _off_loop(self, read: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._reads, read)

    async def _admit(self, request: Any, context: Context) -> None:
        """Authenticate, then refuse over-long fields before any work is done."""
        await self._auth(context)
        problem = too_long(request)
        if problem:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)

    async def _page(self, kind: str, request: Any, context: Context, build: Builder) -> Page:
        token, size = request.page_token, request.page_size
        try:
            return await self._off_loop(lambda: self._listings.page(kind, token, size, build))
        except BadPageToken as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except ListingGone as exc:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        raise AssertionError("unreachable")  # abort raises

    async def _auth(self, context: Context) -> None:
        token = self._c.config.service.admin_token
        if not token:
            return
        metadata = dict(context.invocation_metadata() or ())
        given = str(metadata.get("authorization", ""))
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "bad or missing bearer token")

    async def Status(  # noqa: N802  (gRPC method name)
        self, request: Any, context: Context
    ) -> admin_pb2.StatusResponse:
        await self._admit(request, context)
        return await self._off_loop(self._status)

    def _status(self) -> admin_pb2.StatusResponse:
        snap, cfg = self._c.recent_snapshot(), self._c.config
        fresh = [h for h in snap.hosts.values() if is_fresh(h.last_report_at, snap.now, cfg.policy)]
        # A stale agent's last readings are not "now" (rpc.stale_telemetry): its VMs
        # count neither as contended nor in the cluster's steal.
        fresh_names = {h.name for h in fresh}
        current = [v for v in snap.vms.values() if v.host in fresh_names]
        # The migrations as the journal has them now, timed by the clock, not by the
        # snapshot: that may be a tick older than these records.
        open_, now = self._c.journal.open_migrations(), self._c.clock.now()
        # Admitted and journaled, but not yet capped and detaching.
        queued = sum(1 for r in open_ if r.state is State.PLANNED)
        detached = [
            now - r.detached_at for r in open_ if r.detached_at and r.state is not State.PLANNED
        ]
        pause = self._c.pause
        return admin_pb2.StatusResponse(
            hosts_total=len(snap.hosts),
            hosts_up=sum(1 for h in snap.hosts.values() if h.up and h.enabled),
            hosts_stale=len(snap.hosts) - len(fresh),
            vms_total=len(snap.vms),
            vms_contended=sum(1 for v in current if is_contended(v, cfg.policy)),
            migrations_running=len(open_) - queued,
            migrations_queued=queued,
            paused=pause.paused,
            paused_reason=pause.reason,
            paused_by=pause.who,
            paused_unix_ns=int(pause.at * 1e9),
            migrations_detached_overdue=sum(1 for d in detached if d > cfg.workflow.max_detached_s),
            detached_seconds_max=max(detached, default=0.0),
            migrations_retrying=sum(1 for r in open_ if r.retry_at > now),
            vms_parked=sum(1 for v in snap.vms.values() if v.quarantined_until > snap.now),
            leader=self._c.leadership.is_leader(),
            leader_identity=getattr(self._c.leadership, "identity", ""),
            cluster_steal=mean_steal(current),
            bandwidth_in_use_mib_s=granted_mib_s(open_),
            bandwidth_budget_mib_s=cfg.limits.bandwidth_budget_mib_s,
            snapshot_unix_ns=int(snap.now * 1e9),
            version=VERSION,
        )

    async def ListHosts(  # noqa: N802  (gRPC method name)
        self, request: Any, context: Context
    ) -> admin_pb2.ListHostsResponse:
        await self._admit(request, context)

        def build() -> tuple[list[Host], Callable[[Any], Message]]:
            snap, policy = self._c.recent_snapshot(), self._c.config.policy
            hosts = [h for h in snap.hosts.values() if request.availability_zone in ("", h.az)]
            vms_on: dict[str, list[Vm]] = {}
            for vm in snap.vms.values():  # once, not once per host: 10,000 hosts × 400,000 VMs
                vms_on.setdefault(vm.host, []).append(vm)
            hosts.sort(key=lambda h: h.name)
            return hosts, lambda h: rpc.host_view(h, vms_on.get(h.name, []), snap.now, policy)

        page = await self._page("hosts", request, context, build)
        return admin_pb2.ListHostsResponse(
            hosts=page.views, next_page_token=page.next_page_token, total_size=page.total_size
        )

    async def ListVms(  # noqa: N802  (gRPC method name)
        self, request: Any, context: Context
    ) -> admin_pb2.ListVmsResponse:
        await self._admit(request, context)

        def build() -> tuple[list[Vm], Callable[[Any], Message]]:
            snap, policy = self._c.recent_snapshot(), self._c.config.policy
            vms = [v for v in snap.vms.values() if _matches(v, request, snap)]
            # The UUID breaks ties: two listings of the same snapshot list alike.
            keys: dict[str, Callable[[Vm], tuple[Any, str]]] = {
                "load": lambda v: (-v.metrics.load, v.uuid),
                "name": lambda v: (v.name, v.uuid),
            }
            vms.sort(key=keys.get(request.sort_by, lambda v: (-v.metrics.steal, v.uuid)))
            return vms[: request.limit or None], lambda v: rpc.vm_view(v, snap, policy)

        page = await self._page("vms", request, context, build)
        return admin_pb2.ListVmsResponse(
            vms=page.views, next_page_token=page.next_page_token, total_size=page.total_size
        )

    async def ListMigrations(  # noqa: N802  (gRPC method name)
        self, request: Any, context: Context
    ) -> admin_pb2.ListMigrationsResponse:
        await self._admit(request, context)
        journal = self._c.journal

        def build() -> tuple[list[str], Callable[[Any], Message | None]]:
            records = (
                journal.open_migrations()
                if request.running_only
                else journal.history(limit=request.limit)
            )
            # Newest first with the id breaking ties; only ids are pinned (a listing of
            # 100,000 records would hold them all), each page reads its rows back.
            records.sort(key=lambda r: (-r.created_at, r.id))
            ids = [r.id for r in records[: request.limit or None]]
            return ids, lambda i: _migration_view(journal.get(i), self._c.clock.now())

        page = await self._page("migrations", request, context, build)
        return admin_pb2.ListMigrationsResponse(
            migrations=page.views, next_page_token=page.next_page_token, total_size=page.total_size
        )

    async def PreviewPlan(  # noqa: N802  (gRPC method name)
        self, request: Any, context: Context
    ) -> admin_pb2.PlanResponse:
        await self._admit(request, context)
        return await self._off_loop(self._preview)

    def _preview(self) -> admin_pb2.PlanResponse:
        return rpc.plan_response(plan(self._c.snapshot(), self._c.config), self._c.pause.paused)

    async def Explain(  # noqa: N802  (gRPC method name)
        self, request: Any, context: Context
    ) -> admin_pb2.ExplainResponse:
        await self._admit(request, context)
        snap = await self._off_loop(self._c.snapshot)
        vm = await self._find(snap, request.vm, context)
        return await self._off_loop(
            lambda: rpc.explain_response(
                vm,
                vm.uuid,
                explain(snap, self._c.config, vm.uuid),
                self._c.journal.history(limit=20, vm_uuid=vm.uuid),
            )
        )

    async def Migrate(  # noqa: N802  (gRPC method name)
        self, request: Any, context: Context
    ) -> admin_pb2.MigrateResponse:
        await self._admit(request, context)
        # Only to find the VM: migrate_now decides on a fresh snapshot of its own.
        vm = await self._find(await self._off_loop(self._c.recent_snapshot), request.vm, context)
        outcome = await self._c.migrate_now(vm.uuid, request.target_host or None, request.force)
        if isinstance(outcome, Skipped):
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, outcome.reason)
            raise AssertionError("unreachable")  # abort raises
        return admin_pb2.MigrateResponse(
            migration_id=outcome.id,
            target=outcome.target,
            message=f"migration {outcome.id} started",
        )

    async def Pause(  # noqa: N802  (gRPC method name)
        self, request: Any, context: Context
    ) -> admin_pb2.PauseResponse:
        await self._admit(request, context)
        who = request.who or context.peer()
        state = PauseState(True, request.reason or "paused by operator", who, self._c.clock.now())
        await asyncio.to_thread(self._c.set_pause, state)
        return admin_pb2.PauseResponse(paused=True)

    async def Resume(  # noqa: N802  (gRPC method name)
        self, request: Any, context: Context
    ) -> admin_pb2.PauseResponse:
        await self._admit(request, context)
        state = PauseState(False, "", context.peer(), self._c.clock.now())
        await asyncio.to_thread(self._c.set_pause, state)
        return admin_pb2.PauseResponse(paused=False)

    def _projects_of(self, vms: list[Vm]) -> dict[str, str]:
        """The owning project of each of these VMs, as Nova's inventory gives it: what
        tells two VMs of the same name apart for an operator."""
        wanted = {vm.uuid for vm in vms}
        servers = self._c.inventory.servers
        return {s.uuid: s.project_id for s in servers if s.uuid in wanted and s.project_id}

    async def _find(self, snap: ClusterSnapshot, key: str, context: Context) -> Vm:
        """The VM with UUID `key`, else the one VM named `key`; names are not unique
        (two projects may both have a db-1), so a shared name is refused, never guessed."""
        vm = snap.vms.get(key)
        if vm is not None:
            return vm
        named = await self._off_loop(lambda: named_vms(snap, key))
        if len(named) == 1:
            return named[0]
        if named:
            projects = await self._off_loop(lambda: self._projects_of(named[:_CANDIDATES_SHOWN]))
            refusal = ambiguous(key, named, snap, projects)
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, refusal)
        await context.abort(grpc.StatusCode.NOT_FOUND, f"no VM {key!r}")
        raise AssertionError("unreachable")  # abort raises


_CANDIDATES_SHOWN = 10


def named_vms(snap: ClusterSnapshot, name: str) -> list[Vm]:
    """The VMs called `name`, by UUID (a scan of every VM: 400,000 at scale)."""
    return sorted((v for v in snap.vms.values() if v.name == name), key=lambda v: v.uuid)


def ambiguous(name: str, vms: list[Vm], snap: ClusterSnapshot, projects: Mapping[str, str]) -> str:
    """The refusal of a shared name: the candidates, so the operator can pick a UUID."""
    candidates = []
    for vm in vms[:_CANDIDATES_SHOWN]:
        host = snap.hosts.get(vm.host)
        az = f", {host.az}" if host else ""
        project = f", project {projects[vm.uuid]}" if vm.uuid in projects else ""
        candidates.append(f"{vm.uuid} ({vm.name!r} on {vm.host}{az}{project})")
    if len(vms) > _CANDIDATES_SHOWN:
        candidates.append(f"and {len(vms) - _CANDIDATES_SHOWN} more")
    return f"{len(vms)} VMs are named {name!r}; give the UUID of one: " + "; ".join(candidates)


def _migration_view(record: MigrationRecord | None, now: float) -> admin_pb2.MigrationView | None:
    return rpc.migration_view(record, now) if record is not None else None


def _matches(vm: Vm, request: Any, snap: ClusterSnapshot) -> bool:
    host = snap.hosts.get(vm.host)
    az = host.az if host else ""
    return (
        request.host in ("", vm.host)
        and request.availability_zone in ("", az)
        and request.role in ("", vm.role)
    )
