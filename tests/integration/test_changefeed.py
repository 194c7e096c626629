"""Instant updates from Vault's socket audit device (issue 19), against the local stack's real Vault.

Vault streams to Rotor through a small TCP relay in this test: stopping the relay is Rotor's listener
going away as Vault sees it, while Rotor itself keeps running. The stack's Vault also has a file audit
device, so it keeps serving when the socket device's sink is gone.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import hvac
import pytest

from rotor.config import ChangeFeed
from rotor.observability.metrics import REGISTRY
from tests.devenv import StackInfo
from tests.devenv.process import free_port

from .conftest import (
    OperatorLogs,
    RunningOperator,
    get_source,
    operator_settings,
    secret_data,
    secret_source,
    wait_for,
    wait_ready,
)

TOKEN = f"rotor-feed-{uuid.uuid4().hex}"


class Relay:
    """Forwards each connection's bytes one way (Vault -> Rotor); stop() closes everything, at once."""

    def __init__(self, target: int) -> None:
        self.target, self.port = target, free_port()
        self._server: socket.socket | None = None
        self._open: list[socket.socket] = []

    def start(self) -> None:
        self._server = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, args=(self._server,), daemon=True).start()

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for sock in self._open:
            sock.close()
        self._open = []

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                inbound, _ = server.accept()
            except OSError:
                return
            try:
                outbound = socket.create_connection(("127.0.0.1", self.target))
            except OSError:  # Rotor not listening (yet): Vault sees its connection closed
                inbound.close()
                continue
            self._open += [inbound, outbound]
            threading.Thread(target=self._pump, args=(inbound, outbound), daemon=True).start()

    @staticmethod
    def _pump(inbound: socket.socket, outbound: socket.socket) -> None:
        try:
            while chunk := inbound.recv(65536):
                outbound.sendall(chunk)
        except OSError:
            pass
        finally:
            inbound.close()
            outbound.close()


@pytest.fixture(scope="module")
def feed(info: StackInfo, operator_aside: None, operator_logs: OperatorLogs,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Relay]:
    """Rotor with a change feed on the default connection, and Vault's socket device streaming to it."""
    token_file = tmp_path_factory.mktemp("feed") / "token"
    token_file.write_text(TOKEN + "\n")
    listen = free_port()
    change_feed = ChangeFeed(listen=f"127.0.0.1:{listen}", allowed_sources=("127.0.0.0/8",), token_file=token_file,
                             debounce_seconds=0.05)
    settings = operator_settings(info)
    default = settings.vault_connections["default"].model_copy(update={"change_feed": change_feed})
    relay = Relay(listen)
    vault = hvac.Client(url=info.vault_addr, token=info.vault_root_token)
    device = f"rotor-{uuid.uuid4().hex[:8]}"
    with RunningOperator(settings.model_copy(update={"vault_connections": {"default": default}})):
        relay.start()
        # Vault writes a test record on enabling: it fails until Rotor listens.
        wait_for(lambda: _enable(vault, device, relay.port), 30, what="socket audit device enabled")
        try:
            yield relay
        finally:
            vault.sys.disable_audit_device(device)
            relay.stop()


def _enable(vault: hvac.Client, device: str, port: int) -> bool:
    try:
        vault.sys.enable_audit_device("socket", path=device, options={
            "address": f"127.0.0.1:{port}", "socket_type": "tcp", "prefix": TOKEN})
    except hvac.exceptions.InvalidRequest:
        return False
    return True


def forged_write(path: str) -> bytes:
    """What a forger would send: the smallest record that reads as a KV write of PATH."""
    record = {"request": {"mount_type": "kv", "operation": "update", "path": path}, "type": "response"}
    return json.dumps(record, separators=(",", ":")).encode()


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _vault_requests() -> float:
    """Every request Rotor made of the default Vault connection so far."""
    return sum(sample.value for family in REGISTRY.collect() if family.name == "rotor_backend_requests"
               for sample in family.samples
               if sample.name.endswith("_total") and sample.labels.get("backend") == "default")


def _healthy() -> bool:
    return _sample("rotor_changefeed_up", backend="default") == 1.0


def _source(custom: Any, namespace: str, role: str, name: str, interval: str) -> None:
    secret_source(custom, namespace, name, {"provider": "vault", "serviceAccountName": "app",
                                            "vault": {"path": f"{namespace}/{name}", "role": role},
                                            "refresh": {"interval": interval, "jitter": 0}})
    wait_ready(custom, namespace, name)


def _delivered(core: Any, namespace: str, name: str, value: bytes) -> bool:
    return (secret_data(core, namespace, name) or {}).get("password") == value


def test_a_write_reaches_the_secret_within_two_seconds_with_a_one_hour_interval(
        feed: Relay, custom: Any, core: Any, vault: hvac.Client, namespace: str, app_identity: str) -> None:
    vault.secrets.kv.v2.create_or_update_secret(f"{namespace}/db", {"password": "pw-1"}, mount_point="secret")
    _source(custom, namespace, app_identity, "db", "1h")
    wait_for(_healthy, 10, what="change feed up")
    took = []
    for round_ in range(2, 7):
        value = f"pw-{round_}".encode()
        written = time.monotonic()
        vault.secrets.kv.v2.create_or_update_secret(f"{namespace}/db", {"password": value.decode()},
                                                    mount_point="secret")
        wait_for(lambda v=value: _delivered(core, namespace, "db", v), 5, interval=0.02, what=f"{value!r} delivered")
        took.append(time.monotonic() - written)
    print(f"\nchange feed: Vault write -> Secret in {', '.join(f'{t:.2f}' for t in took)} s")
    assert max(took) < 2.0
    assert _sample("rotor_changefeed_syncs_total", backend="default") >= 3


def test_records_for_paths_no_source_reads_cost_no_backend_read(
        feed: Relay, custom: Any, vault: hvac.Client, namespace: str, app_identity: str) -> None:
    vault.secrets.kv.v2.create_or_update_secret(f"{namespace}/db", {"password": "pw-1"}, mount_point="secret")
    _source(custom, namespace, app_identity, "db", "1h")
    wait_for(_healthy, 10, what="change feed up")
    time.sleep(0.5)  # let the first sync's own requests settle
    requests, changes = _vault_requests(), _sample("rotor_changefeed_records_total", backend="default",
                                                   result="change")
    for i in range(20):
        vault.secrets.kv.v2.create_or_update_secret(f"{namespace}/unread-{i}", {"password": "x"},
                                                    mount_point="secret")
        vault.write(f"kv1/{namespace}/unread-{i}", password="x")
    wait_for(lambda: _sample("rotor_changefeed_records_total", backend="default", result="change")
             >= changes + 40, 10, what="the 40 change records read")
    time.sleep(0.5)  # past the debounce window
    assert _vault_requests() == requests


def test_a_forged_record_costs_at_most_one_read_and_never_a_wrong_write(
        feed: Relay, custom: Any, core: Any, vault: hvac.Client, namespace: str, app_identity: str) -> None:
    vault.secrets.kv.v2.create_or_update_secret(f"{namespace}/db", {"password": "pw-1"}, mount_point="secret")
    _source(custom, namespace, app_identity, "db", "1h")
    port = int(feed.target)
    time.sleep(0.5)
    before = _vault_requests()
    # Without the token: closed on the first line, nothing read.
    with socket.create_connection(("127.0.0.1", port)) as forger:
        forger.sendall(forged_write(f"secret/data/{namespace}/db") + b"\n")
        forger.settimeout(5)
        assert forger.recv(100) == b""
    time.sleep(0.5)
    assert _vault_requests() == before
    # Even with the token (leaked): a sync that reads Vault as usual, once; the Secret keeps Vault's value.
    with socket.create_connection(("127.0.0.1", port)) as forger:
        forger.sendall(TOKEN.encode() + forged_write(f"secret/data/{namespace}/db") + b"\n")
        time.sleep(1.0)
    assert _vault_requests() - before <= 1
    assert secret_data(core, namespace, "db") == {"password": b"pw-1"}


def _feed_reason(custom: Any, namespace: str, name: str) -> str | None:
    """The reason of the source's ChangeFeed condition (FeedHealthy, FeedDown), None without one."""
    for condition in get_source(custom, namespace, name).get("status", {}).get("conditions") or ():
        if condition["type"] == "ChangeFeed":
            assert "Vault connection default" in condition["message"]
            return str(condition["reason"])
    return None


def test_while_the_feed_is_healthy_a_timer_refresh_does_not_read_vault(
        feed: Relay, custom: Any, vault: hvac.Client, namespace: str, app_identity: str) -> None:
    vault.secrets.kv.v2.create_or_update_secret(f"{namespace}/db", {"password": "pw-1"}, mount_point="secret")
    _source(custom, namespace, app_identity, "db", "1s")
    wait_for(_healthy, 10, what="change feed up")
    # Its next read after the feed came up is the last one: the feed vouches for every change after it.
    wait_for(lambda: _feed_reason(custom, namespace, "db") == "FeedHealthy", 10, what="status: FeedHealthy")
    time.sleep(1.5)
    requests, skipped = _vault_requests(), _sample("rotor_changefeed_skipped_refreshes_total", backend="default")
    time.sleep(4)  # four refresh intervals
    assert _vault_requests() == requests
    assert _sample("rotor_changefeed_skipped_refreshes_total", backend="default") - skipped >= 3


def test_with_the_listener_gone_vault_keeps_serving_and_polling_catches_up(
        feed: Relay, custom: Any, core: Any, vault: hvac.Client, namespace: str, app_identity: str) -> None:
    vault.secrets.kv.v2.create_or_update_secret(f"{namespace}/db", {"password": "pw-1"}, mount_point="secret")
    _source(custom, namespace, app_identity, "db", "3s")
    wait_for(_healthy, 10, what="change feed up")
    wait_for(lambda: _feed_reason(custom, namespace, "db") == "FeedHealthy", 10, what="status: FeedHealthy")
    feed.stop()
    try:
        wait_for(lambda: not _healthy(), 5, what="change feed down")
        wait_for(lambda: _feed_reason(custom, namespace, "db") == "FeedDown", 10, what="status: FeedDown")
        started = time.monotonic()
        for i in range(20):  # Vault serves every request (its file audit device succeeds)
            vault.secrets.kv.v2.create_or_update_secret(f"{namespace}/db", {"password": f"pw-down-{i}"},
                                                        mount_point="secret")
        assert (time.monotonic() - started) / 20 < 0.5
        wait_for(lambda: _delivered(core, namespace, "db", b"pw-down-19"), 15, what="polling delivered the write")
    finally:
        feed.start()
    vault.secrets.kv.v2.create_or_update_secret(f"{namespace}/db", {"password": "pw-back"}, mount_point="secret")
    wait_for(_healthy, 10, what="change feed up again (Vault reconnects at its next record)")
    wait_for(lambda: _feed_reason(custom, namespace, "db") == "FeedHealthy", 10, what="status: FeedHealthy again")
    assert _sample("rotor_changefeed_fallbacks_total", backend="default", reason="disconnected") >= 1
