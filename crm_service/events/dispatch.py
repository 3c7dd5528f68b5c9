"""Handing committed outbox rows to the broker.

Rows are collected on the session while the request writes them; after the commit they
are sent to Celery in a background task. If the broker is down the send fails quietly
(logged) and the periodic outbox sweep re-enqueues the rows later: the event is already
committed, so nothing is lost.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import BackgroundTasks
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.concurrency import run_in_threadpool

log = logging.getLogger(__name__)

_SESSION_KEY = "outbox_ids"


OutboxItem = tuple[int, str]  # (outbox row id, kind)


def remember_for_dispatch(session: AsyncSession, outbox_id: int, kind: str) -> None:
    session.info.setdefault(_SESSION_KEY, []).append((outbox_id, kind))


def pending_outbox_ids(session: AsyncSession) -> list[OutboxItem]:
    items: list[OutboxItem] = session.info.pop(_SESSION_KEY, [])
    return items


def schedule_dispatch(
    app: Any, background: BackgroundTasks, outbox_ids: Sequence[OutboxItem]
) -> None:
    enqueue = getattr(app.state, "enqueue_outbox", None)
    if enqueue is None:
        return
    background.add_task(run_in_threadpool, _enqueue_quietly, enqueue, list(outbox_ids))


def _enqueue_quietly(enqueue: Any, outbox_ids: list[OutboxItem]) -> None:
    try:
        enqueue(outbox_ids)
    except Exception as error:  # the sweep re-enqueues; the change is committed
        log.warning(
            "outbox enqueue failed; the sweep will retry",
            extra={"outbox_ids": outbox_ids, "error": repr(error)},
        )
