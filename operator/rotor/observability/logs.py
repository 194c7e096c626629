"""Logging: text for humans or JSON lines with stable keys; never a secret value."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Mapping
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
        elif getattr(record, "error_class", None):  # masking kept only the class of an exception
            entry["error"] = getattr(record, "error_class", None)
        return json.dumps({k: v for k, v in entry.items() if v is not None})


class MaskingFilter(logging.Filter):
    """Defense in depth: redact every value Rotor holds (rotor.observability.secrecy) from a record before
    a handler formats it (see mask_record). Installed on handlers, not loggers: a logger's filters do not
    see records propagated from child loggers, a handler's do."""

    def __init__(self, registry: Registry = REGISTRY) -> None:
        super().__init__("rotor.masking")
        self.registry = registry

    def filter(self, record: logging.LogRecord) -> bool:
        mask_record(record, self.registry)
        return True


_MASKED = "_rotor_masked"  # on a record: (registry, generation) it was last masked with


def mask_record(record: logging.LogRecord, registry: Registry = REGISTRY) -> None:
    """Redact REGISTRY's values in place from RECORD: the message with its arguments, unused string
    arguments, exception and stack text. Later handlers and formatters see only the masked copy."""
    stamp = (id(registry), registry.generation)
    if record.__dict__.get(_MASKED) == stamp:
        return
    if registry:
        _mask_fields(record, registry.mask)
    record.__dict__[_MASKED] = stamp


def _mask_fields(record: logging.LogRecord, mask: Callable[[str], str]) -> None:
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
    elif isinstance(record.args, Mapping):
        record.args = {k: mask(v) if isinstance(v, str) else v for k, v in record.args.items()}
    if record.exc_info and record.exc_info[0] is not None and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    if record.exc_text:
        masked = mask(record.exc_text)
        if masked != record.exc_text and record.exc_info:
            # Formatters that render exc_info themselves (JSON loggers) would print the value again:
            # keep the masked text and the class name only.
            record.__dict__["error_class"] = record.exc_info[0].__name__ if record.exc_info[0] else None
            record.exc_info = None
        record.exc_text = masked
    if record.stack_info:
        record.stack_info = mask(record.stack_info)


class _MaskingRecordFactory:
    """Masks every record as it is made, whichever logger makes it and whichever handler (one added
    later, Kopf's event poster, an audit sink) receives it."""

    def __init__(self, previous: Callable[..., logging.LogRecord], registry: Registry) -> None:
        self.previous = previous
        self.registry = registry

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record = self.previous(*args, **kwargs)
        try:
            mask_record(record, self.registry)
        except Exception:  # never break a logging call; the handlers' filters mask it again
            record.__dict__.pop(_MASKED, None)
        return record


# Loggers Rotor's process writes through that may carry handlers of their own: Kopf's per-object
# logger (its handler posts Kubernetes Events) and the incident audit trail.
_LOGGERS_WITH_SINKS = ("kopf.objects", "rotor.audit")


def _every_handler() -> list[logging.Handler]:
    loggers = [logging.getLogger(), *(logging.getLogger(n) for n in _LOGGERS_WITH_SINKS)]
    loggers += [lg for lg in logging.root.manager.loggerDict.values() if isinstance(lg, logging.Logger)]
    return list({id(h): h for lg in loggers for h in lg.handlers}.values())


def install_masking(registry: Registry = REGISTRY) -> None:
    """Mask every record the process logs: at creation (a record factory, for every logger and any
    handler added later) and on every handler present now (once each), Kopf's event poster included."""
    factory: Any = logging.getLogRecordFactory()
    while isinstance(factory, _MaskingRecordFactory) and factory.registry is not registry:
        factory = factory.previous
    if not isinstance(factory, _MaskingRecordFactory):  # another registry's factory stays; this one is added
        logging.setLogRecordFactory(_MaskingRecordFactory(logging.getLogRecordFactory(), registry))
    for handler in _every_handler():
        if not any(isinstance(f, MaskingFilter) for f in handler.filters):
            handler.addFilter(MaskingFilter(registry))


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
