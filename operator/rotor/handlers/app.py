"""Operator start-up and shutdown: Kopf settings in one place, the engine in kopf's memo."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import kopf

from rotor import GROUP
from rotor.config import Settings
from rotor.logs import configure_logging, install_masking
from rotor.planning.labels import FINALIZER, MANAGED_BY, MANAGED_BY_VALUE

log = logging.getLogger("rotor")


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    # In a pod: the mounted ServiceAccount token; elsewhere: $KUBECONFIG as it is now (the kubernetes
    # client's own loader reads $KUBECONFIG once, at import).
    info: kopf.ConnectionInfo | None = kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(
        **kwargs)
    return info


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    from rotor import backends, metrics
    from rotor.backends.vault import VaultBackend
    from rotor.kube import Kube
    from rotor.refresh import RefreshScheduler
    from rotor.rotation import Rotator
    from rotor.secretsync import SecretSync

    config: Settings = memo.config
    # Peering: Kopf pauses its watches on a standby replica; Rotor's own schedulers (they work on
    # objects loaded earlier) must pause with them, or a paused replica keeps syncing and rotating.
    # Standalone: no gate, the schedulers always work.
    from rotor.handlers import peering
    gate: asyncio.Event | None = None
    paused: peering.PauseState | None = None
    if not config.standalone:
        paused = peering.kopf_pause_state()
        if paused is None:
            raise kopf.PermanentError("peering is on but Kopf's pause state cannot be found (an unsupported "
                                      "Kopf version?): a paused replica would keep syncing")
        gate = memo.active = asyncio.Event()  # also the restart executor's (handlers.delivery)
    # Watches: long server-side timeouts, a client timeout just above them, quick reconnects.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 10
    settings.networking.request_timeout = 30
    # Only Secrets Rotor manages are watched (server-side selector): others cost no memory.
    settings.watching.label_selectors["", "v1", "secrets"] = f"{MANAGED_BY}={MANAGED_BY_VALUE}"
    # Routine success is not worth a Kubernetes Event per object; Rotor posts its own on change.
    settings.posting.level = logging.WARNING
    # Progress and diff-base in annotations under our prefix; status stays schema-exact.
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration")
    settings.execution.max_workers = 8
    # Kopf runs a worker per object with events; on start-up every object has one, at once. Bound
    # them, and let an idle one go after 1 s (not 5 s), so 10,000 listed objects are not 10,000
    # live workers: memory stays flat and the slots turn over quickly.
    settings.queueing.worker_limit = 256
    settings.queueing.idle_timeout = 1.0

    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(32, thread_name_prefix="rotor-io"))
    kube = Kube()
    await kube.ensure_namespace(config.operator_namespace)
    key = await kube.get_or_create_key(config.operator_namespace, config.hmac_key_secret)
    engine = SecretSync(kube, backends.build(config, kube), key)
    scheduler = RefreshScheduler(engine.sync, workers=config.sync_workers, gate=gate)
    memo.kube, memo.engine, memo.scheduler = kube, engine, scheduler
    rotator = Rotator(kube, cast(VaultBackend, engine.backends["vault"]), engine, scheduler)
    memo.rotator, memo.rotation_scheduler = rotator, RefreshScheduler(rotator.step, workers=4, gate=gate, gauges=False)
    metrics.track_objects(engine.sources, rotator.policies, enabled=config.metrics_secret_names)  # per-object series
    from rotor.incident import Incidents
    memo.incidents = Incidents(kube, rotator.vault, engine, scheduler, rotator, config.vault_connections)
    memo.incident_scheduler = memo.incidents.scheduler = RefreshScheduler(memo.incidents.step, workers=16, gauges=False,
                                                                           gate=gate)
    # Before the first sync: Kopf re-reads LeakIncidents and SecretSources in parallel, and a source
    # synced before its incident would deliver the leaked value again.
    await memo.incidents.load_denylists(config.namespaces)
    await engine.load_secrets(config.namespaces)  # first syncs need no read of a Secret that is not there
    if gate is not None and paused is not None:  # after all that may fail: a retried start-up makes one
        memo.peering_task = asyncio.create_task(peering.follow_pause(paused, gate), name="rotor-peering-gate")
    for started in (scheduler, memo.rotation_scheduler, memo.incident_scheduler):
        started.start()
    from rotor.handlers import delivery  # the pod-injection webhook (when enabled) and the restart executor
    delivery.configure(settings, memo)
    if config.metrics_port:
        metrics.serve(config.metrics_port)
    log.info("Rotor started: watching %s; backends: %s", ", ".join(config.namespaces) or "all namespaces",
             ", ".join(f"vault/{n}" for n in config.vault_connections) or "kubernetes only")


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    from rotor.handlers import delivery
    await delivery.shutdown(memo)
    task = getattr(memo, "peering_task", None)
    if task is not None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    for name in ("incident_scheduler", "rotation_scheduler", "scheduler"):
        scheduler = getattr(memo, name, None)
        if scheduler is not None:
            await scheduler.stop()
    engine = getattr(memo, "engine", None)
    if engine is not None:
        for backend in engine.backends.values():
            await backend.close()
        engine.kube.close()


def run(config: Settings, *, stop_flag: threading.Event | None = None,
        ready_flag: threading.Event | None = None, configure_logs: bool = True) -> None:
    """Run the operator until stopped (Ctrl-C, SIGTERM, or stop_flag)."""
    from rotor.handlers import (
        delivery,  # noqa: F401 - registers the webhook and the reload watches
        incident,  # noqa: F401 - registers the LeakIncident handlers
        rotation,  # noqa: F401 - registers the RotationPolicy handlers
        secretsource,  # noqa: F401 - registers the handlers
    )

    if configure_logs:
        configure_logging(config.log_format, config.log_level)
    install_masking()  # also when the embedding program configured logging itself
    settings = kopf.OperatorSettings()
    # A killed active replica is replaced once its keep-alive is this old (Kopf's default is 60 s).
    settings.peering.lifetime = config.peering_lifetime
    settings.peering.stealth = True  # keep-alives every few seconds are not worth a log line
    # Earlier start = higher priority (microseconds, negative so explicit priorities >= 0 beat it).
    priority = config.priority if config.priority is not None else -(time.time_ns() // 1000)
    kopf.run(
        settings=settings,
        clusterwide=not config.namespaces,
        namespaces=config.namespaces,
        standalone=config.standalone,
        priority=priority,
        # A peering name makes Kopf require the peering CRDs; a standalone operator has no peers.
        peering_name=None if config.standalone else config.peering_name,
        memo=kopf.Memo(config=config),
        stop_flag=stop_flag,
        ready_flag=ready_flag,
    )
