"""The watch stream, read from a local HTTP server speaking the API server's watch protocol: a line per
event however long (one tenant's large object must not break the watch everyone's events come by), and
an ERROR event (410 Gone: list again) as a KubeError."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aiohttp import web

from rotor.kube import Kube, KubeConfig, KubeError


async def serve(events: list[dict[str, Any]], seen: list[web.Request]) -> web.AppRunner:
    async def watch(request: web.Request) -> web.StreamResponse:
        seen.append(request)
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        payload = b"".join(json.dumps(e).encode() + b"\n" for e in events)
        for at in range(0, len(payload), 7919):  # chunks that cut lines anywhere
            await response.write(payload[at:at + 7919])
        return response

    app = web.Application()
    app.router.add_get("/apis/rotor.dev/v1alpha1/namespaces/team-a/secretsources", watch)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner


def port(runner: web.AppRunner) -> int:
    return int(runner.addresses[0][1])


def test_events_arrive_whole_however_long_and_an_error_event_is_a_kube_error() -> None:
    big = {"metadata": {"name": "big", "namespace": "team-a", "resourceVersion": "7",
                        "annotations": {"note": "x" * 300_000}}}
    events = [{"type": "ADDED", "object": {"metadata": {"name": "a", "resourceVersion": "5"}}},
              {"type": "MODIFIED", "object": big},
              {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "9"}}},
              {"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired",
                                           "message": "too old resource version"}}]
    seen: list[web.Request] = []

    async def run() -> list[tuple[str, dict[str, Any]]]:
        runner = await serve(events, seen)
        kube = Kube(KubeConfig(server=f"http://127.0.0.1:{port(runner)}", token="t0k"))
        got: list[tuple[str, dict[str, Any]]] = []
        try:
            with pytest.raises(KubeError) as gone:
                async for event in kube.watch_bodies("rotor.dev", "v1alpha1", "secretsources", "team-a", "4",
                                                     timeout_seconds=60):
                    got.append(event)
            assert gone.value.status == 410 and gone.value.reason == "Expired"
        finally:
            await kube.close()
            await runner.cleanup()
        return got

    got = asyncio.run(run())
    assert [t for t, _ in got] == ["ADDED", "MODIFIED", "BOOKMARK"]
    assert got[1][1] == big
    [request] = seen
    assert request.query["watch"] == "true" and request.query["resourceVersion"] == "4"
    assert request.query["timeoutSeconds"] == "60" and request.headers["Authorization"] == "Bearer t0k"


def test_secrets_are_listed_as_table_rows_with_their_type_on_every_page_and_never_their_data() -> None:
    columns = [{"name": "Name"}, {"name": "Type"}, {"name": "Data"}, {"name": "Age"}]

    def row(name: str, kind: str) -> dict[str, Any]:
        return {"cells": [name, kind, 1, "1m"], "object": {"kind": "PartialObjectMetadata",
                                                         "metadata": {"name": name, "namespace": "team-a"}}}

    pages = {"": {"kind": "Table", "columnDefinitions": columns, "rows": [row("tls", "kubernetes.io/tls")],
                  "metadata": {"resourceVersion": "11", "continue": "p2"}},
             # a later page may leave the columns out: the first page's still say where Type is
             "p2": {"kind": "Table", "rows": [row("pull", "kubernetes.io/dockerconfigjson")],
                    "metadata": {"resourceVersion": "11"}}}
    seen: list[web.Request] = []

    async def secrets(request: web.Request) -> web.Response:
        seen.append(request)
        return web.json_response(pages[request.query.get("continue", "")])

    async def run() -> list[dict[str, Any]]:
        app = web.Application()
        app.router.add_get("/api/v1/namespaces/team-a/secrets", secrets)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        kube = Kube(KubeConfig(server=f"http://127.0.0.1:{port(runner)}", token="t0k"))
        try:
            return await kube.list_secret_metadata("team-a", label_selector="app=web")
        finally:
            await kube.close()
            await runner.cleanup()

    found = asyncio.run(run())
    assert [(s["metadata"]["name"], s["type"]) for s in found] == [("tls", "kubernetes.io/tls"),
                                                                    ("pull", "kubernetes.io/dockerconfigjson")]
    assert all(set(s) == {"metadata", "type"} for s in found)
    for request in seen:
        assert request.query["includeObject"] == "Metadata" and request.query["labelSelector"] == "app=web"
        assert "as=Table" in request.headers["Accept"]
    assert [r.query.get("continue") for r in seen] == [None, "p2"]
