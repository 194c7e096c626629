"""The change feed's decisions, as plain data: what an audit record says, which sources read the paths
that changed, when a burst of changes is flushed, and whether the feed vouches for every change.

A record of Vault's socket audit device is one JSON object per line (optionally after the device's
`prefix`, which Rotor uses as a shared token). Of a record Rotor keeps only the operation and the path
of a KV change; everything else is dropped on the spot. Most records are reads (Rotor's own included),
so a few substring tests reject them before anything is parsed; the rest are walked token by token,
without building their values, to find `request.operation` and `request.path` and to check that every
value in them is HMAC'd (a device with `log_raw` would send values in clear: the stream is refused).
"""

from __future__ import annotations

import enum
import hmac
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from rotor.api import keys
from rotor.api.secretsource import SecretSourceSpec

CHANGES = frozenset({"create", "update", "patch", "delete"})  # the operations that change a KV path
KV2_SEGMENTS = frozenset({"data", "metadata", "delete", "undelete", "destroy"})  # <mount>/<segment>/<path>
HMAC_PREFIX = b"hmac-sha256:"

_CLIENT_TOKEN = b'"client_token":"'
_RESPONSE = b'"type":"response"'
_CHANGE_OP = re.compile(rb'"operation":"(?:%s)"' % b"|".join(op.encode() for op in sorted(CHANGES)))
_KV_MOUNT, _ANY_MOUNT = b'"mount_type":"kv"', b'"mount_type":'  # Vault names each request's mount type
# One JSON token, after any whitespace and commas: a string (s; a key when its colon follows, k), an
# opening (o) or closing (c) bracket, or a bare literal (b). A key carrying its colon and possessive
# quantifiers (no backtracking) keep the walk short: it runs in Python, token by token.
_TOKEN = re.compile(rb'[ \t\r\n,]*+(?:"(?P<s>[^"\\]*+(?:\\.[^"\\]*+)*+)"(?P<k>[ \t\r\n]*+:)?'
                    rb'|(?P<o>[{\[])|(?P<c>[}\]])|(?P<b>[-+.0-9A-Za-z]++))')


class Verdict(enum.Enum):
    """What a record that is not a change is."""

    IGNORED = "ignored"  # a read, a list, a request entry, a failed or non-KV write: nothing to do
    FORGED = "forged"  # does not start with the shared token: not from the configured audit device
    RAW = "raw"  # carries a value in clear (the device has log_raw): the stream is refused
    UNREADABLE = "unreadable"  # not a JSON object (format jsonx, or not an audit record): refused


@dataclass(frozen=True)
class Change:
    """A KV write, delete or metadata change: its operation and its path (with the Vault namespace)."""

    operation: str
    path: str


class _Unreadable(Exception):
    pass


@dataclass
class _Fields:
    type: bytes = b""
    error: bool = False
    operation: bytes = b""
    path: bytes = b""
    namespace: bytes = b""
    raw: bool = False


def read_record(line: bytes, token: bytes = b"") -> Change | Verdict:
    """The change LINE records, or why it is none. TOKEN: what every line must start with (the device's
    `prefix` option; empty for none), compared in constant time."""
    start = len(token)
    if token and not hmac.compare_digest(line[:start], token):
        return Verdict.FORGED
    if line[start:start + 1] != b"{":
        return Verdict.UNREADABLE
    # Every authenticated record names a client token; HMAC'd unless the device logs raw. Cheap, so
    # every record is checked, reads included (their responses would carry values).
    at = line.find(_CLIENT_TOKEN, start)
    if at >= 0 and not line.startswith(HMAC_PREFIX, at + len(_CLIENT_TOKEN)):
        return Verdict.RAW
    # Only the response entry: it is written once the change is made (the request entry comes before).
    # Of a KV mount: writes to others (logins, transit, leases) are as common as KV writes are rare.
    if (_RESPONSE not in line or _CHANGE_OP.search(line, start) is None
            or (_KV_MOUNT not in line and _ANY_MOUNT in line)):
        return Verdict.IGNORED
    try:
        fields = _walk(line, start)
    except _Unreadable:
        return Verdict.UNREADABLE
    if fields.raw:
        return Verdict.RAW
    operation = fields.operation.decode("ascii", "replace")
    if fields.type != b"response" or fields.error or operation not in CHANGES or not fields.path:
        return Verdict.IGNORED
    return Change(operation, _text(fields.namespace) + _text(fields.path))


def _text(value: bytes) -> str:
    if b"\\" in value:
        try:
            decoded: str = json.loads(b'"' + value + b'"')
            return decoded
        except ValueError:
            pass  # a bad escape: the path as written (it names no source, so costs nothing)
    return value.decode("utf-8", "replace")


def _walk(line: bytes, pos: int) -> _Fields:
    """The fields a change needs, from one JSON object, keeping no other value (values of request and
    response data are only checked to be HMAC'd)."""
    found = _Fields()
    stack: list[bytes | None] = []  # the keys the open containers are under (None: an array element)
    key: bytes | None = None  # the key whose value comes next
    while True:
        match = _TOKEN.match(line, pos)
        if match is None:
            raise _Unreadable
        pos = match.end()
        kind = match.lastgroup
        if kind == "k":
            key = match.group("s")
            continue
        if kind == "o":
            stack.append(key)
        elif kind == "c":
            if not stack:
                raise _Unreadable
            stack.pop()
            if not stack:
                if line[pos:].strip():
                    raise _Unreadable
                return found
        elif not stack:
            raise _Unreadable
        elif kind == "s":
            _value(found, stack, key, line, match)
        key = None  # an HMAC'd value or a literal: nothing to keep, nothing to check


def _value(found: _Fields, stack: list[bytes | None], key: bytes | None, line: bytes,
           match: re.Match[bytes]) -> None:
    depth = len(stack)
    if depth == 1:
        if key == b"type":
            found.type = match.group("s")
        elif key == b"error":
            found.error = True
        return
    section = stack[1]
    if depth == 2 and section == b"request" and key == b"operation":
        found.operation = match.group("s")
    elif depth == 2 and section == b"request" and key == b"path":
        found.path = match.group("s")
    elif depth == 3 and section == b"request" and stack[2] == b"namespace" and key == b"path":
        found.namespace = match.group("s")
    elif ((depth == 2 and key == b"client_token" and section in (b"request", b"auth"))
          or (depth >= 3 and section in (b"request", b"response") and stack[2] == b"data")):
        begin, end = match.span("s")
        if end > begin and not line.startswith(HMAC_PREFIX, begin):
            found.raw = True


# -- which sources read a changed path -------------------------------------------------------------

@dataclass
class Targets:
    """Changed KV paths as (mount, path) pairs: every way a record path can split into a mount and a
    path of a source (KV v1 <mount>/<path>, KV v2 <mount>/<segment>/<path>); a source matching one
    more than it should costs one read, never a write. A path ending in "/" names every path under it."""

    exact: set[tuple[str, str]] = field(default_factory=set)
    prefixes: set[tuple[str, str]] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.exact or self.prefixes)


def targets(paths: Iterable[str], namespace: str | None = None) -> Targets:
    """The (mount, path) pairs PATHS may mean, for a connection in Vault namespace NAMESPACE (records of
    other namespaces name nothing of it)."""
    found = Targets()
    scope = f"{namespace.strip('/')}/" if namespace and namespace.strip("/") else ""
    for full in paths:
        if not full.startswith(scope):
            continue
        parts = full[len(scope):].split("/")
        is_prefix = parts[-1] == ""  # "a/b/" splits into [..., "b", ""]: the last cut leaves no path
        into = found.prefixes if is_prefix else found.exact
        for cut in range(1, len(parts) - 1 if is_prefix else len(parts)):
            mount, rest = "/".join(parts[:cut]), parts[cut:]
            if rest[0]:
                into.add((mount, "/".join(rest)))
            if rest[0] in KV2_SEGMENTS and len(rest) > 1 and rest[1]:
                into.add((mount, "/".join(rest[1:])))
    return found


class Reader(Protocol):
    """A SecretSource as matching needs it (the sync engine's view of one)."""

    @property
    def namespace(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def spec(self) -> SecretSourceSpec | None: ...


def matching(sources: Iterable[Reader], connection: str, changed: Targets) -> list[tuple[str, str]]:
    """(namespace, name) of the SOURCES on CONNECTION that read a path in CHANGED. One pass over every
    source per flush (no index to go stale), so the common miss is kept to one set lookup."""
    paths = {path for _, path in changed.exact}
    prefixes = changed.prefixes
    found: list[tuple[str, str]] = []
    for source in sources:
        spec = source.spec
        vault = spec.vault if spec is not None else None
        if vault is None or vault.path is None or (vault.path not in paths and not prefixes):
            continue
        if spec is None or spec.provider != "vault" or vault.connection != connection:
            continue
        if (vault.mount, vault.path) in changed.exact or any(
                vault.mount == mount and vault.path.startswith(prefix) for mount, prefix in prefixes):
            found.append((source.namespace, source.name))
    return found


# -- timing -----------------------------------------------------------------------------------------

def flush_delay(first: float, last: float, now: float, *, quiet: float, max_wait: float) -> float:
    """Seconds until pending changes are acted on: QUIET seconds after the last one (a burst is one
    flush), but never later than MAX_WAIT after the first (a steady stream still flushes)."""
    return max(0.0, min(last + quiet, first + max_wait) - now)


def healthy_since(*, connections: int, since: float | None, refused: bool, last_activity: float, now: float,
                  idle: float) -> float | None:
    """Since when the feed has seen every change record (a monotonic time), or None while it cannot say:
    no audit device connected, a stream refused, or nothing heard for IDLE seconds (a disabled device
    leaves its connection open and silent). SINCE moves to the last moment a record may have been lost
    (a connection closed, records dropped), so only reads after it are vouched for."""
    if connections <= 0 or since is None or refused or now - last_activity > idle:
        return None
    return since


def backstop_delay(*, interval: float, last_read: float | None, now: float, healthy_since: float | None,
                   healthy_interval: float | None) -> float | None:
    """For a refresh its timer asked for (never one a change, an annotation or a spec change asked for):
    None to read the backend now; else the seconds to wait instead, because the feed has seen every change
    since LAST_READ and that read is younger than HEALTHY_INTERVAL. The wait is at most INTERVAL, so a feed
    outage meanwhile brings the source back to its own interval. Times are monotonic seconds."""
    if healthy_since is None or healthy_interval is None or last_read is None or healthy_since > last_read:
        return None
    remaining = last_read + healthy_interval - now
    return min(interval, remaining) if remaining > 0 else None


def outage_delay(*, interval: float, last_read: float, now: float, u: float, spread: float = 60.0) -> float:
    """Seconds until a source whose timer the healthy feed stretched is read, now that the feed stopped
    vouching: when its own INTERVAL after LAST_READ says; one already past that, within min(INTERVAL,
    SPREAD) seconds (U in [0, 1)), so an outage of a feed with thousands of sources does not read them
    all in the same second."""
    due = last_read + interval - now
    return due if due > 0 else u * min(interval, spread)


def feed_condition(connection: str, *, healthy: bool, healthy_interval: float) -> tuple[str, str, str]:
    """(status, reason, message) of a source's ChangeFeed condition: names the connection, never a value."""
    if healthy:
        return ("True", keys.FEED_HEALTHY, f"the change feed of Vault connection {connection} is receiving its audit "
                f"stream: a change in Vault syncs this source at once, and polling is a backstop (at most every "
                f"{healthy_interval:g}s)")
    return ("False", keys.FEED_DOWN, f"the change feed of Vault connection {connection} is down (no audit stream, or "
            "records were lost): this source is refreshed at its own interval until the feed is back")
