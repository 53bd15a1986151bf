"""Which hypervisor an agent's client certificate names.

With mTLS on the agent port (`service.tls.ca_file`), an agent may register only as
the hypervisor its certificate was issued to: the certificate's subjectAltName DNS
names when it has any, else its subject CN. So a stolen or compromised agent on hv-a
cannot speak for hv-b. Without mTLS there is no identity to check: any client that
reaches the port may register as any host Nova lists (the coordinator says so loudly
at start-up).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

# Keys gRPC puts in a TLS peer's auth context (grpc/src/core/tsi/ssl_transport_security).
_SAN = "x509_subject_alternative_name"
_CN = "x509_common_name"


class _HasAuthContext(Protocol):
    def auth_context(self) -> Mapping[str, Sequence[bytes]]: ...


@dataclass(frozen=True, slots=True)
class PeerNames:
    """The names a verified client certificate carries."""

    san: tuple[str, ...] = ()
    cn: str = ""

    @property
    def hosts(self) -> tuple[str, ...]:
        """The hypervisor names this certificate may register as: SANs win over CN."""
        if self.san:
            return self.san
        return (self.cn,) if self.cn else ()


def peer_names(context: _HasAuthContext | Any) -> PeerNames:
    """The peer certificate's names from a gRPC servicer context (empty without TLS)."""
    auth = context.auth_context() or {}
    # gRPC lists every SAN (DNS names and IP addresses alike) as text under one key.
    san = tuple(_text(v) for v in auth.get(_SAN, ()))
    cn = next((_text(v) for v in auth.get(_CN, ())), "")
    return PeerNames(san=tuple(n for n in san if n), cn=cn)


def may_register(names: PeerNames, host: str, mtls: bool) -> bool:
    """Purely computational: may a peer with these names register as `host`?"""
    if not mtls:
        return True
    # DNS names compare without regard to case (RFC 4343).
    return host.lower() in {n.lower() for n in names.hosts}


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
