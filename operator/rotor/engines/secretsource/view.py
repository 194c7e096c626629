"""The SecretSource engine's in-memory view: sources from their watch, managed Secrets from theirs.

Folding a watch event costs no request; the view is what lets a refresh where nothing changed cost
one backend read and no Kubernetes request at all, and what the webhook and other engines read.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from rotor.api import keys
from rotor.api.secretsource import SecretSourceSpec
from rotor.observability.metrics import SOURCES
from rotor.planning.compact import compact
from rotor.planning.conditions import get_condition
from rotor.planning.incident_denylist import EVERYWHERE, Scope, applicable
from rotor.planning.injection import SourceView as InjectionView
from rotor.planning.sync import ObservedSecret, Owner, managed_keys, target_name
from rotor.planning.sync_status import EARLY_BURST, Bucket, drifted

PLURAL = "secretsources"

Key = tuple[str, str]  # (namespace, name)


@dataclass(slots=True)  # one per SecretSource: no per-instance __dict__
class SourceState:
    namespace: str
    name: str
    uid: str
    generation: int
    spec: SecretSourceSpec | None
    spec_error: str | None = None
    status: dict[str, Any] = field(default_factory=dict)
    failures: int = 0
    deleting: bool = False
    finalizers: tuple[str, ...] = ()
    resource_version: str | None = None
    refresh_now: str | None = None  # the rotor.dev/refresh-now value last acted on
    next_due: float | None = None  # monotonic: when its own schedule (interval, backoff) wants it next
    bucket: Bucket = field(default_factory=lambda: Bucket(float(EARLY_BURST), 0.0))  # syncs before next_due
    urgent: bool = False  # Rotor itself asked (a rotation propagating): not drawn from the bucket
    asked: bool = False  # a sync was asked for (spec change, refresh-now, drift): not a timer refresh
    read_at: float | None = None  # monotonic: when its last successful sync started reading the backend

    @property
    def owner(self) -> Owner:
        return Owner(self.namespace, self.name, self.uid)


def parse_spec(raw: Mapping[str, Any]) -> tuple[SecretSourceSpec | None, str | None]:
    """The spec, or a message naming each bad field (the CRD catches most; this is the backstop)."""
    try:
        return _shared_parts(SecretSourceSpec.model_validate(dict(raw))), None
    except ValidationError as exc:
        problems = "; ".join(
            f"spec.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors(include_input=False))
        return None, problems
    except ArithmeticError as exc:  # a validator overflowing (an interval of 1000000000d), never a value
        return None, f"spec: a number or duration is out of range ({type(exc).__name__})"


# Parts of a spec most sources leave alike (the target's options, the refresh), one object for all alike:
# a model is about 570 bytes, and the specs are frozen, so sharing is safe. Only small parts are shared:
# a tenant's large templates are theirs alone and would otherwise outlive their sources here. Bounded in
# entries too: a tenant with thousands of distinct targets only misses the cache.
_SHARED: OrderedDict[str, Any] = OrderedDict()
_SHARED_MAX = 1024
_SHARED_MAX_BYTES = 512  # of a part's JSON; the default target's is under 200


def _shared_parts(spec: SecretSourceSpec) -> SecretSourceSpec:
    update: dict[str, Any] = {}
    for field_name, part in (("target", spec.target), ("refresh", spec.refresh)):
        key = f"{field_name}:{part.model_dump_json()}"
        if len(key) > _SHARED_MAX_BYTES:
            continue
        known = _SHARED.get(key)
        if known is None:
            _SHARED[key] = part
            if len(_SHARED) > _SHARED_MAX:
                _SHARED.popitem(last=False)
        else:
            _SHARED.move_to_end(key)
            if known is not part:
                update[field_name] = known
    return spec.model_copy(update=update) if update else spec


class SyncView:
    """Sources and managed Secrets by (namespace, name), fed by the handlers; the denylists incidents
    install; and the rotor_secretsources gauge, kept as sources come, go and change Ready."""

    def __init__(self, hmac_key: bytes, *, denylist: frozenset[str] = frozenset()) -> None:
        self.hmac_key = hmac_key
        self.sources: dict[Key, SourceState] = {}
        self.secrets: dict[Key, ObservedSecret] = {}  # managed Secrets, from their watch
        self._denylists: dict[Hashable, frozenset[str]] = {"static": denylist}
        self._scopes: dict[Hashable, Scope] = {}  # by owner; none: every source
        self.denylist = denylist
        # The Ready gauge, kept incrementally: recounting every source on each sync is O(N) per sync.
        self._ready_label: dict[Key, tuple[str, str]] = {}
        self._ready_count: dict[tuple[str, str], int] = {}
        self._secrets_loaded = False  # True once every managed Secret was loaded: a miss means "absent"
        # spec.vault.pki sources a RotationPolicy asked to renew: the rotation id each is asked for
        # (in memory: after a restart the policy, still in Publishing, asks again).
        self.certificate_requests: dict[Key, str] = {}
        # AWS sources a rotation delivers a version of that is not current yet (ports.VersionPins; in
        # memory: the policy, still in Propagating or Verifying, pins again after a restart).
        self.version_pins: dict[Key, str] = {}

    # -- SecretSources ----------------------------------------------------------------------------

    def observe_source(self, event_type: str | None, body: Mapping[str, Any]) -> tuple[Key, str | None]:
        """Fold one watch event of a SecretSource into the view. Returns its key and what to do:
        "sync" (new, spec changed, or being deleted: the worker applies deletionPolicy), "forget"
        (gone, or going with nothing left for Rotor to do), or None (only status or metadata moved)."""
        meta = body["metadata"]
        key: Key = (compact(meta["namespace"]), meta["name"])
        if event_type == "DELETED":
            self.forget_source(key)
            return key, "forget"
        state = self.sources.get(key)
        if state is None or state.uid != meta["uid"] or state.generation != int(meta.get("generation") or 0):
            # New, re-created, or its spec changed (generation counts spec changes only).
            self.upsert_source(body)
            state = self.sources[key]
            action: str | None = "sync"
        else:
            state.status = compact(body.get("status") or {})
            action = None
        requested = (meta.get("annotations") or {}).get(keys.REFRESH_NOW)
        if requested != state.refresh_now:
            # A new rotor.dev/refresh-now value (`rotor refresh`): do not wait for the interval.
            state.refresh_now = requested
            action = "sync" if requested else action
        state.finalizers = compact(tuple(meta.get("finalizers") or ()))
        state.resource_version = meta.get("resourceVersion")
        if meta.get("deletionTimestamp"):
            if keys.CLEANUP_FINALIZER not in state.finalizers:
                # Nothing of Rotor's to clean up (it writes nothing before its finalizer is on), or the
                # cleanup is done: no more syncs; Kubernetes deletes the object.
                state.deleting = True
                return key, "forget"
            if not state.deleting:
                state.deleting = True
                action = "sync"
        state.asked = state.asked or action == "sync"
        return key, action

    def upsert_source(self, body: Mapping[str, Any]) -> Key:
        meta = body["metadata"]
        key = (compact(meta["namespace"]), meta["name"])
        spec, error = parse_spec(body.get("spec") or {})
        previous = self.sources.get(key)
        state = SourceState(key[0], meta["name"], meta["uid"], int(meta.get("generation") or 0),
                            spec, error, compact(body.get("status") or {}),
                            finalizers=compact(tuple(meta.get("finalizers") or ())),
                            resource_version=meta.get("resourceVersion"),
                            refresh_now=(meta.get("annotations") or {}).get(keys.REFRESH_NOW))
        if previous is not None and previous.uid == state.uid:
            # A spec change is synced now, but draws from the same bucket as refresh-now and drift.
            state.failures, state.next_due, state.bucket = previous.failures, previous.next_due, previous.bucket
            state.urgent, state.read_at = previous.urgent, previous.read_at
        self.sources[key] = state
        return key

    def wanted(self, key: Key) -> None:
        """Rotor needs KEY synced now (a rotation wrote a new value): not limited like a tenant's asks."""
        state = self.sources.get(key)
        if state is not None:
            state.urgent = True

    def forget_source(self, key: Key) -> None:
        self.sources.pop(key, None)
        self.certificate_requests.pop(key, None)
        self.version_pins.pop(key, None)
        self.count_ready(key, None)

    # -- managed Secrets ------------------------------------------------------------------------------

    def wants_data(self, meta: Mapping[str, Any]) -> bool:
        """Whether the managed-Secret feed should read this Secret whole: a source here writes into it
        and its resourceVersion is not the one the view knows (someone else changed it: drift?). A
        forged label, or the echo of Rotor's own write, costs no read."""
        name, source_name = meta.get("name"), (meta.get("labels") or {}).get(keys.SOURCE_LABEL)
        state = self.sources.get((str(meta.get("namespace")), str(source_name))) if source_name else None
        if state is None or state.spec is None or state.deleting or target_name(state.spec, state.name) != name:
            return False
        known = self.secrets.get((meta["namespace"], meta["name"]))
        return known is None or known.resource_version != meta.get("resourceVersion")

    def observe_secret(self, event_type: str | None, body: Mapping[str, Any], whole: bool = True) -> Key | None:
        """Record a managed Secret's change; returns the source to sync if the Secret drifted. WHOLE
        False: BODY is metadata only (the feed did not read it: see wants_data)."""
        meta = body["metadata"]
        key = (compact(meta["namespace"]), meta["name"])
        source_name = (meta.get("labels") or {}).get(keys.SOURCE_LABEL)
        known = self.secrets.get(key)
        if not whole and event_type != "DELETED":
            if known is None or known.resource_version != meta.get("resourceVersion"):
                # Changed (or new) and not read: its values are not known; a sync reads it first.
                self.remember(*key, ObservedSecret.from_metadata(
                    {"metadata": meta, "type": known.type if known is not None else "Opaque"}))
            return None
        observed = None if event_type == "DELETED" else ObservedSecret.from_json(body)
        self.remember(*key, observed)
        if not source_name:
            return None
        if observed is not None and known is not None and not known.metadata_only and \
                observed.resource_version is not None and known.resource_version == observed.resource_version:
            # Nothing changed since the view last saw it, typically the echo of Rotor's own write (remembered
            # from its response) while the status drift is checked against is still being written: no
            # early sync, which would take a token a tenant's refresh-now needs (bench_fairness_stack.py).
            return None
        source_key = (meta["namespace"], source_name)
        state = self.sources.get(source_key)
        if state is None or state.spec is None or state.deleting or target_name(state.spec, state.name) != key[1]:
            return None
        if drifted(observed, state.status.get("dataHmac"), self.hmac_key, state.spec.target.type):
            state.asked = True
            return source_key
        return None

    def remember(self, namespace: str, name: str, secret: ObservedSecret | None) -> None:
        """The managed Secret NAME as last seen or written (None: gone), without its values: the view
        keeps a keyed digest per key (a sync that must write others' keys back reads the Secret)."""
        if secret is None:
            self.secrets.pop((namespace, name), None)
        else:
            self.secrets[(namespace, name)] = secret.summary(self.hmac_key)

    def loaded(self, found: list[tuple[str, ObservedSecret]]) -> None:
        """Every managed Secret, as listed at start-up (metadata only): from now on a Secret missing from
        the view does not exist (a first sync creates it without a read). Their watch's first events
        bring the digests of their values."""
        for namespace, secret in found:
            self.secrets.setdefault((namespace, secret.name), secret)  # a watch event already there is newer
        self._secrets_loaded = True

    # -- denylists ----------------------------------------------------------------------------------

    def set_denylist(self, owner: Hashable, digests: frozenset[str], scope: Scope | None = None) -> None:
        """Value digests (planning.hashing.value_hmac) that must never be delivered by the sources SCOPE
        covers (None: every source); OWNER is the incident that reported them."""
        if digests:
            self._denylists[owner] = digests
            self._scopes[owner] = scope or EVERYWHERE
        else:
            self._denylists.pop(owner, None)
            self._scopes.pop(owner, None)
        self.denylist = frozenset().union(*self._denylists.values())

    def denylist_for(self, namespace: str, where: str | None) -> frozenset[str]:
        """The digests a source of NAMESPACE reading WHERE (its backend location) must refuse."""
        return applicable(((self._scopes.get(o, EVERYWHERE), d) for o, d in self._denylists.items()),
                          namespace, where)

    # -- what other engines and the webhook see (rotor.engines.ports.Sources) ---------------------

    def source(self, namespace: str, name: str) -> SourceState | None:
        state = self.sources.get((namespace, name))
        return None if state is None or state.deleting else state

    def source_for_target(self, namespace: str, target: str) -> str | None:
        for (ns, name), state in self.sources.items():
            if ns == namespace and state.spec is not None and target_name(state.spec, name) == target:
                return name
        return None

    def source_view(self, namespace: str, name: str) -> InjectionView:
        """What the webhook needs of a SecretSource, as plain data (names and status, no values)."""
        state = self.source(namespace, name)
        if state is None:
            return InjectionView(name, exists=False)
        ready = get_condition(state.status.get("conditions"), keys.READY) or {}
        target = target_name(state.spec, name) if state.spec is not None else name
        secret = self.secrets.get((namespace, target))
        return InjectionView(name, exists=True, ready=ready.get("status") == "True", target=target,
                             reason=str(ready.get("reason") or ""), message=str(ready.get("message") or ""),
                             keys=self._keys(secret))

    @staticmethod
    def _keys(secret: ObservedSecret | None) -> tuple[str, ...] | None:
        if secret is None:
            return None
        known = secret.key_names()  # listed as metadata only: the keys Rotor wrote, from its annotation
        return known if known is not None else tuple(sorted(managed_keys(secret.annotations))) or None

    # -- the Ready gauge ----------------------------------------------------------------------------

    def count_ready(self, key: Key, label: tuple[str, str] | None) -> None:
        """Move KEY's source to LABEL (Ready status, reason) in rotor_secretsources; None: it is gone."""
        old = self._ready_label.pop(key, None)
        if label is not None:
            self._ready_label[key] = label
        if old == label:
            return
        if old is not None:
            self._ready_count[old] -= 1
            if self._ready_count[old]:
                SOURCES.labels(*old).set(self._ready_count[old])
            else:
                del self._ready_count[old]
                SOURCES.remove(*old)
        if label is not None:
            self._ready_count[label] = self._ready_count.get(label, 0) + 1
            SOURCES.labels(*label).set(self._ready_count[label])
