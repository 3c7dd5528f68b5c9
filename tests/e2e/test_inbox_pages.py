"""The inbox card and the CRM record page, live, in a real (headless) Chromium against
real processes: Omni, the CRM API and a CRM Celery worker on PostgreSQL and Redis.

Each state is saved as a screenshot under ``var/artifacts/inbox-pages/`` (the path is
printed). The page is 360 px wide, the width of the inbox sidebar.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.pages_stack import PagesStack, Tenant, launch_chromium, start_pages_stack
from tests.support.databases import database_from
from tests.support.processes import RedisServer

playwright_sync = pytest.importorskip("playwright.sync_api")

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "var" / "artifacts" / "inbox-pages"
LIVE_MS = 2000
CHAT = (
    ("Budi", "customer", "Halo, saya mau pesan 20 unit warna biru"),
    ("Bot", "bot", "Baik! Saya buatkan penawaran"),
)


@pytest.fixture(scope="module")
def stack(
    crm_template: str, omni_template: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PagesStack]:
    log_dir = tmp_path_factory.mktemp("pages")
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
            log_dir=log_dir,
        )
        try:
            yield running
        finally:
            running.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_sync.sync_playwright() as playwright:
        launched = launch_chromium(playwright)
        yield launched
        launched.close()


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    opened = browser.new_context(viewport={"width": 360, "height": 760}, timezone_id="Asia/Jakarta")
    yield opened
    opened.close()


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")


def sign_in(page: Any, url: str, token: str) -> None:
    """Open ``url``; it sends us to the sign-in form, which brings us back."""
    page.goto(url)
    page.get_by_label("Token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(url)


def room() -> str:
    return f"room-{uuid.uuid4().hex[:10]}"


def open_room(context: Any, stack: PagesStack, tenant: Tenant, room_id: str) -> Any:
    page = context.new_page()
    sign_in(page, f"{stack.omni.url}/inbox/rooms/{room_id}", tenant.omni_token)
    page.wait_for_selector('[data-room-sidebar][data-state="live"]')
    return page


def deal_card(page: Any) -> Any:
    return page.locator('[data-card="deal"]')


def test_a_bot_deal_shows_live_a_stage_change_follows_and_the_delete_brings_the_cta_back(
    stack: PagesStack, context: Any
) -> None:
    tenant = stack.tenant()
    room_id = room()
    page = open_room(context, stack, tenant, room_id)
    create_deal = page.get_by_role("button", name="Create Deal")
    playwright_sync.expect(create_deal).to_be_visible()
    playwright_sync.expect(page.get_by_role("button", name="Create Ticket")).to_be_visible()
    shot(page, "01-room-call-to-action")

    started = time.monotonic()
    deal = stack.crm(
        "POST",
        "/api/v3.1/deals",
        tenant,
        json={
            "name": "Blue units x20",
            "channel_integration_room_id": room_id,
            "creator_flag": "bot",
            "size": "1500.00",
        },
    )
    playwright_sync.expect(deal_card(page)).to_be_visible(timeout=LIVE_MS)
    print(f"create -> card on screen: {time.monotonic() - started:.3f} s")
    card = deal_card(page)
    playwright_sync.expect(card.locator('[data-field="name"]')).to_have_text("Blue units x20")
    playwright_sync.expect(card.locator('[data-field="stage"]')).to_have_text("New")
    playwright_sync.expect(card.locator('[data-field="creator"]')).to_have_text("Bot")
    playwright_sync.expect(create_deal).to_be_hidden()
    shot(page, "02-room-deal-card")

    stack.crm(
        "PATCH",
        f"/api/v3.1/deals/{deal['id']}",
        tenant,
        json={"crm_stage_id": stack.stage_id(tenant, "Proposal")},
    )
    playwright_sync.expect(card.locator('[data-field="stage"]')).to_have_text(
        "Proposal", timeout=LIVE_MS
    )
    shot(page, "03-room-stage-changed")

    stack.crm("DELETE", f"/api/v3.1/deals/{deal['id']}", tenant)
    playwright_sync.expect(create_deal).to_be_visible(timeout=LIVE_MS)
    playwright_sync.expect(card).to_be_hidden()
    shot(page, "04-room-deal-deleted")

    ticket = stack.crm(
        "POST",
        "/api/v3.1/tickets",
        tenant,
        json={
            "name": "Delivery to Bandung",
            "priority": "high",
            "channel_integration_room_id": room_id,
            "creator_flag": "agentic_ai",
        },
    )
    ticket_card = page.locator('[data-card="ticket"]')
    playwright_sync.expect(ticket_card).to_be_visible(timeout=LIVE_MS)
    playwright_sync.expect(ticket_card.locator('[data-field="unique_ticket_id"]')).to_have_text(
        ticket["unique_ticket_id"]
    )
    playwright_sync.expect(ticket_card.locator('[data-field="priority"]')).to_have_text("high")
    playwright_sync.expect(ticket_card.locator('[data-field="creator"]')).to_have_text("AI")
    link = ticket_card.get_by_role("link", name="Delivery to Bandung")
    assert link.get_attribute("href") == ticket["external_url"]
    assert link.get_attribute("target") == "_blank"
    playwright_sync.expect(page.get_by_role("button", name="Create Ticket")).to_be_hidden()
    shot(page, "04b-room-ticket-card")


def test_the_card_opens_the_crm_page_which_shows_bot_the_excerpt_and_links_back_to_the_room(
    stack: PagesStack, context: Any
) -> None:
    tenant = stack.tenant()
    room_id = room()
    stack.chat(tenant, room_id, *CHAT)
    contact = stack.crm(
        "POST",
        "/api/v3.1/contacts",
        tenant,
        json={"first_name": "Budi", "last_name": "Santoso", "phone": "0812-3456-7890"},
    )
    page = open_room(context, stack, tenant, room_id)
    deal = stack.crm(
        "POST",
        "/api/v3.1/deals",
        tenant,
        json={
            "name": "Bandung order",
            "channel_integration_room_id": room_id,
            "creator_flag": "bot",
            "contact_id": contact["id"],
        },
    )
    link = deal_card(page).get_by_role("link", name="Bandung order")
    playwright_sync.expect(link).to_be_visible(timeout=LIVE_MS)
    assert link.get_attribute("target") == "_blank"

    with context.expect_page() as opened:
        link.click()
    crm_page = opened.value
    crm_page.wait_for_load_state()
    # The CRM has its own sign-in (a company access token), then the record page.
    assert crm_page.get_by_label("Token").is_visible()
    crm_page.get_by_label("Token").fill(tenant.crm_token)
    crm_page.get_by_role("button", name="Sign in").click()
    crm_page.wait_for_url(f"{stack.crm_url}/deals/{deal['id']}")
    # The chat note is written by the worker shortly after the create.
    deadline = time.monotonic() + 15
    while not crm_page.locator('[data-field="excerpt"]').count() and time.monotonic() < deadline:
        time.sleep(0.3)
        crm_page.reload()
    playwright_sync.expect(crm_page.locator('[data-field="creator"]')).to_have_text("Bot")
    playwright_sync.expect(crm_page.locator('[data-field="excerpt"]')).to_contain_text(
        "saya mau pesan 20 unit"
    )
    playwright_sync.expect(crm_page.locator("[data-contacts]")).to_contain_text("Budi Santoso")
    shot(crm_page, "05-crm-deal-page")

    with context.expect_page() as back:
        crm_page.get_by_role("link", name="Open the chat room").click()
    room_page = back.value
    room_page.wait_for_load_state()
    assert room_page.url == f"{stack.omni.url}/inbox/rooms/{room_id}"
    playwright_sync.expect(
        room_page.locator('[data-card="deal"] [data-field="name"]')
    ).to_have_text("Bandung order")


def test_omni_stopped_shows_the_error_state_and_a_restart_brings_the_card_back(
    stack: PagesStack, context: Any
) -> None:
    tenant = stack.tenant()
    room_id = room()
    stack.crm(
        "POST",
        "/api/v3.1/deals",
        tenant,
        json={
            "name": "Outage deal",
            "channel_integration_room_id": room_id,
            "creator_flag": "agentic_ai",
        },
    )
    page = open_room(context, stack, tenant, room_id)
    playwright_sync.expect(deal_card(page)).to_be_visible(timeout=10_000)
    playwright_sync.expect(deal_card(page).locator('[data-field="creator"]')).to_have_text("AI")

    stack.omni.stop()
    try:
        alert = page.get_by_role("alert")
        playwright_sync.expect(alert).to_contain_text("Can't reach", timeout=10_000)
        shot(page, "06-room-error-state")
    finally:
        stack.omni.start()
    playwright_sync.expect(page.get_by_role("alert")).to_be_hidden(timeout=10_000)
    playwright_sync.expect(deal_card(page).locator('[data-field="name"]')).to_have_text(
        "Outage deal"
    )
    page.wait_for_selector('[data-room-sidebar][data-state="live"]', timeout=10_000)
    shot(page, "07-room-recovered")


def test_a_wrong_token_shows_the_forms_error_on_both_services(
    stack: PagesStack, context: Any
) -> None:
    page = context.new_page()
    for url in (f"{stack.omni.url}/inbox/rooms/any", f"{stack.crm_url}/deals/1"):
        page.goto(url)
        # Keyboard only: the field has focus on load, Enter submits.
        page.keyboard.type("not-a-token")
        page.keyboard.press("Enter")
        playwright_sync.expect(page.get_by_role("alert")).to_contain_text("not valid")
        assert page.get_by_label("Token").get_attribute("type") == "password"
        assert "not-a-token" not in page.url
        assert page.evaluate("() => JSON.stringify(window.localStorage)") == "{}"
    shot(page, "08-sign-in-error")


def test_the_session_cookie_is_httponly_and_samesite(stack: PagesStack, context: Any) -> None:
    tenant = stack.tenant()
    page = open_room(context, stack, tenant, room())
    cookies = {cookie["name"]: cookie for cookie in context.cookies()}
    session = cookies["omni_session"]
    assert session["httpOnly"] is True
    assert session["sameSite"] == "Lax"
    assert tenant.omni_token not in page.url
    assert page.evaluate("() => document.cookie").find(tenant.omni_token) == -1


def test_another_organizations_token_shows_nothing_of_this_one(
    stack: PagesStack, browser: Any
) -> None:
    owner, other = stack.tenant(), stack.tenant()
    room_id = room()
    deal = stack.crm(
        "POST",
        "/api/v3.1/deals",
        owner,
        json={"name": "Secret deal", "channel_integration_room_id": room_id, "creator_flag": "bot"},
    )
    owner_context = browser.new_context(viewport={"width": 360, "height": 760})
    other_context = browser.new_context(viewport={"width": 360, "height": 760})
    try:
        owner_page = open_room(owner_context, stack, owner, room_id)
        playwright_sync.expect(deal_card(owner_page)).to_be_visible(timeout=10_000)

        page = open_room(other_context, stack, other, room_id)
        playwright_sync.expect(page.get_by_role("button", name="Create Deal")).to_be_visible()
        assert "Secret deal" not in page.content()
        shot(page, "09-other-organization")

        crm_page = other_context.new_page()
        sign_in(crm_page, f"{stack.crm_url}/deals/{deal['id']}", other.crm_token)
        playwright_sync.expect(crm_page.get_by_role("heading", name="Not found")).to_be_visible()
        assert "Secret deal" not in crm_page.content()
    finally:
        owner_context.close()
        other_context.close()
