"""The Celery app of the CRM: ``celery -A crm_service.worker:celery_app worker|beat``.

Broker: Redis in production (``CELERY_BROKER_URL=redis://...``), a SQLite file in the
embedded mode (kombu's SQLAlchemy transport), chosen by settings. Tasks take outbox ids,
are idempotent and acknowledge late (a worker killed mid-task leads to a redelivery).

Queues: ``webhooks`` (signed deliveries), ``notes`` (chat-history notes), ``sweep`` (the
outbox sweep) and ``purge`` (retention). All four are declared, so a plain
``celery -A crm_service.worker:celery_app worker`` consumes every one; ``-Q notes`` (or
any list) lets an operator give a queue hosts of its own. Beat (a process of its own,
``... beat``, or ``worker --beat``) sends the sweep every ``CRM_OUTBOX_SWEEP_SECONDS``.

Pools: ``prefork`` (the default), ``threads`` (any concurrency) and ``solo``. Every task
runs its coroutine on the process's one event loop (:class:`WorkerRuntime`). ``gevent``
and ``eventlet`` are refused at start: their monkey-patching and an asyncio loop in a
thread do not mix.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import sys
import threading
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import redis.exceptions
from celery import Celery
from celery.concurrency import ALIASES
from celery.signals import (
    setup_logging,
    worker_init,
    worker_process_init,
    worker_process_shutdown,
    worker_shutdown,
)
from kombu.entity import Exchange, Queue
from kombu.transport import redis as kombu_redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from crm_service.database import create_engine, session_factory
from crm_service.events.delivery import BATCH_LIMIT, SendSlots
from crm_service.events.dispatch import OutboxDispatcher
from crm_service.logs import configure_logging
from crm_service.settings import Settings, get_settings
from crm_service.teams.features import FlagCache, build_flag_cache
from service_kit.http1 import Http1Transport

T = TypeVar("T")
log = logging.getLogger(__name__)

if importlib.util.find_spec("sniffio") is None:
    # httpcore imports sniffio on every lock and event it makes (several per request);
    # when it is not installed, each failed import searches sys.path again. A None entry
    # makes the failure immediate, and httpcore falls back to asyncio as it does anyway.
    sys.modules["sniffio"] = None  # type: ignore[assignment]

DELIVER_WEBHOOK = "crm.events.deliver_webhook"
WRITE_TIMELINE_NOTE = "crm.timeline.write_note"
# The same work for several rows in one message: what the API publishes when rows were
# committed together or while its previous publish was under way.
DELIVER_WEBHOOKS = "crm.events.deliver_webhooks"
WRITE_TIMELINE_NOTES = "crm.timeline.write_notes"
SWEEP_OUTBOX = "crm.events.sweep_outbox"
PURGE_NOTES = "crm.timeline.purge_notes"
WEBHOOKS_QUEUE = "webhooks"
NOTES_QUEUE = "notes"
SWEEP_QUEUE = "sweep"
PURGE_QUEUE = "purge"
QUEUES = (WEBHOOKS_QUEUE, NOTES_QUEUE, SWEEP_QUEUE, PURGE_QUEUE)

TASK_BY_KIND = {"webhook": DELIVER_WEBHOOK, "timeline_note": WRITE_TIMELINE_NOTE}
BATCH_TASK_BY_KIND = {"webhook": DELIVER_WEBHOOKS, "timeline_note": WRITE_TIMELINE_NOTES}
MAX_BATCH = 50  # rows per message; a batch task runs them concurrently within one lease
QUEUE_BY_TASK = {
    DELIVER_WEBHOOK: WEBHOOKS_QUEUE,
    DELIVER_WEBHOOKS: WEBHOOKS_QUEUE,
    WRITE_TIMELINE_NOTE: NOTES_QUEUE,
    WRITE_TIMELINE_NOTES: NOTES_QUEUE,
    SWEEP_OUTBOX: SWEEP_QUEUE,
    PURGE_NOTES: PURGE_QUEUE,
}
REFUSED_POOLS = ("gevent", "eventlet")
SUPPORTED_POOLS = ("prefork", "threads", "solo")
STARTUP_TIMEOUT_SECONDS = 30.0
SHUTDOWN_TIMEOUT_SECONDS = 10.0
RESULT_GRACE_SECONDS = 2.0

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
VISIBILITY_TIMEOUT_SECONDS = 3600
# Retries due later than this are not sent as countdown tasks: the row waits in the outbox
# and the sweep hands it out when it falls due (well inside the visibility timeout).
MAX_COUNTDOWN_SECONDS = 600.0


def is_redis(broker_url: str) -> bool:
    return broker_url.startswith(("redis://", "rediss://"))


def broker_transport_options(broker_url: str) -> dict[str, Any]:
    """Options for the broker transport. The SQLite broker of the embedded mode gets only
    a busy timeout: kombu hands its transport options to ``create_engine``, the API and
    the worker write the same file, and a local file is not a broker that can be down."""
    if broker_url.startswith("sqla+sqlite:"):
        return {"connect_args": {"timeout": 30}}
    if not is_redis(broker_url):
        return {}
    # Redis re-delivers an unacknowledged message after the visibility timeout. A countdown
    # task is held unacknowledged until it is due, so no countdown may come near this: the
    # delivery task hands longer retries to the sweep (MAX_COUNTDOWN_SECONDS).
    return {
        "visibility_timeout": VISIBILITY_TIMEOUT_SECONDS,
        **PUBLISH_FAILOVER,
        **REDIS_SOCKET_OPTIONS,
    }


class RedisChannel(kombu_redis.Channel):
    """kombu's Redis channel, failing with a connection error once its connection is gone.

    After a lost broker connection, Celery 5.7 collects the connection before closing it,
    and the tasks still running (threads pool) acknowledge their messages afterwards. The
    stock channel then builds a client from the collected connection and raises
    ``AttributeError``, which neither the close nor the acknowledgement expects: Celery
    calls it unrecoverable and the worker exits (seen on every Redis restart under the
    threads pool). As a connection error, the close is ignored, the lost acknowledgement
    is logged, and the worker reconnects. Nothing is lost: Redis gives the messages back
    after the visibility timeout, and the outbox sweep re-sends their rows long before."""

    def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:
        if self.connection is None or self.connection.client is None:
            raise redis.exceptions.ConnectionError("this broker channel's connection is closed")
        parent = super()._connparams  # untyped upstream
        params: dict[str, Any] = parent(asynchronous=asynchronous)  # type: ignore[no-untyped-call]
        return params

    _command_client: Any = None

    def _create_client(self, asynchronous: bool = False) -> Any:
        """One client for the channel's plain commands (publish, acknowledge), made again
        only when the channel's pool is. The stock channel builds a client for every
        command, and a redis-py client fills a table of about 170 response callbacks as it
        is made: two thirds of the CPU of a publish. A client holds no connection of its
        own (each command takes one from the pool), so one is safe to share."""
        create = super()._create_client  # untyped upstream
        if asynchronous:
            return create(asynchronous=True)  # type: ignore[no-untyped-call]
        pool = self.pool
        client = self._command_client
        if client is None or client.connection_pool is not pool:
            client = self._command_client = create()  # type: ignore[no-untyped-call]
        return client


class RedisTransport(kombu_redis.Transport):
    Channel = RedisChannel


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
        # Declared queues are what a worker without -Q consumes: all of them.
        task_queues=tuple(
            Queue(name, Exchange(name), routing_key=name)  # type: ignore[no-untyped-call]
            for name in QUEUES
        ),
        task_routes={name: {"queue": queue} for name, queue in QUEUE_BY_TASK.items()},
        task_default_queue=WEBHOOKS_QUEUE,
        broker_connection_retry_on_startup=True,
        # The URL's host and options as given; only the channel class is ours.
        broker_transport=f"{__name__}:RedisTransport" if is_redis(broker) else None,
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
    """The one client a worker process sends webhooks (and reads chat histories) with:
    every phase bounded, no redirects (a receiver that moved is a configuration error,
    not something to chase), one kept-alive connection per send of a full batch, on the
    lean HTTP/1.1 transport (``service_kit/http1.py``)."""
    seconds = settings.webhook_timeout_seconds
    return httpx.AsyncClient(
        timeout=httpx.Timeout(connect=seconds, read=seconds, write=seconds, pool=seconds),
        transport=Http1Transport(max_connections=BATCH_LIMIT),
        follow_redirects=False,
        headers={"user-agent": "crm-service-webhooks/0.1"},
    )


@dataclass(frozen=True)
class Resources:
    """What the tasks of one worker process share, all bound to the runtime's one loop."""

    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    webhooks: httpx.AsyncClient
    flags: FlagCache
    send_slots: SendSlots
    # Publishes the timeline-note jobs the deliveries write (``events.tasks``).
    dispatcher: OutboxDispatcher


async def _open_resources(settings: Settings) -> Resources:
    # Like the API: pool_recycle instead of a pre-ping round trip on every checkout (a
    # delivery checks out a connection two or three times per batch).
    engine = create_engine(settings.database_url, pool_pre_ping=False, pool_recycle=1800)
    return Resources(
        settings=settings,
        engine=engine,
        sessions=session_factory(engine),
        webhooks=webhook_client(settings),
        flags=build_flag_cache(settings.redis_url),
        send_slots=SendSlots(BATCH_LIMIT),
        dispatcher=OutboxDispatcher(lambda: enqueue_outbox),
    )


async def _close_resources(resources: Resources) -> None:
    await resources.dispatcher.close()  # bounded; what it could not publish, the sweep will
    await resources.webhooks.aclose()
    close = getattr(resources.flags, "close", None)  # the Redis cache holds a pool
    if close is not None:
        await close()
    await resources.engine.dispose()


class TaskDeadlineExceeded(Exception):
    """A task ran past its deadline; its work was cancelled (the claim's lease runs out
    and the sweep hands the row out again)."""


class WorkerRuntime:
    """One asyncio event loop per worker process, running in a thread of its own, and the
    resources every task of the process shares (engine, webhook client, flag cache).

    Tasks, whichever pool runs them, submit coroutines to the loop with
    :func:`asyncio.run_coroutine_threadsafe` and wait for the result, so the prefork pool
    (one task at a time per child), the threads pool (many tasks at once, all on the one
    loop) and the solo pool work alike. The loop is started after a fork (prefork:
    ``worker_process_init``; other pools: ``worker_init`` in the worker process itself),
    under a lock, and stopped at shutdown. A process that forked after starting (the pid
    changed) starts its own: a child never uses its parent's loop or sockets.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._resources: Resources | None = None
        self._pid: int | None = None

    @property
    def started(self) -> bool:
        return self._resources is not None and self._pid == os.getpid()

    def start(self, settings: Settings | None = None) -> Resources:
        """Start the loop and open the resources, once per process (idempotent)."""
        with self._lock:
            if self._resources is not None and self._pid == os.getpid():
                return self._resources
            # After a fork the parent's loop thread does not exist here; its sockets are
            # the parent's. Forget them (closing would close the parent's connections).
            loop = asyncio.new_event_loop()
            thread = threading.Thread(
                target=_serve_loop, args=(loop,), name="crm-worker-loop", daemon=True
            )
            thread.start()
            opened = asyncio.run_coroutine_threadsafe(
                _open_resources(settings or get_settings()), loop
            )
            self._resources = opened.result(timeout=STARTUP_TIMEOUT_SECONDS)
            self._loop, self._thread, self._pid = loop, thread, os.getpid()
            return self._resources

    def resources(self) -> Resources:
        if self.started:
            assert self._resources is not None
            return self._resources
        return self.start()

    def run(self, work: Callable[[Resources], Coroutine[Any, Any, T]], *, deadline: float) -> T:
        """Run ``work(resources)`` on the loop and wait for its result; cancel it once it
        has run ``deadline`` seconds (:class:`TaskDeadlineExceeded`)."""
        resources = self.resources()
        assert self._loop is not None

        async def bounded() -> T:
            async with asyncio.timeout(deadline):
                return await work(resources)

        future = asyncio.run_coroutine_threadsafe(bounded(), self._loop)
        try:
            # The loop cancels the work at the deadline; the grace covers a loop that is
            # busy with other tasks' callbacks at that moment.
            return future.result(timeout=deadline + RESULT_GRACE_SECONDS)
        except TimeoutError as error:
            future.cancel()
            raise TaskDeadlineExceeded(f"task cancelled after {deadline:g}s") from error

    def stop(self) -> None:
        """Close the resources and stop the loop; a later :meth:`start` opens anew."""
        with self._lock:
            loop, thread, resources = self._loop, self._thread, self._resources
            mine = self._pid == os.getpid()
            self._loop = self._thread = self._resources = self._pid = None
            if loop is None or not mine:
                return
            if resources is not None:
                closing = asyncio.run_coroutine_threadsafe(_close_resources(resources), loop)
                try:
                    closing.result(timeout=SHUTDOWN_TIMEOUT_SECONDS)
                except Exception as error:  # shutting down anyway; say what was left open
                    log.warning("worker resources not closed cleanly", extra={"error": repr(error)})
            loop.call_soon_threadsafe(loop.stop)
            if thread is not None:
                thread.join(timeout=SHUTDOWN_TIMEOUT_SECONDS)
            if not loop.is_running():
                loop.close()


OnClaimed = Callable[[Sequence[int]], None]


async def in_claim_waves(
    outbox_ids: Sequence[int],
    run: Callable[[int, OnClaimed], Awaitable[T]],
    *,
    concurrency: int,
) -> list[T | Exception | None]:
    """The rows of one message, a claim at a time: ``run(outbox_id, on_claimed)`` makes
    a batch for one row (its claim takes other due rows along and reports their ids to
    ``on_claimed``), and the next row's batch starts once that claim has committed. A row
    an earlier batch of the message took is not claimed again (``None``): under load a
    message of many rows costs a claim or two instead of one per row. At most
    ``concurrency`` batches run at once; a batch's error is its result. Results are in
    the order of ``outbox_ids``."""
    covered: set[int] = set()
    results: dict[int, T | Exception | None] = {}
    gate = asyncio.Semaphore(concurrency)

    async def one(outbox_id: int, claimed: asyncio.Event) -> None:
        def on_claimed(ids: Sequence[int]) -> None:
            covered.update(ids)
            claimed.set()

        try:
            results[outbox_id] = await run(outbox_id, on_claimed)
        except Exception as error:
            results[outbox_id] = error
        finally:
            claimed.set()
            gate.release()

    async with asyncio.TaskGroup() as group:
        for outbox_id in dict.fromkeys(outbox_ids):
            await gate.acquire()
            if outbox_id in covered:
                gate.release()
                results[outbox_id] = None
                continue
            claimed = asyncio.Event()
            group.create_task(one(outbox_id, claimed))
            await claimed.wait()
    return [results[outbox_id] for outbox_id in outbox_ids]


def _serve_loop(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    loop.run_forever()


runtime = WorkerRuntime()


def pool_name(pool: object) -> str:
    """``prefork``, ``threads``, ``solo``, ``gevent``, ``eventlet`` (or the class path) for
    what ``--pool`` resolved to: an alias, a class path or the class itself."""
    path: str
    if isinstance(pool, str):
        path = str(ALIASES.get(pool, pool))
    else:
        path = f"{getattr(pool, '__module__', '')}:{getattr(pool, '__qualname__', pool)}"
    for alias, alias_path in ALIASES.items():
        if path == alias_path:
            return str(alias)  # "prefork" comes before its old alias "processes"
    return path


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
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector

    from crm_service.metrics import WORKER_REGISTRY

    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    registry = WORKER_REGISTRY
    if directory is None:
        log.warning(
            "worker metrics without PROMETHEUS_MULTIPROC_DIR show the main process only",
            extra={"port": port},
        )
    else:
        # Counts left by an earlier run of this worker would be added to this run's. This
        # process's own files are kept: with the threads or solo pool it counts the
        # deliveries itself, and its metrics opened their files when they were imported.
        for stale in Path(directory).glob("*.db"):
            if not stale.stem.endswith(f"_{os.getpid()}"):
                stale.unlink()
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]  # untyped upstream
    start_http_server(port, registry=registry)


@worker_init.connect  # type: ignore[untyped-decorator]
def _start_runtime(sender: Any = None, **_: Any) -> None:
    """Refuse the pools that cannot work; start the loop where tasks run in this process.

    Prefork children start theirs after the fork (``worker_process_init``): a loop thread
    and sockets made in the parent would not survive it."""
    name = pool_name(getattr(sender, "pool_cls", "prefork"))
    if name in REFUSED_POOLS:
        sys.stderr.write(
            f"crm_service worker: --pool={name} is not supported; "
            f"use --pool={', --pool='.join(SUPPORTED_POOLS)}\n"
        )
        sys.stderr.flush()
        os._exit(2)  # before any pool or connection exists: nothing to clean up
    if name != "prefork":
        runtime.start(get_settings())


@worker_process_init.connect  # type: ignore[untyped-decorator]
def _init_process(**_: Any) -> None:
    runtime.start(get_settings())


@worker_process_shutdown.connect  # type: ignore[untyped-decorator]
def _shutdown_process(**_: Any) -> None:
    runtime.stop()


@worker_shutdown.connect  # type: ignore[untyped-decorator]
def _shutdown_worker(**_: Any) -> None:
    runtime.stop()  # threads / solo; a no-op in a prefork parent (nothing started)


def enqueue_outbox(items: Sequence[tuple[int, str]]) -> None:
    """Send committed outbox rows to their tasks, one message per kind for up to
    :data:`MAX_BATCH` rows (a single row goes to the one-row task); raises (fast) if the
    broker is down."""
    by_kind: dict[str, list[int]] = {}
    for outbox_id, kind in items:
        by_kind.setdefault(kind, []).append(outbox_id)
    for kind, ids in by_kind.items():
        for start in range(0, len(ids), MAX_BATCH):
            chunk = ids[start : start + MAX_BATCH]
            task = TASK_BY_KIND[kind] if len(chunk) == 1 else BATCH_TASK_BY_KIND[kind]
            args: list[Any] = [chunk[0]] if len(chunk) == 1 else [chunk]
            celery_app.send_task(
                task,
                args=args,
                queue=QUEUE_BY_TASK[task],
                retry=False,
                # What Celery would write there (its saferepr of a list of ints under
                # the size limit is the plain repr), without its recursive saferepr:
                # that was nearly half the CPU of a publish (469 -> 264 us, 24 rows).
                argsrepr=repr(args),
                kwargsrepr="{}",
            )
