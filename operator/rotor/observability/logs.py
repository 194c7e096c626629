"""Logging: text for humans or JSON lines with stable keys; never a secret value."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

from rotor.observability.secrecy import REGISTRY, Registry

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


class MaskingFilter(logging.Filter):
    """Defense in depth: redact every value Rotor holds (rotor.observability.secrecy) from a record before any
    handler formats it: the message with its arguments, string arguments, exception and stack text.

    Installed on handlers, not loggers: a logger's filters do not see records propagated from child
    loggers, a handler's do. Records are changed in place, so later handlers see the masked copy.
    """

    def __init__(self, registry: Registry = REGISTRY) -> None:
        super().__init__("rotor.masking")
        self.registry = registry

    def filter(self, record: logging.LogRecord) -> bool:
        mask = self.registry.mask
        if not self.registry:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a malformed call; logging reports it itself, the args stay unformatted
            message = None
        if message is not None:
            masked = mask(message)
            if masked != message:
                record.msg, record.args = masked, None
        if isinstance(record.args, tuple):
            record.args = tuple(mask(a) if isinstance(a, str) else a for a in record.args)
        if record.exc_info and record.exc_info[0] is not None and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask(record.exc_text)
        if record.stack_info:
            record.stack_info = mask(record.stack_info)
        return True


def install_masking(registry: Registry = REGISTRY) -> None:
    """Put the masking filter on every handler of the root logger (once each), and keep the
    Kubernetes client from logging response bodies, which hold Secret data, at DEBUG."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, MaskingFilter) for f in handler.filters):
            handler.addFilter(MaskingFilter(registry))
    logging.getLogger("kubernetes.client.rest").setLevel(logging.INFO)


def configure_logging(fmt: str = "text", level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    install_masking()
    # Kopf's per-object chatter at INFO is noisy at scale; its warnings and errors still show.
    logging.getLogger("kopf").setLevel(logging.WARNING if level != "debug" else logging.DEBUG)
    logging.getLogger("urllib3").setLevel(logging.WARNING)
