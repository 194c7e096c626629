"""KubeError: an API failure as the API server's Status reason and message, never its body."""

from __future__ import annotations

import json


class KubeError(Exception):
    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"HTTP {status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def conflict(self) -> bool:
        return self.status == 409


def status_error(status: int, phrase: str, body: bytes) -> KubeError:
    """The Status reason and message only: an error body that is not a Status (a proxy's page) could
    echo what was sent, which for a Secret holds data."""
    reason, message = phrase, ""
    try:
        found = json.loads(body or b"{}")
        if isinstance(found, dict) and found.get("kind") == "Status":
            reason = str(found.get("reason") or reason)
            message = str(found.get("message") or "")
    except ValueError:
        pass
    return KubeError(status, reason, message)
