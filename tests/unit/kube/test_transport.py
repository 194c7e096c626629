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


def test_an_error_answer_keeps_the_status_message_and_never_a_body_that_is_not_a_status() -> None:
    from rotor.kube.errors import status_error

    status = b'{"kind":"Status","status":"Failure","reason":"Conflict","message":"the object has been modified"}'
    conflict = status_error(409, "Conflict", status)
    assert (conflict.status, conflict.reason, conflict.message) == (409, "Conflict", "the object has been modified")
    assert conflict.conflict
    # A proxy in between may answer with a page that echoes the request (a Secret's data, say).
    echoed = status_error(502, "Bad Gateway", b'{"data": {"password": "c2VjcmV0"}}')
    assert (echoed.reason, echoed.message) == ("Bad Gateway", "") and "c2VjcmV0" not in str(echoed)
