"""Celery tasks of the timeline: write a record's chat note, purge old notes.

Both run on the worker process's one event loop and engine (``crm_service.worker.runtime``).
Omni's history is read with the process's one HTTP client for Omni, the runtime's (made
at process init, closed at shutdown, in that loop): webhooks and history reads go to the
same system, so they share one connection pool, each request with its own timeout.

The note task's hard time limit is its claim's lease, as for deliveries.
"""

from __future__ import annotations

import logging

from crm_service.settings import get_settings
from crm_service.timeline.service import NoteBatch, NoteOutcome, lease, timeline_service
from crm_service.worker import (
    PURGE_NOTES,
    WRITE_TIMELINE_NOTE,
    WRITE_TIMELINE_NOTES,
    Resources,
    celery_app,
    in_claim_waves,
    runtime,
)

log = logging.getLogger(__name__)

NOTE_LEASE_SECONDS = lease(get_settings()).total_seconds()
NOTE_DEADLINE_SECONDS = max(1.0, NOTE_LEASE_SECONDS - 1.0)
PURGE_DEADLINE_SECONDS = 600.0
BATCH_CONCURRENCY = 5  # batches of one message at once, each after the previous claim


@celery_app.task(name=WRITE_TIMELINE_NOTE, time_limit=NOTE_LEASE_SECONDS)  # type: ignore[untyped-decorator]
def write_note(outbox_id: int) -> dict[str, int]:
    """The note of row ``outbox_id`` and of the other due note rows claimed with it
    (:meth:`TimelineService.write_batch`). Idempotent: a rerun, a duplicate or a sweep
    re-send writes nothing new. A row whose run failed (database down, an error) stays
    pending for the sweep to send again."""
    return _write_rows([outbox_id])


@celery_app.task(name=WRITE_TIMELINE_NOTES, time_limit=NOTE_LEASE_SECONDS)  # type: ignore[untyped-decorator]
def write_notes(outbox_ids: list[int]) -> dict[str, int]:
    """:func:`write_note` for several rows at once; the rows a run claims for another
    row's batch are written there, and their own runs find nothing to do."""
    return _write_rows(outbox_ids)


def _write_rows(outbox_ids: list[int]) -> dict[str, int]:
    async def write_all(shared: Resources) -> list[NoteBatch | Exception | None]:
        return await in_claim_waves(
            outbox_ids,
            lambda outbox_id, on_claimed: timeline_service.write_batch(
                shared.sessions,
                outbox_id,
                shared.webhooks,
                shared.settings,
                on_claimed=on_claimed,
            ),
            concurrency=BATCH_CONCURRENCY,
        )

    results = runtime.run(write_all, deadline=NOTE_DEADLINE_SECONDS)
    outcomes: dict[str, int] = {}
    for outbox_id, batch in zip(outbox_ids, results, strict=True):
        if batch is None:
            continue  # an earlier batch of this message took the row and reports it
        rows: NoteBatch
        if isinstance(batch, Exception):
            rows = {outbox_id: batch}
        else:
            rows = batch or {outbox_id: NoteOutcome.NOT_PENDING}
        for row_id, outcome in rows.items():
            if isinstance(outcome, Exception):
                log.error(
                    "timeline note failed; the sweep will send it again",
                    extra={"outbox_id": row_id, "error": repr(outcome)},
                )
                name = "error"
            else:
                log.info(
                    "timeline note task done", extra={"outbox_id": row_id, "outcome": str(outcome)}
                )
                name = str(outcome)
            outcomes[name] = outcomes.get(name, 0) + 1
    return outcomes


@celery_app.task(name=PURGE_NOTES, time_limit=PURGE_DEADLINE_SECONDS + 5)  # type: ignore[untyped-decorator]
def purge_notes() -> int:
    """Delete chat notes older than ``CRM_NOTE_RETENTION_DAYS`` (beat runs it hourly)."""
    purged = runtime.run(
        lambda shared: timeline_service.purge_expired(
            shared.sessions, shared.settings.note_retention_days
        ),
        deadline=PURGE_DEADLINE_SECONDS,
    )
    log.info("expired timeline notes purged", extra={"purged": purged})
    return purged
