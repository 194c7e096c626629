"""Operator start-up and shutdown: Kopf settings in one place, the engine in kopf's memo."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import kopf

from rotor import GROUP
from rotor.api import keys
from rotor.config import Settings
from rotor.handlers.memo import runtime_of
from rotor.observability.logs import configure_logging, install_masking

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
    from rotor import wiring
    from rotor.handlers import delivery, peering, secretsource

    config: Settings = memo.config
    # Peering: Kopf pauses its watches on a standby replica; Rotor's own schedulers must pause with them,
    # or a paused replica keeps syncing and rotating. Rotor's own watches (SecretSources, managed
    # Secrets) go on: the views stay current, what they schedule waits. Standalone: no gate.
    gate: asyncio.Event | None = None
    paused: peering.PauseState | None = None
    if not config.standalone:
        paused = peering.kopf_pause_state()
        if paused is None:
            raise kopf.PermanentError("peering is on but Kopf's pause state cannot be found (an unsupported "
                                      "Kopf version?): a paused replica would keep syncing")
        gate = asyncio.Event()
    # Watches: long server-side timeouts, a client timeout just above them, quick reconnects.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 10
    settings.networking.request_timeout = 30
    # Watches start with a list; paged, 10,000 objects are not one answer that a 30 s request timeout cuts
    # short and retries. (SecretSources and Secrets are not watched through Kopf at all:
    # rotor.engines.sourcefeed, rotor.engines.secretfeed.)
    settings.watching.chunk_size = 50
    # Routine success is not worth a Kubernetes Event per object; Rotor posts its own on change.
    settings.posting.level = logging.WARNING
    # Progress and diff-base in annotations under our prefix; status stays schema-exact.
    settings.persistence.finalizer = keys.FINALIZER
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
    runtime = await wiring.build(config, gate=gate, on_source=secretsource.source_event)
    memo.runtime = runtime
    await runtime.load()
    if gate is not None and paused is not None:  # after all that may fail: a retried start-up makes one
        runtime.tasks.append(asyncio.create_task(peering.follow_pause(paused, gate, runtime.relist.soon),
                                                 name="rotor-peering-gate"))
    runtime.start()
    delivery.configure(settings, memo)  # the pod-injection webhook (when enabled)
    log.info("Rotor started: watching %s; backends: %s", ", ".join(config.namespaces) or "all namespaces",
             ", ".join([*(f"vault/{n}" for n in config.vault_connections),
                        *(f"aws/{n}" for n in config.aws_connections)]) or "kubernetes only")


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    from rotor.handlers import delivery

    delivery.shutdown(memo)
    found = getattr(memo, "runtime", None)
    if found is not None:
        await runtime_of(memo).stop()


def run(config: Settings, *, stop_flag: threading.Event | None = None,
        ready_flag: threading.Event | None = None, configure_logs: bool = True) -> None:
    """Run the operator until stopped (Ctrl-C, SIGTERM, or stop_flag)."""
    from rotor.handlers import (
        admission,  # noqa: F401 - registers the LeakIncident actor webhook
        delivery,  # noqa: F401 - registers the webhook and the reload watches
        incident,  # noqa: F401 - registers the LeakIncident handlers
        rotation,  # noqa: F401 - registers the RotationPolicy handlers
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
