"""An unreachable API server is a KubeError callers retry (status 503), never an exception that escapes."""

from __future__ import annotations

import asyncio

import pytest

from rotor.kube import Kube, KubeConfig, KubeError


def test_an_unreachable_api_server_is_a_503_kube_error() -> None:
    kube = Kube(KubeConfig(server="https://127.0.0.1:9", insecure=True))  # nothing listens on port 9

    async def read() -> None:
        try:
            await kube.read_secret("team-a", "db")
        finally:
            await kube.close()

    with pytest.raises(KubeError) as failed:
        asyncio.run(read())
    assert failed.value.status == 503 and "could not be reached" in failed.value.message
