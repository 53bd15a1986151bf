"""The pinned listings behind the Admin API's pages (coordinator/service/paging.py),
with a fake clock: pages neither repeat nor skip, and what is pinned stays bounded."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest

from coordinator.api.v1 import admin_pb2
from coordinator.service import paging
from coordinator.service.paging import BadPageToken, ListingGone, Listings


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def hosts(count: int, name_length: int = 8) -> Callable[[], tuple[Sequence[Any], Any]]:
    names = [f"{i:0{name_length}d}" for i in range(count)]
    return lambda: (names, lambda n: admin_pb2.HostView(name=n))


def everything(listings: Listings, count: int, page_size: int = 0, **kw: int) -> list[str]:
    seen: list[str] = []
    token = ""
    while True:
        page = listings.page("hosts", token, page_size, hosts(count, **kw))
        seen += [v.name for v in page.views]
        assert page.total_size == count
        token = page.next_page_token
        if not token:
            return seen


def test_pages_cover_the_listing_once_in_order() -> None:
    listings = Listings(4 * 1024 * 1024)
    assert everything(listings, 2500) == [f"{i:08d}" for i in range(2500)]
    assert everything(listings, 10, page_size=3) == [f"{i:08d}" for i in range(10)]


def test_a_page_stops_at_the_byte_budget() -> None:
    listings = Listings(64 * 1024)  # 32 KiB a page
    first = listings.page("hosts", "", 0, hosts(1000, name_length=200))
    assert 100 < len(first.views) < 200 and first.next_page_token
    assert len(everything(listings, 1000, name_length=200)) == 1000


def test_a_token_expires_after_its_ttl() -> None:
    clock = Clock()
    listings = Listings(4 * 1024 * 1024, clock)
    token = listings.page("hosts", "", 2, hosts(5)).next_page_token
    clock.now = paging.TTL_S - 1
    token = listings.page("hosts", token, 2, hosts(5)).next_page_token  # use renews it
    clock.now += paging.TTL_S + 1
    with pytest.raises(ListingGone):
        listings.page("hosts", token, 2, hosts(5))


def test_pinned_items_are_bounded_and_the_newest_listing_stays(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(paging, "MAX_PINNED_ITEMS", 100)
    listings = Listings(4 * 1024 * 1024)
    old = listings.page("hosts", "", 1, hosts(60)).next_page_token
    big = listings.page("hosts", "", 1, hosts(500)).next_page_token  # alone over the bound
    with pytest.raises(ListingGone):
        listings.page("hosts", old, 1, hosts(60))
    assert listings.page("hosts", big, 1, hosts(500)).views[0].name == f"{1:08d}"


def test_at_most_max_listings_are_pinned() -> None:
    listings = Listings(4 * 1024 * 1024)
    tokens = [listings.page("hosts", "", 1, hosts(5)).next_page_token for _ in range(20)]
    with pytest.raises(ListingGone):
        listings.page("hosts", tokens[0], 1, hosts(5))
    assert listings.page("hosts", tokens[-1], 1, hosts(5)).views


@pytest.mark.parametrize(
    "token",
    [
        pytest.param("garbage", id="garbage"),
        pytest.param("vms." + "0" * 32 + ".1", id="other-kind"),
        pytest.param("hosts." + "0" * 32 + ".-1", id="negative"),
        pytest.param("hosts." + "0" * 32 + ".1\n", id="newline"),
    ],
)
def test_tokens_that_were_never_ours(token: str) -> None:
    with pytest.raises(BadPageToken):
        Listings(4 * 1024 * 1024).page("hosts", token, 1, hosts(5))


def test_an_offset_past_the_listing_is_refused() -> None:
    listings = Listings(4 * 1024 * 1024)
    token = listings.page("hosts", "", 1, hosts(5)).next_page_token
    kind, listing, _ = token.split(".")
    with pytest.raises(BadPageToken):
        listings.page("hosts", f"{kind}.{listing}.99", 1, hosts(5))
