"""The handlers' catch-all: no exception escapes a handler without telling the object's owner.

A handler that raises is a bug in Rotor, not the tenant's doing: it is logged with its traceback, and
the Rotor object it was about (when it is one of Rotor's kinds) gets Ready=False with reason
InternalError, naming the object and the error's type (never its text, which might quote a value).
Change handlers then ask Kopf to retry in a minute (kopf.TemporaryError); event handlers have nothing
to retry.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import kopf

from rotor.api.kinds import Kind
from rotor.engines.scheduler import CRASH_RETRY, report_internal_error
from rotor.handlers.memo import runtime_of

log = logging.getLogger("rotor.handlers")

Handler = TypeVar("Handler", bound=Callable[..., Awaitable[Any]])


def guarded(kind: Kind | None, *, retry: bool = False) -> Callable[[Handler], Handler]:
    """Wrap a handler about objects of KIND (body= or event= names the object; None: not a Rotor kind,
    only logged); RETRY: Kopf retries it."""
    def wrap(fn: Handler) -> Handler:
        @functools.wraps(fn)  # Kopf derives the handler id from the wrapped function
        async def handler(**kwargs: Any) -> Any:
            try:
                return await fn(**kwargs)
            except (kopf.TemporaryError, kopf.PermanentError, asyncio.CancelledError):
                raise
            except Exception as exc:
                namespace, name = _object_of(kwargs)
                what = f"{kind.kind if kind else 'object'} {namespace}/{name}"
                log.exception("handler %s failed unexpectedly on %s", fn.__name__, what)
                await _report(kind, kwargs.get("memo"), namespace, name, exc)
                if retry:
                    raise kopf.TemporaryError(f"{what}: {type(exc).__name__}", delay=CRASH_RETRY) from None
                return None

        return handler  # type: ignore[return-value]

    return wrap


async def _report(kind: Kind | None, memo: Any, namespace: str, name: str, error: Exception) -> None:
    if kind is None or not name or getattr(memo, "runtime", None) is None:
        return
    try:
        await report_internal_error(runtime_of(memo).kube, kind.kind, kind.plural, (namespace, name), error)
    except Exception:  # best effort: the log line above stands
        log.warning("the failure on %s %s/%s could not be reported in its status", kind.kind, namespace, name,
                    exc_info=True)


def _object_of(kwargs: Mapping[str, Any]) -> tuple[str, str]:
    """(namespace, name) of the object a handler was called about ("" when it cannot be told)."""
    body = kwargs.get("body")
    if body is None:
        event = kwargs.get("event")
        body = event.get("object") if isinstance(event, Mapping) else None
    meta = body.get("metadata") if isinstance(body, Mapping) else None
    if not isinstance(meta, Mapping):
        return "", ""
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")
