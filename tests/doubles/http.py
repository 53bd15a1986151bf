"""The HTTP plumbing both doubles share: a threaded loopback server whose handler
hands each request to a `route(request) -> Reply` function of the double.

HTTP/1.1 with Content-Length on every reply, because the real clients (urllib3,
requests) keep connections alive and would hang on a reply without a length.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-cased names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"null")


@dataclass(slots=True)
class Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)

    def encoded(self) -> bytes:
        if isinstance(self.body, str):
            return self.body.encode()
        return b"" if self.body is None else json.dumps(self.body).encode()

    @property
    def content_type(self) -> str:
        # Consul answers errors as plain text; everything else here is JSON.
        return "text/plain; charset=utf-8" if isinstance(self.body, str) else "application/json"


Route = Callable[[Request], Reply]


def _handler_for(route: Route) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # One buffered write per reply, and no Nagle: headers and body sent as two
        # small segments would stall each keep-alive request on a delayed ACK.
        wbufsize = 1 << 16
        disable_nagle_algorithm = True

        def _serve(self) -> None:
            split = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            request = Request(
                method=self.command,
                path=split.path,
                query={k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()},
                headers={k.lower(): v for k, v in self.headers.items()},
                body=self.rfile.read(length) if length else b"",
            )
            reply = route(request)
            payload = reply.encoded()
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(payload)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve  # noqa: N815 - http.server names

        def log_message(self, format: str, *args: Any) -> None:
            """Silenced: pytest shows captured stderr only on failure anyway."""

    return Handler


@contextmanager
def serving(route: Route) -> Iterator[str]:
    """Serve `route` on 127.0.0.1 (a free port) and yield its base URL; always shut down."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(route))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
