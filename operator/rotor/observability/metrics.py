"""Every metric Rotor exports, declared once with its unit and help text.

Labels are bounded: backend connection names, providers, results, operations, HTTP status codes,
phases. Object names (`namespace`, `name`) appear only in the per-object series (OBJECT_METRICS), which
ObjectMetrics computes at scrape time and which are registered only when `metrics_secret_names` is on.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from rotor import __version__

REGISTRY = CollectorRegistry(auto_describe=True)
_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

BUILD_INFO = Info("rotor_build", "Rotor build information.", registry=REGISTRY)
BUILD_INFO.info({"version": __version__})

SYNCS = Counter("rotor_sync_total", "SecretSource syncs by provider and result (changed, unchanged, or a "
                "failure reason).", ["provider", "result"], registry=REGISTRY)
SYNC_SECONDS = Histogram("rotor_sync_duration_seconds", "Time to fetch, plan and apply one SecretSource sync.",
                         ["provider"], buckets=_LATENCY, registry=REGISTRY)
BACKEND_REQUESTS = Counter("rotor_backend_requests_total", "Requests to secret backends by operation and "
                           "status code.", ["backend", "operation", "code"], registry=REGISTRY)
BACKEND_SECONDS = Histogram("rotor_backend_request_duration_seconds", "Latency of backend requests.",
                            ["backend", "operation"], buckets=_LATENCY, registry=REGISTRY)
BACKEND_UP = Gauge("rotor_backend_up", "1 when the last request to the backend connection got an answer.",
                   ["backend"], registry=REGISTRY)
LOGINS = Counter("rotor_backend_logins_total", "Workload-identity logins to backends by result.",
                 ["backend", "result"], registry=REGISTRY)
TOKEN_CACHE_HITS = Counter("rotor_token_cache_hits_total", "Backend logins avoided by the token cache.",
                           ["backend"], registry=REGISTRY)
COLLAPSED_READS = Counter("rotor_backend_collapsed_reads_total", "Identical concurrent backend reads served "
                          "by one request.", ["backend"], registry=REGISTRY)
KUBE_REQUESTS = Counter("rotor_kube_requests_total", "Kubernetes API requests made by Rotor's own I/O "
                        "layer, by verb and resource.", ["verb", "resource"], registry=REGISTRY)
QUEUE_DEPTH = Gauge("rotor_scheduler_queue_depth", "SecretSources waiting in the refresh scheduler.",
                    registry=REGISTRY)
QUEUE_DUE = Gauge("rotor_scheduler_due", "SecretSources whose refresh is due now (backlog).", registry=REGISTRY)
SOURCES = Gauge("rotor_secretsources", "SecretSources by Ready condition status and reason.",
                ["ready", "reason"], registry=REGISTRY)
SECRET_WRITES = Counter("rotor_secret_writes_total", "Writes to target Secrets by action (create, update, "
                        "recreate, delete).", ["action"], registry=REGISTRY)
DRIFT = Counter("rotor_drift_corrections_total", "Target Secrets restored after someone edited or deleted "
                "them.", registry=REGISTRY)
PROPAGATION_SECONDS = Histogram("rotor_propagation_seconds", "From noticing a backend change to the "
                                "updated Secret being written.", buckets=_LATENCY, registry=REGISTRY)


def serve(port: int, addr: str = "0.0.0.0") -> None:
    """Expose /metrics on PORT (a daemon thread)."""
    from prometheus_client import start_http_server

    start_http_server(port, addr=addr, registry=REGISTRY)

# -- delivery into workloads (webhook, reloads) -------------------------------------------------
WEBHOOK_ADMISSIONS = Counter("rotor_webhook_admissions_total", "Pod admissions by the injection webhook, by "
                             "result (injected, rejected, warned).", ["result"], registry=REGISTRY)
CONSUMERS = Gauge("rotor_consumers", "Workloads consuming Rotor Secrets, by namespace and whether they run the "
                  "current version (current) or an older one (stale).", ["namespace", "version"], registry=REGISTRY)
WORKLOAD_RESTARTS = Counter("rotor_workload_restarts_total", "Rolling restarts Rotor triggered because a Secret "
                            "changed.", ["namespace", "kind"], registry=REGISTRY)
RESTARTS_DEFERRED = Counter("rotor_workload_restarts_deferred_total", "Restarts postponed by the per-namespace "
                            "or cluster-wide rate limit.", ["scope"], registry=REGISTRY)

# -- rotation -----------------------------------------------------------------------------------
ROTATIONS = Counter("rotor_rotations_total", "Finished rotations by strategy and result (complete, rolled_back, "
                    "failed, dry_run).", ["strategy", "result"], registry=REGISTRY)
ROTATION_PHASE_SECONDS = Histogram("rotor_rotation_phase_duration_seconds", "Time spent in each rotation phase.",
                                   ["strategy", "phase"], buckets=(0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600),
                                   registry=REGISTRY)
ROTATIONS_IN_PROGRESS = Gauge("rotor_rotations_in_progress", "Rotations currently in a phase.",
                              ["strategy", "phase"], registry=REGISTRY)
ROLLBACKS = Counter("rotor_rotation_rollbacks_total", "Rotations rolled back, by strategy and reason.",
                    ["strategy", "reason"], registry=REGISTRY)
ROTATION_OVERDUE = Gauge("rotor_rotations_overdue", "RotationPolicies whose next rotation time has passed "
                         "without a successful rotation.", registry=REGISTRY)
LEASES = Gauge("rotor_leases", "Dynamic-secret leases Rotor holds, by secrets engine mount.", ["mount"],
               registry=REGISTRY)
LEASES_EXPIRING = Gauge("rotor_leases_expiring_soon", "Leases within 10% of their max TTL and not yet "
                        "re-issued.", registry=REGISTRY)

# -- leak incidents -----------------------------------------------------------------------------
INCIDENTS_OPEN = Gauge("rotor_leak_incidents_open", "LeakIncidents not yet resolved, by severity.", ["severity"],
                       registry=REGISTRY)
_INCIDENT = (1, 5, 15, 30, 60, 120, 300, 900, 1800, 3600)
TIME_TO_CONTAIN = Histogram("rotor_leak_time_to_contain_seconds", "From detection to the leaked value being "
                            "denylisted.", buckets=_INCIDENT, registry=REGISTRY)
TIME_TO_ROTATE = Histogram("rotor_leak_time_to_rotate_seconds", "From detection to readers on a new value.",
                           buckets=_INCIDENT, registry=REGISTRY)
TIME_TO_REVOKE = Histogram("rotor_leak_time_to_revoke_seconds", "From detection to the leaked credential being "
                           "revoked.", buckets=_INCIDENT, registry=REGISTRY)
DENYLIST_REFUSALS = Counter("rotor_denylist_refusals_total", "Syncs refused because the backend returned a "
                            "value reported leaked.", registry=REGISTRY)


# -- per-object series: labelled with namespace and name, only with metrics_secret_names ---------------
@dataclass(frozen=True)
class ObjectMetric:
    """A gauge per SecretSource or RotationPolicy. Never stored: ObjectMetrics computes every sample at
    scrape time from the operator's in-memory view, so values are current and deleted objects vanish."""

    name: str
    documentation: str
    labels: tuple[str, ...] = ("namespace", "name")


LAST_ROTATION = ObjectMetric("rotor_rotation_last_success_timestamp_seconds", "Unix time of the last successful "
                             "rotation per policy (only with per-object metrics enabled).")
NEXT_ROTATION = ObjectMetric("rotor_rotation_next_timestamp_seconds", "Unix time of the next scheduled rotation "
                             "per policy (only with per-object metrics enabled).")
SECRET_AGE = ObjectMetric("rotor_secret_age_seconds", "Seconds since the target Secret's value last changed, per "
                          "SecretSource (only with per-object metrics enabled).")
LEASE_EXPIRY = ObjectMetric("rotor_lease_expiry_timestamp_seconds", "Unix time the current lease of a policy "
                            "expires (only with per-object metrics enabled).")
KEY_VERSION_CREATED = ObjectMetric("rotor_transit_key_version_created_timestamp_seconds", "Unix time the latest "
                                   "version of a policy's Transit key was made, by Vault's clock: its age is "
                                   "time() minus this (only with per-object metrics enabled).")
CERTIFICATE_EXPIRY = ObjectMetric("rotor_certificate_expiry_seconds", "Seconds until the certificate in the "
                                  "Secret of a SecretSource with spec.vault.pki expires (negative: expired; only with "
                                  "per-object metrics enabled).")
CERTIFICATE_OVERDUE = ObjectMetric("rotor_certificate_renewal_overdue_seconds", "Seconds since that certificate's "
                                   "renewAt passed without a renewal (0 before it; only with per-object metrics "
                                   "enabled).")
OBJECT_METRICS = (LAST_ROTATION, NEXT_ROTATION, SECRET_AGE, LEASE_EXPIRY, KEY_VERSION_CREATED, CERTIFICATE_EXPIRY,
                  CERTIFICATE_OVERDUE)


class Tracked(Protocol):
    """What ObjectMetrics reads of an object in memory (the SecretSource and RotationPolicy views)."""

    @property
    def namespace(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def status(self) -> Mapping[str, Any]: ...


_T = TypeVar("_T")


def _snapshot(objects: Mapping[Any, _T]) -> list[_T]:
    """The objects as they are now: a scrape runs in the HTTP server's thread while the event loop edits
    the dict (list() of a dict view runs without releasing the GIL; the retry is a backstop)."""
    for _ in range(3):
        try:
            return list(objects.values())
        except RuntimeError:  # dictionary changed size during iteration
            continue
    return []


def _unix(text: Any) -> float | None:
    """An RFC 3339 status timestamp ("2026-05-09T07:35:25Z") as Unix time; None when absent or unreadable."""
    if not isinstance(text, str) or not text:
        return None
    try:
        parsed = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.UTC)).timestamp()


def source_samples(source: Tracked, now: float) -> dict[ObjectMetric, float]:
    """SECRET_AGE of one SecretSource, from its status (none before its first successful sync), and
    CERTIFICATE_EXPIRY and CERTIFICATE_OVERDUE of one with a certificate (status.certificate)."""
    status = source.status
    # lastSyncTime: sources last synced by a Rotor that did not record lastChangeTime yet (it is
    # never earlier than the last change, so the age is at most understated until the next change).
    changed = _unix(status.get("lastChangeTime"))
    if changed is None:
        changed = _unix(status.get("lastSyncTime"))
    found = {} if changed is None else {SECRET_AGE: max(0.0, now - changed)}
    certificate = status.get("certificate") or {}
    not_after, renew_at = _unix(certificate.get("notAfter")), _unix(certificate.get("renewAt"))
    if not_after is not None and renew_at is not None:  # spec.vault.pki (labels: never the serial)
        found[CERTIFICATE_EXPIRY] = not_after - now
        found[CERTIFICATE_OVERDUE] = max(0.0, now - renew_at)
    return found


def policy_samples(policy: Tracked) -> dict[ObjectMetric, float]:
    """LAST_ROTATION, NEXT_ROTATION, LEASE_EXPIRY and KEY_VERSION_CREATED of one RotationPolicy: those its
    status knows."""
    status = policy.status
    active = status.get("active") or {}
    found = {LAST_ROTATION: _unix(status.get("lastRotationTime")),
             NEXT_ROTATION: _unix(status.get("nextRotationTime")),
             # Only while a lease is held (strategy dynamic); an empty fingerprint is no lease.
             LEASE_EXPIRY: _unix(active.get("leaseExpires")) if active.get("lease") else None,
             KEY_VERSION_CREATED: _unix(active.get("keyVersionCreated"))}  # strategy transit
    return {metric: value for metric, value in found.items() if value is not None}


class ObjectMetrics(Collector):
    """The OBJECT_METRICS series of the SecretSources and RotationPolicies Rotor holds in memory."""

    def __init__(self, sources: Mapping[Any, Tracked], policies: Mapping[Any, Tracked],
                 clock: Callable[[], float] = time.time) -> None:
        self._sources, self._policies, self._clock = sources, policies, clock

    def describe(self) -> Iterable[GaugeMetricFamily]:
        return [GaugeMetricFamily(m.name, m.documentation, labels=m.labels) for m in OBJECT_METRICS]

    def collect(self) -> Iterable[GaugeMetricFamily]:
        now = self._clock()
        families = {m: GaugeMetricFamily(m.name, m.documentation, labels=m.labels) for m in OBJECT_METRICS}
        for source in _snapshot(self._sources):
            for metric, value in source_samples(source, now).items():
                families[metric].add_metric([source.namespace, source.name], value)
        for policy in _snapshot(self._policies):
            for metric, value in policy_samples(policy).items():
                families[metric].add_metric([policy.namespace, policy.name], value)
        return list(families.values())


_tracking: list[ObjectMetrics] = []  # the one registered in REGISTRY, if any


def track_objects(sources: Mapping[Any, Tracked], policies: Mapping[Any, Tracked], *, enabled: bool) -> None:
    """Export OBJECT_METRICS for these in-memory views when ENABLED; otherwise none at all (bounded
    cardinality), also none left over from an operator started earlier in this process."""
    while _tracking:
        REGISTRY.unregister(_tracking.pop())
    if enabled:
        _tracking.append(ObjectMetrics(sources, policies))
        REGISTRY.register(_tracking[0])


# -- change feed (a Vault socket audit device streaming to Rotor) ----------------------------------
FEED_UP = Gauge("rotor_changefeed_up", "1 while the connection's change feed vouches for every KV change (Vault "
                "connected, nothing dropped or refused, a record within idle_seconds); 0 while SecretSources fall "
                "back to polling at their own interval.", ["backend"], registry=REGISTRY)
FEED_CONNECTIONS = Gauge("rotor_changefeed_connections", "Audit-device connections streaming to the change feed, "
                         "counted from their first record with the token (only the active replica listens).",
                         ["backend"], registry=REGISTRY)
FEED_RECORDS = Counter("rotor_changefeed_records_total", "Audit records the change feed read, by result: change "
                       "(a KV write, delete or metadata change), ignored, dropped (fell behind, or a line too "
                       "long), forged (without the shared token), refused (raw values or not JSON).",
                       ["backend", "result"], registry=REGISTRY)
FEED_SYNCS = Counter("rotor_changefeed_syncs_total", "SecretSource syncs the change feed asked for.", ["backend"],
                     registry=REGISTRY)
FEED_REJECTED = Counter("rotor_changefeed_rejected_connections_total", "Connections to the change feed closed by "
                        "Rotor, by reason (address_not_allowed, too_many, silent: no record within 10 s, forged: a "
                        "record without the token).", ["backend", "reason"], registry=REGISTRY)
FEED_FALLBACKS = Counter("rotor_changefeed_fallbacks_total", "Times the change feed stopped vouching for every "
                         "change, by reason (disconnected, dropped, idle, refused).", ["backend", "reason"],
                         registry=REGISTRY)
FEED_SKIPPED = Counter("rotor_changefeed_skipped_refreshes_total", "Timer refreshes of SecretSources that waited "
                       "instead of reading Vault: the connection's change feed had seen every change since their "
                       "last read (polling as the backstop, up to healthy_interval_seconds).", ["backend"],
                       registry=REGISTRY)
