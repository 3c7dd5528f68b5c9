"""A task's batch, in-process: the task's own row and other due rows claimed in one
statement, sent at once, each with its own attempt, outcome, metric and log line
(PostgreSQL for the outbox, the receiver mocked at the network edge)."""

from __future__ import annotations

import logging

import httpx
import pytest
import respx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_service.database import utcnow
from crm_service.events.delivery import (
    EARLY_TOLERANCE,
    FLAG_OFF_ERROR,
    Outcome,
    SendSlots,
    deliver_batch,
)
from crm_service.events.models import OutboxEvent
from crm_service.events.outbox import TIMELINE_NOTE, WEBHOOK, claim_due_batch
from crm_service.teams.features import FlagCache
from shared_contracts.signatures import generate_secret
from tests.crm.conftest import ADMIN_KEY, TeamHandle, enable_parity
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


async def webhook_rows(
    client: httpx.AsyncClient, team: LinkedTeam | TeamHandle, sessions: Sessions, count: int
) -> list[OutboxEvent]:
    for number in range(count):
        await create_record(
            client, team, name=f"deal {number}", channel_integration_room_id=f"r{number}"
        )
    return [row for row in await outbox_rows(sessions, kind=WEBHOOK) if row.team_id == team.id]


async def test_rows_claimed_by_one_task_are_each_delivered_once_with_their_own_attempt(
    client: httpx.AsyncClient,
    sessions: Sessions,
    webhooks: httpx.AsyncClient,
    flags: FlagCache,
    omni: respx.Router,
    linked_team: LinkedTeam,
) -> None:
    route = omni.post(WEBHOOK_URL).respond(202, text="ok")
    rows = await webhook_rows(client, linked_team, sessions, 5)

    batch = await deliver_batch(sessions, webhooks, flags, rows[2].id, POLICY)
    duplicates = [await deliver_batch(sessions, webhooks, flags, row.id, POLICY) for row in rows]

    assert batch.own.outcome is Outcome.DELIVERED
    assert {row_id: result.outcome for row_id, result in batch.rows.items()} == {
        row.id: Outcome.DELIVERED for row in rows
    }
    assert sorted(call.request.headers["webhook-id"] for call in route.calls) == sorted(
        row.webhook_id for row in rows
    )
    for row in rows:
        [attempt] = await attempts_of(sessions, row.id)
        assert (attempt.status_code, attempt.response_excerpt) == (202, "ok")
        stored = await outbox_row(sessions, row.id)
        assert (stored.status, stored.attempt_count) == ("delivered", 1)
    assert [result.own.outcome for result in duplicates] == [Outcome.SKIPPED] * 5
    assert all(result.rows == {} for result in duplicates)
    assert route.call_count == 5


async def test_a_mixed_batch_gives_each_row_its_own_outcome(
    client: httpx.AsyncClient,
    sessions: Sessions,
    webhooks: httpx.AsyncClient,
    flags: FlagCache,
    omni: respx.Router,
    linked_team: LinkedTeam,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server_error, client_error, success, timeout = await webhook_rows(
        client, linked_team, sessions, 4
    )
    answers = {
        server_error.webhook_id: httpx.Response(500),
        client_error.webhook_id: httpx.Response(400),
        success.webhook_id: httpx.Response(200),
    }

    def answer(request: httpx.Request) -> httpx.Response:
        webhook_id = request.headers["webhook-id"]
        if webhook_id == timeout.webhook_id:
            raise httpx.ReadTimeout("no answer", request=request)
        return answers[webhook_id]

    omni.post(WEBHOOK_URL).mock(side_effect=answer)
    before = {outcome: deliveries_counted(outcome) for outcome in ("delivered", "retry", "failed")}
    caplog.set_level(logging.INFO, logger="crm_service.events.delivery")

    batch = await deliver_batch(sessions, webhooks, flags, server_error.id, POLICY)

    outcomes = {row_id: result.outcome for row_id, result in batch.rows.items()}
    assert outcomes == {
        server_error.id: Outcome.RETRY,
        client_error.id: Outcome.FAILED,
        success.id: Outcome.DELIVERED,
        timeout.id: Outcome.RETRY,
    }
    for row_id in (server_error.id, timeout.id):
        retry_in = batch.rows[row_id].retry_in
        assert retry_in is not None and 0.8 <= retry_in <= 1.2  # its own schedule[0] ± 20 %
        assert batch.rows[row_id].dispatch_in == retry_in
    stored = {
        row.id: await outbox_row(sessions, row.id)
        for row in (server_error, client_error, success, timeout)
    }
    assert (stored[server_error.id].status, stored[server_error.id].last_error) == (
        "pending",
        "HTTP 500 Internal Server Error",
    )
    assert (stored[client_error.id].status, stored[client_error.id].last_error) == (
        "failed",
        "HTTP 400 Bad Request",
    )
    assert (stored[success.id].status, stored[success.id].last_error) == ("delivered", None)
    assert stored[timeout.id].status == "pending"
    assert stored[timeout.id].last_error == "timeout after 1s"
    assert stored[timeout.id].next_attempt_at > utcnow()
    codes = {
        row_id: [a.status_code for a in await attempts_of(sessions, row_id)] for row_id in outcomes
    }
    assert codes == {
        server_error.id: [500],
        client_error.id: [400],
        success.id: [200],
        timeout.id: [None],
    }
    assert {outcome: deliveries_counted(outcome) - count for outcome, count in before.items()} == {
        "delivered": 1,
        "retry": 2,
        "failed": 1,
    }
    logged = {
        record.__dict__["webhook_id"]: (record.__dict__["record_id"], record.__dict__["outcome"])
        for record in caplog.records
        if record.getMessage() == "webhook attempt"
    }
    assert logged == {
        row.webhook_id: (row.record_id, outcomes[row.id].value)
        for row in (server_error, client_error, success, timeout)
    }


async def test_two_concurrent_claimers_never_take_the_same_row(
    client: httpx.AsyncClient, sessions: Sessions, linked_team: LinkedTeam
) -> None:
    rows = await webhook_rows(client, linked_team, sessions, 12)
    ids = [row.id for row in rows]
    now = utcnow()
    params = {"due_by": now + EARLY_TOLERANCE, "lease_until": now + POLICY.lease}
    claim = claim_due_batch(WEBHOOK, 8).returning(OutboxEvent.id)

    async with sessions() as first, sessions() as second:
        taken_first = set(await first.scalars(claim, {**params, "outbox_id": ids[0]}))
        # The first claim is not committed: its rows are locked, the second skips them
        # (and does not wait), and a claimer whose own row is locked takes nothing.
        taken_second = set(await second.scalars(claim, {**params, "outbox_id": ids[10]}))
        async with sessions() as third:
            assert list(await third.scalars(claim, {**params, "outbox_id": ids[3]})) == []
            await third.commit()
        await first.commit()
        await second.commit()

    assert taken_first == set(ids[:8])
    assert taken_second == set(ids[8:])
    for row in rows:
        assert (await outbox_row(sessions, row.id)).attempt_count == 1


async def test_a_batch_sends_nothing_for_a_team_whose_flag_is_off(
    client: httpx.AsyncClient,
    sessions: Sessions,
    webhooks: httpx.AsyncClient,
    flags: FlagCache,
    omni: respx.Router,
    linked_team: LinkedTeam,
    other_team: TeamHandle,
) -> None:
    await link(client, other_team.id, generate_secret())
    await enable_parity(client, other_team)
    route = omni.post(WEBHOOK_URL).respond(200)
    on_rows = await webhook_rows(client, linked_team, sessions, 2)
    off_rows = await webhook_rows(client, other_team, sessions, 2)
    await enable_parity(client, other_team, enabled=False)  # the rollback, before the batch
    skipped_before = deliveries_counted("skipped_flag_off")

    batch = await deliver_batch(sessions, webhooks, flags, off_rows[0].id, POLICY)

    assert {row_id: result.outcome for row_id, result in batch.rows.items()} == {
        **{row.id: Outcome.DELIVERED for row in on_rows},
        **{row.id: Outcome.FLAG_OFF for row in off_rows},
    }
    assert sorted(call.request.headers["webhook-id"] for call in route.calls) == sorted(
        row.webhook_id for row in on_rows
    )
    for row in off_rows:
        stored = await outbox_row(sessions, row.id)
        assert (stored.status, stored.last_error) == ("failed", FLAG_OFF_ERROR)
        [attempt] = await attempts_of(sessions, row.id)
        assert (attempt.status_code, attempt.error) == (None, FLAG_OFF_ERROR)
    assert deliveries_counted("skipped_flag_off") - skipped_before == 2


async def test_a_batch_takes_no_more_rows_than_the_process_has_send_slots(
    client: httpx.AsyncClient,
    sessions: Sessions,
    webhooks: httpx.AsyncClient,
    flags: FlagCache,
    omni: respx.Router,
    linked_team: LinkedTeam,
) -> None:
    omni.post(WEBHOOK_URL).respond(200)
    rows = await webhook_rows(client, linked_team, sessions, 6)
    slots = SendSlots(capacity=4)
    slots.take(3)  # another batch of the process has three sends in flight

    batch = await deliver_batch(sessions, webhooks, flags, rows[0].id, POLICY, slots=slots)
    full = await deliver_batch(sessions, webhooks, flags, rows[1].id, POLICY)

    assert list(batch.rows) == [rows[0].id]
    assert slots.in_flight == 3
    assert set(full.rows) == {row.id for row in rows[1:]}


async def note_jobs(sessions: Sessions) -> list[OutboxEvent]:
    return await outbox_rows(sessions, kind=TIMELINE_NOTE)


async def test_the_attempt_of_a_create_writes_its_note_job_with_its_record_and_only_once(
    client: httpx.AsyncClient,
    sessions: Sessions,
    webhooks: httpx.AsyncClient,
    flags: FlagCache,
    omni: respx.Router,
    linked_team: LinkedTeam,
) -> None:
    jobs_at_send: list[int] = []

    async def answer(request: httpx.Request) -> httpx.Response:
        jobs_at_send.append(len(await note_jobs(sessions)))
        return httpx.Response(503)

    omni.post(WEBHOOK_URL).mock(side_effect=answer)
    rows = await webhook_rows(client, linked_team, sessions, 3)

    first = await deliver_batch(sessions, webhooks, flags, rows[0].id, POLICY)
    jobs = await note_jobs(sessions)
    for row in rows:  # their retries fall due, and a second claim takes them
        await make_due(sessions, row.id)
    second = await deliver_batch(sessions, webhooks, flags, rows[0].id, POLICY)

    assert {result.outcome for result in first.rows.values()} == {Outcome.RETRY}
    # Written with the first attempts' record, after their sends (so no send waits on it).
    assert jobs_at_send == [0] * 3 + [3] * 3
    assert sorted(first.note_jobs) == sorted(job.id for job in jobs)
    assert sorted((job.record_id, job.room_id) for job in jobs) == sorted(
        (row.record_id, row.room_id) for row in rows
    )
    assert {(job.status, job.attempt_count, job.body) for job in jobs} == {("pending", 0, None)}
    assert len(second.rows) == 3 and second.note_jobs == []
    assert len(await note_jobs(sessions)) == 3


async def test_update_and_delete_events_bring_no_note_job(
    client: httpx.AsyncClient,
    sessions: Sessions,
    webhooks: httpx.AsyncClient,
    flags: FlagCache,
    omni: respx.Router,
    linked_team: LinkedTeam,
) -> None:
    omni.post(WEBHOOK_URL).respond(202)
    deal = await create_record(client, linked_team)
    [create] = await outbox_rows(sessions, kind=WEBHOOK)
    response = await client.patch(
        f"/api/v3.1/deals/{deal['id']}", json={"name": "Renamed"}, headers=linked_team.auth
    )
    assert response.status_code == 200, response.text
    response = await client.delete(f"/api/v3.1/deals/{deal['id']}", headers=linked_team.auth)
    assert response.status_code in (200, 204), response.text
    _, update, delete = await outbox_rows(sessions, kind=WEBHOOK)

    later = await deliver_batch(sessions, webhooks, flags, update.id, POLICY, limit=1)
    gone = await deliver_batch(sessions, webhooks, flags, delete.id, POLICY, limit=1)
    assert (later.note_jobs, gone.note_jobs) == ([], [])
    assert await note_jobs(sessions) == []

    created = await deliver_batch(sessions, webhooks, flags, create.id, POLICY, limit=1)
    [job] = await note_jobs(sessions)
    assert created.note_jobs == [job.id] and job.record_id == deal["id"]


async def test_a_replayed_create_writes_no_second_note_job(
    client: httpx.AsyncClient,
    sessions: Sessions,
    webhooks: httpx.AsyncClient,
    flags: FlagCache,
    omni: respx.Router,
    linked_team: LinkedTeam,
) -> None:
    omni.post(WEBHOOK_URL).respond(400)  # given up at once: failed, for an admin to replay
    await create_record(client, linked_team)
    [event] = await outbox_rows(sessions, kind=WEBHOOK)
    first = await deliver_batch(sessions, webhooks, flags, event.id, POLICY)
    assert first.own.outcome is Outcome.FAILED and len(first.note_jobs) == 1

    replayed = await client.post(
        f"/admin/deliveries/{event.id}/replay", headers={"X-Admin-Key": ADMIN_KEY}
    )
    assert replayed.status_code == 202, replayed.text
    again = await deliver_batch(sessions, webhooks, flags, event.id, POLICY)

    assert again.rows and again.note_jobs == []
    assert [job.id for job in await note_jobs(sessions)] == first.note_jobs
