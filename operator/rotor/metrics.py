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
