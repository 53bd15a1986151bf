"""Where the coordinator is, how to reach it, and what its failures mean to a shell.

Settings come from, in order of precedence: command-line flags, environment
(`COORDCTL_ADDRESS`, `COORDCTL_TOKEN`, `COORDCTL_CA`, ...), a config file
(`--config`, `COORDCTL_CONFIG`, or ~/.config/stealbalancer/coordctl.yaml), defaults.
The token is never taken from a flag: command lines are visible in `ps`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from enum import IntEnum
from pathlib import Path
from typing import Any, TypeVar

import grpc
import yaml

from coordinator import strict_yaml
from coordinator.api.v1 import admin_pb2_grpc

DEFAULT_ADDRESS = "127.0.0.1:50052"
DEFAULT_CONFIG = Path("~/.config/stealbalancer/coordctl.yaml")


class Exit(IntEnum):
    """coordctl's exit codes (documented in `coordctl --help`)."""

    OK = 0
    REFUSED = 1  # the coordinator understood and said no (or failed doing it)
    USAGE = 2  # bad arguments, bad config, unknown VM or host
    UNREACHABLE = 3  # nothing answered at the address, or a read timed out
    AUTH = 4  # missing or wrong token, TLS identity refused
    MAYBE_APPLIED = 5  # a change (migrate, pause, resume) got no answer in time


class CtlError(Exception):
    """A failure to report on stderr with an exit code."""

    def __init__(self, message: str, code: Exit) -> None:
        super().__init__(message)
        self.code = code


class ConfigError(ValueError):
    """A bad coordctl config file, token file or TLS setting (exit code 2)."""


@dataclass(frozen=True, slots=True)
class FileSettings:
    """The coordctl config file: every key optional."""

    address: str = ""
    token: str = ""
    token_file: str = ""
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    timeout_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Settings:
    address: str = DEFAULT_ADDRESS
    token: str = ""
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    timeout_s: float = 10.0


_FILE_KEYS = {f.name for f in fields(FileSettings)}

_ENV = {
    "address": "COORDCTL_ADDRESS",
    "token": "COORDCTL_TOKEN",
    "token_file": "COORDCTL_TOKEN_FILE",
    "ca_file": "COORDCTL_CA",
    "cert_file": "COORDCTL_CERT",
    "key_file": "COORDCTL_KEY",
}


def _load_file(path: Path | None, env: Mapping[str, str]) -> FileSettings:
    explicit = path or (Path(env["COORDCTL_CONFIG"]) if env.get("COORDCTL_CONFIG") else None)
    home = Path(env["HOME"]) if env.get("HOME") else Path.home()
    candidate = explicit or home / DEFAULT_CONFIG.relative_to("~")
    if explicit is None and not candidate.exists():
        return FileSettings()
    return _parse_file(candidate)


def _parse_file(path: Path) -> FileSettings:
    # Neither pydantic nor coordinator.config's loader: building models dominated
    # coordctl's start-up time (tests/benchmarks/bench_coordctl.py).
    try:
        data = strict_yaml.load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except strict_yaml.DuplicateKeyError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {strict_yaml.problem(exc)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings")
    problems = [_problem(key, value) for key, value in data.items()]
    if any(problems):
        raise ConfigError(f"{path}: " + "; ".join(p for p in problems if p))
    return FileSettings(**data)


def _problem(key: object, value: object) -> str:
    if key not in _FILE_KEYS:
        return f"{key}: unknown key"
    if key == "timeout_s":
        ok = isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < 1e6
        return "" if ok else f"{key}: must be a positive number"
    return "" if isinstance(value, str) else f"{key}: must be a string"


def _read_token(path: str) -> str:
    try:
        return Path(path).expanduser().read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read token file: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: the token file is not UTF-8 text") from None


def _checked_token(token: str) -> str:
    """The token without surrounding whitespace (a token file's trailing newline);
    what remains must be printable ASCII, or it could not go into a gRPC header."""
    token = token.strip()
    if not (token.isascii() and token.isprintable()):
        raise ConfigError("the admin token must be printable ASCII on one line")
    return token


def resolve(
    flags: Mapping[str, Any], env: Mapping[str, str], config: Path | None = None
) -> Settings:
    """Merge flags (None = not given), environment and file into Settings."""
    file = _load_file(config, env)

    def pick(key: str) -> str:
        for value in (flags.get(key), env.get(_ENV.get(key, "")), getattr(file, key, "")):
            if value:
                return str(value)
        return ""

    token = pick("token")
    token_file = pick("token_file")
    if token_file and not (flags.get("token") or env.get("COORDCTL_TOKEN")):
        token = _read_token(token_file)
    return Settings(
        address=pick("address") or DEFAULT_ADDRESS,
        token=_checked_token(token),
        ca_file=pick("ca_file"),
        cert_file=pick("cert_file"),
        key_file=pick("key_file"),
        timeout_s=float(flags.get("timeout_s") or file.timeout_s or 10.0),
    )


def _credentials(s: Settings) -> grpc.ChannelCredentials:
    def read(path: str) -> bytes | None:
        if not path:
            return None
        try:
            return Path(path).expanduser().read_bytes()
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None

    if bool(s.cert_file) != bool(s.key_file):
        raise ConfigError("a client certificate needs both --cert and --key")
    return grpc.ssl_channel_credentials(read(s.ca_file), read(s.key_file), read(s.cert_file))


def open_channel(s: Settings) -> grpc.Channel:
    """A channel to the admin API: TLS as soon as a CA or a client certificate is set."""
    if s.ca_file or s.cert_file:
        return grpc.secure_channel(s.address, _credentials(s))
    return grpc.insecure_channel(s.address)


_CODES = {
    grpc.StatusCode.UNAVAILABLE: Exit.UNREACHABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED: Exit.UNREACHABLE,
    grpc.StatusCode.UNAUTHENTICATED: Exit.AUTH,
    grpc.StatusCode.PERMISSION_DENIED: Exit.AUTH,
    grpc.StatusCode.NOT_FOUND: Exit.USAGE,
    grpc.StatusCode.INVALID_ARGUMENT: Exit.USAGE,
}

# Calls that change the coordinator: a deadline hit after sending one says nothing
# about whether the coordinator applied it, so it is not "unreachable" (a retry could
# start a second migration).
_MUTATING = frozenset({"Migrate", "Pause", "Resume"})

_R = TypeVar("_R")


class Admin:
    """The Admin stub with the bearer token, a deadline and errors as CtlError."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._channel = open_channel(settings)
        self._stub = admin_pb2_grpc.AdminStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def call(self, method: str, request: Any) -> Any:
        rpc: Callable[..., Any] = getattr(self._stub, method)
        metadata = (
            [("authorization", f"Bearer {self.settings.token}")] if self.settings.token else []
        )
        try:
            return rpc(request, timeout=self.settings.timeout_s, metadata=metadata)
        except grpc.RpcError as exc:
            raise self._explain(exc, method) from None

    def _explain(self, exc: grpc.RpcError, method: str) -> CtlError:
        code: grpc.StatusCode = exc.code()
        detail: str = exc.details() or code.name
        where = self.settings.address
        if code is grpc.StatusCode.DEADLINE_EXCEEDED and method in _MUTATING:
            return CtlError(
                f"no answer from {where} within {self.settings.timeout_s:g} s: the request"
                " may have been applied — check `coordctl migrations` / `coordctl status`",
                Exit.MAYBE_APPLIED,
            )
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            message = f"cannot reach the coordinator at {where}: {detail}"
        elif code is grpc.StatusCode.UNAUTHENTICATED:
            hint = "wrong token" if self.settings.token else "no token given"
            message = f"{where} refused the credentials ({hint}; set COORDCTL_TOKEN): {detail}"
        else:
            message = detail
        return CtlError(message, _CODES.get(code, Exit.REFUSED))
