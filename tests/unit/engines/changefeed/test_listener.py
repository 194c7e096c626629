"""FeedListener over real localhost TCP: what it keeps, what it refuses, and that it never holds Vault back."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from rotor.engines.changefeed import listener as listener_module
from rotor.engines.changefeed.listener import MAX_LINE, FeedListener
from rotor.engines.changefeed.state import FeedState
from rotor.planning.changefeed import Change

from .records import read, write

Client = tuple[asyncio.StreamReader, asyncio.StreamWriter]


def _run(test: Callable[[FeedListener, list[Change]], Awaitable[None]], **kwargs: Any) -> FeedListener:
    changes: list[Change] = []

    async def main() -> FeedListener:
        listener = FeedListener(FeedState("default", 300.0), changes.append, host="127.0.0.1", port=0, **kwargs)
        await listener.start()
        try:
            await test(listener, changes)
        finally:
            await listener.stop()
        return listener

    return asyncio.run(main())


async def _connect(listener: FeedListener) -> Client:
    return await asyncio.open_connection("127.0.0.1", listener.bound_port)


async def _until(check: Callable[[], object], timeout: float = 2.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.005)


def test_only_changes_reach_the_worker_also_across_chunks() -> None:
    async def test(listener: FeedListener, changes: list[Change]) -> None:
        _, writer = await _connect(listener)
        await asyncio.sleep(0.05)
        assert listener.state.connections == 0  # counted from its first record: a silent peer proves nothing
        line = write("secret/data/team-a/db") + b"\n"
        writer.write(read("secret/data/team-a/db") + b"\n" + line[:100])
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(line[100:] + read("secret/data/x") + b"\n")
        await writer.drain()
        await _until(lambda: changes)
        assert listener.state.healthy(listener.clock()) is not None
        writer.close()
        await _until(lambda: listener.state.connections == 0)
        assert listener.state.healthy(listener.clock()) is None

    _run(test)


def test_a_record_without_the_token_closes_the_connection() -> None:
    async def test(listener: FeedListener, changes: list[Change]) -> None:
        reader, writer = await _connect(listener)
        writer.write(write("secret/data/a", prefix="tok") + b"\n" + write("secret/data/b") + b"\n"
                     + write("secret/data/c", prefix="tok") + b"\n")
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 2) == b""  # closed by the listener
        assert changes == [Change("create", "secret/data/a")]

    _run(test, token=b"tok")


def test_a_raw_stream_is_refused_but_still_read_so_vault_never_blocks() -> None:
    async def test(listener: FeedListener, changes: list[Change]) -> None:
        _, writer = await _connect(listener)
        writer.write(write("secret/data/a", raw=True) + b"\n")
        await writer.drain()
        await _until(lambda: listener.state.refused == 1)
        for _ in range(200):  # ~1 MB more: it is read and discarded, never buffered
            writer.write(write("secret/data/b", raw=True) + b"\n" * 500)
        await asyncio.wait_for(writer.drain(), 2)
        assert changes == [] and listener.state.healthy(listener.clock()) is None
        assert all(not stream.chunks for stream in listener.streams)
        writer.close()
        await _until(lambda: listener.state.connections == 0)
        assert listener.state.refused == 0

    _run(test)


def test_a_peer_outside_the_allowed_sources_is_closed_at_once() -> None:
    async def test(listener: FeedListener, changes: list[Change]) -> None:
        reader, writer = await _connect(listener)
        writer.write(write("secret/data/a") + b"\n")
        assert await asyncio.wait_for(reader.read(), 2) == b""
        assert changes == [] and listener.state.connections == 0

    _run(test, allowed=[ipaddress.ip_network("10.0.0.0/8")])


def test_an_allowed_peer_is_admitted() -> None:
    listener = FeedListener(FeedState("d", 1.0), lambda c: None, host="", port=0,
                            allowed=[ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("fd00::/8")])
    assert listener.admits("127.0.0.1") and listener.admits("::ffff:127.0.0.1") and listener.admits("fd00::1")
    assert not listener.admits("10.1.2.3") and not listener.admits("garbage")


def test_falling_behind_drops_records_and_recovers_at_the_next_line() -> None:
    async def test(listener: FeedListener, changes: list[Change]) -> None:
        _, writer = await _connect(listener)
        writer.write(read("secret/data/x") + b"\n")
        await _until(lambda: listener.state.connections == 1)
        connected_at = listener.state.since
        burst = (read("secret/data/x") + b"\n") * 400  # ~1 MB at once, past a 64 KiB buffer
        writer.write(burst + write("secret/data/after") + b"\n")
        await writer.drain()
        await asyncio.sleep(0.1)
        writer.write(write("secret/data/later") + b"\n")
        await writer.drain()
        await _until(lambda: Change("create", "secret/data/later") in changes)
        assert listener.state.since is not None and connected_at is not None
        assert listener.state.since > connected_at  # reads before the drop are no longer vouched for

    _run(test, buffer_bytes=64 << 10)


def test_a_line_too_long_is_dropped_and_the_next_one_read() -> None:
    async def test(listener: FeedListener, changes: list[Change]) -> None:
        _, writer = await _connect(listener)
        writer.write(b"{" + b"x" * (MAX_LINE + 10) + b"\n" + write("secret/data/next") + b"\n")
        await writer.drain()
        await _until(lambda: changes)
        assert changes == [Change("create", "secret/data/next")]

    _run(test, buffer_bytes=8 << 20)


def test_stop_closes_every_connection() -> None:
    async def test(listener: FeedListener, changes: list[Change]) -> None:
        reader, writer = await _connect(listener)
        writer.write(read("secret/data/x") + b"\n")
        await _until(lambda: listener.state.connections == 1)
        await listener.stop()
        assert await asyncio.wait_for(reader.read(), 2) == b""
        await _until(lambda: listener.state.connections == 0)
        assert not listener.listening

    _run(test)


def test_a_silent_peer_is_closed_and_never_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(listener_module, "_FIRST_RECORD", 0.1)

    async def test(listener: FeedListener, changes: list[Change]) -> None:
        reader, _ = await _connect(listener)
        assert await asyncio.wait_for(reader.read(), 2) == b""
        assert listener.state.connections == 0 and not listener.streams

    _run(test)
