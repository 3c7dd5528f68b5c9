"""The Celery app of the CRM: ``celery -A crm_service.worker:celery_app worker|beat``.

Broker: Redis in production (``CELERY_BROKER_URL=redis://...``), a SQLite file in the
embedded mode (kombu's SQLAlchemy transport), chosen by settings. Tasks take outbox ids,
are idempotent, acknowledge late (a worker killed mid-task leads to a redelivery) and
run on one event loop and one database engine per worker process, made at process init.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

from celery import Celery
from celery.signals import worker_process_init, worker_process_shutdown
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from crm_service.database import create_engine, session_factory
from crm_service.settings import Settings, get_settings

T = TypeVar("T")

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
        broker_transport_options={"visibility_timeout": 3600},
        beat_schedule={
            "sweep-outbox": {"task": SWEEP_OUTBOX, "schedule": settings.outbox_sweep_seconds},
            "purge-notes": {"task": PURGE_NOTES, "schedule": 3600.0},
        },
        timezone="UTC",
    )
    return app


def _task_modules() -> list[str]:
    return ["crm_service.events.tasks", "crm_service.timeline.tasks"]


celery_app = make_celery(get_settings())


class WorkerRuntime:
    """The one event loop and engine of a worker process."""

    loop: asyncio.AbstractEventLoop | None = None
    engine: AsyncEngine | None = None
    sessions: async_sessionmaker[AsyncSession] | None = None

    def start(self, settings: Settings) -> None:
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.engine = create_engine(settings.database_url)
        self.sessions = session_factory(self.engine)

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        if self.loop is None:  # solo pool / eager mode / a process that missed init
            self.start(get_settings())
        assert self.loop is not None
        return self.loop.run_until_complete(coroutine)

    def stop(self) -> None:
        if self.loop is not None and self.engine is not None:
            self.loop.run_until_complete(self.engine.dispose())
            self.loop.close()
        self.loop = self.engine = self.sessions = None


runtime = WorkerRuntime()


@worker_process_init.connect
def _init_process(**_: Any) -> None:
    runtime.start(get_settings())


@worker_process_shutdown.connect
def _shutdown_process(**_: Any) -> None:
    runtime.stop()


def enqueue_outbox(items: Sequence[tuple[int, str]]) -> None:
    """Send each committed outbox row to its task; raises if the broker is unreachable."""
    for outbox_id, kind in items:
        task = TASK_BY_KIND[kind]
        celery_app.send_task(task, args=[outbox_id], queue=QUEUE_BY_TASK[task], retry=False)
