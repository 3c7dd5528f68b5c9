"""The preview stream in the embedded mode: one Omni process on a SQLite file, where the
receiver's after-commit hook wakes the process's own streams (no LISTEN/NOTIFY). The
heartbeat is 30 s, so an event seen within 2 s came through that hook."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import pytest

from shared_contracts.events import EventType
from shared_contracts.signatures import generate_secret
from tests.e2e.pages_stack import OMNI_ADMIN_KEY, OmniProcess
from tests.e2e.test_preview_stream import Stream
from tests.omni.factories import deal, signed_request
from tests.support.databases import migrate
from tests.support.processes import free_port, service_env

pytestmark = pytest.mark.e2e


def test_a_change_committed_on_sqlite_wakes_the_same_processs_stream_within_2_s(
    tmp_path: Path,
) -> None:
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'omni.db'}"
    migrate("omni", database_url)
    env = service_env(
        OMNI_DATABASE_URL=database_url,
        OMNI_ADMIN_KEY=OMNI_ADMIN_KEY,
        OMNI_STREAM_HEARTBEAT_SECONDS=30,
    )
    omni = OmniProcess(env, free_port(), tmp_path, "omni-sqlite").start()
    try:
        with httpx.Client(base_url=omni.url, timeout=httpx.Timeout(5, read=30)) as http:
            secret = generate_secret()
            created = http.post(
                "/admin/organizations",
                json={"name": "Embedded", "company_id": "embedded-co", "webhook_secret": secret},
                headers={"X-Admin-Key": OMNI_ADMIN_KEY},
            )
            assert created.status_code == 201, created.text
            auth = {"Authorization": f"Bearer {created.json()['api_token']}"}
            with http.stream(
                "GET", "/api/v1/rooms/room-1/crm_preview/stream", headers=auth
            ) as response:
                assert response.status_code == 200
                stream = Stream(response)
                threading.Thread(target=stream.run, daemon=True).start()
                _id, first = stream.next_preview(timeout=5)
                assert first["deal"] is None

                body, headers = signed_request(
                    EventType.DEAL_CREATE, deal(1, company_id="embedded-co"), [secret]
                )
                with httpx.Client(base_url=omni.url, timeout=10) as sender:
                    received = sender.post("/webhooks/crm", content=body, headers=headers)
                assert received.status_code == 200, received.text
                _id, data = stream.next_preview(timeout=2)
                assert data["deal"]["name"] == "Deal 1 v1"
    finally:
        omni.stop()
