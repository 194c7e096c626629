"""One Reloader on the fake cluster, fed by its changes as the handlers feed it watch events, on a
clock the test moves."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from rotor.api import keys
from rotor.engines.delivery.worker import Reloader
from rotor.kube import Kube
from rotor.planning.podspec import BY_KIND, RESTARTABLE
from rotor.planning.reload import RateLimits
from tests.fakes.kube import FakeKube

HMAC_KEY = b"k" * 32
NS = "team-a"
WINDOW = 5.0
D1, D2, D3 = ("sha256:" + c * 64 for c in "123")
_KIND_OF = {BY_KIND[kind].plural: kind for kind in RESTARTABLE}


class Cluster:
    """FakeKube + Reloader. Polling is off unless asked for (poll_seconds)."""

    def __init__(self, limits: RateLimits | None = None, *, poll_seconds: float = 0.0) -> None:
        self.kube = FakeKube()
        self.now = 1000.0
        self.reloader = Reloader(cast(Kube, self.kube), HMAC_KEY, window=WINDOW, poll_seconds=poll_seconds,
                                 limits=limits or RateLimits(per_namespace=50, cluster=50, window=60),
                                 clock=lambda: self.now)
        self.kube.subscribe(self._watch)
        self.patches: list[tuple[str, dict[str, Any]]] = []  # (workload, merge patch) that went through
        patch_workload = self.kube.patch_workload

        async def recorded(kind: str, namespace: str, name: str, patch: Any) -> None:
            await patch_workload(kind, namespace, name, patch)
            self.patches.append((name, dict(patch)))

        self.kube.patch_workload = recorded  # type: ignore[method-assign]

    def _watch(self, event_type: str, plural: str, body: dict[str, Any]) -> None:
        view = self.reloader.view
        if plural == "secrets" and (body["metadata"].get("labels") or {}).get(keys.MANAGED_BY) == "rotor":
            # As rotor.engines.secretfeed delivers it (managed Secrets only): metadata, no data.
            view.observe_secret(event_type, {"metadata": body["metadata"]}, False)
        elif plural == "secretsources":
            view.observe_source(event_type, body)
        elif plural in _KIND_OF:
            view.observe_workload(_KIND_OF[plural], event_type, body)

    # -- the world ------------------------------------------------------------------------------

    def source(self, name: str = "db", target: str = "db-credentials") -> None:
        self.kube.put("secretsources", {"apiVersion": "rotor.dev/v1alpha1", "kind": "SecretSource",
                                        "metadata": {"name": name, "namespace": NS},
                                        "spec": {"provider": "vault", "target": {"name": target}}})

    def managed_secret(self, name: str, digest: str) -> None:
        """A Secret as SecretSync writes it: labelled, with its keyed digest."""
        self.kube.put("secrets", {"metadata": {"name": name, "namespace": NS,
                                               "labels": {keys.MANAGED_BY: keys.MANAGED_BY_VALUE},
                                               "annotations": {keys.DATA_HMAC: digest}},
                                  "type": "Opaque", "data": {}})

    def plain_secret(self, name: str, data: dict[str, str]) -> None:
        """A Secret someone else wrote (no watch here: the reloader polls for it). DATA is base64."""
        self.kube.put("secrets", {"metadata": {"name": name, "namespace": NS}, "type": "Opaque", "data": data})

    def deployment(self, name: str, *, reload_on: str = "", inject: str = "", **pod: Any) -> None:
        template: dict[str, Any] = {"metadata": {"labels": {}, "annotations": {}},
                                    "spec": {"containers": [{"name": "app"}], **pod}}
        if inject:
            template["metadata"] = {"labels": {keys.INJECT_LABEL: "true"}, "annotations": {keys.SECRETS: inject}}
        annotations = {keys.RELOAD_ON: reload_on} if reload_on else {}
        self.kube.put("deployments", {"apiVersion": "apps/v1", "kind": "Deployment",
                                      "metadata": {"name": name, "namespace": NS, "annotations": annotations},
                                      "spec": {"replicas": 1, "template": template}})
        self.rolled_out(name)

    def rolled_out(self, name: str) -> None:
        """The Deployment controller's part: the current template is rolled out."""
        body = self.kube.get("deployments", NS, name)
        assert body is not None
        body["status"] = {"observedGeneration": body["metadata"]["generation"], "replicas": 1,
                          "updatedReplicas": 1, "availableReplicas": 1}
        self.kube.put("deployments", body)

    # -- time -----------------------------------------------------------------------------------

    def step(self, seconds: float = WINDOW) -> None:
        """Let SECONDS pass, then run one round of the loop."""
        self.now += seconds
        asyncio.run(self.reloader.step(self.now))

    # -- what happened --------------------------------------------------------------------------

    def restarts(self) -> list[str]:
        """The workloads patched with a new pod-template hash (a rollout), in order."""
        return [name for name, patch in self.patches if "spec" in patch]

    def adoptions(self) -> list[str]:
        """The workloads whose record was written without touching the template (no rollout)."""
        return [name for name, patch in self.patches if "spec" not in patch]

    def template_hash(self, name: str) -> str | None:
        body = self.kube.get("deployments", NS, name)
        assert body is not None
        return (body["spec"]["template"]["metadata"].get("annotations") or {}).get(keys.SECRETS_HASH)

    def generation(self, name: str) -> int:
        body = self.kube.get("deployments", NS, name)
        assert body is not None
        return int(body["metadata"]["generation"])

    def status_writes(self, source: str = "db") -> list[tuple[str, str, str]]:
        return [r for r in self.kube.requests if r == ("patch", "secretsources/status", source)]

    def consumers(self, source: str = "db") -> dict[str, int] | None:
        body = self.kube.get("secretsources", NS, source)
        assert body is not None
        return (body.get("status") or {}).get("consumers")
