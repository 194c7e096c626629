"""The masking filter: a value Rotor holds never reaches a formatted log line, whatever its shape and
whichever logger or handler the line goes through (Kopf's event poster and the audit trail included)."""

from __future__ import annotations

import base64
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import kopf
import pytest
from kopf._core.engines import posting

from rotor.observability.logs import JsonFormatter, MaskingFilter, configure_logging, install_masking
from rotor.observability.secrecy import REDACTED, Registry, remember

CANARY = "canary-7f3a9c1e-do-not-log"
PEM = ("-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\n"
       "VJTUt9Us8cKjMzEfYyjiWA4R4/M2bS1GB4t7NXp98C3SC6dVMvDu\n-----END PRIVATE KEY-----\n")


@pytest.fixture
def registry() -> Registry:
    registry = Registry()
    registry.remember([CANARY.encode(), PEM.encode(), b"\xff\xfe\x00binary-key", b"postgres"])
    return registry


@pytest.fixture
def captured(registry: Registry) -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger whose records go through a handler carrying the masking filter (as on the root)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    handler.addFilter(MaskingFilter(registry))
    logger = logging.getLogger("rotor.test.masking")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, stream
    logger.removeHandler(handler)


@pytest.fixture
def installed() -> Iterator[None]:
    """install_masking() for one test: the record factory and handler filters are undone afterwards."""
    factory = logging.getLogRecordFactory()
    yield
    logging.setLogRecordFactory(factory)
    loggers = [logging.getLogger(), *(x for x in logging.root.manager.loggerDict.values()
                                      if isinstance(x, logging.Logger))]
    for handler in {h for lg in loggers for h in lg.handlers}:
        for f in [f for f in handler.filters if isinstance(f, MaskingFilter)]:
            handler.removeFilter(f)


def test_value_in_message_args_is_redacted(captured: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = captured
    logger.info("fetched %s for %s", CANARY, "team-a/db")
    assert CANARY not in stream.getvalue()
    assert f"fetched {REDACTED} for team-a/db" in stream.getvalue()


def test_common_words_a_tenant_holds_are_left_alone(captured: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = captured
    logger.info("team-b/db: connecting to %s on %s", "postgres", "db:5432")  # "postgres" is someone's value
    assert stream.getvalue() == "INFO team-b/db: connecting to postgres on db:5432\n"


def test_every_encoding_of_a_value_is_redacted(captured: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = captured
    b64 = base64.b64encode(CANARY.encode()).decode()
    logger.debug("response body: %s", json.dumps({"data": {"password": b64}}).encode())  # as the kube client does
    logger.debug("vault said %s", json.dumps({"data": {"key": PEM}}))  # JSON-escaped newlines
    logger.debug("repr: %r", {"key": PEM})  # repr-escaped newlines
    logger.debug("one line of it: %s", PEM.splitlines()[1])
    logger.debug("binary %s", base64.b64encode(b"\xff\xfe\x00binary-key").decode())
    text = stream.getvalue()
    assert b64 not in text and PEM.splitlines()[1] not in text and PEM.splitlines()[2] not in text
    assert json.dumps(PEM)[1:-1] not in text and "binary-key" not in text
    assert text.count(REDACTED) >= 5


def test_value_in_exception_text_is_redacted(captured: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = captured
    try:
        raise ValueError(f"could not parse {CANARY}")
    except ValueError:
        logger.exception("sync failed")
    text = stream.getvalue()
    assert "ValueError" in text and "Traceback" in text
    assert CANARY not in text and REDACTED in text


def test_value_in_stack_info_and_unused_args_is_redacted(registry: Registry) -> None:
    record = logging.LogRecord("rotor", logging.INFO, __file__, 1, "plain message", (CANARY,), None,
                               sinfo=f"Stack (most recent call last):\n  value = {CANARY!r}")
    assert MaskingFilter(registry).filter(record)
    assert record.args == (REDACTED,) and CANARY not in str(record.stack_info)
    mapping = logging.LogRecord("rotor", logging.INFO, __file__, 1, "%(user)s", ({"user": "app", "pw": CANARY},),
                                None)
    MaskingFilter(registry).filter(mapping)
    assert mapping.getMessage() == "app" and mapping.args == {"user": "app", "pw": REDACTED}


def test_json_format_is_masked_and_keeps_the_error_class(registry: Registry) -> None:
    record = logging.LogRecord("rotor", logging.WARNING, __file__, 1, "value=%s", (CANARY,), None)
    record.namespace = "team-a"
    MaskingFilter(registry).filter(record)
    entry = json.loads(JsonFormatter().format(record))
    assert entry["message"] == f"value={REDACTED}" and entry["namespace"] == "team-a"
    try:
        raise KeyError(CANARY)
    except KeyError as exc:
        failed = logging.LogRecord("rotor", logging.ERROR, __file__, 1, "sync failed", None,
                                   (KeyError, exc, exc.__traceback__))
    MaskingFilter(registry).filter(failed)
    assert failed.exc_info is None and CANARY not in str(failed.exc_text)  # no formatter can render it again
    line = JsonFormatter().format(failed)
    assert json.loads(line)["error"] == "KeyError" and CANARY not in line


def test_install_masks_every_logger_and_handlers_added_later(registry: Registry, installed: None) -> None:
    """The record factory masks at creation: a handler added after start-up, on any logger, with no
    filter of its own (an audit sink on rotor.audit) never sees the value."""
    install_masking(registry)
    install_masking(registry)  # idempotent: one factory, one filter per handler
    stream = io.StringIO()
    sink = logging.StreamHandler(stream)
    audit = logging.getLogger("rotor.audit")
    audit.addHandler(sink)
    audit.propagate, audit.level = False, logging.INFO
    try:
        audit.info(json.dumps({"incident": "team-a/leak", "note": CANARY}))
        try:
            raise RuntimeError(CANARY)
        except RuntimeError:
            audit.exception("step failed")
    finally:
        audit.removeHandler(sink)
        audit.propagate, audit.level = True, logging.NOTSET
    assert CANARY not in stream.getvalue() and stream.getvalue().count(REDACTED) == 2
    assert "RuntimeError" in stream.getvalue()


def test_kopfs_event_poster_posts_masked_messages(registry: Registry, installed: None,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Kopf posts what its per-object logger (kopf.objects) logs as Kubernetes Events through a handler
    of its own, not the root's: that handler gets the filter too."""
    (poster,) = [h for h in logging.getLogger("kopf.objects").handlers if isinstance(h, posting.K8sPoster)]
    install_masking(registry)
    assert [type(f) for f in poster.filters] == [MaskingFilter]
    posted: list[dict[str, Any]] = []
    monkeypatch.setattr(posting, "enqueue", lambda **event: posted.append(event))
    settings = kopf.OperatorSettings()
    settings.posting.level, settings.posting.loggers = logging.WARNING, True  # Kopf posts its log lines
    record = logging.LogRecord("kopf.objects", logging.ERROR, __file__, 1, "Handler failed: %s", (CANARY,), None)
    ref = {"kind": "SecretSource", "namespace": "team-a", "name": "db"}
    record.k8s_ref, record.settings = ref, settings
    poster.handle(record)  # as a record made before install_masking, or by a factory of another library
    try:
        raise ValueError(f"template error near {CANARY}")
    except ValueError:
        logging.getLogger("kopf.objects").exception("Handler 'sync' failed with an exception. Will retry.",
                                                    extra={"k8s_ref": ref, "settings": settings})
    assert len(posted) == 2
    assert all(CANARY not in event["message"] for event in posted)
    assert posted[0]["message"] == f"Handler failed: {REDACTED}" and "ValueError" in posted[1]["message"]


def test_configure_logging_installs_the_filter_on_the_root_handler(capsys: pytest.CaptureFixture[str],
                                                                   installed: None) -> None:
    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    try:
        configure_logging("json", "debug")
        install_masking()  # idempotent: a second call adds no second filter
        assert [type(f) for f in root.handlers[0].filters] == [MaskingFilter]
        remember({"k": b"root-handler-canary-7f3a9c1e"})
        logging.getLogger("kopf.objects").warning("patch: %r", {"password": "root-handler-canary-7f3a9c1e"})
        err = capsys.readouterr().err
        assert "root-handler-canary-7f3a9c1e" not in err and REDACTED in err
    finally:
        root.handlers[:] = saved
        root.setLevel(level)
