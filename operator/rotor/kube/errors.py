"""KubeError: an API failure as the API server's Status reason and message, never its body."""

from __future__ import annotations

import json

from kubernetes.client.exceptions import ApiException


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


def kube_error(exc: ApiException) -> KubeError:
    """The Status reason and message only: an ApiException's text holds the response body, which for
    a Secret could hold data."""
    reason, message = str(exc.reason or ""), ""
    try:
        status = json.loads(exc.body or "{}")
        reason = status.get("reason", reason)
        message = status.get("message", "")
    except ValueError:
        pass
    return KubeError(int(exc.status or 0), reason, message)
