"""Signed delivery end to end: the CRM API (uvicorn), a plain Celery worker and beat as
real processes, PostgreSQL, a private Redis broker, a loopback receiver. The module runs
once per worker pool (prefork, threads, solo).

The processes are shared by this module's tests; each test makes its own team linked to
its own receiver endpoint, so tests see only their own events.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from svix.webhooks import Webhook as SvixWebhook

from shared_contracts.signatures import verify
from tests.contracts.spec import verify_per_spec
from tests.e2e.conftest import CrmStack, Pool, crm_env, run_crm
from tests.support.processes import (
    LoopbackReceiver,
    ReceivedRequest,
    RedisServer,
    Reply,
    free_port,
    replies,
    wait_until,
)

pytestmark = pytest.mark.e2e

WEBHOOKS = "/webhooks/crm"
TIMEOUT = 30.0


@pytest.fixture(scope="module")
def stack(
    module_database_url: str,
    module_redis: RedisServer,
    module_worker_pool: Pool,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[CrmStack]:
    env = crm_env(module_database_url, module_redis.url(0), module_redis.url(1))
    log_dir: Path = tmp_path_factory.mktemp(f"delivery-{module_worker_pool.name}")
    worker_env = {
        **env,
        "CRM_WORKER_METRICS_PORT": str(free_port()),
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path_factory.mktemp("worker-metrics")),
    }
    with run_crm(env, log_dir, worker_env=worker_env, **module_worker_pool.options) as running:
        yield running


def event(request: ReceivedRequest) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(request.body)
    return document


def attempt_codes(entry: dict[str, Any]) -> list[int | None]:
    return [attempt["status_code"] for attempt in entry["attempts"]]


def settled(items: list[dict[str, Any]]) -> bool:
    return all(item["status"] != "pending" for item in items)


@pytest.mark.parametrize("kind", ["deals", "tickets"])
def test_create_update_and_delete_each_arrive_signed_for_both_verifiers(
    stack: CrmStack, receiver: LoopbackReceiver, kind: str
) -> None:
    omni = receiver.endpoint(only="/webhooks/crm")
    team = stack.create_team(omni.base_url)
    record = stack.create(team, kind)
    stack.update(team, kind, record["id"], name="renamed by the agent")
    stack.delete(team, kind, record["id"])

    omni.wait_for(lambda requests: len(requests) >= 3, timeout=TIMEOUT)
    received = omni.requests
    singular = kind[:-1]
    by_type = {event(request)["type"]: request for request in received}
    assert sorted(by_type) == sorted(
        f"qontak.crm.{singular}.{action}" for action in ("create", "update", "delete")
    )
    for request in received:
        assert request.path == WEBHOOKS
        verify(request.body, request.headers, team.webhook_secret)
        SvixWebhook(team.webhook_secret).verify(request.body, dict(request.headers))
        verify_per_spec(request.body, request.headers, team.webhook_secret)
        assert event(request)["data"]["id"] == record["id"]
        assert event(request)["data"]["company_id"] == team.external_company_id
    versions = {kind: event(request)["data"]["version"] for kind, request in by_type.items()}
    assert versions == {
        f"qontak.crm.{singular}.create": 1,
        f"qontak.crm.{singular}.update": 2,
        f"qontak.crm.{singular}.delete": 3,
    }


def test_retries_carry_the_same_webhook_id(stack: CrmStack, receiver: LoopbackReceiver) -> None:
    omni = receiver.endpoint(replies(500, 503, 200), only="/webhooks/crm")
    team = stack.create_team(omni.base_url)
    stack.create(team, "deals")

    omni.wait_for(lambda requests: len(requests) >= 3, timeout=TIMEOUT)
    received = omni.requests
    ids = {request.webhook_id for request in received}
    assert len(ids) == 1
    assert ids == {stack.deliveries(team)[0]["webhook_id"]}


def test_two_server_errors_then_success_is_three_attempts_then_delivered(
    stack: CrmStack, receiver: LoopbackReceiver
) -> None:
    omni = receiver.endpoint(replies(500, 500, 200), only="/webhooks/crm")
    team = stack.create_team(omni.base_url)
    stack.create(team, "deals")

    [entry] = stack.wait_for_deliveries(team, settled, timeout=TIMEOUT)
    assert entry["status"] == "delivered"
    assert attempt_codes(entry) == [500, 500, 200]
    assert len(omni.requests_to(WEBHOOKS)) == 3


def test_client_error_fails_at_once_without_retry(
    stack: CrmStack, receiver: LoopbackReceiver
) -> None:
    omni = receiver.endpoint(
        replies(Reply(400, body=b'{"detail":"unknown company"}'), 200), only="/webhooks/crm"
    )
    team = stack.create_team(omni.base_url)
    stack.create(team, "tickets")

    [entry] = stack.wait_for_deliveries(team, settled, timeout=TIMEOUT)
    assert entry["status"] == "failed"
    assert attempt_codes(entry) == [400]
    assert entry["last_error"] == "HTTP 400 Bad Request"
    detail = stack.admin("GET", f"/admin/deliveries/{entry['id']}").json()
    assert detail["attempts"][0]["response_excerpt"] == '{"detail":"unknown company"}'


def test_too_many_requests_waits_at_least_retry_after(
    stack: CrmStack, receiver: LoopbackReceiver
) -> None:
    omni = receiver.endpoint(
        replies(Reply(429, headers={"Retry-After": "2"}), 200), only="/webhooks/crm"
    )
    team = stack.create_team(omni.base_url)
    stack.create(team, "deals")

    [entry] = stack.wait_for_deliveries(team, settled, timeout=TIMEOUT)
    assert attempt_codes(entry) == [429, 200]
    first, second = omni.requests_to(WEBHOOKS)
    # The schedule alone would retry after 0.2 s (±20 %).
    assert second.received_at - first.received_at >= 2.0


def test_a_receiver_slower_than_the_timeout_is_retried(
    stack: CrmStack, receiver: LoopbackReceiver
) -> None:
    omni = receiver.endpoint(replies(Reply(200, delay=2.5), 200), only="/webhooks/crm")
    team = stack.create_team(omni.base_url)
    stack.create(team, "deals")

    [entry] = stack.wait_for_deliveries(team, settled, timeout=TIMEOUT)
    assert entry["status"] == "delivered"
    first, second = entry["attempts"]
    assert (first["status_code"], first["error"]) == (None, "timeout after 1s")
    assert second["status_code"] == 200


def test_unreachable_receiver_is_retried_on_the_schedule_then_dead_lettered(
    stack: CrmStack,
) -> None:
    team = stack.create_team(f"http://127.0.0.1:{free_port()}")
    stack.create(team, "deals")

    [entry] = stack.wait_for_deliveries(team, settled, timeout=TIMEOUT)
    assert entry["status"] == "failed"
    assert attempt_codes(entry) == [None, None, None, None]
    assert all(attempt["error"].startswith("ConnectError") for attempt in entry["attempts"])
    assert entry["last_error"].startswith("gave up after 4 attempts: ConnectError")


def test_exhausted_event_is_failed_and_its_replay_is_delivered_with_the_same_id(
    stack: CrmStack, receiver: LoopbackReceiver
) -> None:
    omni = receiver.endpoint(replies(500), only="/webhooks/crm")
    team = stack.create_team(omni.base_url)
    stack.create(team, "tickets")
    [failed] = stack.wait_for_deliveries(team, settled, timeout=TIMEOUT)
    assert (failed["status"], attempt_codes(failed)) == ("failed", [500, 500, 500, 500])

    omni.respond_with(replies(200))
    replayed = stack.admin("POST", f"/admin/deliveries/{failed['id']}/replay")
    assert replayed.status_code == 202, replayed.text
    assert replayed.json()["status"] == "pending"

    [entry] = stack.wait_for_deliveries(team, settled, timeout=TIMEOUT)
    assert entry["status"] == "delivered"
    assert attempt_codes(entry) == [500, 500, 500, 500, 200]
    assert {request.webhook_id for request in omni.requests_to(WEBHOOKS)} == {failed["webhook_id"]}


def test_concurrent_creates_each_deliver_one_create_event_once(
    stack: CrmStack, receiver: LoopbackReceiver
) -> None:
    omni = receiver.endpoint(only="/webhooks/crm")
    team = stack.create_team(omni.base_url)
    created: list[int] = []
    lock = threading.Lock()

    def create_one(_: int) -> None:
        record = stack.create(team, "deals", channel_integration_room_id=f"room-{uuid.uuid4()}")
        with lock:
            created.append(record["id"])

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(create_one, range(200)))

    first = stack.wait_for_deliveries(
        team, lambda items: len(items) == 100 and settled(items), timeout=60, limit=100
    )
    second = stack.wait_for_deliveries(
        team, lambda items: len(items) == 100 and settled(items), timeout=60, limit=100, offset=100
    )
    attempts = {item["webhook_id"]: item["attempts"] for item in first + second}
    received = omni.requests_to(WEBHOOKS)
    per_id = Counter(request.webhook_id for request in received)
    assert len(per_id) == 200
    for webhook_id, receipts in per_id.items():
        # One claim, one send per attempt: every event is delivered by exactly one
        # attempt. A second receipt is allowed only as the retry of an attempt that failed
        # on this busy machine (a timeout), which the receiver's de-duplication absorbs.
        codes = [attempt["status_code"] for attempt in attempts[webhook_id]]
        assert codes.count(200) == 1, (webhook_id, attempts[webhook_id])
        assert receipts <= len(codes), (webhook_id, receipts, attempts[webhook_id])
    assert sum(per_id.values()) <= 200 + 5, "retries are the exception, not the rule"
    assert {event(request)["type"] for request in received} == {"qontak.crm.deal.create"}
    assert sorted(event(request)["data"]["id"] for request in received) == sorted(created)


def worker_metric(stack: CrmStack, name: str, labels: str = "") -> float:
    """One sample of the worker's ``/metrics`` (summed over its pool processes)."""
    port = stack.env["CRM_WORKER_METRICS_PORT"]
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    for line in text.splitlines():
        if line.startswith(f"{name}{labels} "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_the_worker_exposes_deliveries_by_outcome_and_their_latency(
    stack: CrmStack, receiver: LoopbackReceiver
) -> None:
    omni = receiver.endpoint(replies(500, 200), only="/webhooks/crm")
    team = stack.create_team(omni.base_url)
    retried = worker_metric(stack, "crm_webhook_deliveries_total", '{outcome="retry"}')
    delivered = worker_metric(stack, "crm_webhook_deliveries_total", '{outcome="delivered"}')
    timed = worker_metric(stack, "crm_webhook_delivery_latency_seconds_count")

    stack.create(team, "deals")
    stack.wait_for_deliveries(team, settled, timeout=TIMEOUT)

    # The outcome is counted just after the attempt is stored (and its latency before):
    # poll for the last count rather than race the worker.
    wait_until(
        lambda: (
            worker_metric(stack, "crm_webhook_deliveries_total", '{outcome="delivered"}')
            == delivered + 1
        ),
        timeout=10,
        message="delivery not counted",
    )
    assert worker_metric(stack, "crm_webhook_deliveries_total", '{outcome="retry"}') == retried + 1
    assert worker_metric(stack, "crm_webhook_delivery_latency_seconds_count") == timed + 2
