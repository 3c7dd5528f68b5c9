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
from crm_service.timeline.service import lease, timeline_service
from crm_service.worker import PURGE_NOTES, WRITE_TIMELINE_NOTE, celery_app, runtime

log = logging.getLogger(__name__)

NOTE_LEASE_SECONDS = lease(get_settings()).total_seconds()
NOTE_DEADLINE_SECONDS = max(1.0, NOTE_LEASE_SECONDS - 1.0)
PURGE_DEADLINE_SECONDS = 600.0


@celery_app.task(name=WRITE_TIMELINE_NOTE, time_limit=NOTE_LEASE_SECONDS)  # type: ignore[untyped-decorator]
def write_note(outbox_id: int) -> str:
    """Idempotent: a rerun, a duplicate or a sweep re-send writes nothing new. A run that
    fails (database down) leaves the outbox row pending for the sweep to send again."""
    outcome = runtime.run(
        lambda shared: timeline_service.write_for_outbox_row(
            shared.sessions, outbox_id, shared.webhooks, shared.settings
        ),
        deadline=NOTE_DEADLINE_SECONDS,
    )
    log.info("timeline note task done", extra={"outbox_id": outbox_id, "outcome": str(outcome)})
    return str(outcome)


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
