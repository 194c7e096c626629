"""The values Rotor currently holds, kept only well enough to find them in text (log masking).

Backends call remember() with every value they fetch. Masking is per value: a value is registered
only if it could identify a credential (identifies_credential: long enough, not a word, number or
name, enough Shannon entropy), so one tenant's "postgres", "true" or port never redacts another
tenant's log lines. The registry never stores a value itself: for each form a registered value can
take in a log line (as text, base64 as in a Kubernetes API body, JSON- and repr-escaped, some of the
lines of a multi-line value) it keeps a keyed digest (BLAKE2b, random per-process key) plus the
form's length and a salted hash of its first characters, which is enough to locate it. A heap dump
of the registry therefore does not reveal the values. It lives in memory only and is bounded per
value (MAX_LINES_PER_VALUE lines) and overall (capacity forms; least recently fetched values go
first), so one value with many lines cannot flush the others.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
import re
import threading
from collections import Counter, OrderedDict
from collections.abc import Iterable, Mapping
from typing import TypeVar

REDACTED = "[REDACTED]"
# A credential is at least this long; shorter values ("1", "yes", "5432") are not secret and masking
# them would garble every line.
MIN_LENGTH = 8
# Bits per character (Shannon): "aaaaaaaa" (0) and "v1alpha1" (2.5) are below, "hunter2!" (3.0) above.
MIN_ENTROPY = 2.7
# A value shaped like words, numbers or names ("postgres", "kube-system", "db-1.example.com",
# "https://vault.example:8200", "Password1", "8080") is never one: it could not be told from the
# text around it. One exception: a single run of letters this long and this varied (a random key).
LETTERS_MIN_LENGTH = 20
LETTERS_MIN_ENTROPY = 3.8
# Lines of a multi-line value (a PEM key) are remembered on their own when this long, at most
# MAX_LINES_PER_VALUE of them: a 10,000-line value must not flush every other value.
MIN_LINE_LENGTH = 16
MAX_LINES_PER_VALUE = 64
_ANCHOR = MIN_LENGTH
DEFAULT_CAPACITY = 200_000

# Segments that are words (lower, upper, Capitalised or CamelCase; up to 4 digits may trail, as in
# "postgres15" or "Summer2024") or numbers, joined by separators. Random mixed-case letters
# ("xKzqPmwT") and letters before many digits ("abcdef123456", hex) are not words.
_SEGMENT = r"(?:(?:[A-Z]+|[A-Z]?[a-z]+)(?:[A-Z][a-z]+)*[0-9]{0,4}|[0-9]+)"
_WORDY = re.compile(rf"[-._/:@, ]*{_SEGMENT}(?:[-._/:@, ]+{_SEGMENT})*[-._/:@, ]*")


def shannon_entropy(value: str | bytes) -> float:
    """Bits per character (or byte) of VALUE's own symbol distribution."""
    if not value:
        return 0.0
    total = len(value)
    return -sum(n / total * math.log2(n / total) for n in Counter(value).values())


def identifies_credential(value: str | bytes) -> bool:
    """Whether VALUE could identify a credential, so that masking it never redacts ordinary text.

    Binary values (not UTF-8) only appear base64-encoded, so any long enough one qualifies.
    """
    if isinstance(value, bytes):
        try:
            value = value.decode()
        except UnicodeDecodeError:
            return len(value) >= MIN_LENGTH and shannon_entropy(value) >= MIN_ENTROPY
    text = value.strip()
    if len(text) < MIN_LENGTH:
        return False
    entropy = shannon_entropy(text)
    if entropy < MIN_ENTROPY:
        return False
    if _WORDY.fullmatch(text):
        return text.isalpha() and len(text) >= LETTERS_MIN_LENGTH and entropy >= LETTERS_MIN_ENTROPY
    return True


def _forms(value: bytes | str) -> list[str]:
    """Every shape VALUE can take in a log line, or none if VALUE could not identify a credential."""
    raw = value.encode() if isinstance(value, str) else bytes(value)
    try:
        text = raw.decode()
    except UnicodeDecodeError:  # binary: it can only appear encoded
        return [base64.b64encode(raw).decode()] if identifies_credential(raw) else []
    forms: list[str] = []
    if identifies_credential(text):
        forms += [text, text.strip(), base64.b64encode(raw).decode(), json.dumps(text)[1:-1], repr(text)[1:-1]]
    if "\n" in text:
        lines = (line.strip() for line in text.splitlines())
        long = (line for line in lines if len(line) >= MIN_LINE_LENGTH and identifies_credential(line))
        forms += list(dict.fromkeys(long))[:MAX_LINES_PER_VALUE]
    return list(dict.fromkeys(f for f in forms if len(f) >= MIN_LENGTH))


class Registry:
    """Thread-safe: backends add from the event loop and worker threads while any thread logs."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self._key = os.urandom(32)
        self._capacity = capacity
        self._lock = threading.Lock()
        # value digest -> digests of its forms, least recently remembered first.
        self._values: OrderedDict[bytes, tuple[bytes, ...]] = OrderedDict()
        # form digest -> [anchor, length, values holding it]; anchor -> {length: how many forms}.
        self._forms: dict[bytes, list[int]] = {}
        self._anchors: dict[int, dict[int, int]] = {}
        # Bumped when a form is added: a record masked at this generation need not be masked again.
        self.generation = 0

    def __len__(self) -> int:
        return len(self._forms)

    def __bool__(self) -> bool:
        return bool(self._forms)

    def _digest(self, text: str) -> bytes:
        return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), key=self._key, digest_size=16).digest()

    def remember(self, values: Iterable[bytes | str]) -> None:
        """Register every value of VALUES that could identify a credential (others are ignored)."""
        for value in values:
            raw = value.encode() if isinstance(value, str) else bytes(value)
            key = hashlib.blake2b(raw, key=self._key, digest_size=16, person=b"value").digest()
            with self._lock:
                if key in self._values:
                    self._values.move_to_end(key)
                    continue
            forms = _forms(raw)
            if not forms:
                continue
            digests = {self._digest(form): (hash(form[:_ANCHOR]), len(form)) for form in forms}
            with self._lock:
                if key in self._values:
                    continue
                self._values[key] = tuple(digests)
                for digest, (anchor, length) in digests.items():
                    self._add(digest, anchor, length)
                while len(self._forms) > self._capacity and len(self._values) > 1:
                    for digest in self._values.popitem(last=False)[1]:
                        self._drop(digest)

    def _add(self, digest: bytes, anchor: int, length: int) -> None:
        entry = self._forms.get(digest)
        if entry is not None:
            entry[2] += 1
            return
        self._forms[digest] = [anchor, length, 1]
        lengths = self._anchors.setdefault(anchor, {})
        lengths[length] = lengths.get(length, 0) + 1
        self.generation += 1

    def _drop(self, digest: bytes) -> None:
        entry = self._forms[digest]
        entry[2] -= 1
        if entry[2]:
            return  # another remembered value still has this form
        del self._forms[digest]
        anchor, length = entry[0], entry[1]
        lengths = self._anchors[anchor]
        lengths[length] -= 1
        if not lengths[length]:
            del lengths[length]
            if not lengths:
                del self._anchors[anchor]

    def clear(self) -> None:
        with self._lock:
            self._values.clear()
            self._forms.clear()
            self._anchors.clear()
            self.generation += 1

    def mask(self, text: str) -> str:
        """TEXT with every remembered value replaced by [REDACTED] (longest match first)."""
        if not self._forms or len(text) < _ANCHOR:
            return text
        out: list[str] = []
        start = i = 0
        end = len(text) - _ANCHOR
        with self._lock:
            anchors, forms = self._anchors, self._forms
            while i <= end:
                lengths = anchors.get(hash(text[i:i + _ANCHOR]))
                if lengths:
                    found = next((n for n in sorted(lengths, reverse=True)
                                  if self._digest(text[i:i + n]) in forms), 0)
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


REGISTRY = Registry()


D = TypeVar("D", bound=Mapping[str, bytes])


def remember(data: D) -> D:
    """Note every value of DATA for log masking; returns DATA unchanged (so a backend can wrap it)."""
    REGISTRY.remember(data.values())
    return data


def mask(text: str) -> str:
    """TEXT with every value Rotor holds redacted: the backstop for status messages and Events."""
    return REGISTRY.mask(text)
