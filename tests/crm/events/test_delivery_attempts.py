"""One delivery attempt, in-process: PostgreSQL for the outbox and the attempt log, the
receiver mocked at the network edge (respx)."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

import httpx
import pytest
import respx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from svix.webhooks import Webhook as SvixWebhook

from crm_service.database import utcnow
from crm_service.events.delivery import (
    EXCERPT_BYTES,
    MAX_COUNTDOWN_SECONDS,
    NO_LINK_ERROR,
    DeliveryPolicy,
    Outcome,
    deliver,
)
from crm_service.events.models import OutboxEvent
from crm_service.metrics import WORKER_REGISTRY as REGISTRY
from crm_service.teams.features import FlagCache
from crm_service.worker import VISIBILITY_TIMEOUT_SECONDS
from shared_contracts.signatures import generate_secret
from tests.contracts.spec import verify_per_spec
from tests.crm.conftest import TeamHandle, enable_parity
from tests.crm.events.conftest import (
    POLICY,
    WEBHOOK_URL,
    LinkedTeam,
    attempts_of,
    create_record,
    deliveries_counted,
    link,
    make_due,
    outbox_row,
    outbox_rows,
)

Sessions = async_sessionmaker[AsyncSession]


async def test_a_2xx_answer_marks_the_event_delivered_and_logs_the_attempt(
    sessions: Sessions,
    webhooks: httpx.AsyncClient,
    omni: respx.Router,
    webhook_event: OutboxEvent,
    flags: FlagCache,
) -> None:
    omni.post(WEBHOOK_URL).respond(202, text='{"status":"applied"}')

    result = await deliver(sessions, webhooks, flags, webhook_event.id, POLICY)

    assert result.outcome is Outcome.DELIVERED
    row = await outbox_row(sessions, webhook_event.id)
    assert (row.status, row.attempt_count, row.last_error) == ("delivered", 1, None)
    assert row.completed_at is not None
    [attempt] = await attempts_of(sessions, webhook_event.id)
    assert (attempt.status_code, attempt.error, attempt.response_excerpt) == (
        202,
        None,
        '{"status":"applied"}',
    )
    assert attempt.latency_ms >= 0


async def test_the_stored_body_is_sent_signed_for_three_verifiers(
    sessions: Sessions,
    webhooks: httpx.AsyncClient,
    flags: FlagCache,
    omni: respx.Router,
    webhook_event: OutboxEvent,
    linked_team: LinkedTeam,
) -> None:
    route = omni.post(WEBHOOK_URL).respond(200)

    await deliver(sessions, webhooks, flags, webhook_event.id, POLICY)

    request = route.calls.last.request
    assert request.content == webhook_event.body.encode()  # type: ignore[union-attr]
    assert request.headers["webhook-id"] == webhook_event.webhook_id
    headers = dict(request.headers)
    SvixWebhook(linked_team.webhook_secret).verify(request.content, headers)
    verify_per_spec(request.content, headers, linked_team.webhook_secret)


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
async def test_retryable_answers_schedule_the_next_attempt(
    sessions: Sessions,
    webhooks: httpx.AsyncClient,
    flags: FlagCache,
    omni: respx.Router,
    webhook_event: OutboxEvent,
    status: int,
) -> None:
    omni.post(WEBHOOK_URL).respond(status)
    before = utcnow()

    result = await deliver(sessions, webhooks, flags, webhook_event.id, POLICY)

    assert result.outcome is Outcome.RETRY
    assert result.retry_in is not None and 0.8 <= result.retry_in <= 1.2  # schedule[0] ± 20 %
    row = await outbox_row(sessions, webhook_event.id)
    assert row.status == "pending"
    assert row.last_error is not None and row.last_error.startswith(f"HTTP {status}")
    assert before + timedelta(seconds=0.8) <= row.next_attempt_at
    assert row.next_attempt_at <= utcnow() + timedelta(seconds=1.2)


@pytest.mark.parametrize("status", [301, 400, 401, 403, 404, 410, 413, 422])
async def test_other_answers_fail_at_once(
    sessions: Sessions,
    webhooks: httpx.AsyncClient,
    flags: FlagCache,
    omni: respx.Router,
    webhook_event: OutboxEvent,
    status: int,
) -> None:
    omni.post(WEBHOOK_URL).respond(status)

    result = await deliver(sessions, webhooks, flags, webhook_event.id, POLICY)

    assert (result.outcome, result.retry_in) == (Outcome.FAILED, None)
    row = await outbox_row(sessions, webhook_event.id)
    assert row.status == "failed"
    assert row.last_error is not None and row.last_error.startswith(f"HTTP {status}")


async def test_a_network_error_is_recorded_and_retried(
    sessions: Sessions,
    webhooks: httpx.AsyncClient,
    omni: respx.Router,
    webhook_event: OutboxEvent,
    flags: FlagCache,
) -> None:
    omni.post(WEBHOOK_URL).mock(side_effect=httpx.ConnectError("connection refused"))

    result = await deliver(sessions, webhooks, flags, webhook_event.id, POLICY)

    assert result.outcome is Outcome.RETRY
    [attempt] = await attempts_of(sessions, webhook_event.id)
    assert (attempt.status_code, attempt.error) == (None, "ConnectError: connection refused")


async def test_a_read_timeout_is_recorded_and_retried(
    sessions: Sessions,
    webhooks: httpx.AsyncClient,
    omni: respx.Router,
    webhook_event: OutboxEvent,
    flags: FlagCache,
) -> None:
    omni.post(WEBHOOK_URL).mock(side_effect=httpx.ReadTimeout("read timed out"))

    result = await deliver(sessions, webhooks, flags, webhook_event.id, POLICY)

    assert result.outcome is Outcome.RETRY
    [attempt] = await attempts_of(sessions, webhook_event.id)
    assert (attempt.status_code, attempt.error) == (None, "timeout after 1s")


async def test_the_whole_exchange_is_cut_at_the_timeout(
    sessions: Sessions,
    webhooks: httpx.AsyncClient,
    omni: respx.Router,
    webhook_event: OutboxEvent,
    flags: FlagCache,
) -> None:
    async def stalls(_request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(30)
        return httpx.Response(200)

    omni.post(WEBHOOK_URL).mock(side_effect=stalls)
    policy = DeliveryPolicy(
        schedule=POLICY.schedule, timeout_seconds=0.2, rotation_grace=POLICY.rotation_grace
    )

    result = await deliver(sessions, webhooks, flags, webhook_event.id, policy)

    assert result.outcome is Outcome.RETRY
    [attempt] = await attempts_of(sessions, webhook_event.id)
    assert attempt.error == "timeout after 0.2s"


async def test_the_event_is_dead_lettered_when_the_schedule_is_exhausted(
    sessions: Sessions,
    webhooks: httpx.AsyncClient,
    omni: respx.Router,
    webhook_event: OutboxEvent,
    flags: FlagCache,
) -> None:
    omni.post(WEBHOOK_URL).respond(503)
    policy = DeliveryPolicy(schedule=(0.0, 0.0), timeout_seconds=1.0, rotation_grace=timedelta(0))
    failed_before = deliveries_counted("failed")

    outcomes = []
    for _ in range(3):
        outcomes.append(
            (await deliver(sessions, webhooks, flags, webhook_event.id, policy)).outcome
        )
        await make_due(sessions, webhook_event.id)

    assert outcomes == [Outcome.RETRY, Outcome.RETRY, Outcome.FAILED]
    row = await outbox_row(sessions, webhook_event.id)
    assert (row.status, row.attempt_count) == ("failed", 3)
    assert row.last_error == "gave up after 3 attempts: HTTP 503 Service Unavailable"
    assert deliveries_counted("failed") == failed_before + 1


async def test_each_outcome_is_counted_and_each_send_timed(
    sessions: Sessions,
    webhooks: httpx.AsyncClient,
    omni: respx.Router,
    webhook_event: OutboxEvent,
    flags: FlagCache,
) -> None:
    omni.post(WEBHOOK_URL).mock(side_effect=[httpx.Response(500), httpx.Response(200)])
    retried, delivered = deliveries_counted("retry"), deliveries_counted("delivered")
    timed = REGISTRY.get_sample_value("crm_webhook_delivery_latency_seconds_count") or 0.0

    await deliver(sessions, webhooks, flags, webhook_event.id, POLICY)
    await make_due(sessions, webhook_event.id)
    await deliver(sessions, webhooks, flags, webhook_event.id, POLICY)

    assert deliveries_counted("retry") == retried + 1
    assert deliveries_counted("delivered") == delivered + 1
    assert REGISTRY.get_sample_value("crm_webhook_delivery_latency_seconds_count") == timed + 2


async def test_retry_after_longer_than_the_schedule_wins(
    sessions: Sessions,
    webhooks: httpx.AsyncClient,
    omni: respx.Router,
    webhook_event: OutboxEvent,
    flags: FlagCache,
) -> None:
    omni.post(WEBHOOK_URL).respond(429, headers={"Retry-After": "120"})

    result = await deliver(sessions, webhooks, flags, webhook_event.id, POLICY)

    assert result.retry_in == 120.0
    row = await outbox_row(sessions, webhook_event.id)
    assert row.next_attempt_at >= utcnow() + timedelta(seconds=119)


async def test_the_response_excerpt_is_bounded_to_one_kib(
    sessions: Sessions,
    webhooks: httpx.AsyncClient,
    omni: respx.Router,
    webhook_event: OutboxEvent,
    flags: FlagCache,
) -> None:
    omni.post(WEBHOOK_URL).respond(500, content=b"x" * 100_000)

    await deliver(sessions, webhooks, flags, webhook_event.id, POLICY)

    [attempt] = await attempts_of(sessions, webhook_event.id)
    assert attempt.response_excerpt == "x" * EXCERPT_BYTES


async def test_an_event_not_yet_due_is_left_alone(
    sessions: Sessions,
    webhooks: httpx.AsyncClient,
    omni: respx.Router,
    webhook_event: OutboxEvent,
    flags: FlagCache,
) -> None:
    route = omni.post(WEBHOOK_URL).respond(500)
    await deliver(sessions, webhooks, flags, webhook_event.id, POLICY)  # next attempt in ~1 s

    result = await deliver(sessions, webhooks, flags, webhook_event.id, POLICY)

    assert result.outcome is Outcome.SKIPPED
    assert route.call_count == 1
    assert len(await attempts_of(sessions, webhook_event.id)) == 1


async def test_a_delivered_event_is_never_sent_again(
    sessions: Sessions,
    webhooks: httpx.AsyncClient,
    omni: respx.Router,
    webhook_event: OutboxEvent,
    flags: FlagCache,
) -> None:
    route = omni.post(WEBHOOK_URL).respond(200)
    await deliver(sessions, webhooks, flags, webhook_event.id, POLICY)
    await make_due(sessions, webhook_event.id)

    result = await deliver(sessions, webhooks, flags, webhook_event.id, POLICY)

    assert result.outcome is Outcome.SKIPPED
    assert route.call_count == 1


async def test_concurrent_tasks_for_one_event_send_it_once(
    sessions: Sessions,
    webhooks: httpx.AsyncClient,
    omni: respx.Router,
    webhook_event: OutboxEvent,
    flags: FlagCache,
) -> None:
    async def slow_ok(_request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.2)
        return httpx.Response(200)

    route = omni.post(WEBHOOK_URL).mock(side_effect=slow_ok)

    results = await asyncio.gather(
        *(deliver(sessions, webhooks, flags, webhook_event.id, POLICY) for _ in range(5))
    )

    assert sorted(result.outcome for result in results) == sorted(
        [Outcome.DELIVERED] + [Outcome.SKIPPED] * 4
    )
    assert route.call_count == 1


async def test_the_result_of_an_attempt_whose_lease_ran_out_does_not_override_a_newer_one(
    sessions: Sessions,
    webhooks: httpx.AsyncClient,
    omni: respx.Router,
    webhook_event: OutboxEvent,
    flags: FlagCache,
) -> None:
    started = asyncio.Event()
    release = asyncio.Event()

    async def first_stalls_then_fails(_request: httpx.Request) -> httpx.Response:
        if started.is_set():
            return httpx.Response(200)
        started.set()
        await release.wait()
        return httpx.Response(500)

    omni.post(WEBHOOK_URL).mock(side_effect=first_stalls_then_fails)
    slow = asyncio.create_task(deliver(sessions, webhooks, flags, webhook_event.id, POLICY))
    await started.wait()
    await make_due(sessions, webhook_event.id)  # as if its lease had run out
    fresh = await deliver(sessions, webhooks, flags, webhook_event.id, POLICY)
    release.set()
    late = await slow

    assert fresh.outcome is Outcome.DELIVERED
    assert late.outcome is Outcome.RETRY  # what it saw; the row is not changed by it
    row = await outbox_row(sessions, webhook_event.id)
    assert (row.status, row.last_error) == ("delivered", None)
    assert [a.status_code for a in await attempts_of(sessions, webhook_event.id)] == [200, 500]


async def test_during_the_rotation_grace_both_secrets_sign(
    client: httpx.AsyncClient,
    sessions: Sessions,
    webhooks: httpx.AsyncClient,
    flags: FlagCache,
    omni: respx.Router,
    linked_team: LinkedTeam,
) -> None:
    new_secret = generate_secret()
    await link(client, linked_team.id, new_secret)
    await create_record(client, linked_team)
    [event] = await outbox_rows(sessions, kind="webhook")
    route = omni.post(WEBHOOK_URL).respond(200)

    await deliver(sessions, webhooks, flags, event.id, POLICY)

    request = route.calls.last.request
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    for secret in (linked_team.webhook_secret, new_secret):
        SvixWebhook(secret).verify(request.content, dict(request.headers))


async def test_after_the_rotation_grace_only_the_new_secret_signs(
    client: httpx.AsyncClient,
    sessions: Sessions,
    webhooks: httpx.AsyncClient,
    flags: FlagCache,
    omni: respx.Router,
    linked_team: LinkedTeam,
) -> None:
    new_secret = generate_secret()
    await link(client, linked_team.id, new_secret)
    await create_record(client, linked_team)
    [event] = await outbox_rows(sessions, kind="webhook")
    route = omni.post(WEBHOOK_URL).respond(200)
    policy = DeliveryPolicy(
        schedule=POLICY.schedule, timeout_seconds=1.0, rotation_grace=timedelta(0)
    )

    await deliver(sessions, webhooks, flags, event.id, policy)

    request = route.calls.last.request
    assert request.headers["webhook-signature"].count("v1,") == 1
    SvixWebhook(new_secret).verify(request.content, dict(request.headers))


async def test_a_team_linked_only_later_still_gets_its_event(
    client: httpx.AsyncClient,
    team: TeamHandle,
    sessions: Sessions,
    webhooks: httpx.AsyncClient,
    flags: FlagCache,
    omni: respx.Router,
) -> None:
    await enable_parity(client, team)
    await create_record(client, team)
    [event] = await outbox_rows(sessions, kind="webhook")
    route = omni.post(WEBHOOK_URL).respond(200)

    unlinked = await deliver(sessions, webhooks, flags, event.id, POLICY)
    await link(client, team.id, generate_secret())
    await make_due(sessions, event.id)
    linked = await deliver(sessions, webhooks, flags, event.id, POLICY)

    assert (unlinked.outcome, linked.outcome) == (Outcome.RETRY, Outcome.DELIVERED)
    first, second = await attempts_of(sessions, event.id)
    assert (first.status_code, first.error) == (None, NO_LINK_ERROR)
    assert second.status_code == 200
    assert route.call_count == 1


async def test_the_signing_secret_is_never_logged(
    sessions: Sessions,
    webhooks: httpx.AsyncClient,
    flags: FlagCache,
    omni: respx.Router,
    webhook_event: OutboxEvent,
    linked_team: LinkedTeam,
    caplog: pytest.LogCaptureFixture,
) -> None:
    omni.post(WEBHOOK_URL).mock(side_effect=[httpx.Response(500), httpx.Response(401)])
    caplog.set_level(logging.DEBUG)

    await deliver(sessions, webhooks, flags, webhook_event.id, POLICY)
    await make_due(sessions, webhook_event.id)
    await deliver(sessions, webhooks, flags, webhook_event.id, POLICY)

    logged = [record for record in caplog.records if record.getMessage() == "webhook attempt"]
    assert [record.__dict__["webhook_id"] for record in logged] == [webhook_event.webhook_id] * 2
    secret_body = linked_team.webhook_secret.removeprefix("whsec_")
    everything = caplog.text + "".join(str(record.__dict__) for record in caplog.records)
    assert secret_body not in everything


async def test_a_retry_due_within_the_countdown_limit_is_sent_as_a_countdown_task(
    sessions: Sessions,
    webhooks: httpx.AsyncClient,
    omni: respx.Router,
    webhook_event: OutboxEvent,
    flags: FlagCache,
) -> None:
    omni.post(WEBHOOK_URL).respond(429, headers={"Retry-After": "120"})

    result = await deliver(sessions, webhooks, flags, webhook_event.id, POLICY)

    assert result.dispatch_in == result.retry_in == 120.0
    row = await outbox_row(sessions, webhook_event.id)
    assert row.enqueued_at is not None


async def test_a_retry_due_past_the_countdown_limit_waits_in_the_outbox_for_the_sweep(
    sessions: Sessions,
    webhooks: httpx.AsyncClient,
    omni: respx.Router,
    webhook_event: OutboxEvent,
    flags: FlagCache,
) -> None:
    """A countdown task longer than the broker's visibility timeout would be delivered
    twice by Redis; a 3 h retry is parked instead, and the sweep sends it when due."""
    omni.post(WEBHOOK_URL).respond(503, headers={"Retry-After": "3000"})

    result = await deliver(sessions, webhooks, flags, webhook_event.id, POLICY)

    assert result.outcome is Outcome.RETRY
    assert result.retry_in is not None and result.retry_in > MAX_COUNTDOWN_SECONDS
    assert result.dispatch_in is None
    row = await outbox_row(sessions, webhook_event.id)
    assert row.enqueued_at is None
    assert MAX_COUNTDOWN_SECONDS < VISIBILITY_TIMEOUT_SECONDS
