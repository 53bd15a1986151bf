"""The coordinator's HTTP port (`service.metrics_listen`): `/metrics` for Prometheus
and `/readyz` for the Kubernetes readiness probe.

`/readyz` answers 200 "ready" while the replica can do its job, else 503 with the
reason on one line: "starting" until the service is up, then whatever the readiness
check says (the journal cannot be read or written: `preflight.journal_problem`).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

from coordinator.config import ConfigError
from coordinator.service.preflight import listen_address


class Readiness:
    """What /readyz reports; the service swaps the check in once it is up."""

    def __init__(self) -> None:
        self.check: Callable[[], str] = lambda: "starting"

    def __call__(self) -> str:
        try:
            return self.check()
        except Exception as exc:  # a probe answers; it never takes the HTTP thread down
            return f"readiness check failed: {exc}"


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Probes every few seconds would flood stderr."""


def start_endpoints(listen: str, registry: CollectorRegistry, readiness: Readiness) -> WSGIServer:
    """Serve /metrics and /readyz on `listen` (host:port) from a daemon thread."""
    host, port = listen_address("service.metrics_listen", listen)
    metrics = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != "/readyz":
            return metrics(environ, start_response)  # type: ignore[no-any-return]  # untyped WSGI app
        problem = readiness()
        status = "503 Service Unavailable" if problem else "200 OK"
        start_response(status, [("Content-Type", "text/plain; charset=utf-8")])
        return [(problem or "ready").encode() + b"\n"]

    server_class = _Server6 if ":" in host else _Server
    try:
        server = make_server(host, port, app, server_class, handler_class=_Quiet)
    except (OSError, OverflowError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ConfigError(f"service.metrics_listen: cannot listen on {listen}: {reason}") from None
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    return server
