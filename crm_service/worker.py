"""The Celery app of the CRM: ``celery -A crm_service.worker:celery_app worker|beat``.

Broker: Redis in production (``CELERY_BROKER_URL=redis://...``), a SQLite file in the
embedded mode (kombu's SQLAlchemy transport), chosen by settings. Tasks take outbox ids,
are idempotent, acknowledge late (a worker killed mid-task leads to a redelivery) and
run on one event loop, one database engine, one webhook HTTP client and one feature-flag
cache per worker process, made at process init.

Queues: ``webhooks`` (signed deliveries), ``timeline`` (chat-history notes) and
``maintenance`` (the outbox sweep, retention). Beat runs the sweep every
``CRM_OUTBOX_SWEEP_SECONDS``.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

import httpx
from celery import Celery
from celery.signals import (
    setup_logging,
    worker_init,
    worker_process_init,
    worker_process_shutdown,
)
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from crm_service.database import create_engine, session_factory
from crm_service.logs import configure_logging
from crm_service.settings import Settings, get_settings
from crm_service.teams.features import FlagCache, build_flag_cache

T = TypeVar("T")
log = logging.getLogger(__name__)

DELIVER_WEBHOOK = "crm.events.deliver_webhook"
WRITE_TIMELINE_NOTE = "crm.timeline.write_note"
SWEEP_OUTBOX = "crm.events.sweep_outbox"
PURGE_NOTES = "crm.timeline.purge_notes"
WEBHOOKS_QUEUE = "webhooks"
TIMELINE_QUEUE = "timeline"
MAINTENANCE_QUEUE = "maintenance"

TASK_BY_KIND = {"webhook": DELIVER_WEBHOOK, "timeline_note": WRITE_TIMELINE_NOTE}
QUEUE_BY_TASK = {
    DELIVER_WEBHOOK: WEBHOOKS_QUEUE,
    WRITE_TIMELINE_NOTE: TIMELINE_QUEUE,
    SWEEP_OUTBOX: MAINTENANCE_QUEUE,
    PURGE_NOTES: MAINTENANCE_QUEUE,
}

# A publish must fail in well under a second when the broker is down: the API hands rows
# over after its response, the sweep retries later, and a publish that waits minutes would
# tie up the API's thread pool. One immediate retry survives a connection the broker closed
# (a Redis restart); more would only delay the failure.
PUBLISH_FAILOVER = {
    "max_retries": 1,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.5,
}
REDIS_SOCKET_OPTIONS = {"socket_connect_timeout": 2, "socket_timeout": 5}


def broker_transport_options(broker_url: str) -> dict[str, Any]:
    """Options for the broker transport. The SQLite broker of the embedded mode gets only
    a busy timeout: kombu hands its transport options to ``create_engine``, the API and
    the worker write the same file, and a local file is not a broker that can be down."""
    if broker_url.startswith("sqla+sqlite:"):
        return {"connect_args": {"timeout": 30}}
    if not broker_url.startswith(("redis://", "rediss://")):
        return {}
    # Redis re-delivers an unacknowledged message after the visibility timeout; retries with
    # a long countdown may be delivered twice, which the task's claim makes harmless.
    return {"visibility_timeout": 3600, **PUBLISH_FAILOVER, **REDIS_SOCKET_OPTIONS}


def make_celery(settings: Settings) -> Celery:
    broker = settings.celery_broker_url
    if broker.startswith("sqla+sqlite:///"):
        Path(broker.removeprefix("sqla+sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    app = Celery("crm_service", broker=broker, include=_task_modules())
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        task_routes={name: {"queue": queue} for name, queue in QUEUE_BY_TASK.items()},
        task_default_queue=WEBHOOKS_QUEUE,
        broker_connection_retry_on_startup=True,
        broker_transport_options=broker_transport_options(broker),
        beat_schedule={
            "sweep-outbox": {
                "task": SWEEP_OUTBOX,
                "schedule": settings.outbox_sweep_seconds,
                # Sweeps queued while no worker ran are stale: the next one does their job.
                "options": {"expires": settings.outbox_sweep_seconds},
            },
            "purge-notes": {"task": PURGE_NOTES, "schedule": 3600.0},
        },
        timezone="UTC",
    )
    return app


def _task_modules() -> list[str]:
    return ["crm_service.events.tasks", "crm_service.timeline.tasks"]


celery_app = make_celery(get_settings())


def webhook_client(settings: Settings) -> httpx.AsyncClient:
    """The one client a worker process sends webhooks with: every phase bounded, no
    redirects (a receiver that moved is a configuration error, not something to chase)."""
    seconds = settings.webhook_timeout_seconds
    return httpx.AsyncClient(
        timeout=httpx.Timeout(connect=seconds, read=seconds, write=seconds, pool=seconds),
        limits=httpx.Limits(max_connections=20, max_keepalive_connections=10),
        follow_redirects=False,
        headers={"user-agent": "crm-service-webhooks/0.1"},
    )


class WorkerRuntime:
    """The one event loop, engine, webhook client and flag cache of a worker process."""

    loop: asyncio.AbstractEventLoop | None = None
    engine: AsyncEngine | None = None
    sessions: async_sessionmaker[AsyncSession] | None = None
    settings: Settings | None = None
    webhooks: httpx.AsyncClient | None = None
    flags: FlagCache | None = None

    def start(self, settings: Settings) -> None:
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.settings = settings
        self.engine = create_engine(settings.database_url)
        self.sessions = session_factory(self.engine)
        self.webhooks = webhook_client(settings)
        self.flags = build_flag_cache(settings.redis_url)

    def ensure_started(self) -> None:
        if self.loop is None:  # solo pool / eager mode / a process that missed init
            self.start(get_settings())

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        self.ensure_started()
        assert self.loop is not None
        return self.loop.run_until_complete(coroutine)

    def stop(self) -> None:
        if self.loop is not None:
            if self.webhooks is not None:
                self.loop.run_until_complete(self.webhooks.aclose())
            close = getattr(self.flags, "close", None)  # the Redis cache holds a pool
            if close is not None:
                self.loop.run_until_complete(close())
            if self.engine is not None:
                self.loop.run_until_complete(self.engine.dispose())
            self.loop.close()
        self.loop = self.engine = self.sessions = self.settings = self.webhooks = None
        self.flags = None


runtime = WorkerRuntime()


@setup_logging.connect  # type: ignore[untyped-decorator]
def _setup_logging(loglevel: Any = None, **_: Any) -> None:
    # Connecting here stops Celery from installing its own text format: the worker logs
    # the same JSON lines as the API.
    configure_logging(loglevel if isinstance(loglevel, int) else logging.INFO)


@worker_init.connect  # type: ignore[untyped-decorator]
def _serve_metrics(**_: Any) -> None:
    """``/metrics`` of this worker on ``CRM_WORKER_METRICS_PORT``, from the main process.

    Deliveries are counted in the pool processes; with ``PROMETHEUS_MULTIPROC_DIR`` set
    (one directory per worker) each writes its counts there and this endpoint sums them.
    """
    port = get_settings().worker_metrics_port
    if port is None:
        return
    from prometheus_client import REGISTRY, CollectorRegistry, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector

    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    registry = REGISTRY
    if directory is None:
        log.warning(
            "worker metrics without PROMETHEUS_MULTIPROC_DIR show the main process only",
            extra={"port": port},
        )
    else:
        # Counts left by an earlier run of this worker would be added to this run's.
        for stale in Path(directory).glob("*.db"):
            stale.unlink()
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]  # untyped upstream
    start_http_server(port, registry=registry)


@worker_process_init.connect  # type: ignore[untyped-decorator]
def _init_process(**_: Any) -> None:
    runtime.start(get_settings())


@worker_process_shutdown.connect  # type: ignore[untyped-decorator]
def _shutdown_process(**_: Any) -> None:
    runtime.stop()


def enqueue_outbox(items: Sequence[tuple[int, str]]) -> None:
    """Send each committed outbox row to its task; raises (fast) if the broker is down."""
    for outbox_id, kind in items:
        task = TASK_BY_KIND[kind]
        celery_app.send_task(task, args=[outbox_id], queue=QUEUE_BY_TASK[task], retry=False)
