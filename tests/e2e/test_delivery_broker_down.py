"""The broker is down when a change commits: the API still answers, the event waits in
the outbox, and the sweep sends it once the broker is back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.conftest import Pool, crm_env, run_crm
from tests.support.processes import LoopbackReceiver, RedisServer

pytestmark = pytest.mark.e2e


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
