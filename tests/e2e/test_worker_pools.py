"""The worker as an operator starts it: `celery -A crm_service.worker:celery_app worker`,
no `-Q`, under the pool they choose; a threads-pool worker killed mid-burst loses nothing;
the pools that cannot work refuse to start with one line saying which to use."""

from __future__ import annotations

import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from crm_service.worker import QUEUES
from tests.e2e.conftest import Pool, crm_env, run_crm
from tests.support.processes import ROOT, LoopbackReceiver, RedisServer, Reply, replies, wait_until

pytestmark = pytest.mark.e2e

BURST = 200


def test_a_plain_worker_consumes_every_declared_queue(
    crm_database_url: str, redis_server: RedisServer, tmp_path: Path
) -> None:
    env = crm_env(crm_database_url, redis_server.url(0), redis_server.url(1))
    with run_crm(env, tmp_path, beat=False, pool="solo", concurrency=1) as stack:
        assert stack.worker is not None
        banner = stack.worker.log_text()
    queues_section = banner.split("[queues]", 1)[1].split("[tasks]", 1)[0]
    consumed = {
        line.split(".>", 1)[1].split()[0] for line in queues_section.splitlines() if ".>" in line
    }
    assert consumed == set(QUEUES) == {"webhooks", "notes", "sweep", "purge"}


@pytest.mark.parametrize("pool", ["gevent", "eventlet"])
def test_pools_that_cannot_run_asyncio_refuse_with_one_line(pool: str, tmp_path: Path) -> None:
    if pool == "eventlet":
        pytest.importorskip("eventlet")
    else:
        pytest.importorskip("gevent")
    env = crm_env(
        f"sqlite+aiosqlite:///{tmp_path / 'crm.db'}",
        f"sqla+sqlite:///{tmp_path / 'broker.db'}",
        redis_url=None,
    )
    finished = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "crm_service.worker:celery_app", "worker",
         "--pool", pool],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip

    assert finished.returncode == 2
    ours = [line for line in finished.stderr.splitlines() if line.startswith("crm_service")]
    assert ours == [
        f"crm_service worker: --pool={pool} is not supported; "
        "use --pool=prefork, --pool=threads, --pool=solo"
    ]
    assert "Traceback" not in finished.stderr


def test_a_threads_worker_killed_mid_burst_loses_no_event_and_no_note(
    crm_database_url: str,
    redis_server: RedisServer,
    receiver: LoopbackReceiver,
    tmp_path: Path,
) -> None:
    """kill -9 while 8 tasks run and more wait in the broker unacknowledged: the next
    worker (and the sweep, for what Redis would only give back after an hour) sends every
    event and writes every note."""
    env = crm_env(crm_database_url, redis_server.url(0), redis_server.url(1))
    omni = receiver.endpoint(replies(Reply(200, delay=0.05)), only="/webhooks/crm")
    threads = Pool("threads", 8)
    with run_crm(env, tmp_path, **threads.options) as stack:
        team = stack.create_team(omni.base_url)

        def create(number: int) -> dict[str, Any]:
            return stack.create(team, "deals", name=f"burst {number} {uuid.uuid4().hex[:4]}")

        with ThreadPoolExecutor(max_workers=8) as creators:
            deals = list(creators.map(create, range(BURST)))
            omni.wait_for(lambda requests: len(requests) >= 20, timeout=60, message=stack.logs)
            assert stack.worker is not None
            stack.worker.kill()
        assert len({request.webhook_id for request in omni.requests}) < BURST

        stack.start_worker(name="after-kill")
        expected = {
            entry["webhook_id"]
            for offset in range(0, BURST, 100)
            for entry in stack.deliveries(team, limit=100, offset=offset)
        }
        assert len(expected) == BURST
        omni.wait_for(
            lambda requests: {request.webhook_id for request in requests} >= expected,
            timeout=120,
            message=stack.logs,
        )
        received_ids = {
            request.webhook_id for request in omni.requests if request.webhook_id in expected
        }
        assert received_ids == expected

        without_note = {deal["id"] for deal in deals}

        def every_note_written() -> bool:
            for deal_id in sorted(without_note):
                timeline = stack.http.get(
                    f"/api/mobile/v2.8/deals/{deal_id}/timeline", headers=team.auth
                )
                assert timeline.status_code == 200, timeline.text
                notes = [e for e in timeline.json()["items"] if e["type"] == "hub_channel_chat"]
                assert len(notes) <= 1
                if notes:
                    without_note.discard(deal_id)
            return not without_note

        wait_until(
            every_note_written,
            timeout=120,
            interval=0.5,
            message=lambda: f"{len(without_note)} deals without a note\n{stack.logs()}",
        )
