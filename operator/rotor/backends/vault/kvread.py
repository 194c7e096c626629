"""A KV read without hvac, requests or a thread: one GET on the event loop (aiohttp, already Kopf's client).

A refresh where nothing changed is one Vault read. Through hvac (a client object per call), requests
(environment, proxies, cookies, hooks on every request) and a thread hop it cost Rotor about 1.1 ms of
CPU; through aiohttp on the loop about 0.3 ms (docs/benchmarks.md, "Rotor's own cost"). Errors are
raised as hvac raises them (hvac.utils.raise_for_error), so the backend translates both paths alike.

Used only where requests would do nothing more: no proxy in the environment for the address (then
every request goes through hvac, which honours it). The CA bundle is the one requests would use.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from typing import Any

import aiohttp
import hvac.exceptions
import hvac.utils
import requests
import requests.utils

from rotor.config import VaultConnection


class KvReader:
    def __init__(self, settings: VaultConnection) -> None:
        self.base = settings.address.rstrip("/")
        self.namespace = settings.namespace
        self._limit = settings.max_concurrency
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=settings.timeout_seconds,
                                              sock_read=settings.timeout_seconds)
        # What requests would do with this address: its proxies, its CA bundle ($REQUESTS_CA_BUNDLE, certifi).
        verify: str | bool = str(settings.ca_file) if settings.ca_file else True
        merged = requests.Session().merge_environment_settings(self.base, {}, None, verify, None)
        self.usable = not merged.get("proxies")
        ca = merged.get("verify")
        self._ca = ca if isinstance(ca, str) else requests.utils.DEFAULT_CA_BUNDLE_PATH
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _client(self) -> aiohttp.ClientSession:
        """The session, made on first use in the running loop (a session is bound to its loop)."""
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._loop is not loop:
            tls = ssl.create_default_context(cafile=self._ca) if self.base.startswith("https:") else False
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._limit, ssl=tls), timeout=self._timeout,
                trust_env=False, auto_decompress=True,
                cookie_jar=aiohttp.DummyCookieJar())  # Vault sets none: a jar only costs a filter per read
            self._loop = loop
        return self._session

    async def get(self, token: str, api_path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """GET API_PATH (as hvac.utils.format_url makes it) as TOKEN: the JSON body of a 200; an error
        status raises what hvac raises (a VaultError for another status: a read answers 200 or fails)."""
        headers = {"X-Vault-Request": "true", "X-Vault-Token": token}
        if self.namespace:
            headers["X-Vault-Namespace"] = self.namespace
        while "//" in api_path:  # as hvac: Vault reads a double slash as one
            api_path = api_path.replace("//", "/")
        url = f"{self.base}/{api_path.strip('/')}"
        query = {k: str(v) for k, v in (params or {}).items()}
        async with self._client().get(url, params=query or None, headers=headers) as response:
            status, data = response.status, await response.read()
            content_type = response.headers.get("Content-Type")
        if status == 200:
            result: dict[str, Any] = json.loads(data)
            return result
        if status < 400:
            raise hvac.exceptions.VaultError(f"unexpected status {status}", method="GET", url=url)
        text = data.decode("utf-8", "replace")
        body: Any = None
        errors = None
        if content_type == "application/json":
            try:
                body = json.loads(text)
            except ValueError:
                pass
            else:
                errors = body.get("errors") if isinstance(body, dict) else None
        hvac.utils.raise_for_error("GET", url, status, None if errors is not None else text, errors=errors,
                                   text=text, json=body)
        raise AssertionError("unreachable: raise_for_error raises for every status >= 400")

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            try:
                await self._session.close()
            except RuntimeError:  # made in another loop, now closed: nothing left to release
                pass
        self._session = None
