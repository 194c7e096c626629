"""What the reloader knows, folded from watch events: Secret digests, SecretSource targets, the
workloads that opted in, and what changed since the last round (the batch the worker flushes).

No I/O and no values: a Secret is kept only as its keyed digest.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from rotor.api import keys
from rotor.planning.reload import Workload, batch_delay, consumed_secrets, secret_digest, workload_from_body
from rotor.planning.sync import ObservedSecret

SecretKey = tuple[str, str]  # (namespace, name)
WorkloadKey = tuple[str, str, str]  # (kind, namespace, name)
# What a change to a workload's view must replan; its rollout state only changes the consumer counts.
_PLAN_INPUTS = ("injected_sources", "referenced", "reload_on", "reload", "applied")


@dataclass(frozen=True)
class Digest:
    value: str | None  # "sha256:..." or None: the Secret does not exist
    # Rotor's (labelled managed-by=rotor, with its data-hmac annotation): the managed-Secret feed keeps the
    # digest current from metadata alone; any other Secret is polled.
    managed: bool


class ReloadView:
    """Fed by the handlers (observe_*). WAKE tells the worker there is something to do; CLOCK
    (monotonic seconds) times the batch."""

    def __init__(self, hmac_key: bytes, *, clock: Callable[[], float], wake: Callable[[], None]) -> None:
        self.hmac_key = hmac_key
        self._clock, self._wake = clock, wake
        self.digests: dict[SecretKey, Digest] = {}
        self.targets: dict[SecretKey, str] = {}  # (namespace, SecretSource) -> target Secret
        self.workloads: dict[WorkloadKey, Workload] = {}
        self.reported: dict[SecretKey, dict[str, int]] = {}  # status.consumers as last seen/written
        self.pending_secrets: set[SecretKey] = set()  # digests that moved in this batch
        self.pending_workloads: set[WorkloadKey] = set()  # workloads to replan in this batch
        self.first: float | None = None  # the batch's first and latest change
        self.last: float | None = None
        self.dirty: set[str] = set()  # namespaces whose consumer counts may have changed

    # -- watch events ---------------------------------------------------------------------------

    def observe_secret(self, event_type: str | None, body: Mapping[str, Any], whole: bool = True) -> None:
        """A labelled Secret's event. WHOLE False: metadata only; Rotor's own Secrets carry the digest of
        their data in an annotation, any other's digest is left to the poller (it reads by name)."""
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        if event_type == "DELETED":
            labelled = (meta.get("labels") or {}).get(keys.MANAGED_BY) == keys.MANAGED_BY_VALUE
            self.record(key, Digest(None, labelled))
        elif (meta.get("annotations") or {}).get(keys.DATA_HMAC):
            self.record(key, Digest(self.digest_of_body(body), True))
        elif whole:
            self.record(key, Digest(self.digest_of_body(body), False))
        elif (known := self.digests.get(key)) is not None:
            self.digests[key] = Digest(known.value, False)  # labelled, not Rotor's: polled like any other

    def observe_source(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        if event_type == "DELETED":
            self.targets.pop(key, None)
            self.reported.pop(key, None)
            return
        target = ((body.get("spec") or {}).get("target") or {}).get("name") or meta["name"]
        consumers = (body.get("status") or {}).get("consumers")
        if isinstance(consumers, dict):
            self.reported[key] = {str(k): int(v) for k, v in consumers.items()}
        if self.targets.get(key) != target:
            self.targets[key] = target
            for wkey, workload in self.workloads.items():
                if workload.namespace == key[0] and key[1] in workload.injected_sources:
                    self.pending_workloads.add(wkey)
            self.dirty.add(key[0])
            self.touch()

    def observe_workload(self, kind: str, event_type: str | None, body: Mapping[str, Any]) -> None:
        meta = body["metadata"]
        key = (kind, meta["namespace"], meta["name"])
        workload = None if event_type == "DELETED" else workload_from_body(kind, body)
        previous = self.workloads.pop(key, None)
        if workload is None:
            if previous is not None:
                self.dirty.add(key[1])
                self._wake()
            return
        self.workloads[key] = workload
        if previous is None or any(getattr(previous, f) != getattr(workload, f) for f in _PLAN_INPUTS):
            self.pending_workloads.add(key)
            self.touch()
        if previous is None or (previous.rollout_complete, previous.template_hash) != (
                workload.rollout_complete, workload.template_hash):
            self.dirty.add(key[1])
            self._wake()

    # -- digests --------------------------------------------------------------------------------

    def digest_of_body(self, body: Mapping[str, Any]) -> str:
        annotations = body["metadata"].get("annotations") or {}
        if annotations.get(keys.DATA_HMAC):
            return str(annotations[keys.DATA_HMAC])  # Rotor's own: no need to decode the data
        return self.digest_of(ObservedSecret.from_json(body))

    def digest_of(self, secret: ObservedSecret) -> str:
        return secret_digest(self.hmac_key, secret)

    def record(self, key: SecretKey, digest: Digest) -> None:
        """A digest seen; a change from a known digest starts (or extends) a batch."""
        previous = self.digests.get(key)
        self.digests[key] = digest
        if previous is not None and previous.value != digest.value:
            self.pending_secrets.add(key)
            self.touch()

    def known_digests(self, namespace: str, names: Collection[str]) -> dict[str, str | None]:
        """The digests of NAMES seen so far (a Secret not seen yet is left out)."""
        return {n: d.value for n in names if (d := self.digests.get((namespace, n))) is not None}

    # -- the batch ------------------------------------------------------------------------------

    def touch(self) -> None:
        """Something to replan: start the batch, or push its quiet window on."""
        now = self._clock()
        self.first = now if self.first is None else self.first
        self.last = now
        self._wake()

    def batch_delay(self, now: float, window: float, max_wait: float) -> float | None:
        """Seconds until the batch is due, or None when nothing is pending."""
        if self.first is None or self.last is None:
            return None
        return batch_delay(self.first, self.last, now, window, max_wait)

    def replan(self, key: WorkloadKey) -> None:
        """Plan KEY again in the next batch (a patch that lost a race with another writer)."""
        self.pending_workloads.add(key)
        self.touch()

    def take_batch(self) -> tuple[set[SecretKey], set[WorkloadKey]]:
        """The Secrets that changed and the workloads to replan; the next change starts a new batch."""
        secrets, workloads = self.pending_secrets, self.pending_workloads
        self.pending_secrets, self.pending_workloads = set(), set()
        self.first = self.last = None
        return secrets, workloads

    def take_dirty(self) -> set[str]:
        dirty, self.dirty = self.dirty, set()
        return dirty

    # -- queries --------------------------------------------------------------------------------

    def targets_in(self, namespace: str) -> dict[str, str]:
        return {source: target for (ns, source), target in self.targets.items() if ns == namespace}

    def consumed(self, workload: Workload) -> tuple[str, ...] | None:
        """The Secrets whose change restarts WORKLOAD; None while an injected source is unknown."""
        return consumed_secrets(workload, self.targets_in(workload.namespace))

    def workloads_in(self, namespace: str) -> Iterator[Workload]:
        return (w for w in self.workloads.values() if w.namespace == namespace)
