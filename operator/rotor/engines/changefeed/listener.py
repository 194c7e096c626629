"""The change feed's TCP listener: Vault's socket audit device connects to it and streams records.

Reading never waits on Rotor: data_received only appends a chunk to a bounded buffer (or drops it when
the buffer is full), and a task per connection reads records out of it in short slices, giving the
event loop back in between. So Vault's writes never block on a busy Rotor; a Rotor that falls behind
drops records, says so, and its sources fall back to polling (FeedState.dropped).

Only Vault may feed it: peers outside `allowed_sources` are closed at once, and with a token every
line must start with it (the device's `prefix` option) or the connection is closed. A record that gets
through anyway can only make a source read Vault as usual: it carries no value and is trusted for nothing.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import time
from collections import deque
from collections.abc import Callable, Sequence

from rotor.engines.changefeed.state import FeedState
from rotor.observability.metrics import FEED_RECORDS, FEED_REJECTED
from rotor.planning.changefeed import Change, Verdict, read_record

log = logging.getLogger("rotor.changefeed")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_LINE = 1 << 20  # bytes: longer records (huge list responses) are dropped; a KV change is far smaller
MAX_CONNECTIONS = 8  # Vault keeps one per device; more are not Vault
_SLICE = 0.005  # seconds of record reading before the event loop gets a turn (and reads the sockets)
_FIRST_RECORD = 10.0  # seconds: Vault writes as soon as it connects; a silent peer only holds a slot
_GAP = None  # in a stream's buffer: chunks were dropped here, so the line in progress is incomplete
_REFUSALS = {
    Verdict.RAW: "the stream carries values in clear (the audit device has log_raw=true); Rotor keeps only "
                 "operations and paths and refuses it: enable the device without log_raw",
    Verdict.UNREADABLE: "a record is not a JSON audit entry: the device needs format=json (the default) and, "
                        "with a token, prefix set to exactly the token",
}


class FeedListener:
    """Accepts audit-device connections for one Vault connection and hands each KV change to ON_CHANGE."""

    def __init__(self, state: FeedState, on_change: Callable[[Change], None], *, host: str, port: int,
                 allowed: Sequence[Network] = (), token: bytes = b"", buffer_bytes: int = 16 << 20,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.state, self.on_change = state, on_change
        self.host, self.port = host, port
        self.allowed, self.token, self.buffer_bytes, self.clock = tuple(allowed), token, buffer_bytes, clock
        self._server: asyncio.Server | None = None
        self.streams: set[_Stream] = set()

    @property
    def listening(self) -> bool:
        return self._server is not None

    @property
    def bound_port(self) -> int:
        """The port listened on (PORT, or the one the system picked for port 0)."""
        if self._server is None or not self._server.sockets:
            return self.port
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Stream(self), self.host or None, self.port,
                                                reuse_address=True)

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        streams = list(self.streams)
        for stream in streams:
            stream.close()
        await server.wait_closed()
        await asyncio.gather(*(s.task for s in streams if s.task is not None), return_exceptions=True)

    def admits(self, peer: str) -> bool:
        if not self.allowed:
            return True
        try:
            address = ipaddress.ip_address(peer.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.allowed)


class _Stream(asyncio.Protocol):
    """One audit-device connection: a bounded buffer filled by the event loop, drained by a task."""

    def __init__(self, listener: FeedListener) -> None:
        self.listener = listener
        self.state = listener.state
        self.transport: asyncio.Transport | None = None
        self.chunks: deque[bytes | None] = deque()
        self.buffered = 0
        self.tail = b""  # the line in progress
        self.skipping = False  # discarding up to the next newline (after a gap or a line too long)
        self.refused = False  # read and discarded, never looked at (closing would make Vault reconnect per record)
        self.discarding = False  # refused, forged or closed by Rotor: nothing more is looked at
        self.closed = False
        self.counted = False  # in FeedState.connections: from its first record with the token (a silent
        # or forged connection never makes the feed look healthy)
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.host = ""

    # -- the event loop's side: never blocks, never parses ------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        listener = self.listener
        peer = transport.get_extra_info("peername")
        host = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        reason = ("address_not_allowed" if not listener.admits(host)
                  else "too_many" if len(listener.streams) >= MAX_CONNECTIONS else None)
        if reason is not None:
            FEED_REJECTED.labels(self.state.connection, reason).inc()
            log.warning("change feed of Vault connection %s: closed a connection from %s (%s)",
                        self.state.connection, host or "an unknown address", reason.replace("_", " "))
            self.closed = self.discarding = True
            transport.abort()
            return
        _keepalive(transport.get_extra_info("socket"))
        listener.streams.add(self)
        self.host = host
        self.task = asyncio.get_running_loop().create_task(self._drain(), name=f"rotor-changefeed-{host}")

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        if self.refused:
            FEED_RECORDS.labels(self.state.connection, "refused").inc(data.count(b"\n"))
            return
        if self.buffered + len(data) > self.listener.buffer_bytes:
            # Falling behind: lose this chunk rather than slow Vault down.
            if not self.chunks or self.chunks[-1] is not _GAP:
                self.chunks.append(_GAP)
            self.state.dropped(self.listener.clock(), data.count(b"\n") or 1)
        else:
            self.chunks.append(data)
            self.buffered += len(data)
        self.wake.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.listener.streams.discard(self)
        if self.counted:
            self.counted = False
            self.state.lost(self.listener.clock(), refused=self.refused)
        self.closed = True
        self.wake.set()

    def close(self) -> None:
        self.discarding = True
        if self.transport is not None:
            self.transport.abort()

    # -- the task's side: records out of the buffer --------------------------------------------------

    async def _drain(self) -> None:
        clock = self.listener.clock
        while True:
            if self.discarding:
                self.chunks.clear()
                self.buffered = 0
            if not self.chunks:
                if self.closed:
                    return
                self.wake.clear()
                try:
                    await asyncio.wait_for(self.wake.wait(), None if self.counted else _FIRST_RECORD)
                except TimeoutError:
                    FEED_REJECTED.labels(self.state.connection, "silent").inc()
                    log.warning("change feed of Vault connection %s: closed a connection from %s that sent no "
                                "record in %.0fs", self.state.connection, self.host, _FIRST_RECORD)
                    self.close()
                continue
            started = clock()
            counts: dict[str, int] = {}
            while self.chunks and not self.discarding and clock() - started < _SLICE:
                chunk = self.chunks.popleft()
                if chunk is _GAP:
                    self.tail, self.skipping = b"", True
                    continue
                self.buffered -= len(chunk)
                try:
                    self._take(chunk, counts)
                except Exception:  # a bug must not leave the stream unread (its buffer would only fill)
                    log.exception("change feed of Vault connection %s: closing a stream after an unexpected "
                                  "error", self.state.connection)
                    self.close()
            if self.counted:  # only a stream with the token proves the device is alive
                self.state.heard(clock())
            for result, count in counts.items():
                FEED_RECORDS.labels(self.state.connection, result).inc(count)
            await asyncio.sleep(0)

    def _take(self, chunk: bytes, counts: dict[str, int]) -> None:
        if self.skipping:
            newline = chunk.find(b"\n")
            if newline < 0:
                return
            chunk, self.skipping = chunk[newline + 1:], False
        if self.tail:
            chunk, self.tail = self.tail + chunk, b""
        lines = chunk.split(b"\n")
        tail = lines.pop()
        if len(tail) > MAX_LINE:
            self.state.dropped(self.listener.clock(), 1)
            self.skipping = True
        else:
            self.tail = tail
        for line in lines:
            if len(line) > MAX_LINE:
                self.state.dropped(self.listener.clock(), 1)
            elif line:
                verdict = self._record(line)
                counts[verdict] = counts.get(verdict, 0) + 1
                if self.discarding:
                    return

    def _record(self, line: bytes) -> str:
        found = read_record(line, self.listener.token)
        if found is not Verdict.FORGED and not self.counted:
            self.counted = True
            self.state.connected(self.listener.clock())
            log.info("change feed of Vault connection %s: audit device streaming from %s", self.state.connection,
                     self.host)
        if isinstance(found, Change):
            self.listener.on_change(found)
            return "change"
        if found is Verdict.FORGED:
            FEED_REJECTED.labels(self.state.connection, "forged").inc()
            log.warning("change feed of Vault connection %s: a record without the shared token; closing the "
                        "connection (not the configured audit device, or its prefix is not the token)",
                        self.state.connection)
            self.close()
            return "forged"
        if found is not Verdict.IGNORED:
            self.refused = self.discarding = True
            log.error("change feed of Vault connection %s: stream refused: %s", self.state.connection,
                      _REFUSALS[found])
            self.state.refuse(_REFUSALS[found])
            return "refused"
        return "ignored"


def _keepalive(sock: socket.socket | None) -> None:
    """Notice a Vault that went away without closing (a dead node) within a few minutes."""
    if sock is None:
        return
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for option, value in (("TCP_KEEPIDLE", 60), ("TCP_KEEPINTVL", 15), ("TCP_KEEPCNT", 4)):
        if hasattr(socket, option):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)
