"""Every configured change feed, and what the sync engine asks of them (FeedHealth).

A feed listens only while this replica is active (the runtime's gate is set): a standby refuses Vault's
connection, so Vault reconnects (at its next record) until it reaches the active replica, the one that
acts on records. Losing the active role closes the listener and its connections.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from rotor.config import ChangeFeed, VaultConnection
from rotor.engines.changefeed.listener import FeedListener
from rotor.engines.changefeed.state import FeedState
from rotor.engines.changefeed.worker import FeedWorker
from rotor.engines.ports import Sources, SourceView

log = logging.getLogger("rotor.changefeed")

_TICK = 0.5  # seconds: how soon the listener follows the gate, and the up gauge follows idleness
_RETRY_BIND = 10.0  # seconds between attempts to listen on an address in use


@dataclass
class _Feed:
    config: ChangeFeed
    state: FeedState
    listener: FeedListener
    worker: FeedWorker
    bind_failed_at: float = float("-inf")
    vouched: float | None = None  # what healthy_since said at the last tick


def _host_port(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host.strip("[]"), int(port)


class ChangeFeeds:
    """The change feeds of the Vault connections that opted in (`change_feed`); none is fine."""

    def __init__(self, feeds: Mapping[str, _Feed], *, gate: asyncio.Event | None = None,
                 clock: Callable[[], float] = time.monotonic, on_gap: Callable[[str], None] | None = None) -> None:
        """ON_GAP(connection): the feed stopped vouching for changes it had vouched for (an outage, or
        records lost); the sync engine brings the sources whose timers waited on it back to their own."""
        self.feeds, self.gate, self.clock, self.on_gap = dict(feeds), gate, clock, on_gap
        self._tasks: list[asyncio.Task[None]] = []

    @classmethod
    def build(cls, connections: Mapping[str, VaultConnection], sources: Sources,
              listing: Callable[[], Iterable[SourceView]], *, gate: asyncio.Event | None = None,
              clock: Callable[[], float] = time.monotonic, on_gap: Callable[[str], None] | None = None
              ) -> ChangeFeeds:
        """Feeds for CONNECTIONS; raises ValueError for two feeds on one address or an unusable token file."""
        feeds: dict[str, _Feed] = {}
        seen: dict[tuple[str, int], str] = {}
        for name, connection in connections.items():
            config = connection.change_feed
            if config is None:
                continue
            host, port = _host_port(config.listen)
            if port > 65535:
                raise ValueError(f"vault_connections.{name}.change_feed.listen: no port {port}")
            if port and (host, port) in seen:
                raise ValueError(f"vault_connections.{name}.change_feed.listen: {config.listen} is also the "
                                 f"change feed of {seen[host, port]!r}; each connection needs its own port")
            seen[host, port] = name
            token = b""
            if config.token_file is not None:
                try:
                    token = config.token_file.read_bytes().strip()
                except OSError as err:
                    raise ValueError(f"vault_connections.{name}.change_feed.token_file: {err.strerror}") from None
                if not token:
                    raise ValueError(f"vault_connections.{name}.change_feed.token_file is empty")
            state = FeedState(name, config.idle_seconds)
            worker = FeedWorker(state, sources, listing, namespace=connection.namespace,
                                quiet=config.debounce_seconds, max_wait=5 * config.debounce_seconds, gate=gate,
                                clock=clock)
            listener = FeedListener(state, worker.offer, host=host, port=port, token=token,
                                    allowed=[ipaddress.ip_network(c, strict=False) for c in config.allowed_sources],
                                    buffer_bytes=config.buffer_bytes, clock=clock)
            if not config.allowed_sources and not token:
                log.warning("change feed of Vault connection %s accepts any peer on %s: set allowed_sources and a "
                            "token_file (docs/secretsource.md)", name, config.listen)
            feeds[name] = _Feed(config, state, listener, worker)
        return cls(feeds, gate=gate, clock=clock, on_gap=on_gap)

    # -- what the sync engine asks (FeedHealth) -------------------------------------------------------

    def healthy_since(self, connection: str) -> float | None:
        """Since when (time.monotonic) CONNECTION's feed has seen every change record; None while it cannot
        say (no feed, no Vault connected, records dropped, a refused stream, or silence past idle_seconds)."""
        feed = self.feeds.get(connection)
        return None if feed is None else feed.state.healthy(self.clock())

    def healthy_interval(self, connection: str) -> float | None:
        """The backstop refresh interval of CONNECTION's sources while its feed is healthy (None: no feed)."""
        feed = self.feeds.get(connection)
        return None if feed is None else feed.config.healthy_interval_seconds

    def wants_record(self, connection: str) -> bool:
        """True while CONNECTION's feed has heard no record for half its idle_seconds (FeedHealth)."""
        feed = self.feeds.get(connection)
        return feed is not None and self.clock() - feed.state.last_activity > feed.config.idle_seconds / 2

    def port(self, connection: str) -> int | None:
        """The port CONNECTION's feed listens on now (None: not listening)."""
        feed = self.feeds.get(connection)
        return feed.listener.bound_port if feed is not None and feed.listener.listening else None

    # -- lifecycle ------------------------------------------------------------------------------------

    def start(self) -> None:
        if not self.feeds:
            return
        self._tasks = [asyncio.create_task(feed.worker.run(), name=f"rotor-changefeed-worker-{name}")
                       for name, feed in self.feeds.items()]
        self._tasks.append(asyncio.create_task(self._follow_gate(), name="rotor-changefeed"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        for feed in self.feeds.values():
            await feed.listener.stop()

    async def _follow_gate(self) -> None:
        while True:
            active = self.gate is None or self.gate.is_set()
            for name, feed in self.feeds.items():
                try:
                    if active and not feed.listener.listening:
                        await self._listen(name, feed)
                    elif not active and feed.listener.listening:
                        log.info("change feed of Vault connection %s: standing by, not listening", name)
                        await feed.listener.stop()
                    self._watch_health(name, feed)
                except Exception:
                    log.exception("change feed of Vault connection %s: unexpected error", name)
            await asyncio.sleep(_TICK)

    def _watch_health(self, name: str, feed: _Feed) -> None:
        """Keeps rotor_changefeed_up and its log current; calls on_gap when the feed stops vouching for
        a time it vouched for (down, or its vouching point moved on: a record may be lost)."""
        vouched, feed.vouched = feed.vouched, feed.state.healthy(self.clock())
        if vouched is not None and (feed.vouched is None or feed.vouched > vouched) and self.on_gap is not None:
            self.on_gap(name)

    async def _listen(self, name: str, feed: _Feed) -> None:
        now = self.clock()
        if now - feed.bind_failed_at < _RETRY_BIND:
            return
        try:
            await feed.listener.start()
        except OSError as err:
            feed.bind_failed_at = now
            log.error("change feed of Vault connection %s cannot listen on %s: %s (retrying every %.0fs)", name,
                      feed.config.listen, err.strerror or err, _RETRY_BIND)
            return
        log.info("change feed of Vault connection %s listening on %s:%d", name, feed.listener.host,
                 feed.listener.bound_port)
