"""The preview cache across processes: two Omni APIs on one PostgreSQL database, each
with its own cache. The CRM delivers to A; the inbox polls B with the ETag it holds.
Every change committed through A must show on B as soon as B's listener has its
notification (well under a second), long before the cache's age bound."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from shared_contracts.events import EventType
from shared_contracts.signatures import generate_secret
from tests.omni.factories import ADMIN_KEY, deal, signed_request
from tests.support.processes import ServiceProcess, start_uvicorn

pytestmark = pytest.mark.e2e

ROOM = "room-1"
ROUNDS = 30
NOTIFICATION_BOUND_SECONDS = 1.0


@pytest.fixture
def two_apis(omni_database_url: str, tmp_path: Path) -> Iterator[tuple[str, str]]:
    env = {
        **os.environ,
        "OMNI_DATABASE_URL": omni_database_url,
        "OMNI_ADMIN_KEY": ADMIN_KEY,
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
    }
    processes: list[ServiceProcess] = []
    try:
        urls = []
        for name in ("omni-a", "omni-b"):
            process, url = start_uvicorn("omni_service.main:app", env, log_dir=tmp_path, name=name)
            processes.append(process)
            urls.append(url)
        yield urls[0], urls[1]
    finally:
        for process in processes:
            process.stop()


def test_a_change_received_by_one_process_shows_on_another_once_notified(
    two_apis: tuple[str, str],
) -> None:
    receiver_url, poller_url = two_apis
    with httpx.Client(base_url=receiver_url) as a, httpx.Client(base_url=poller_url) as b:
        secret = generate_secret()
        created = a.post(
            "/admin/organizations",
            json={"name": "Org", "company_id": "company-a", "webhook_secret": secret},
            headers={"X-Admin-Key": ADMIN_KEY},
        )
        auth = {"Authorization": f"Bearer {created.json()['api_token']}"}
        path = f"/api/v1/rooms/{ROOM}/crm_preview"
        # The LISTEN connection starts with the app, a moment after /healthz answers.
        time.sleep(1.0)

        for version in range(1, ROUNDS + 1):
            etag = b.get(path, headers=auth).headers["etag"]  # B caches the room
            assert b.get(path, headers={**auth, "If-None-Match": etag}).status_code == 304
            event_type = EventType.DEAL_CREATE if version == 1 else EventType.DEAL_UPDATE
            data = deal(1, company_id="company-a", version=version, name=f"Deal v{version}")
            content, headers = signed_request(event_type, data, [secret])
            assert a.post("/webhooks/crm", content=content, headers=headers).status_code == 200

            # PostgreSQL sends the notification to B's listener at the commit, not before A
            # answers: a poll that overtakes it gets the previous answer (README "Omni
            # caches"). The change must show as soon as it has arrived, long before the
            # cache's own 5 s age bound.
            deadline = time.monotonic() + NOTIFICATION_BOUND_SECONDS
            response = b.get(path, headers={**auth, "If-None-Match": etag})
            while response.status_code == 304 and time.monotonic() < deadline:
                time.sleep(0.01)
                response = b.get(path, headers={**auth, "If-None-Match": etag})

            assert response.status_code == 200, f"stale 304 on B after version {version}"
            assert response.json()["deal"]["name"] == f"Deal v{version}"
