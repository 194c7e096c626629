"""Every metric Rotor exports, declared once with its unit and help text.

Labels are bounded: backend connection names, providers, results, operations, HTTP status codes,
phases. Object names appear only where `metrics_secret_names` is enabled (name_label()).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

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
LAST_ROTATION = Gauge("rotor_rotation_last_success_timestamp_seconds", "Unix time of the last successful "
                      "rotation per policy (only with per-object metrics enabled).", ["namespace", "name"],
                      registry=REGISTRY)
NEXT_ROTATION = Gauge("rotor_rotation_next_timestamp_seconds", "Unix time of the next scheduled rotation per "
                      "policy (only with per-object metrics enabled).", ["namespace", "name"], registry=REGISTRY)
SECRET_AGE = Gauge("rotor_secret_age_seconds", "Seconds since the target Secret's value last changed, per "
                   "SecretSource (only with per-object metrics enabled).", ["namespace", "name"], registry=REGISTRY)
LEASES = Gauge("rotor_leases", "Dynamic-secret leases Rotor holds, by secrets engine mount.", ["mount"],
               registry=REGISTRY)
LEASES_EXPIRING = Gauge("rotor_leases_expiring_soon", "Leases within 10% of their max TTL and not yet "
                        "re-issued.", registry=REGISTRY)
LEASE_EXPIRY = Gauge("rotor_lease_expiry_timestamp_seconds", "Unix time the current lease of a policy expires "
                     "(only with per-object metrics enabled).", ["namespace", "name"], registry=REGISTRY)

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
