"""Metadata-only list and watch: PartialObjectMetadata, so no Secret value ever leaves the API server.

Kopf's watches carry whole objects; for Secrets that means every labelled Secret's data, and the label
can be forged (hack/bench_memory.py: 500 forged 1 MiB Secrets took a 512 MiB pod down at start-up).
Rotor's own watch of Secrets asks the API server for metadata only (what controller-runtime's metadata
informers ask for) and reads a Secret by name when it needs the data.

A watch is one long request on the event loop (aiohttp), read line by line; it holds a connection of
the transport's pool while it lasts.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from rotor.kube.errors import KubeError
from rotor.kube.transport import Transport, api_path

_META_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
_META = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
_TABLE = "application/json;as=Table;g=meta.k8s.io;v=v1"


class WatchApi(Transport):
    async def metadata_pages(self, group: str, version: str, plural: str, namespace: str | None = None, *,
                             label_selector: str = "", page: int = 500
                             ) -> AsyncIterator[tuple[list[dict[str, Any]], str]]:
        """Every object's metadata (PartialObjectMetadata items: apiVersion, kind, metadata) a page at a time,
        with the list's resourceVersion (the same on every page: a watch from it misses nothing)."""
        query = [("labelSelector", label_selector)] if label_selector else []
        # Secrets as a Table of metadata rows (includeObject=Metadata): the same answer, and a list an
        # API server's audit log shows to hold no data (the Accept header is not audited).
        table = plural == "secrets"
        accept = _TABLE if table else _META_LIST
        columns: list[str] = []  # a Table's columns, kept should a later page leave them out
        async for body in self._pages(plural, api_path(group, version, plural, namespace), page, accept=accept,
                                      query=[("includeObject", "Metadata"), *query] if table else query):
            if table:
                columns = [c.get("name", "") for c in body.get("columnDefinitions") or ()] or columns
            yield (_table_items(body, columns) if table else list(body.get("items") or ()),
                   (body.get("metadata") or {}).get("resourceVersion") or "")

    async def list_secret_metadata(self, namespace: str | None = None, *, page: int = 500,
                                   label_selector: str = "") -> list[dict[str, Any]]:
        """Every Secret's metadata and type (those LABEL_SELECTOR matches), never its data."""
        found: list[dict[str, Any]] = []
        async for items, _ in self.metadata_pages("", "v1", "secrets", namespace, label_selector=label_selector,
                                                  page=page):
            found.extend({"metadata": o.get("metadata") or {}, "type": o.get("type") or "Opaque"} for o in items)
        return found

    async def body_pages(self, group: str, version: str, plural: str, namespace: str | None = None, *,
                         label_selector: str = "", page: int = 500) -> AsyncIterator[tuple[list[dict[str, Any]], str]]:
        """Every object whole, a page at a time, with the list's resourceVersion. Never Secrets: their values
        stay on the API server unless read by name. A page at a time: 10,000 objects are never all in
        memory at once (the peak stays, as freed arenas are rarely returned)."""
        assert plural != "secrets", "list Secrets with metadata_pages"
        query = [("labelSelector", label_selector)] if label_selector else []
        async for body in self._pages(plural, api_path(group, version, plural, namespace), page, query=query):
            yield list(body.get("items") or ()), (body.get("metadata") or {}).get("resourceVersion") or ""

    async def list_metadata(self, group: str, version: str, plural: str, namespace: str | None = None, *,
                            label_selector: str = "", page: int = 500) -> tuple[list[dict[str, Any]], str]:
        """metadata_pages at once: every item, and the list's resourceVersion."""
        items: list[dict[str, Any]] = []
        version_seen = ""
        async for found, listed in self.metadata_pages(group, version, plural, namespace,
                                                       label_selector=label_selector, page=page):
            items.extend(found)
            version_seen = listed
        return items, version_seen

    def watch_metadata(self, group: str, version: str, plural: str, namespace: str | None,
                       resource_version: str, *, label_selector: str = "",
                       timeout_seconds: int = 300) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """(type, object) for each change after RESOURCE_VERSION until the server ends the watch; bookmarks
        come as ("BOOKMARK", {metadata: {resourceVersion}}). A KubeError 410 (Gone) means: list again."""
        return self._watch(_META, group, version, plural, namespace, resource_version, label_selector=label_selector,
                           timeout_seconds=timeout_seconds)

    def watch_bodies(self, group: str, version: str, plural: str, namespace: str | None,
                     resource_version: str, *, label_selector: str = "",
                     timeout_seconds: int = 300) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """watch_metadata with whole objects. Never Secrets."""
        assert plural != "secrets", "watch Secrets with watch_metadata"
        return self._watch("application/json", group, version, plural, namespace, resource_version,
                           label_selector=label_selector, timeout_seconds=timeout_seconds)

    async def _watch(self, accept: str, group: str, version: str, plural: str, namespace: str | None,
                     resource_version: str, *, label_selector: str,
                     timeout_seconds: int) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        query = [("watch", "true"), ("allowWatchBookmarks", "true"), ("resourceVersion", resource_version),
                 ("timeoutSeconds", str(timeout_seconds))] + ([("labelSelector", label_selector)] if label_selector
                                                              else [])
        response = await self._open("watch", plural, "GET", api_path(group, version, plural, namespace),
                                    query=query, accept=accept, read_timeout=timeout_seconds + 30)
        try:
            async for line in _lines(response):
                event = json.loads(line)
                kind, obj = event.get("type") or "", event.get("object") or {}
                if kind == "ERROR":
                    raise KubeError(int(obj.get("code") or 500), str(obj.get("reason") or "Error"),
                                    str(obj.get("message") or "the watch ended with an error"))
                yield kind, obj
        finally:
            response.close()  # cancelled mid-read (shutting down) too: the connection is dropped, not pooled


async def _lines(response: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    """The stream's lines, however long: aiohttp's readline stops at 128 KiB, and one large object (a
    tenant's) must not break the watch every other tenant's events come by."""
    pending = bytearray()
    try:
        async for chunk in response.content.iter_any():
            pending += chunk
            while (end := pending.find(b"\n")) >= 0:
                line = bytes(pending[:end])
                del pending[:end + 1]
                if line.strip():
                    yield line
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise KubeError(503, "ServiceUnavailable", f"the watch broke ({type(exc).__name__})") from None
    if pending.strip():
        yield bytes(pending)


def _table_items(body: dict[str, Any], columns: list[str]) -> list[dict[str, Any]]:
    """A Table page's PartialObjectMetadata rows, each with its Type column (what `kubectl get secrets`
    shows) as "type", which the metadata alone lacks."""
    at = columns.index("Type") if "Type" in columns else None
    items = []
    for row in body.get("rows") or ():
        cells = row.get("cells") or ()
        item = dict(row.get("object") or {})
        if at is not None and at < len(cells):
            item["type"] = cells[at]
        items.append(item)
    return items
