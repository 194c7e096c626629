"""The incident engine on fakes: FakeKube, FakeBackend, and plain stand-ins for the SecretSource and
rotation engines (rotor.engines.ports), with helpers that play the rotation engine's part."""

from __future__ import annotations

import base64
import datetime
import json
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

from rotor.api.rotationpolicy import RotationPolicySpec
from rotor.api.secretsource import SecretSourceSpec
from rotor.engines.incident.context import Context, resolve
from rotor.engines.incident.view import Key
from rotor.engines.incident.worker import Incidents
from rotor.planning import times
from rotor.planning.incident_denylist import Scope
from tests.fakes.backend import FakeBackend, FakeClock
from tests.fakes.kube import FakeKube

NS = "a"
HMAC_KEY = b"k" * 32
STATE = ("rotor-system", "rotor-hmac-key")  # the HMAC key Secret, which also keeps the denylists
LOGIN_HOSTS = {"default": ("db.example:5432", "db:5432")}


@dataclass
class Source:
    namespace: str
    name: str
    spec: SecretSourceSpec | None
    status: dict[str, Any] = field(default_factory=dict)


class Sources:
    """rotor.engines.ports.Sources (and the HMAC key) over a dict."""

    hmac_key = HMAC_KEY

    def __init__(self) -> None:
        self.sources: dict[Key, Source] = {}
        self.denylists: dict[Hashable, frozenset[str]] = {}
        self.scopes: dict[Hashable, Scope | None] = {}
        self.synced: list[Key] = []

    def source(self, namespace: str, name: str) -> Source | None:
        return self.sources.get((namespace, name))

    def source_for_target(self, namespace: str, target: str) -> str | None:
        return next((s.name for s in self.sources.values() if s.namespace == namespace and s.spec is not None
                     and (s.spec.target.name or s.name) == target), None)

    def sync_now(self, namespace: str, name: str) -> None:
        self.synced.append((namespace, name))

    def set_denylist(self, owner: Hashable, digests: frozenset[str], scope: Scope | None = None) -> None:
        if digests:
            self.denylists[owner] = digests
            self.scopes[owner] = scope
        else:
            self.denylists.pop(owner, None)
            self.scopes.pop(owner, None)


@dataclass
class Policy:
    namespace: str
    name: str
    spec: RotationPolicySpec | None
    status: dict[str, Any] = field(default_factory=dict)
    rotate_now: str | None = None


class Policies:
    """rotor.engines.ports.Policies over a dict."""

    def __init__(self) -> None:
        self.policies: dict[Key, Policy] = {}

    def policy(self, namespace: str, name: str) -> Policy | None:
        return self.policies.get((namespace, name))

    def policies_in(self, namespace: str) -> list[Policy]:
        return [p for (ns, _), p in self.policies.items() if ns == namespace]


class Logins:
    """rotor.backends.protocols.LoginCheck: a database that accepts the logins in `accepted`."""

    def __init__(self) -> None:
        self.accepted: set[tuple[str, str]] = set()
        self.tried: list[tuple[str, int, str, str]] = []

    async def try_login(self, host: str, port: int, dbname: str, user: str, password: str) -> str:
        self.tried.append((host, port, dbname, user))
        return "accepted" if (user, password) in self.accepted else "refused"


class World:
    """One namespace with a Vault-like secret at secret/a/db behind SecretSource db (Secret db-creds)."""

    def __init__(self, backend: FakeBackend | None = None) -> None:
        # The backend's clock an hour behind: versions exist before the incident, reads fall in its window.
        self.clock = FakeClock(times.now() - datetime.timedelta(hours=1))
        self.backend = backend or FakeBackend(clock=self.clock)
        self.backend.clock = self.clock
        self.kube = FakeKube()
        self.kube.put("secrets", {"metadata": {"name": STATE[1], "namespace": STATE[0]},
                                  "data": {"hmac-key": base64.b64encode(HMAC_KEY).decode()}})
        self.sources, self.policies, self.logins = Sources(), Policies(), Logins()
        self.engine = self.new_engine()

    def new_engine(self, sources: Sources | None = None) -> Incidents:
        """An engine over this world's cluster and backend (a restarted operator, with SOURCES)."""
        return Incidents(self.kube, {self.backend.provider: self.backend}, sources or self.sources, self.policies,
                         self.logins, state_namespace=STATE[0], state_secret=STATE[1], login_hosts=LOGIN_HOSTS)

    # -- set-up --------------------------------------------------------------------------------------

    def source(self, data: dict[str, str], *, name: str = "db", provider: str = "vault") -> str:
        """The secret's first version, and the SecretSource delivering it (synced)."""
        version = self.backend.put("secret", f"{NS}/{name}", data)
        raw: dict[str, Any] = {"provider": provider, "serviceAccountName": "app", "target": {"name": f"{name}-creds"}}
        if provider == "vault":
            raw["vault"] = {"path": f"{NS}/{name}", "role": "reader"}
        else:
            raw["kubernetes"] = {"namespace": "b", "name": name}
        self.sources.sources[(NS, name)] = Source(NS, name, SecretSourceSpec.model_validate(raw),
                                                  {"syncedVersion": version, "dataHmac": "sha256:delivered"})
        return version

    def policy(self, spec: dict[str, Any], name: str = "db") -> Policy:
        full = {"secretSourceRef": {"name": "db"}, "schedule": {"interval": "720h"},
                "identity": {"serviceAccountName": "rotator", "role": "writer"}, **spec}
        self.kube.put("rotationpolicies", {"metadata": {"name": name, "namespace": NS}, "spec": full})
        policy = Policy(NS, name, RotationPolicySpec.model_validate(full))
        self.policies.policies[(NS, name)] = policy
        return policy

    def incident(self, spec: dict[str, Any], name: str = "leak", created: str | None = None,
                 namespace: str = NS, annotations: dict[str, str] | None = None) -> Key:
        created = created or times.iso(times.now())
        body = self.kube.put("leakincidents", {
            "apiVersion": "rotor.dev/v1alpha1", "kind": "LeakIncident",
            "metadata": {"name": name, "namespace": namespace, "creationTimestamp": created,
                         "annotations": annotations or {}, "managedFields": [
                             {"manager": "kubectl-create", "operation": "Update", "fieldsV1": {"f:spec": {}}}]},
            "spec": {"secretSourceRef": {"name": "db"}, "exposure": {"where": "ci-logs", "reference": "build/42"},
                     **spec}})
        return self.engine.upsert(body)

    def workload(self, plural: str, name: str, pod_spec: dict[str, Any]) -> None:
        body: dict[str, Any] = {"metadata": {"name": name, "namespace": NS}}
        if plural == "pods":
            body["spec"] = pod_spec
        elif plural == "cronjobs":
            body["spec"] = {"jobTemplate": {"spec": {"template": {"spec": pod_spec}}}}
        else:
            body["spec"] = {"template": {"spec": pod_spec}}
        self.kube.put(plural, body)

    # -- the rotation engine's part --------------------------------------------------------------------

    def rotation(self, name: str, phase: str, old: str, new: str | None = None) -> None:
        """The RotationPolicy NAME's status: a rotation from OLD (to NEW) in PHASE."""
        policy = self.policies.policies[(NS, name)]
        rotation: dict[str, Any] = {"id": "r1", "startedAt": times.iso(times.now()), "old": {"version": old}}
        if new is not None:
            rotation["new"] = {"version": new}
        policy.status = {"phase": phase, "rotation": rotation}

    def adopt_emergency(self, name: str) -> Policy:
        """The rotation engine sees the emergency RotationPolicy the incident created."""
        body = self.kube.get("rotationpolicies", NS, name)
        assert body is not None
        policy = Policy(NS, name, RotationPolicySpec.model_validate(body["spec"]),
                        rotate_now=body["metadata"]["annotations"].get("rotor.dev/rotate-now"))
        self.policies.policies[(NS, name)] = policy
        return policy

    # -- driving --------------------------------------------------------------------------------------

    async def step(self, key: Key = (NS, "leak")) -> float | None:
        return await self.engine.step(key)

    async def until(self, stamp: str, key: Key = (NS, "leak"), limit: int = 10) -> dict[str, Any]:
        """Step until the timestamp STAMP is recorded; the status."""
        for _ in range(limit):
            if stamp in (self.status(key).get("timestamps") or {}):
                break
            await self.step(key)
        status = self.status(key)
        assert stamp in status.get("timestamps", {}), status.get("conditions")
        return status

    def status(self, key: Key = (NS, "leak")) -> dict[str, Any]:
        return self.engine.incidents[key].status

    def uid(self, key: Key = (NS, "leak")) -> str:
        return self.engine.incidents[key].uid

    def record(self) -> dict[str, Any]:
        """Rotor's own record of the denylists, as kept in the HMAC key Secret (digests only)."""
        secret = self.kube.secret(*STATE)
        assert secret is not None
        return dict(json.loads(secret.data.get("denylists") or b'{"entries": {}}')["entries"])

    def stored(self, key: Key = (NS, "leak")) -> dict[str, Any]:
        """The status as the API server has it (what users see)."""
        body = self.kube.get("leakincidents", *key)
        assert body is not None
        return dict(body.get("status") or {})

    def context(self, key: Key = (NS, "leak")) -> Context:
        state = self.engine.incidents[key]
        assert state.spec is not None
        return resolve(self.engine.deps, state, state.spec)

    def ready(self, key: Key = (NS, "leak")) -> dict[str, Any]:
        return next(c for c in self.stored(key).get("conditions") or () if c["type"] == "Ready")

    def actions(self, key: Key = (NS, "leak")) -> list[str]:
        return [e["action"] for e in self.stored(key).get("timeline") or ()]
