"""The values Rotor currently holds, kept only well enough to find them in text (log masking).

Backends call remember() with every value they fetch. The registry never stores a value itself: for
each form a value can take in a log line (as text, base64 as in a Kubernetes API body, JSON-escaped,
each line of a multi-line value) it keeps a keyed digest (BLAKE2b, random per-process key) plus the
form's length and a salted hash of its first few characters, which is enough to locate it. A heap
dump of the registry therefore does not reveal the values. It is bounded (least recently fetched
forms are dropped first) and lives in memory only.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import TypeVar

REDACTED = "[REDACTED]"
# Shorter values are not tracked: masking "1" or "yes" would redact ordinary words everywhere and
# such values are not secret anyway. Multi-line values (PEM keys) are also tracked line by line.
MIN_LENGTH = 4
MIN_LINE_LENGTH = 16
_ANCHOR = MIN_LENGTH
DEFAULT_CAPACITY = 200_000


class Registry:
    """Thread-safe: backends add from the event loop and worker threads while any thread logs."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self._key = os.urandom(32)
        self._capacity = capacity
        self._lock = threading.Lock()
        # digest -> (anchor, length), oldest first; anchor -> {length: how many forms}.
        self._digests: OrderedDict[bytes, tuple[int, int]] = OrderedDict()
        self._anchors: dict[int, dict[int, int]] = {}

    def __len__(self) -> int:
        return len(self._digests)

    def __bool__(self) -> bool:
        return bool(self._digests)

    def _digest(self, text: str) -> bytes:
        return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), key=self._key, digest_size=16).digest()

    def remember(self, values: Iterable[bytes | str]) -> None:
        forms = {form for value in values for form in _forms(value)}
        if not forms:
            return
        with self._lock:
            for form in forms:
                digest = self._digest(form)
                if digest in self._digests:
                    self._digests.move_to_end(digest)
                    continue
                anchor, length = hash(form[:_ANCHOR]), len(form)
                self._digests[digest] = (anchor, length)
                lengths = self._anchors.setdefault(anchor, {})
                lengths[length] = lengths.get(length, 0) + 1
            while len(self._digests) > self._capacity:
                self._drop(*self._digests.popitem(last=False)[1])

    def _drop(self, anchor: int, length: int) -> None:
        lengths = self._anchors[anchor]
        lengths[length] -= 1
        if not lengths[length]:
            del lengths[length]
            if not lengths:
                del self._anchors[anchor]

    def clear(self) -> None:
        with self._lock:
            self._digests.clear()
            self._anchors.clear()

    def mask(self, text: str) -> str:
        """TEXT with every remembered value replaced by [REDACTED] (longest match first)."""
        if not self._digests or len(text) < MIN_LENGTH:
            return text
        out: list[str] = []
        start = i = 0
        end = len(text) - _ANCHOR
        with self._lock:
            anchors, digests = self._anchors, self._digests
            while i <= end:
                lengths = anchors.get(hash(text[i:i + _ANCHOR]))
                if lengths:
                    found = next((n for n in sorted(lengths, reverse=True)
                                  if self._digest(text[i:i + n]) in digests), 0)
                    if found:
                        out.append(text[start:i])
                        out.append(REDACTED)
                        i = start = i + found
                        continue
                i += 1
        if not out:
            return text
        out.append(text[start:])
        return "".join(out)

    def contains(self, text: str) -> bool:
        return self.mask(text) != text


def _forms(value: bytes | str) -> set[str]:
    """Every shape VALUE can take in a log line."""
    raw = value.encode() if isinstance(value, str) else bytes(value)
    if len(raw) < MIN_LENGTH:
        return set()
    forms = {base64.b64encode(raw).decode()}
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        return forms  # binary: it can only appear encoded
    forms.add(text)
    forms.add(json.dumps(text)[1:-1])
    if "\n" in text:
        forms.update(line.strip() for line in text.splitlines() if len(line.strip()) >= MIN_LINE_LENGTH)
    return {f for f in forms if len(f) >= MIN_LENGTH}


REGISTRY = Registry()


D = TypeVar("D", bound=Mapping[str, bytes])


def remember(data: D) -> D:
    """Note every value of DATA for log masking; returns DATA unchanged (so a backend can wrap it)."""
    REGISTRY.remember(data.values())
    return data
