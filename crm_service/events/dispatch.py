"""Handing committed outbox rows to the broker.

Rows are collected on the session while the request writes them; after the commit the
request hands them to its app's :class:`OutboxDispatcher`, which publishes them to Celery
from one thread of its own, in batches: every row committed while a publish is under way
goes out with the next one. A request never makes a thread hop or a broker round trip of
its own, and under load one publish carries many rows.

If the broker is down the publish fails quietly (logged) and the periodic outbox sweep
re-enqueues the rows later: the event is already committed, so nothing is lost. For the
same reason a dispatcher that has too much waiting (a broker that hangs rather than
fails) drops what comes next with a warning instead of growing without bound.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fastapi import BackgroundTasks
from sqlalchemy.ext.asyncio import AsyncSession

log = logging.getLogger(__name__)

_SESSION_KEY = "outbox_ids"
MAX_WAITING = 10_000  # rows; the sweep hands out whatever is dropped past this
CLOSE_TIMEOUT_SECONDS = 5.0

OutboxItem = tuple[int, str]  # (outbox row id, kind)
Enqueue = Callable[[list[OutboxItem]], None]


def remember_for_dispatch(session: AsyncSession, outbox_id: int, kind: str) -> None:
    session.info.setdefault(_SESSION_KEY, []).append((outbox_id, kind))


def pending_outbox_ids(session: AsyncSession) -> list[OutboxItem]:
    items: list[OutboxItem] = session.info.pop(_SESSION_KEY, [])
    return items


class OutboxDispatcher:
    """Publishes committed outbox rows from one thread, as many per publish as are
    waiting. ``enqueue`` is looked up at every publish (tests swap the broker)."""

    def __init__(self, enqueue: Callable[[], Enqueue | None], *, max_waiting: int = MAX_WAITING):
        self._enqueue = enqueue
        self._max_waiting = max_waiting
        self._waiting: list[OutboxItem] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._publisher: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None

    async def dispatch(self, items: Sequence[OutboxItem]) -> None:
        """Queue ``items`` for the next publish; returns once it has been tried (a
        request's background task: the response has been sent by then)."""
        if len(self._waiting) + len(items) > self._max_waiting:
            log.warning(
                "outbox dispatch backlog full; the sweep will hand these out",
                extra={"outbox_ids": list(items), "waiting": len(self._waiting)},
            )
            return
        loop = asyncio.get_running_loop()
        self._waiting.extend(items)
        done: asyncio.Future[None] = loop.create_future()
        self._waiters.append(done)
        if self._publisher is None:
            self._publisher = loop.create_task(self._publish_waiting())
        await asyncio.shield(done)

    async def _publish_waiting(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._waiting:
                items, self._waiting = self._waiting, []
                waiters, self._waiters = self._waiters, []
                try:
                    enqueue = self._enqueue()
                    if enqueue is not None:
                        if self._executor is None:
                            self._executor = ThreadPoolExecutor(
                                max_workers=1, thread_name_prefix="outbox-dispatch"
                            )
                        await loop.run_in_executor(self._executor, _enqueue_quietly, enqueue, items)
                finally:
                    for waiter in waiters:
                        if not waiter.done():
                            waiter.set_result(None)
        finally:
            self._publisher = None

    async def close(self) -> None:
        """Finish the publish under way and what waits for it (bounded), then stop."""
        publisher = self._publisher
        if publisher is not None:
            try:
                async with asyncio.timeout(CLOSE_TIMEOUT_SECONDS):
                    await asyncio.shield(publisher)
            except TimeoutError:
                log.warning("outbox dispatch still publishing at shutdown; the sweep will")
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None


def dispatcher_of(app: Any) -> OutboxDispatcher:
    """The app's one dispatcher, made on first use."""
    dispatcher: OutboxDispatcher | None = getattr(app.state, "outbox_dispatcher", None)
    if dispatcher is None:
        dispatcher = app.state.outbox_dispatcher = OutboxDispatcher(
            lambda: getattr(app.state, "enqueue_outbox", None)
        )
    return dispatcher


def schedule_dispatch(
    app: Any, background: BackgroundTasks, outbox_ids: Sequence[OutboxItem]
) -> None:
    background.add_task(dispatcher_of(app).dispatch, list(outbox_ids))


def _enqueue_quietly(enqueue: Enqueue, outbox_ids: list[OutboxItem]) -> None:
    try:
        enqueue(outbox_ids)
    except Exception as error:  # the sweep re-enqueues; the change is committed
        log.warning(
            "outbox enqueue failed; the sweep will retry",
            extra={"outbox_ids": outbox_ids, "error": repr(error)},
        )
