"""An unreachable API server is a KubeError callers retry (status 503), never an exception that escapes."""

from __future__ import annotations

import asyncio

import kubernetes
import pytest

from rotor.kube import Kube, KubeError


def test_an_unreachable_api_server_is_a_503_kube_error() -> None:
    config = kubernetes.client.Configuration()
    config.host, config.verify_ssl, config.retries = "https://127.0.0.1:9", False, 0  # nothing listens on port 9
    kube = Kube(config)
    try:
        with pytest.raises(KubeError) as failed:
            asyncio.run(kube.read_secret("team-a", "db"))
    finally:
        kube.close()
    assert failed.value.status == 503 and "could not be reached" in failed.value.message
