"""Celery tasks of the timeline: write a record's chat note, purge old notes.

Both run on the worker process's one event loop and engine (``crm_service.worker.runtime``).
Omni is called through one ``httpx.AsyncClient`` per worker process, made on first use in
that loop (a client's connections belong to the loop that opened them) and closed when
the process shuts down.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
from celery.signals import worker_process_shutdown

from crm_service.settings import Settings, get_settings
from crm_service.timeline.service import timeline_service
from crm_service.worker import PURGE_NOTES, WRITE_TIMELINE_NOTE, celery_app, runtime

log = logging.getLogger(__name__)


class OmniClient:
    """The process's HTTP client for Omni, bound to the event loop it was made in."""

    def __init__(self) -> None:
        self._client: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def get(self, settings: Settings) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(settings.omni_timeout_seconds),
                follow_redirects=False,
            )
            self._loop = loop
        return self._client

    def close(self) -> None:
        client, loop = self._client, self._loop
        self._client = self._loop = None
        if client is not None and loop is not None and not loop.is_closed():
            loop.run_until_complete(client.aclose())


omni_client = OmniClient()


@worker_process_shutdown.connect
def _close_omni_client(**_: Any) -> None:
    omni_client.close()


async def _write_note(outbox_id: int) -> str:
    settings = get_settings()
    assert runtime.sessions is not None
    outcome = await timeline_service.write_for_outbox_row(
        runtime.sessions, outbox_id, omni_client.get(settings), settings
    )
    log.info("timeline note task done", extra={"outbox_id": outbox_id, "outcome": str(outcome)})
    return str(outcome)


@celery_app.task(name=WRITE_TIMELINE_NOTE, acks_late=True)
def write_note(outbox_id: int) -> str:
    """Idempotent: a rerun, a duplicate or a sweep re-send writes nothing new. A failure
    (database down) leaves the outbox row pending for the sweep to send again."""
    return runtime.run(_write_note(outbox_id))


async def _purge_notes() -> int:
    settings = get_settings()
    assert runtime.sessions is not None
    purged = await timeline_service.purge_expired(runtime.sessions, settings.note_retention_days)
    log.info("expired timeline notes purged", extra={"purged": purged})
    return purged


@celery_app.task(name=PURGE_NOTES, acks_late=True)
def purge_notes() -> int:
    return runtime.run(_purge_notes())
