"""Bot & AI creation parity end to end, both services as real processes: the Omni API
and the CRM API (uvicorn) on their own PostgreSQL databases, a CRM Celery worker with
beat, a private Redis as broker and flag cache.

A customer chats in an Omni room; a bot creates a deal there, then an AI agent a ticket.
Without anyone doing anything else, the inbox's preview of the room shows both records
(signed webhooks), and each record's timeline gets its chat note: an excerpt of the
messages and a link back to the room (history read from Omni's message API).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import ADMIN_KEY, CrmStack, Pool, Team, crm_env, run_crm
from tests.support.databases import database_from
from tests.support.processes import (
    RedisServer,
    ServiceProcess,
    service_env,
    start_uvicorn,
    wait_until,
)

pytestmark = pytest.mark.e2e

OMNI_ADMIN_KEY = "e2e-omni-admin-key"
TIMEOUT = 30.0
STAMP = re.compile(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d UTC\] ")
CHAT = (
    ("Budi", "customer", "Halo, saya mau pesan 20 unit warna biru"),
    ("Bot", "bot", "Baik! Saya buatkan penawaran 🙏"),
    ("Budi", "customer", "Kirim ke Bandung ya 👍🏽"),
)


@dataclass
class Omni:
    process: ServiceProcess
    url: str
    http: httpx.Client


@dataclass
class Linked:
    """A CRM team and the Omni organization it is linked to."""

    team: Team
    omni_auth: dict[str, str]


@pytest.fixture(scope="module")
def omni(omni_template: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Omni]:
    log_dir: Path = tmp_path_factory.mktemp("omni")
    with database_from(omni_template) as database_url:
        env = service_env(OMNI_DATABASE_URL=database_url, OMNI_ADMIN_KEY=OMNI_ADMIN_KEY)
        process, url = start_uvicorn("omni_service.main:app", env, log_dir=log_dir, name="omni")
        try:
            with httpx.Client(base_url=url, timeout=30) as http:
                yield Omni(process, url, http)
        finally:
            process.stop()


@pytest.fixture(scope="module")
def crm(
    module_database_url: str,
    module_redis: RedisServer,
    module_worker_pool: Pool,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[CrmStack]:
    env = crm_env(module_database_url, module_redis.url(0), module_redis.url(1))
    with run_crm(env, tmp_path_factory.mktemp("crm"), **module_worker_pool.options) as stack:
        yield stack


def link_team(crm: CrmStack, omni: Omni) -> Linked:
    """A CRM team (flag on) and an Omni organization of the same company, linked with one
    signing secret and the organization's API token."""
    team = crm.create_team(None, parity=True)
    organization = omni.http.post(
        "/admin/organizations",
        json={
            "name": team.external_company_id,
            "company_id": team.external_company_id,
            "webhook_secret": team.webhook_secret,
        },
        headers={"X-Admin-Key": OMNI_ADMIN_KEY},
    )
    assert organization.status_code == 201, organization.text
    api_token = organization.json()["api_token"]
    linked = crm.admin(
        "PUT",
        f"/admin/teams/{team.id}/omnichannel",
        json={
            "base_url": omni.url,
            "public_url": omni.url,
            "webhook_secret": team.webhook_secret,
            "api_token": api_token,
        },
    )
    assert linked.status_code == 200, linked.text
    return Linked(team, {"Authorization": f"Bearer {api_token}"})


def chat(omni: Omni, linked: Linked, room: str, *lines: tuple[str, str, str]) -> None:
    for sender, sender_type, text in lines:
        posted = omni.http.post(
            f"/api/v1/rooms/{room}/messages",
            json={"sender": sender, "sender_type": sender_type, "text": text},
            headers=linked.omni_auth,
        )
        assert posted.status_code == 201, posted.text


def wait_for_note(crm: CrmStack, team: Team, kind: str, record_id: int) -> dict[str, Any]:
    def entries() -> list[dict[str, Any]]:
        response = crm.http.get(f"/api/mobile/v2.8/{kind}/{record_id}/timeline", headers=team.auth)
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    [entry] = wait_until(entries, timeout=TIMEOUT, message=crm.logs)
    return entry


def wait_for_preview(
    omni: Omni,
    linked: Linked,
    room: str,
    condition: Callable[[dict[str, Any]], bool],
    crm: CrmStack,
) -> dict[str, Any]:
    """The room's preview as the inbox polls it, once ``condition`` holds."""

    def preview() -> dict[str, Any]:
        response = omni.http.get(f"/api/v1/rooms/{room}/crm_preview", headers=linked.omni_auth)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body if condition(body) else {}

    return wait_until(
        preview, timeout=TIMEOUT, message=lambda: f"{crm.logs()}\n{omni.process.tail()}"
    )


def room_id() -> str:
    return f"wa-{uuid.uuid4().hex[:12]}"


def chat_lines(excerpt: str) -> list[str]:
    """The excerpt's lines without their time stamps (those are Omni's clock)."""
    lines = excerpt.split("\n")
    assert all(STAMP.match(line) for line in lines), excerpt
    return [STAMP.sub("", line) for line in lines]


def test_a_bot_deal_shows_in_the_rooms_preview_and_gets_its_chat_note(
    crm: CrmStack, omni: Omni
) -> None:
    linked = link_team(crm, omni)
    room = room_id()
    chat(omni, linked, room, *CHAT)

    deal = crm.create(linked.team, "deals", channel_integration_room_id=room, creator_flag="bot")

    preview = wait_for_preview(omni, linked, room, lambda body: body["deal"] is not None, crm)
    assert (preview["deal"]["id"], preview["deal"]["creator_name"]) == (deal["id"], "Bot")
    assert preview["cta"]["create_deal"] is False
    note = wait_for_note(crm, linked.team, "deals", deal["id"])
    assert chat_lines(note["excerpt"]) == [f"{sender}: {text}" for sender, _, text in CHAT]
    assert (note["room_deeplink"], note["creator_name"], note["channel_organization_id"]) == (
        f"{omni.url}/inbox/rooms/{room}",
        "Bot",
        linked.team.external_company_id,
    )


def test_an_ai_ticket_joins_the_deal_in_the_preview_and_gets_its_own_note(
    crm: CrmStack, omni: Omni
) -> None:
    linked = link_team(crm, omni)
    room = room_id()
    chat(omni, linked, room, CHAT[0])
    deal = crm.create(linked.team, "deals", channel_integration_room_id=room)
    wait_for_note(crm, linked.team, "deals", deal["id"])
    chat(omni, linked, room, ("Budi", "customer", "Barangnya rusak, tolong dibantu"))

    ticket = crm.create(
        linked.team, "tickets", channel_integration_room_id=room, creator_flag="agentic_ai"
    )

    preview = wait_for_preview(omni, linked, room, lambda body: body["ticket"] is not None, crm)
    assert (preview["deal"]["id"], preview["ticket"]["id"]) == (deal["id"], ticket["id"])
    assert preview["ticket"]["creator_name"] == "AI"
    note = wait_for_note(crm, linked.team, "tickets", ticket["id"])
    assert chat_lines(note["excerpt"]) == [
        f"Budi: {CHAT[0][2]}",
        "Budi: Barangnya rusak, tolong dibantu",
    ]
    assert (note["room_deeplink"], note["creator_name"]) == (f"{omni.url}/inbox/rooms/{room}", "AI")


def test_another_team_cannot_read_the_notes_timeline(crm: CrmStack, omni: Omni) -> None:
    linked, stranger = link_team(crm, omni), link_team(crm, omni)
    room = room_id()
    chat(omni, linked, room, CHAT[0])
    deal = crm.create(linked.team, "deals", channel_integration_room_id=room)
    wait_for_note(crm, linked.team, "deals", deal["id"])

    response = crm.http.get(
        f"/api/mobile/v2.8/deals/{deal['id']}/timeline", headers=stranger.team.auth
    )

    assert response.status_code == 404


def log_lines(*processes: ServiceProcess) -> list[dict[str, Any]]:
    """Every line of every process log as JSON (the test fails on a line that is not),
    but for Celery's start-up banner and the root-user warning, which Celery prints
    before any logging is configured."""
    entries: list[dict[str, Any]] = []
    for process in processes:
        text = process.log_text()
        for line in text.splitlines():
            if not line.startswith("{"):
                continue
            entries.append(json.loads(line))
        others = [line for line in text.splitlines() if line and not line.startswith("{")]
        if "celery" not in " ".join(process.command):
            assert others == [], (process.name, others[:5])
    return entries


def test_every_log_line_is_json_with_request_ids_and_no_secret(crm: CrmStack, omni: Omni) -> None:
    linked = link_team(crm, omni)
    room = room_id()
    chat(omni, linked, room, *CHAT)
    request_id = f"req-{uuid.uuid4().hex[:8]}"
    created = crm.http.post(
        "/api/v3.1/deals",
        json={"name": "logged deal", "channel_integration_room_id": room, "creator_flag": "bot"},
        headers={**linked.team.auth, "X-Request-ID": request_id},
    )
    assert created.status_code == 201, created.text
    assert created.headers["x-request-id"] == request_id
    generated = crm.http.get("/healthz").headers["x-request-id"]
    assert generated and generated != request_id
    forged = crm.http.get("/healthz", headers={"X-Request-ID": 'x" injected'})
    assert forged.headers["x-request-id"] != 'x" injected'
    deal = created.json()
    wait_for_note(crm, linked.team, "deals", deal["id"])
    wait_for_preview(omni, linked, room, lambda body: body["deal"] is not None, crm)
    [delivery] = crm.deliveries(linked.team)
    forged_id = f"msg_forged_{uuid.uuid4().hex[:8]}"
    rejected = omni.http.post(
        "/webhooks/crm",
        content=b'{"type":"qontak.crm.deal.create"}',
        headers={"webhook-id": forged_id, "webhook-timestamp": "1", "webhook-signature": "v1,x"},
    )
    assert rejected.status_code in (400, 401)

    def logged() -> list[dict[str, Any]]:
        entries = log_lines(crm.api, omni.process, *(p for p in (crm.worker, crm.beat) if p))
        seen = {
            entry.get("webhook_id")
            for entry in entries
            if entry.get("record_id") == deal["id"] or entry.get("webhook_id")
        }
        return entries if delivery["webhook_id"] in seen else []

    entries = wait_until(logged, timeout=TIMEOUT, message=crm.logs)
    entries = wait_until(
        lambda: (
            [e for e in log_lines(omni.process) if e.get("webhook_id") == forged_id]
            and log_lines(crm.api, omni.process, *(p for p in (crm.worker, crm.beat) if p))
        ),
        timeout=TIMEOUT,
        message=omni.process.tail,
    )
    requests = [entry for entry in entries if entry.get("request_id") == request_id]
    assert any(entry["logger"] == "uvicorn.access" for entry in requests), requests
    assert all(entry["logger"] != "uvicorn.access" or "request_id" in entry for entry in entries)
    delivery_lines = [e for e in entries if e.get("webhook_id") == delivery["webhook_id"]]
    assert {e.get("record_id") for e in delivery_lines if "record_id" in e} == {deal["id"]}
    sides = {e["logger"] for e in delivery_lines}
    assert {"crm_service.events.delivery", "omni_service.receiver.service"} <= sides, sides
    [refusal] = [e for e in entries if e.get("webhook_id") == forged_id]
    assert (refusal["message"], refusal["status_code"]) == ("webhook rejected", 401)
    assert refusal["reason"]
    secrets = {
        linked.team.webhook_secret,
        linked.team.webhook_secret.removeprefix("whsec_"),
        linked.team.access_token,
        linked.omni_auth["Authorization"].removeprefix("Bearer "),
        ADMIN_KEY,
        OMNI_ADMIN_KEY,
    }
    everything = "\n".join(
        process.log_text()
        for process in (crm.api, omni.process, crm.worker, crm.beat)
        if process is not None
    )
    leaked = [secret[:6] + "…" for secret in secrets if secret in everything]
    assert leaked == []
