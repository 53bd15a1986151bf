"""Paging for the Admin API's List calls, so no answer outgrows a gRPC message.

The first call of a listing builds it whole (filtered, sorted, cut to the caller's
`limit`) and answers its first page. If more remain, the listing is pinned under a
random id and the answer carries `next_page_token` (`<kind>.<id>.<offset>`): later
pages are slices of that same pinned sequence, so a VM whose steal changed between two
pages is neither shown twice nor skipped, and a page costs only its own rendering.

Pinned listings are bounded: at most `MAX_LISTINGS` at once and `MAX_PINNED_ITEMS`
items between them (the oldest go first; the newest always stays, so one listing of
any size can be paged through), and each expires `TTL_S` after its last page. A pinned
VM listing holds the snapshot it was cut from, so the item bound is the memory bound.
A token for a listing that is gone is `ListingGone` (start again); a token that was
never ours is `BadPageToken`. Listings live in this process: with replicas, a client
must page against one of them.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message

MAX_PAGE_SIZE = 1000
"""Items per page at most, whatever the caller asks for."""
MAX_LISTINGS = 8
MAX_PINNED_ITEMS = 1_000_000
TTL_S = 300.0
# gRPC's default receive limit: a client that never raised it still takes every page.
_CLIENT_LIMIT_BYTES = 4 * 1024 * 1024
_TOKEN = re.compile(r"(?P<kind>[a-z]{1,16})\.(?P<id>[0-9a-f]{32})\.(?P<offset>[0-9]{1,9})")


class BadPageToken(ValueError):
    """A page token this server never handed out (INVALID_ARGUMENT)."""


class ListingGone(LookupError):
    """The listing a token belongs to expired or was evicted (FAILED_PRECONDITION)."""


@dataclass
class _Listing:
    kind: str
    items: Sequence[Any]
    render: Callable[[Any], Message | None]  # None: the item is gone, skip it
    expires_at: float


@dataclass(frozen=True, slots=True)
class Page:
    views: list[Any]  # the rendered messages, typed by the caller's repeated field
    next_page_token: str
    total_size: int


Builder = Callable[[], tuple[Sequence[Any], Callable[[Any], Message | None]]]


class Listings:
    """The pinned listings of one Admin service."""

    def __init__(self, max_message_bytes: int, clock: Callable[[], float] = time.monotonic):
        # Half the smaller message limit: room for the envelope and a last large item.
        self._budget = min(max_message_bytes, _CLIENT_LIMIT_BYTES) // 2
        self._clock = clock
        self._pinned: OrderedDict[str, _Listing] = OrderedDict()
        # The Admin service pages from its read threads. One listing at a time: a build
        # is a snapshot (seconds at scale), and a burst of them would only compete.
        self._lock = threading.Lock()

    def page(self, kind: str, token: str, page_size: int, build: Builder) -> Page:
        """The page `token` points at (the first one when empty) of a `kind` listing."""
        with self._lock:
            return self._page(kind, token, page_size, build)

    def _page(self, kind: str, token: str, page_size: int, build: Builder) -> Page:
        size = min(page_size or MAX_PAGE_SIZE, MAX_PAGE_SIZE)
        self._expire()
        if token:
            listing_id, offset = self._parse(kind, token)
            listing = self._pinned.pop(listing_id)
        else:
            items, render = build()
            listing_id, offset = secrets.token_hex(16), 0
            listing = _Listing(kind, items, render, 0.0)
        views, end = self._fill(listing, offset, size)
        if end >= len(listing.items):
            return Page(views, "", len(listing.items))
        listing.expires_at = self._clock() + TTL_S
        self._pinned[listing_id] = listing
        while len(self._pinned) > 1 and (
            len(self._pinned) > MAX_LISTINGS
            or sum(len(p.items) for p in self._pinned.values()) > MAX_PINNED_ITEMS
        ):
            self._pinned.popitem(last=False)
        return Page(views, f"{kind}.{listing_id}.{end}", len(listing.items))

    def _parse(self, kind: str, token: str) -> tuple[str, int]:
        match = _TOKEN.fullmatch(token)
        if match is None or match["kind"] != kind:
            raise BadPageToken(f"not a page token of this {kind} listing")
        listing = self._pinned.get(match["id"])
        if listing is None:
            raise ListingGone(f"the {kind} listing expired; list again without a page token")
        offset = int(match["offset"])
        if offset > len(listing.items):
            raise BadPageToken(f"not a page token of this {kind} listing")
        return match["id"], offset

    def _fill(self, listing: _Listing, offset: int, size: int) -> tuple[list[Message], int]:
        """Views from `offset` until `size` items or the byte budget; and where it stopped."""
        views: list[Message] = []
        used = 0
        end = offset
        for item in _slice(listing.items, offset, size):
            view = listing.render(item)
            end += 1
            if view is None:
                continue
            used += view.ByteSize() + 8  # tag and length prefix, generously
            views.append(view)
            if used >= self._budget:
                break
        return views, end

    def _expire(self) -> None:
        now = self._clock()
        for listing_id in [k for k, v in self._pinned.items() if v.expires_at <= now]:
            del self._pinned[listing_id]


def _slice(items: Sequence[Any], offset: int, size: int) -> Iterable[Any]:
    return items[offset : offset + size]
