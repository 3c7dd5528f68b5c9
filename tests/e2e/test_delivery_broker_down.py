"""The broker is down when a change commits: the API still answers, the event waits in
the outbox, and the sweep sends it once the broker is back."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import Pool, crm_env, run_crm
from tests.support.processes import LoopbackReceiver, RedisServer, wait_until

pytestmark = pytest.mark.e2e

# Celery's consumer retries its broker connection every couple of seconds.
RECONNECT_ALLOWANCE_SECONDS = 6.0


def test_create_while_the_broker_is_down_answers_201_and_is_delivered_once_it_is_back(
    crm_database_url: str, receiver: LoopbackReceiver, worker_pool: Pool, tmp_path: Path
) -> None:
    broker = RedisServer()  # not started yet: its port refuses connections
    env = crm_env(crm_database_url, broker.url(), redis_url=None)
    omni = receiver.endpoint(only="/webhooks/crm")
    with run_crm(env, tmp_path, worker=False, **worker_pool.options) as stack:
        team = stack.create_team(omni.base_url)
        record = stack.create(team, "deals")  # asserts the 201

        stack.api.wait_for_log("outbox enqueue failed", timeout=10)
        [waiting] = stack.deliveries(team)
        assert (waiting["status"], waiting["attempts"]) == ("pending", [])

        with broker:
            stack.start_worker()
            stack.start_beat()
            [request] = omni.wait_for(lambda requests: requests, timeout=30, message=stack.logs)
            assert request.webhook_id == waiting["webhook_id"]
            assert json.loads(request.body)["data"]["id"] == record["id"]
            stack.wait_for_deliveries(
                team, lambda items: items[0]["status"] == "delivered", timeout=10
            )
            stack.worker.stop()  # type: ignore[union-attr]


SWEEP_SECONDS = 2.0


def test_after_an_outage_of_a_running_broker_the_outbox_goes_out_within_two_sweeps(
    crm_database_url: str,
    redis_server: RedisServer,
    receiver: LoopbackReceiver,
    worker_pool: Pool,
    tmp_path: Path,
) -> None:
    """Worker and beat started the plain way and running; Redis dies, creates commit
    (their hand-off fails), Redis comes back on the same address: every event is
    delivered within about two sweep intervals of its return."""
    env = crm_env(
        crm_database_url,
        redis_server.url(0),
        redis_url=None,
        CRM_OUTBOX_SWEEP_SECONDS=SWEEP_SECONDS,
    )
    omni = receiver.endpoint(only="/webhooks/crm")
    with run_crm(env, tmp_path, **worker_pool.options) as stack:
        team = stack.create_team(omni.base_url)
        stack.create(team, "deals")
        omni.wait_for(lambda requests: len(requests) == 1, timeout=30, message=stack.logs)

        redis_server.stop()
        for _ in range(5):
            stack.create(team, "deals")
        wait_until(
            lambda: len(webhook_outbox_ids_that_failed_to_enqueue(stack.api.log_text())) >= 5,
            timeout=30,
            message=stack.logs,
        )
        time.sleep(SWEEP_SECONDS)  # the outage lasts a sweep interval or more

        redis_server.start()
        back = time.monotonic()
        omni.wait_for(
            lambda requests: len({request.webhook_id for request in requests}) == 6,
            timeout=60,
            message=stack.logs,
        )
        took = time.monotonic() - back
        print(f"\n[{worker_pool.name}] broker back -> 5 events delivered: {took:.2f} s")
        # Two sweep intervals, plus the time the worker and beat take to reconnect.
        assert took <= 2 * SWEEP_SECONDS + RECONNECT_ALLOWANCE_SECONDS, stack.logs()


def webhook_outbox_ids_that_failed_to_enqueue(log_text: str) -> set[int]:
    """The webhook outbox rows the API's dispatcher could not hand to the broker. It
    hands rows over in batches, so one failure line may name several creates."""
    ids: set[int] = set()
    for line in log_text.splitlines():
        if "outbox enqueue failed" not in line:
            continue
        entry = json.loads(line)
        ids.update(row_id for row_id, kind in entry["outbox_ids"] if kind == "webhook")
    return ids
