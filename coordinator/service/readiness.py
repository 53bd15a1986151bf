"""The HTTP port: Prometheus `/metrics` and the readiness check `/readyz`.

Only the leader is Ready. Kubernetes routes a Service only to Ready pods, so with two
replicas every agent stream and every admin call reaches the one coordinator that acts:
it sees every hypervisor, its bandwidth-cap commands find the host's stream, and a
pause lands where it matters. A follower keeps its inventory warm and becomes Ready
the moment it wins the Lease. Liveness stays on `/metrics`: a follower is alive.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

# (ready, why): the reason is the probe's body, for `kubectl describe` and operators.
Check = Callable[[], tuple[bool, str]]


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Probes every few seconds would flood the log; structlog has what matters."""


def serve_http(listen: str, registry: CollectorRegistry, ready: Check) -> WSGIServer:
    """Serve `/readyz` and the metrics on `listen` (host:port) in a daemon thread."""
    metrics = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != "/readyz":
            return metrics(environ, start_response)  # type: ignore[no-any-return]  # untyped
        ok, why = ready()
        status = "200 OK" if ok else "503 Service Unavailable"
        start_response(status, [("Content-Type", "text/plain; charset=utf-8")])
        return [why.encode() + b"\n"]

    host, _, port = listen.rpartition(":")
    server = make_server(host or "127.0.0.1", int(port), app, _Server, _Quiet)
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    return server


def leader_ready(is_leader: Callable[[], bool], started: threading.Event) -> Check:
    """Ready once the gRPC ports listen, and only while this replica leads."""

    def check() -> tuple[bool, str]:
        if not started.is_set():
            return False, "starting"
        if not is_leader():
            return False, "follower: not the leader"
        return True, "leader"

    return check
