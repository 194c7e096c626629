"""One real control plane for the whole integration suite (etcd, kube-apiserver, Vault, PostgreSQL).

Started once per session by tests.devenv; each test gets its own namespace. A missing binary fails
the suite (it never skips): `make testbin` builds them.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import hvac
import kubernetes
import pytest
import yaml

from rotor.config import Settings, VaultConnection
from tests.devenv import Stack, StackInfo

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    # Not under pytest's tmp_path: concurrent pytest runs on one machine prune each other's old
    # numbered base directories, and would delete this run's kubeconfig and Vault data under it.
    state = Path(tempfile.mkdtemp(prefix="rotor-it-"))
    devenv = Stack(state / "devenv")
    devenv.start()
    os.environ["KUBECONFIG"] = devenv.info.kubeconfig
    api = kubernetes.config.new_client_from_config(config_file=devenv.info.kubeconfig)
    ext = kubernetes.client.ApiextensionsV1Api(api)
    for path in sorted((REPO / "crds").glob("*.yaml")):
        ext.create_custom_resource_definition(yaml.safe_load(path.read_text()))
    _wait_for_crds(kubernetes.client.CustomObjectsApi(api))
    yield devenv
    devenv.stop()
    shutil.rmtree(state, ignore_errors=True)


def _wait_for_crds(custom: Any) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            for plural in ("secretsources", "rotationpolicies", "leakincidents"):
                custom.list_cluster_custom_object("rotor.dev", "v1alpha1", plural)
            return
        except kubernetes.client.ApiException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.fixture(scope="session")
def info(stack: Stack) -> StackInfo:
    return stack.info


@pytest.fixture(scope="session")
def api_client(info: StackInfo) -> kubernetes.client.ApiClient:
    return kubernetes.config.new_client_from_config(config_file=info.kubeconfig)


@pytest.fixture(scope="session")
def core(api_client: kubernetes.client.ApiClient) -> kubernetes.client.CoreV1Api:
    return kubernetes.client.CoreV1Api(api_client)


@pytest.fixture(scope="session")
def custom(api_client: kubernetes.client.ApiClient) -> kubernetes.client.CustomObjectsApi:
    return kubernetes.client.CustomObjectsApi(api_client)


@pytest.fixture(scope="session")
def vault(info: StackInfo) -> hvac.Client:
    """Vault as its administrator (root token): tests write secrets and policies with it."""
    return hvac.Client(url=info.vault_addr, token=info.vault_root_token)


@pytest.fixture
def make_namespace(api_client: kubernetes.client.ApiClient) -> Iterator[Callable[[str | None], str]]:
    """make_namespace(name=None) -> a new namespace, emptied of what Rotor watches and deleted after the test."""
    core = kubernetes.client.CoreV1Api(api_client)
    made: list[str] = []

    def make(name: str | None = None) -> str:
        name = name or f"t-{uuid.uuid4().hex[:10]}"
        core.create_namespace({"metadata": {"name": name}})
        made.append(name)
        return name

    yield make
    for name in made:
        _empty_and_delete(api_client, name)


@pytest.fixture
def namespace(make_namespace: Callable[[str | None], str]) -> str:
    return make_namespace(None)


# What an operator watches and keeps working on: what a finished test leaves of these, later tests pay for.
_ROTOR_KINDS = ("leakincidents", "rotationpolicies", "secretsources")
_WORKLOADS = (("apps", "deployments"), ("apps", "statefulsets"), ("apps", "daemonsets"), ("batch", "cronjobs"))


def _empty_and_delete(api_client: kubernetes.client.ApiClient, namespace: str) -> None:
    """Delete the namespace without waiting for it to go. There is no namespace controller here (no
    kube-controller-manager), so its objects would outlive it: delete those an operator works on
    first. Rotor's cleanup finalizers are handled by whichever operator runs next."""
    custom = kubernetes.client.CustomObjectsApi(api_client)
    core = kubernetes.client.CoreV1Api(api_client)
    calls: list[Callable[[], Any]] = [
        *(functools.partial(custom.delete_collection_namespaced_custom_object, "rotor.dev", "v1alpha1", namespace,
                            plural) for plural in _ROTOR_KINDS),
        *(functools.partial(custom.delete_collection_namespaced_custom_object, group, "v1", namespace, plural)
          for group, plural in _WORKLOADS),
        functools.partial(core.delete_collection_namespaced_pod, namespace),
        functools.partial(core.delete_namespace, namespace),
    ]
    for call in calls:
        try:
            call()
        except kubernetes.client.ApiException as exc:
            if exc.status != 404:
                raise


class OperatorLogs(logging.Handler):
    """Every record the operator (and Kopf) logs during the session, formatted, at DEBUG."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def operator_settings(info: StackInfo, **overrides: Any) -> Settings:
    return Settings(
        vault_connections={"default": VaultConnection(address=info.vault_addr, rate_per_second=500,
                                                      login_check_hosts=(f"{info.pg_host}:{info.pg_port}",),
                                                      # as deployed: a LeakIncident's audit step reads it
                                                      audit_log_file=Path(info.vault_audit_log))},
        # Tests use 1-2 s refresh intervals; the operator's default minimum (10 s) would raise them.
        **{"metrics_port": 0, "log_level": "debug", "min_refresh_seconds": 1, **overrides})


class RunningOperator:
    """Rotor in a background thread of the test process, as `rotor run` would run it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._fresh()

    @property
    def running(self) -> bool:
        return self.thread.is_alive()

    def __enter__(self) -> RunningOperator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _fresh(self) -> None:
        self.stop_flag = threading.Event()
        self.ready_flag = threading.Event()
        self.thread = threading.Thread(target=self._run, name="rotor-operator", daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        from rotor.handlers.app import run

        try:
            run(self.settings, stop_flag=self.stop_flag, ready_flag=self.ready_flag, configure_logs=False)
        except BaseException as exc:  # surfaced by start()/stop()
            self.error = exc

    def start(self) -> RunningOperator:
        if self.thread.ident is not None:  # it ran before, and a thread starts only once
            self._fresh()
        self.thread.start()
        if not self.ready_flag.wait(60):
            raise RuntimeError(f"operator did not become ready: {self.error!r}")
        return self

    def stop(self) -> None:
        self.stop_flag.set()
        if self.thread.ident is None:  # never started
            return
        self.thread.join(60)
        assert not self.thread.is_alive(), "operator did not stop within 60s"

    def restart(self) -> None:
        """Stop gracefully and start again in place (what a rollout or a crash-restart does)."""
        self.stop()
        self.start()


@pytest.fixture(scope="session")
def operator_logs() -> Iterator[OperatorLogs]:
    handler = OperatorLogs()
    root = logging.getLogger()
    root.addHandler(handler)
    previous = root.level
    root.setLevel(logging.DEBUG)
    # The operator runs in this process beside the tests' own kubernetes client, which logs whole response
    # bodies (the tests' Secrets) at DEBUG. Rotor does not use that client; its records are not Rotor's.
    logging.getLogger("kubernetes.client.rest").setLevel(logging.INFO)
    yield handler
    root.removeHandler(handler)
    root.setLevel(previous)


@pytest.fixture(scope="session")
def session_operator(info: StackInfo, operator_logs: OperatorLogs) -> Iterator[RunningOperator]:
    """The one in-process operator most tests share; started by `operator`, stopped by `operator_aside`."""
    shared = RunningOperator(operator_settings(info))
    yield shared
    if shared.running:
        shared.stop()


@pytest.fixture
def operator(session_operator: RunningOperator) -> RunningOperator:
    """The session operator, running: started on first use, and again after a module set it aside."""
    if not session_operator.running:
        session_operator.start()
    return session_operator


@pytest.fixture(scope="module")
def operator_aside(session_operator: RunningOperator) -> None:
    """For a module that runs its own operator (other settings, a subprocess, a crash): two operators
    must never act on the same objects, so the session operator is stopped. It is started again only
    when a later test asks for `operator`, so consecutive such modules pay for no restart in between."""
    if session_operator.running:
        session_operator.stop()


def wait_for(check: Callable[[], Any], timeout: float = 30.0, interval: float = 0.2, what: str = "") -> Any:
    """Poll until check() returns something truthy; fail with the last value seen."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except kubernetes.client.ApiException as exc:
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or check}: last={last!r}")


def vault_role(vault: hvac.Client, namespace: str, *, service_account: str = "app",
               paths: tuple[str, ...] | None = None, role: str | None = None) -> str:
    """A Vault policy + Kubernetes-auth role that lets NAMESPACE/SERVICE_ACCOUNT read its own paths."""
    role = role or f"{namespace}-app"
    paths = paths if paths is not None else (f"secret/data/{namespace}/*", f"kv1/{namespace}/*")
    policy = "\n".join(f'path "{p}" {{ capabilities = ["read"] }}' for p in paths)
    vault.sys.create_or_update_policy(name=role, policy=policy)
    vault.write(f"auth/kubernetes/role/{role}", bound_service_account_names=[service_account],
                bound_service_account_namespaces=[namespace], policies=[role], audience="vault", ttl="1h")
    return role


@pytest.fixture
def app_identity(core: kubernetes.client.CoreV1Api, vault: hvac.Client, namespace: str) -> str:
    """ServiceAccount `app` in the test namespace, with a Vault role reading secret/<ns>/* and kv1/<ns>/*."""
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "app"}})
    return vault_role(vault, namespace)


def secret_source(custom: Any, namespace: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    body = {"apiVersion": "rotor.dev/v1alpha1", "kind": "SecretSource", "metadata": {"name": name}, "spec": spec}
    result: dict[str, Any] = custom.create_namespaced_custom_object("rotor.dev", "v1alpha1", namespace,
                                                                    "secretsources", body)
    return result


def get_source(custom: Any, namespace: str, name: str) -> dict[str, Any]:
    result: dict[str, Any] = custom.get_namespaced_custom_object("rotor.dev", "v1alpha1", namespace,
                                                                 "secretsources", name)
    return result


def ready(custom: Any, namespace: str, name: str) -> dict[str, Any] | None:
    """The Ready condition of a SecretSource, once it has one."""
    status = get_source(custom, namespace, name).get("status") or {}
    return next((c for c in status.get("conditions") or [] if c["type"] == "Ready"), None)


def wait_ready(custom: Any, namespace: str, name: str, status: str = "True", reason: str | None = None,
               timeout: float = 30) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        condition = ready(custom, namespace, name)
        if condition and condition["status"] == status and (reason is None or condition["reason"] == reason):
            return condition
        return None

    result: dict[str, Any] = wait_for(check, timeout, what=f"{namespace}/{name} Ready={status} {reason or ''}")
    return result


def secret_data(core: kubernetes.client.CoreV1Api, namespace: str, name: str) -> dict[str, bytes] | None:
    import base64

    try:
        secret = core.read_namespaced_secret(name, namespace)
    except kubernetes.client.ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return {k: base64.b64decode(v) for k, v in (secret.data or {}).items()}
