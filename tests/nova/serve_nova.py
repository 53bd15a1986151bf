"""A real Nova in one process, served over HTTP on loopback, for the `nova` tests.

Run with the Nova virtualenv's python (tests/setup/40-nova.sh), never ours:

    /opt/stealbalancer/nova-venv/bin/python tests/nova/serve_nova.py \
        --compute az1:host-a --compute az1:host-b --compute az2:host-c [--max-limit N]

It borrows Nova's functional-test base class, which builds API + conductor +
scheduler + placement with sqlite and the in-process `fake://` transport, starts one
fake-driver compute per `--compute`, puts the computes in aggregates that carry their
availability zone, and serves the real api-paste pipeline with a threaded wsgiref
server. It prints `PORT <n>` on stdout once ready and runs until stdin closes, so a
test fixture that dies cannot leave it behind.

The computes use `fake.FakeLiveMigrateDriver`: a live migration takes ~5 s unless it
is aborted, so MIGRATING is observable and abort really cancels it.
"""

# mypy: ignore-errors
# (runs in the Nova virtualenv: nova and fixtures are not installed in ours)
from __future__ import annotations

import os

# Native threads instead of eventlet: the wsgiref server and Nova's services then
# share one ordinary threading model. Must be set before the first nova import.
os.environ.setdefault("OS_NOVA_DISABLE_EVENTLET_PATCHING", "1")

import nova.tests.functional  # noqa: F401  (first nova import: it sets up the test env)

# isort: split

import argparse
import socketserver
import sys
import sysconfig
import threading
import warnings
from pathlib import Path
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import fixtures
from nova import context as nova_context
from nova import objects
from nova.tests import fixtures as nova_fixtures
from nova.tests.functional import integrated_helpers

PROJECT_ID = nova_fixtures.OSAPIFixture().project_id


class _QuietWarnings(fixtures.Fixture):
    """Stands in for Nova's WarningsFixture, which turns some deprecations into
    errors (and so HTTP 500s) that say nothing about the behaviour under test."""


class _Handler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


def _auth_shim(app):
    """The noauth pipeline is gone: give every request the identity the stubbed
    keystone context reads (an admin of the fixture's project)."""

    def wrapped(environ, start_response):
        environ.setdefault("HTTP_X_AUTH_USER", "admin")
        environ.setdefault("HTTP_X_AUTH_PROJECT_ID", PROJECT_ID)
        environ.setdefault("HTTP_X_ROLES", "reader,member,admin")
        return app(environ, start_response)

    return wrapped


class _Cloud(integrated_helpers.ProviderUsageBaseTestCase):
    compute_driver = "fake.FakeLiveMigrateDriver"

    def runTest(self) -> None:  # unittest needs a test method to construct the case
        pass

    def build(self, computes: list[tuple[str, str]], max_limit: int) -> None:
        paste = Path(sysconfig.get_path("data")) / "etc" / "nova" / "api-paste.ini"
        self.flags(api_paste_config=str(paste), group="wsgi")
        self.flags(max_limit=max_limit, group="api")
        # Tests boot many servers in one session-scoped cloud.
        for resource in ("instances", "cores", "ram", "server_groups", "server_group_members"):
            self.flags(**{resource: -1}, group="quota")
        self.setUp()
        zones: dict[str, list[str]] = {}
        for az, host in computes:
            self._start_compute(host)
            zones.setdefault(az, []).append(host)
        for az, hosts in zones.items():
            agg = self.admin_api.post_aggregate(
                {"aggregate": {"name": f"agg-{az}", "availability_zone": az}}
            )
            for host in hosts:
                self.admin_api.add_host_to_aggregate(agg["id"], host)

    def serve(self) -> WSGIServer:
        server = make_server(
            "127.0.0.1", 0, _auth_shim(self.api_fixture.app()), _ThreadingServer, _Handler
        )
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server


def _parse() -> tuple[list[tuple[str, str]], int]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--compute", action="append", default=[], help="AZ:HOST")
    # Nova's default is 1000; a small one makes a few hosts span several pages. Also
    # from the environment, so a test can set it through the shared process launcher.
    limit = int(os.environ.get("STEALBALANCER_NOVA_MAX_LIMIT", "1000"))
    parser.add_argument("--max-limit", type=int, default=limit, help="[api] max_limit")
    args = parser.parse_args()
    computes = []
    for spec in args.compute:
        az, _, host = spec.partition(":")
        computes.append((az, host))
    return computes, args.max_limit


def main() -> None:
    warnings.simplefilter("ignore")
    nova_fixtures.WarningsFixture = _QuietWarnings
    objects.register_all()
    cloud = _Cloud()
    cloud.build(*_parse())
    server = cloud.serve()
    nova_context.get_admin_context()
    print(f"PORT {server.server_address[1]}", flush=True)
    sys.stdin.read()  # until the parent closes our stdin (or dies)
    server.shutdown()
    os._exit(0)  # Nova's service threads are not daemons; the fixtures need no cleanup


if __name__ == "__main__":
    main()
