"""Celery tasks of the timeline: write a record's chat note, purge old notes.

Both run on the worker process's one event loop and engine (``crm_service.worker.runtime``).
Omni's history is read with the process's one HTTP client for Omni, the runtime's (made
at process init, closed at shutdown, in that loop): webhooks and history reads go to the
same system, so they share one connection pool, each request with its own timeout.
"""

from __future__ import annotations

import logging

from crm_service.timeline.service import timeline_service
from crm_service.worker import PURGE_NOTES, WRITE_TIMELINE_NOTE, celery_app, runtime

log = logging.getLogger(__name__)


@celery_app.task(name=WRITE_TIMELINE_NOTE, acks_late=True)  # type: ignore[untyped-decorator]
def write_note(outbox_id: int) -> str:
    """Idempotent: a rerun, a duplicate or a sweep re-send writes nothing new. A run that
    fails (database down) leaves the outbox row pending for the sweep to send again."""
    runtime.ensure_started()
    assert runtime.sessions is not None and runtime.webhooks is not None
    assert runtime.settings is not None
    outcome = runtime.run(
        timeline_service.write_for_outbox_row(
            runtime.sessions, outbox_id, runtime.webhooks, runtime.settings
        )
    )
    log.info("timeline note task done", extra={"outbox_id": outbox_id, "outcome": str(outcome)})
    return str(outcome)


@celery_app.task(name=PURGE_NOTES, acks_late=True)  # type: ignore[untyped-decorator]
def purge_notes() -> int:
    """Delete chat notes older than ``CRM_NOTE_RETENTION_DAYS`` (beat runs it hourly)."""
    runtime.ensure_started()
    assert runtime.sessions is not None and runtime.settings is not None
    purged = runtime.run(
        timeline_service.purge_expired(runtime.sessions, runtime.settings.note_retention_days)
    )
    log.info("expired timeline notes purged", extra={"purged": purged})
    return purged
