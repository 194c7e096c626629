"""ChangeFeeds: one feed per opted-in connection, listening only on the active replica, and its health."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from rotor.config import ChangeFeed, VaultConnection
from rotor.engines.changefeed import ChangeFeeds

from .harness import FakeSources, vault_source
from .records import write


def _connections(**feeds: ChangeFeed | None) -> dict[str, VaultConnection]:
    return {name: VaultConnection(address="http://127.0.0.1:8200", change_feed=feed) for name, feed in feeds.items()}


def test_only_connections_that_opt_in_get_a_feed() -> None:
    feeds = ChangeFeeds.build(_connections(default=ChangeFeed(listen="127.0.0.1:0"), other=None),
                              FakeSources(), list)
    assert set(feeds.feeds) == {"default"}
    assert feeds.healthy_interval("default") == 86400.0 and feeds.healthy_interval("other") is None
    assert feeds.healthy_since("other") is None and feeds.healthy_since("default") is None  # nothing connected


def test_two_feeds_on_one_address_or_a_bad_token_file_stop_the_start(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="each connection needs its own port"):
        ChangeFeeds.build(_connections(a=ChangeFeed(listen="0.0.0.0:9444"), b=ChangeFeed(listen="0.0.0.0:9444")),
                          FakeSources(), list)
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ValueError, match="token_file is empty"):
        ChangeFeeds.build(_connections(a=ChangeFeed(listen="0.0.0.0:1", token_file=tmp_path / "empty")),
                          FakeSources(), list)
    with pytest.raises(ValueError, match="token_file"):
        ChangeFeeds.build(_connections(a=ChangeFeed(listen="0.0.0.0:1", token_file=tmp_path / "missing")),
                          FakeSources(), list)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        ChangeFeed(listen="0.0.0.0:9444", allowed_sources=("10.0.0.0/33",))
    with pytest.raises(ValueError):
        ChangeFeed(listen="no-port")


def test_listens_while_active_and_a_change_syncs_its_readers(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("tok-123\n")
    sources = FakeSources(vault_source("a", "db", "team-a/db"))
    gate = asyncio.Event()

    async def main() -> None:
        feeds = ChangeFeeds.build(_connections(default=ChangeFeed(
            listen="127.0.0.1:0", token_file=tmp_path / "token", debounce_seconds=0.01,
            allowed_sources=("127.0.0.0/8",))), sources, sources.listing, gate=gate)
        feeds.start()
        try:
            await asyncio.sleep(0.6)
            assert feeds.port("default") is None  # standby: not listening, Vault reconnects elsewhere
            gate.set()
            await _until(lambda: feeds.port("default"))
            port = feeds.port("default")
            assert port is not None
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(write("secret/data/team-a/db", prefix="tok-123") + b"\n")
            await writer.drain()
            await _until(lambda: sources.synced)
            assert sources.synced == [("a", "db")]
            assert feeds.healthy_since("default") is not None
            gate.clear()  # lost the active role: stop listening, drop Vault's connection
            await _until(lambda: feeds.port("default") is None)
            await _until(lambda: feeds.healthy_since("default") is None)
            writer.close()
        finally:
            await feeds.stop()

    asyncio.run(main())


async def _until(check: Callable[[], object], timeout: float = 3.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.01)


def test_an_outage_or_a_gap_tells_the_sync_engine_once_per_change(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("tok-123\n")
    sources = FakeSources(vault_source("a", "db", "team-a/db"))
    gaps: list[str] = []

    async def main() -> None:
        feeds = ChangeFeeds.build(_connections(default=ChangeFeed(
            listen="127.0.0.1:0", token_file=tmp_path / "token", allowed_sources=("127.0.0.0/8",))),
            sources, sources.listing, on_gap=gaps.append)
        feeds.start()
        try:
            await _until(lambda: feeds.port("default"))
            port = feeds.port("default")
            assert port is not None
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(write("secret/data/team-a/db", prefix="tok-123") + b"\n")
            await writer.drain()
            await _until(lambda: feeds.feeds["default"].vouched is not None)
            assert gaps == []  # coming up is no gap
            feeds.feeds["default"].state.dropped(feeds.clock(), 3)  # records lost: the vouching point moves
            await _until(lambda: gaps == ["default"])
            writer.close()  # Vault's connection gone: down
            await _until(lambda: gaps == ["default", "default"])
            await asyncio.sleep(0.6)
            assert gaps == ["default", "default"]  # once per change, not per tick
        finally:
            await feeds.stop()

    asyncio.run(main())


def test_a_feed_quiet_for_half_its_idle_time_asks_for_a_record() -> None:
    now = [1000.0]
    feeds = ChangeFeeds.build(_connections(default=ChangeFeed(listen="127.0.0.1:0", idle_seconds=300)),
                              FakeSources(), list, clock=lambda: now[0])
    feeds.feeds["default"].state.connected(now[0])
    now[0] += 149
    assert not feeds.wants_record("default")
    now[0] += 2
    assert feeds.wants_record("default") and feeds.healthy_since("default") is not None  # still healthy
    feeds.feeds["default"].state.heard(now[0])
    assert not feeds.wants_record("default") and not feeds.wants_record("other")
