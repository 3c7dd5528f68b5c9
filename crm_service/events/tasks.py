"""Celery tasks of the events package: webhook delivery and the outbox sweep.

Both take ids only and are idempotent; the work lives in :mod:`crm_service.events.delivery`
and :mod:`crm_service.events.sweep`, run on the worker process's one event loop.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from crm_service.events.delivery import DeliveryPolicy, deliver
from crm_service.events.sweep import claim_overdue, overdue_grace, purge_idempotency_keys
from crm_service.worker import (
    DELIVER_WEBHOOK,
    SWEEP_OUTBOX,
    TASK_BY_KIND,
    WEBHOOKS_QUEUE,
    celery_app,
    enqueue_outbox,
    runtime,
)

log = logging.getLogger(__name__)


@celery_app.task(name=DELIVER_WEBHOOK)  # type: ignore[untyped-decorator]
def deliver_webhook(outbox_id: int) -> str:
    """One attempt at one webhook row; schedules the next attempt when it should retry."""
    runtime.ensure_started()
    assert runtime.sessions is not None and runtime.webhooks is not None
    assert runtime.settings is not None and runtime.flags is not None
    result = runtime.run(
        deliver(
            runtime.sessions,
            runtime.webhooks,
            runtime.flags,
            outbox_id,
            DeliveryPolicy.from_settings(runtime.settings),
        )
    )
    if result.retry_in is not None:
        try:
            celery_app.send_task(
                DELIVER_WEBHOOK,
                args=[outbox_id],
                queue=WEBHOOKS_QUEUE,
                countdown=result.retry_in,
                retry=False,
            )
        except Exception as error:  # the row holds next_attempt_at; the sweep re-sends it
            log.warning(
                "could not schedule the next attempt; the sweep will",
                extra={"outbox_id": outbox_id, "error": repr(error)},
            )
    return result.outcome.value


@celery_app.task(name=SWEEP_OUTBOX)  # type: ignore[untyped-decorator]
def sweep_outbox() -> int:
    """Re-enqueue overdue pending outbox rows; purge expired idempotency keys."""
    runtime.ensure_started()
    assert runtime.sessions is not None and runtime.settings is not None
    settings = runtime.settings
    items = runtime.run(
        claim_overdue(
            runtime.sessions,
            kinds=TASK_BY_KIND,
            grace=overdue_grace(settings.outbox_sweep_seconds),
        )
    )
    purged = runtime.run(
        purge_idempotency_keys(
            runtime.sessions, ttl=timedelta(seconds=settings.idempotency_ttl_seconds)
        )
    )
    if items:
        try:
            enqueue_outbox(items)
        except Exception as error:  # they are overdue again after another grace period
            log.warning(
                "sweep could not reach the broker",
                extra={"outbox_ids": items, "error": repr(error)},
            )
    if items or purged:
        log.info(
            "outbox swept", extra={"reenqueued": len(items), "idempotency_keys_purged": purged}
        )
    return len(items)
