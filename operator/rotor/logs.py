"""Logging: text for humans or JSON lines with stable keys; never a secret value."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

_STABLE = ("namespace", "name", "kind", "phase", "reason")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in _STABLE:
            value = getattr(record, key, None)
            if value is not None:
                entry[key] = value
        # Kopf attaches the object it logs about as k8s_ref.
        ref = getattr(record, "k8s_ref", None)
        if isinstance(ref, dict):
            entry.setdefault("namespace", ref.get("namespace"))
            entry.setdefault("name", ref.get("name"))
            entry.setdefault("kind", ref.get("kind"))
        if record.exc_info and record.exc_info[0] is not None:
            entry["error"] = record.exc_info[0].__name__
        return json.dumps({k: v for k, v in entry.items() if v is not None})


def configure_logging(fmt: str = "text", level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Kopf's per-object chatter at INFO is noisy at scale; its warnings and errors still show.
    logging.getLogger("kopf").setLevel(logging.WARNING if level != "debug" else logging.DEBUG)
    logging.getLogger("urllib3").setLevel(logging.WARNING)
