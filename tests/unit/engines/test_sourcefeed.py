"""The SecretSource feed: a listing (type None) then watch events reach the handler in order, whole; a
410 lists again and says so; a handler that raises, or an API server away, does not stop the feed."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from rotor.engines.sourcefeed import SourceFeed
from tests.fakes.kube import FakeKube

NS = "team-a"
Seen = list[tuple[str | None, str, str]]  # (type, name, spec.provider) as the handler got them


def source(name: str, namespace: str = NS, provider: str = "vault") -> dict[str, Any]:
    return {"apiVersion": "rotor.dev/v1alpha1", "kind": "SecretSource",
            "metadata": {"namespace": namespace, "name": name}, "spec": {"provider": provider}}


def feed_for(kube: FakeKube, seen: Seen, relists: list[int], *, scopes: tuple[str | None, ...] = (NS,),
             failing: str = "") -> SourceFeed:
    async def handle(event_type: str | None, body: dict[str, Any]) -> None:
        name = body["metadata"]["name"]
        if name == failing:
            raise OverflowError("a bug about this one object")
        seen.append((event_type, name, body["spec"]["provider"]))

    return SourceFeed(kube, scopes, handle=handle, relisted=lambda: relists.append(1))


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def test_a_listing_then_watch_events_reach_the_handler_in_order_whole() -> None:
    kube = FakeKube()
    kube.put("secretsources", source("a"))
    kube.put("secretsources", source("b"))
    kube.put("secretsources", source("elsewhere", namespace="team-b"))  # not this feed's scope
    seen: Seen = []
    relists: list[int] = []

    async def scenario() -> None:
        feed = feed_for(kube, seen, relists)
        feed.start()
        await asyncio.wait_for(feed.listed.wait(), 5)
        await settle()
        kube.put("secretsources", source("c"))
        kube.put("secretsources", source("c", provider="aws"))  # kubectl edit
        await kube.delete_object("secretsources", NS, "a")
        kube.put("secretsources", source("later", namespace="team-b"))
        await settle()
        await feed.stop()

    asyncio.run(scenario())
    assert seen == [(None, "a", "vault"), (None, "b", "vault"), ("ADDED", "c", "vault"), ("MODIFIED", "c", "aws"),
                    ("DELETED", "a", "vault")]
    assert relists == [], "the first list is not a re-list"


def test_an_expired_watch_lists_again_and_tells_the_relister() -> None:
    kube = FakeKube()
    kube.put("secretsources", source("a"))
    seen: Seen = []
    relists: list[int] = []

    async def scenario() -> None:
        feed = feed_for(kube, seen, relists, scopes=())  # every namespace
        feed.start()
        await asyncio.wait_for(feed.listed.wait(), 5)
        await settle()
        kube.expire_watches()  # 410 Gone: the version was compacted away
        await settle()
        kube.put("secretsources", source("after-gap", namespace="team-b"))
        await settle()
        await feed.stop()

    asyncio.run(scenario())
    assert [r[:2] for r in kube.requests] == [("list", "secretsources"), ("watch", "secretsources")] * 2
    assert seen == [(None, "a", "vault"), (None, "a", "vault"), ("ADDED", "after-gap", "vault")]
    assert relists == [1]


def test_a_handler_that_raises_on_one_source_does_not_stop_the_others(caplog: pytest.LogCaptureFixture) -> None:
    kube = FakeKube()
    kube.put("secretsources", source("bad"))
    kube.put("secretsources", source("good"))
    seen: Seen = []

    async def scenario() -> None:
        feed = feed_for(kube, seen, [], failing="bad")
        feed.start()
        await asyncio.wait_for(feed.listed.wait(), 5)
        await settle()
        kube.put("secretsources", source("bad", provider="aws"))
        kube.put("secretsources", source("new"))
        await settle()
        await feed.stop()

    with caplog.at_level(logging.ERROR, logger="rotor.engines.sourcefeed"):
        asyncio.run(scenario())
    assert seen == [(None, "good", "vault"), ("ADDED", "new", "vault")]
    assert caplog.text.count("the handler failed on SecretSource team-a/bad") == 2
    assert [r[:2] for r in kube.requests] == [("list", "secretsources"), ("watch", "secretsources")]


def test_an_api_server_away_is_listed_again_after_a_backoff() -> None:
    kube = FakeKube()
    kube.put("secretsources", source("a"))
    kube.fail("list", "secretsources", 503)
    seen: Seen = []
    relists: list[int] = []

    async def scenario() -> None:
        feed = feed_for(kube, seen, relists)
        feed.start()
        await asyncio.wait_for(feed.listed.wait(), 5)  # after the first backoff (1 s)
        await settle()
        await feed.stop()

    asyncio.run(scenario())
    assert seen == [(None, "a", "vault")]
    assert relists == [], "no list was delivered before: this one is the first"
