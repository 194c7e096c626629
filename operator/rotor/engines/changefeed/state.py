"""What one change feed knows of its stream: open connections, and the moments it may have lost a record.

The listener and the worker report into it; planning.changefeed.healthy_since turns it into the answer
the sync engine asks for. Every time is monotonic seconds.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from rotor.observability.metrics import FEED_CONNECTIONS, FEED_FALLBACKS, FEED_RECORDS, FEED_UP
from rotor.planning.changefeed import healthy_since

log = logging.getLogger("rotor.changefeed")

_DROP_LOG_EVERY = 60.0  # seconds: a feed that keeps falling behind says so once a minute, not per chunk


@dataclass
class FeedState:
    connection: str
    idle: float
    connections: int = 0
    refused: int = 0  # open connections whose stream was refused (raw values, not JSON)
    since: float | None = None
    last_activity: float = 0.0
    vouching: bool = False  # what healthy() said last: transitions are logged and counted
    _unlogged_drops: int = 0
    _drop_logged: float = float("-inf")

    def healthy(self, now: float) -> float | None:
        """planning.changefeed.healthy_since of this feed now; also keeps rotor_changefeed_up current."""
        found = healthy_since(connections=self.connections, since=self.since, refused=bool(self.refused),
                              last_activity=self.last_activity, now=now, idle=self.idle)
        if found is None and self.vouching:
            self._fallback("idle", f"no audit record for {self.idle:.0f}s (a disabled device stays connected "
                           "and silent)")
        elif found is not None and not self.vouching:
            log.info("change feed of Vault connection %s: receiving the audit stream; a KV change now syncs "
                     "the SecretSources reading it at once", self.connection)
            self.vouching = True
        FEED_UP.labels(self.connection).set(1 if found is not None else 0)
        return found

    def connected(self, now: float) -> None:
        self.connections += 1
        FEED_CONNECTIONS.labels(self.connection).set(self.connections)
        if self.connections == 1:
            self.since = now
        self.last_activity = now

    def lost(self, now: float, *, refused: bool) -> None:
        """A connection closed: an audit entry in flight may be lost (Vault's docs say so)."""
        self.connections -= 1
        self.refused -= int(refused)
        FEED_CONNECTIONS.labels(self.connection).set(self.connections)
        self.since = now if self.connections else None
        self._fallback("disconnected", "the audit device's connection closed")

    def refuse(self, why: str) -> None:
        self.refused += 1
        self._fallback("refused", why)

    def heard(self, now: float) -> None:
        self.last_activity = now

    def dropped(self, now: float, records: int) -> None:
        """RECORDS were lost before they were read (the buffer was full, or a line too long)."""
        FEED_RECORDS.labels(self.connection, "dropped").inc(records)
        FEED_FALLBACKS.labels(self.connection, "dropped").inc()
        self.since = now  # only reads from now on are vouched for
        self._unlogged_drops += records
        if now - self._drop_logged >= _DROP_LOG_EVERY:
            log.warning("change feed of Vault connection %s fell behind and dropped %d audit records; SecretSources "
                        "read before now fall back to polling at their own interval", self.connection,
                        self._unlogged_drops)
            self._drop_logged, self._unlogged_drops = now, 0

    def _fallback(self, reason: str, why: str) -> None:
        FEED_FALLBACKS.labels(self.connection, reason).inc()
        if self.vouching:
            log.warning("change feed of Vault connection %s: %s; SecretSources fall back to polling at their own "
                        "interval until the feed is whole again", self.connection, why)
        self.vouching = False
        FEED_UP.labels(self.connection).set(0)
