"""The preview stream (``GET /api/v1/rooms/{room_id}/crm_preview/stream``) across
processes: two Omni APIs on one PostgreSQL database; the CRM delivers to the first, a
client streams from the second. The heartbeat is 5 s, so an event seen within 2 s came
through LISTEN/NOTIFY, not through the heartbeat's re-read."""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from tests.e2e.pages_stack import OmniProcess, PagesStack, Tenant, start_pages_stack
from tests.support.databases import database_from
from tests.support.processes import RedisServer

pytestmark = pytest.mark.e2e

HEARTBEAT_SECONDS = 5


@pytest.fixture(scope="module")
def stack(
    crm_template: str, omni_template: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PagesStack]:
    with (
        database_from(crm_template) as crm_url,
        database_from(omni_template) as omni_url,
        RedisServer() as redis,
    ):
        running = start_pages_stack(
            crm_database_url=crm_url,
            omni_database_url=omni_url,
            broker_url=redis.url(0),
            redis_url=redis.url(1),
            log_dir=tmp_path_factory.mktemp("stream"),
            omni_count=2,
            omni_settings={"OMNI_STREAM_HEARTBEAT_SECONDS": HEARTBEAT_SECONDS},
        )
        try:
            yield running
        finally:
            running.close()


@dataclass
class Stream:
    """Reads one event stream in a thread; ``events`` receives ``(kind, id, data)``,
    kind ``preview`` or ``heartbeat``."""

    response: httpx.Response
    events: queue.Queue[tuple[str, str | None, Any]] = field(default_factory=queue.Queue)

    def run(self) -> None:
        event: dict[str, str] = {}
        try:
            for line in self.response.iter_lines():
                if line.startswith(": heartbeat"):
                    self.events.put(("heartbeat", None, None))
                elif line == "":
                    if event.get("event") == "preview":
                        self.events.put(("preview", event.get("id"), json.loads(event["data"])))
                    event = {}
                elif ":" in line:
                    name, _, value = line.partition(":")
                    event[name] = value.removeprefix(" ")
        except httpx.HTTPError:
            pass

    def next_preview(self, timeout: float) -> tuple[str | None, dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                kind, event_id, data = self.events.get(timeout=left)
            except queue.Empty:
                break
            if kind == "preview":
                return event_id, data
        raise AssertionError(f"no preview event within {timeout} s")


@pytest.fixture
def open_stream() -> Iterator[Any]:
    clients: list[httpx.Client] = []
    responses: list[Any] = []

    def open_(omni: OmniProcess, room: str, tenant: Tenant, **headers: str) -> Stream:
        client = httpx.Client(timeout=httpx.Timeout(5, read=30))
        clients.append(client)
        request = client.build_request(
            "GET",
            f"{omni.url}/api/v1/rooms/{room}/crm_preview/stream",
            headers={**tenant.omni_auth, **headers},
        )
        response = client.send(request, stream=True)
        responses.append(response)
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        stream = Stream(response)
        threading.Thread(target=stream.run, daemon=True).start()
        return stream

    yield open_
    for response in responses:
        response.close()
    for client in clients:
        client.close()


def room() -> str:
    return f"room-{uuid.uuid4().hex[:10]}"


def create_deal(stack: PagesStack, tenant: Tenant, room_id: str, name: str) -> dict[str, Any]:
    return stack.crm(
        "POST",
        "/api/v3.1/deals",
        tenant,
        json={"name": name, "channel_integration_room_id": room_id, "creator_flag": "bot"},
    )


def test_the_stream_sends_the_crm_preview_json_on_connect(
    stack: PagesStack, open_stream: Any
) -> None:
    tenant = stack.tenant()
    room_id = room()
    stream = open_stream(stack.omnis[1], room_id, tenant)
    event_id, data = stream.next_preview(timeout=5)
    polled = stack.http.get(
        f"{stack.omnis[1].url}/api/v1/rooms/{room_id}/crm_preview", headers=tenant.omni_auth
    )
    assert data == polled.json()
    assert f'"{event_id}"' == polled.headers["etag"]
    assert data["cta"] == {"create_deal": True, "create_ticket": True}


def test_an_event_received_by_one_omni_is_streamed_by_another_within_2_s(
    stack: PagesStack, open_stream: Any
) -> None:
    tenant = stack.tenant(stack.omnis[0])
    room_id = room()
    stream = open_stream(stack.omnis[1], room_id, tenant)
    stream.next_preview(timeout=5)
    create_deal(stack, tenant, room_id, "Across processes")
    _id, data = stream.next_preview(timeout=2)
    assert data["deal"]["name"] == "Across processes"
    assert data["cta"]["create_deal"] is False


def test_a_reconnect_with_last_event_id_gets_nothing_until_the_preview_changes(
    stack: PagesStack, open_stream: Any
) -> None:
    tenant = stack.tenant()
    room_id = room()
    deal = create_deal(stack, tenant, room_id, "Resume me")
    first = open_stream(stack.omnis[0], room_id, tenant)
    deadline = time.monotonic() + 10
    while True:
        event_id, data = first.next_preview(timeout=10)
        if data["deal"] is not None or time.monotonic() > deadline:
            break
    assert data["deal"]["name"] == "Resume me"

    resumed = open_stream(stack.omnis[1], room_id, tenant, **{"Last-Event-ID": event_id or ""})
    kind, _id, _data = resumed.events.get(timeout=HEARTBEAT_SECONDS + 3)
    assert kind == "heartbeat"  # nothing was resent: the client has this state
    stack.crm("PATCH", f"/api/v3.1/deals/{deal['id']}", tenant, json={"name": "Resumed"})
    _id, data = resumed.next_preview(timeout=2)
    assert data["deal"]["name"] == "Resumed"


def test_the_stream_refuses_a_missing_token_and_shows_another_organization_nothing(
    stack: PagesStack, open_stream: Any
) -> None:
    owner, other = stack.tenant(), stack.tenant()
    room_id = room()
    create_deal(stack, owner, room_id, "Not yours")
    unauthenticated = stack.http.get(f"{stack.omni.url}/api/v1/rooms/{room_id}/crm_preview/stream")
    assert unauthenticated.status_code == 401
    _id, data = open_stream(stack.omni, room_id, other).next_preview(timeout=5)
    assert data == {
        "room_id": room_id,
        "deal": None,
        "ticket": None,
        "cta": {"create_deal": True, "create_ticket": True},
    }
