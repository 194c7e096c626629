"""Keyed HMAC of secret data: how Rotor compares values without storing or logging them."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping


def data_hmac(key: bytes, data: Mapping[str, bytes], secret_type: str = "") -> str:
    """A stable keyed digest of a Secret's type and data ("sha256:<hex>")."""
    mac = hmac.new(key, digestmod=hashlib.sha256)
    mac.update(secret_type.encode() + b"\0")
    for name in sorted(data):
        value = data[name]
        mac.update(len(name).to_bytes(4, "big") + name.encode())
        mac.update(len(value).to_bytes(8, "big") + value)
    return "sha256:" + mac.hexdigest()


def value_hmac(key: bytes, value: bytes) -> str:
    """Digest of one value (denylists, masking): never reversible without the key."""
    return "sha256:" + hmac.new(key, value, hashlib.sha256).hexdigest()
