"""The change feed on a bench's Vault connection (hack/bench.py --feed on, and bench-peers' Rotor with the
feed): Rotor listens, Vault's socket audit device streams to it, beside the stack's file device, so Vault
never waits on Rotor."""

from __future__ import annotations

import json
import secrets
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the local stack lives in tests/devenv
from tests.devenv import Stack
from tests.devenv.process import free_port


class Feed:
    """The change feed on the bench's Vault connection: Rotor listens, Vault's socket device streams to it
    (beside the stack's file device, so Vault never waits on Rotor)."""

    def __init__(self, stack: Stack, state: Path) -> None:
        self.stack, self.port, self.token = stack, free_port(), f"rotor-bench-{secrets.token_hex(12)}"
        self.token_file = state / "feed-token"
        self.token_file.write_text(self.token + "\n")
        self.enabled_after: float | None = None

    def configure(self, connections: str) -> str:
        parsed = json.loads(connections)
        parsed["default"]["change_feed"] = {"listen": f"127.0.0.1:{self.port}", "allowed_sources": ["127.0.0.0/8"],
                                            "token_file": str(self.token_file)}
        return json.dumps(parsed)

    def enable(self) -> None:
        """Enable the device once Rotor listens (Vault writes a test record on enabling: it fails before)."""
        started = time.monotonic()
        while time.monotonic() - started < 300:
            try:
                self.stack.vault_request("PUT", "/v1/sys/audit/rotor-feed", {"type": "socket", "options": {
                    "address": f"127.0.0.1:{self.port}", "socket_type": "tcp", "prefix": self.token}})
            except Exception:  # not listening yet
                time.sleep(0.2)
                continue
            self.enabled_after = round(time.monotonic() - started, 1)
            return
        print("bench: the socket audit device could not be enabled within 300s", file=sys.stderr, flush=True)
