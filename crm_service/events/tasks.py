"""Celery tasks of the events package: webhook delivery and the outbox sweep.

A delivery writes the timeline-note job of each create event it attempts
(``outbox.note_jobs_of_creates``); the batch then hands the jobs to the process's
dispatcher, which publishes them as the API's publishes its rows: in batches, the notes'
lane at most every 100 ms, without waiting (a publish that fails leaves them to the
sweep).

Both take ids only and are idempotent; the work lives in :mod:`crm_service.events.delivery`
and :mod:`crm_service.events.sweep`, run on the worker process's one event loop.

Each task has a hard time limit taken from the claim's lease: the coroutine is cancelled
on the loop at the deadline (every pool), and a prefork child that still runs at the lease
is killed (Celery's ``time_limit``). A stuck attempt never outlives its lease, so the row
is never sent by two attempts at once; the sweep hands it out again once the lease ends.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from crm_service.events.delivery import (
    BatchResult,
    DeliveryPolicy,
    DeliveryResult,
    Outcome,
    deliver_batch,
)
from crm_service.events.outbox import TIMELINE_NOTE
from crm_service.events.sweep import claim_overdue, overdue_grace, purge_idempotency_keys
from crm_service.settings import get_settings
from crm_service.worker import (
    DELIVER_WEBHOOK,
    DELIVER_WEBHOOKS,
    SWEEP_OUTBOX,
    TASK_BY_KIND,
    WEBHOOKS_QUEUE,
    OnClaimed,
    Resources,
    celery_app,
    enqueue_outbox,
    in_claim_waves,
    runtime,
)

log = logging.getLogger(__name__)

_settings = get_settings()
DELIVERY_LEASE_SECONDS = DeliveryPolicy.from_settings(_settings).lease.total_seconds()
# The work is cancelled a little before the lease ends, the process killed at its end.
DELIVERY_DEADLINE_SECONDS = max(1.0, DELIVERY_LEASE_SECONDS - 1.0)
# A sweep is a few short statements and a publish per row; the next sweep follows anyway.
SWEEP_DEADLINE_SECONDS = max(30.0, 2 * _settings.outbox_sweep_seconds)


# At most this many batches of one message run at once (the worker's engine pool and send
# slots are shared by every task of the process); each starts after the previous claim.
BATCH_CONCURRENCY = 5


@celery_app.task(name=DELIVER_WEBHOOK, time_limit=DELIVERY_LEASE_SECONDS)  # type: ignore[untyped-decorator]
def deliver_webhook(outbox_id: int) -> str:
    """One attempt at this webhook row and at the other due rows claimed with it;
    schedules the next attempt of each one that should retry."""
    batch = runtime.run(
        lambda shared: _deliver(shared, outbox_id), deadline=DELIVERY_DEADLINE_SECONDS
    )
    _schedule_next(batch)
    return batch.own.outcome.value


@celery_app.task(name=DELIVER_WEBHOOKS, time_limit=DELIVERY_LEASE_SECONDS)  # type: ignore[untyped-decorator]
def deliver_webhooks(outbox_ids: list[int]) -> dict[str, int]:
    """The rows the API handed over together: each gets the claim :func:`deliver_webhook`
    makes for it, concurrently. The first claim usually takes the others along (they are
    due), and theirs then find their row taken and do nothing. A row whose attempt raised
    keeps its lease; the sweep sends it again when that runs out."""
    results = runtime.run(
        lambda shared: _deliver_all(shared, outbox_ids), deadline=DELIVERY_DEADLINE_SECONDS
    )
    outcomes: dict[str, int] = {}
    for outbox_id, result in zip(outbox_ids, results, strict=True):
        if isinstance(result, BaseException):
            log.error(
                "webhook attempt failed; the sweep will send it again",
                extra={"outbox_id": outbox_id, "error": repr(result)},
            )
            outcome = "error"
        else:
            _schedule_next(result)
            outcome = result.own.outcome.value
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    return outcomes


async def _deliver(
    shared: Resources, outbox_id: int, on_claimed: OnClaimed | None = None
) -> BatchResult:
    batch = await deliver_batch(
        shared.sessions,
        shared.webhooks,
        shared.flags,
        outbox_id,
        DeliveryPolicy.from_settings(shared.settings),
        slots=shared.send_slots,
        on_claimed=on_claimed,
    )
    if batch.note_jobs:  # committed by the claim; published with the process's others
        shared.dispatcher.hand_over([(job, TIMELINE_NOTE) for job in batch.note_jobs])
    return batch


async def _deliver_all(
    shared: Resources, outbox_ids: list[int]
) -> list[BatchResult | BaseException]:
    batches = await in_claim_waves(
        outbox_ids,
        lambda outbox_id, on_claimed: _deliver(shared, outbox_id, on_claimed),
        concurrency=BATCH_CONCURRENCY,
    )
    taken = BatchResult(DeliveryResult(Outcome.SKIPPED))  # by an earlier batch of the message
    return [taken if batch is None else batch for batch in batches]


def _schedule_next(batch: BatchResult) -> None:
    for row_id, result in batch.rows.items():
        if result.dispatch_in is None:
            continue
        try:
            celery_app.send_task(
                DELIVER_WEBHOOK,
                args=[row_id],
                queue=WEBHOOKS_QUEUE,
                countdown=result.dispatch_in,
                retry=False,
            )
        except Exception as error:  # the row holds next_attempt_at; the sweep re-sends it
            log.warning(
                "could not schedule the next attempt; the sweep will",
                extra={"outbox_id": row_id, "error": repr(error)},
            )


@celery_app.task(name=SWEEP_OUTBOX, time_limit=SWEEP_DEADLINE_SECONDS + 5)  # type: ignore[untyped-decorator]
def sweep_outbox() -> int:
    """Hand out outbox rows that fell due with no task on its way (retries parked for the
    sweep) or were lost (broker down at commit, worker killed); purge expired idempotency
    keys."""
    settings = runtime.resources().settings
    items = runtime.run(
        lambda shared: claim_overdue(
            shared.sessions,
            kinds=TASK_BY_KIND,
            grace=overdue_grace(settings.outbox_sweep_seconds),
        ),
        deadline=SWEEP_DEADLINE_SECONDS,
    )
    purged = runtime.run(
        lambda shared: purge_idempotency_keys(
            shared.sessions, ttl=timedelta(seconds=settings.idempotency_ttl_seconds)
        ),
        deadline=SWEEP_DEADLINE_SECONDS,
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
