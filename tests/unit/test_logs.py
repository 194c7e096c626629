"""The masking filter: a value Rotor holds never reaches a formatted log line, whatever its shape."""

from __future__ import annotations

import base64
import io
import json
import logging
from collections.abc import Iterator

import pytest

from rotor.observability.logs import JsonFormatter, MaskingFilter, configure_logging, install_masking
from rotor.observability.secrecy import REDACTED, Registry, remember

CANARY = "canary-7f3a9c1e-do-not-log"
PEM = ("-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\n"
       "VJTUt9Us8cKjMzEfYyjiWA4R4/M2bS1GB4t7NXp98C3SC6dVMvDu\n-----END PRIVATE KEY-----\n")


@pytest.fixture
def registry() -> Registry:
    registry = Registry()
    registry.remember([CANARY.encode(), PEM.encode(), b"\xff\xfe\x00binary-key"])
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


def test_value_in_message_args_is_redacted(captured: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = captured
    logger.info("fetched %s for %s", CANARY, "team-a/db")
    assert CANARY not in stream.getvalue()
    assert f"fetched {REDACTED} for team-a/db" in stream.getvalue()


def test_every_encoding_of_a_value_is_redacted(captured: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = captured
    b64 = base64.b64encode(CANARY.encode()).decode()
    logger.debug("response body: %s", json.dumps({"data": {"password": b64}}).encode())  # as the kube client does
    logger.debug("vault said %s", json.dumps({"data": {"key": PEM}}))  # JSON-escaped newlines
    logger.debug("one line of it: %s", PEM.splitlines()[1])
    logger.debug("binary %s", base64.b64encode(b"\xff\xfe\x00binary-key").decode())
    text = stream.getvalue()
    assert b64 not in text and PEM.splitlines()[1] not in text
    assert json.dumps(PEM)[1:-1] not in text and "binary-key" not in text
    assert text.count(REDACTED) >= 4


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


def test_json_formatter_output_is_masked(registry: Registry) -> None:
    record = logging.LogRecord("rotor", logging.WARNING, __file__, 1, "value=%s", (CANARY,), None)
    record.namespace, record.name = "team-a", "db"  # type: ignore[attr-defined]
    MaskingFilter(registry).filter(record)
    entry = json.loads(JsonFormatter().format(record))
    assert entry["message"] == f"value={REDACTED}" and entry["namespace"] == "team-a"


def test_unrelated_text_and_short_values_are_left_alone(registry: Registry) -> None:
    registry.remember([b"yes", b"app"])  # too short to be secret; masking them would garble every line
    message = "synced team-a/db (app) version 3: yes, unchanged canary-7f3a9c1e"
    assert registry.mask(message) == message


def test_the_longest_value_wins_and_adjacent_values_are_both_redacted() -> None:
    registry = Registry()
    registry.remember([b"s3cret", b"s3cret-and-more"])
    assert registry.mask("a s3cret-and-more b") == f"a {REDACTED} b"
    assert registry.mask("s3crets3cret") == REDACTED * 2


def test_registry_is_bounded_oldest_forgotten_first() -> None:
    registry = Registry(capacity=4)
    registry.remember([b"first-value"])  # two forms: text and base64 (JSON escape equals text)
    registry.remember([b"second-value"])
    registry.remember([b"third-value"])
    assert len(registry) == 4
    assert registry.contains("third-value") and registry.contains("second-value")
    assert not registry.contains("first-value")


def test_registry_keeps_no_value_in_memory() -> None:
    registry = Registry()
    registry.remember([CANARY.encode()])
    state = repr(vars(registry))
    assert CANARY not in state and base64.b64encode(CANARY.encode()).decode() not in state


def test_backends_remember_through_the_module_registry() -> None:
    data = {"password": b"module-level-canary-42"}
    assert remember(data) is data  # backends wrap their fetched dict in place
    from rotor.observability.secrecy import REGISTRY

    assert REGISTRY.contains("password=module-level-canary-42")


def test_configure_logging_installs_the_filter_on_the_root_handler(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    try:
        configure_logging("json", "debug")
        install_masking()  # idempotent: a second call adds no second filter
        assert [type(f) for f in root.handlers[0].filters] == [MaskingFilter]
        remember({"k": b"root-handler-canary"})
        logging.getLogger("kopf.objects").warning("patch: %r", {"password": "root-handler-canary"})
        err = capsys.readouterr().err
        assert "root-handler-canary" not in err and REDACTED in err
        # The Kubernetes client logs whole response bodies (Secret data) at DEBUG: silenced.
        assert not logging.getLogger("kubernetes.client.rest").isEnabledFor(logging.DEBUG)
    finally:
        root.handlers[:] = saved
        root.setLevel(level)
