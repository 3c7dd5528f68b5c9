"""Handing committed outbox rows to the broker.

Rows are collected on the session while the request writes them; after the commit the
request hands them to its app's :class:`OutboxDispatcher` and goes on without waiting.
The dispatcher publishes them to Celery from one thread of its own, in batches: every row
of a kind committed while a publish is under way, or within the kind's publish interval,
goes out with the next one. A request never makes a thread hop or a broker round trip of
its own, never waits on one, and under load one publish carries many rows. Each worker
process has one as well, for the timeline-note jobs its deliveries write
(``worker.Resources.dispatcher``).

If the broker is down the publish fails quietly (logged) and the periodic outbox sweep
re-enqueues the rows later: the event is already committed, so nothing is lost. For the
same reason a dispatcher that has too much waiting (a broker that hangs rather than
fails) drops what comes next with a warning instead of growing without bound.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

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


# Least time between two publishes of a kind: rows committed meanwhile wait and travel
# in the next one message (up to ``worker.MAX_BATCH`` rows). A quiet API publishes a row
# at once; a busy one sends fewer, fuller messages. Each message costs the worker about a
# row's work on top of its rows (a prefork parent makes three Redis round trips to
# receive and acknowledge it, then hands it to a child), and at 100 creates/s the
# message rate, not the rows, was what a worker could not keep up with. A webhook waits
# at most 20 ms (of the 100 ms create-to-preview budget); a timeline note, which nobody
# waits on, at most 100 ms.
PUBLISH_INTERVAL_SECONDS = {"webhook": 0.02, "timeline_note": 0.1}


@dataclass
class _Lane:
    """The rows of one kind waiting for their publish."""

    interval: float
    waiting: list[OutboxItem] = field(default_factory=list)
    publisher: asyncio.Task[None] | None = None
    last_publish: float = -math.inf


class OutboxDispatcher:
    """Publishes committed outbox rows from one thread, as many per publish as are
    waiting, each kind at most once per its :data:`PUBLISH_INTERVAL_SECONDS`.
    ``enqueue`` is looked up at every publish (tests swap the broker)."""

    def __init__(
        self,
        enqueue: Callable[[], Enqueue | None],
        *,
        max_waiting: int = MAX_WAITING,
        intervals: Mapping[str, float] = PUBLISH_INTERVAL_SECONDS,
    ):
        self._enqueue = enqueue
        self._max_waiting = max_waiting
        self._intervals = intervals
        self._lanes: dict[str, _Lane] = {}
        self._executor: ThreadPoolExecutor | None = None

    def hand_over(self, items: Sequence[OutboxItem]) -> None:
        """Queue ``items`` for the next publish of their kind (each lane started if idle)
        and return at once: nothing a request does waits on the broker. :meth:`idle` and
        :meth:`close` see the publishes through."""
        by_kind: dict[str, list[OutboxItem]] = {}
        for item in items:
            by_kind.setdefault(item[1], []).append(item)
        for kind, rows in by_kind.items():
            lane = self._lanes.get(kind)
            if lane is None:
                lane = self._lanes[kind] = _Lane(self._intervals.get(kind, 0.0))
            if len(lane.waiting) + len(rows) > self._max_waiting:
                log.warning(
                    "outbox dispatch backlog full; the sweep will hand these out",
                    extra={"outbox_ids": rows, "waiting": len(lane.waiting)},
                )
                continue
            lane.waiting.extend(rows)
            if lane.publisher is None:
                lane.publisher = asyncio.get_running_loop().create_task(self._publish_waiting(lane))

    async def idle(self) -> None:
        """Return once every row queued so far has been tried (and whatever was queued
        while waiting for that)."""
        while publishers := [lane.publisher for lane in self._lanes.values() if lane.publisher]:
            await asyncio.wait(publishers)

    async def _publish_waiting(self, lane: _Lane) -> None:
        loop = asyncio.get_running_loop()
        try:
            while lane.waiting:
                pause = lane.last_publish + lane.interval - loop.time()
                if pause > 0:
                    await asyncio.sleep(pause)
                items, lane.waiting = lane.waiting, []
                lane.last_publish = loop.time()
                enqueue = self._enqueue()
                if enqueue is not None:
                    if self._executor is None:
                        self._executor = ThreadPoolExecutor(
                            max_workers=1, thread_name_prefix="outbox-dispatch"
                        )
                    await loop.run_in_executor(self._executor, _enqueue_quietly, enqueue, items)
        finally:
            lane.publisher = None

    async def close(self) -> None:
        """Finish the publishes under way and the rows waiting for them (bounded), then
        stop."""
        publishers = [lane.publisher for lane in self._lanes.values() if lane.publisher]
        if publishers:
            try:
                async with asyncio.timeout(CLOSE_TIMEOUT_SECONDS):
                    await asyncio.shield(asyncio.gather(*publishers))
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


def _enqueue_quietly(enqueue: Enqueue, outbox_ids: list[OutboxItem]) -> None:
    try:
        enqueue(outbox_ids)
    except Exception as error:  # the sweep re-enqueues; the change is committed
        log.warning(
            "outbox enqueue failed; the sweep will retry",
            extra={"outbox_ids": outbox_ids, "error": repr(error)},
        )
