"""Requests to the API server: aiohttp on the event loop, plain JSON in and out.

Not the kubernetes client: a request through it (its models, urllib3, a thread hop each way) cost Rotor
0.6 to 0.7 ms of CPU, through aiohttp on the loop 0.2 to 0.3 ms (docs/benchmarks.md, "Rotor's own cost"),
and importing it cost 50 MiB of RSS. aiohttp is Kopf's own client, so it adds nothing.
"""

from __future__ import annotations

import asyncio
import datetime
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from rotor import __version__
from rotor.kube.config import KubeConfig, load_config
from rotor.kube.errors import KubeError, status_error
from rotor.observability.metrics import KUBE_REQUESTS

__all__ = ["KubeConfig", "Transport", "api_path", "load_config"]

_USER_AGENT = f"rotor/{__version__}"
# A request the API server does not answer within this long is a failure callers retry (a 503).
REQUEST_TIMEOUT_SECONDS = 60.0
CONNECT_TIMEOUT_SECONDS = 10.0


def api_path(group: str, version: str, plural: str, namespace: str | None) -> str:
    base = f"/api/{version}" if not group else f"/apis/{group}/{version}"
    return f"{base}/namespaces/{namespace}/{plural}" if namespace else f"{base}/{plural}"


def _encode(value: Any) -> Any:
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")


class Transport:
    """One connection pool per event loop (a session is bound to its loop). At most CONNECTIONS requests
    at once: each TLS connection holds asyncio's 256 KiB read buffer, and 16 requests in flight keep up
    with 32 sync workers (32 cost 5 MiB more RSS for no faster cold start). Watches are long requests
    outside that bound (each namespace's watch would otherwise hold a slot for minutes, and enough of
    them would starve every other request). Every call is counted
    (rotor_kube_requests_total) and fails as a KubeError: an unreachable API server as a 503, which
    callers retry."""

    def __init__(self, config: KubeConfig | None = None, *, connections: int = 16) -> None:
        self.config = config or load_config()
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None
        self._slots = asyncio.Semaphore(connections)
        self._loop: asyncio.AbstractEventLoop | None = None

    def _client(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._loop is not loop:
            self._session = aiohttp.ClientSession(
                self.config.server,
                connector=aiohttp.TCPConnector(limit=0, ssl=self.config.ssl_context()),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT_SECONDS,
                                              sock_read=REQUEST_TIMEOUT_SECONDS),
                # No gzip: on a local network compressing every list costs the API server CPU for nothing.
                headers={"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"},
                trust_env=False, auto_decompress=False,
                cookie_jar=aiohttp.DummyCookieJar())  # the API server sets none: a jar costs a filter per request
            self._slots = asyncio.Semaphore(self._connections)
            self._loop = loop
        return self._session

    async def close(self) -> None:
        if self._session is not None and not self._session.closed and self._loop is asyncio.get_running_loop():
            await self._session.close()
        self._session = None

    async def _open(self, verb: str, resource: str, method: str, path: str, body: Any = None, *,
                    query: list[tuple[str, str]] | None = None, accept: str = "application/json",
                    content_type: str = "application/json",
                    read_timeout: float = REQUEST_TIMEOUT_SECONDS) -> aiohttp.ClientResponse:
        """The response to one request, its status a success (the caller reads and releases it)."""
        KUBE_REQUESTS.labels(verb, resource).inc()
        headers = {"Accept": accept}
        try:
            authorization = await self.config.authorization()
        except OSError as err:
            raise KubeError(401, "Unauthorized", f"no credentials for the API server ({err.strerror})") from None
        if authorization:
            headers["Authorization"] = authorization
        data = None
        if body is not None:
            headers["Content-Type"] = content_type
            data = json.dumps(body, separators=(",", ":"), default=_encode).encode()
        try:
            response = await self._client().request(
                method, path, params=query or None, data=data, headers=headers, proxy=self.config.proxy,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT_SECONDS,
                                              sock_read=read_timeout))
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            # The API server unreachable (restarting, network): a failure callers retry, not a crash.
            raise KubeError(503, "ServiceUnavailable",
                            f"the API server could not be reached ({type(exc).__name__})") from None
        if response.status >= 400:
            try:
                text = await response.read()
            except (aiohttp.ClientError, OSError, TimeoutError):
                text = b""
            finally:
                response.release()
            raise status_error(response.status, response.reason or "", text)
        return response

    async def _json(self, verb: str, resource: str, method: str, path: str, body: Any = None, *,
                    query: list[tuple[str, str]] | None = None, accept: str = "application/json",
                    content_type: str = "application/json", parse: bool = True) -> dict[str, Any]:
        """One request with plain JSON in and out. PARSE False: the answer is read and dropped ({}), for
        writes whose result nobody reads (the whole object, managedFields and all: parsing it was a tenth
        of a first sync's CPU)."""
        self._client()  # this loop's session and slots
        async with self._slots:
            response = await self._open(verb, resource, method, path, body, query=query, accept=accept,
                                        content_type=content_type)
            try:
                data = await response.read()  # whole either way: the connection goes back to the pool
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                raise KubeError(503, "ServiceUnavailable", f"the answer broke off ({type(exc).__name__})") \
                    from None
            finally:
                response.release()
        result: dict[str, Any] = json.loads(data) if data and parse else {}
        return result

    async def _pages(self, resource: str, path: str, page: int, *, accept: str = "application/json",
                     query: list[tuple[str, str]] | None = None) -> AsyncIterator[dict[str, Any]]:
        token = ""
        while True:
            params = [*(query or ()), ("limit", str(page))] + ([("continue", token)] if token else [])
            body = await self._json("list", resource, "GET", path, query=params, accept=accept)
            yield body
            token = (body.get("metadata") or {}).get("continue") or ""
            if not token:
                return
