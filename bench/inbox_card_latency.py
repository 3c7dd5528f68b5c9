"""Create → card on screen: how long after a bot's ``POST /api/v3.1/deals`` the deal card
shows on an open inbox room page, without a reload, in headless Chromium.

The whole path runs as real processes: CRM API → outbox → Celery worker → signed webhook
→ Omni receiver → NOTIFY → preview stream → the page. PostgreSQL (``TEST_POSTGRES_DSN``
or 127.0.0.1:5432) and ``redis-server`` on PATH are needed, as for the tests.

    .venv/bin/python bench/inbox_card_latency.py [--deals 50]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from playwright.sync_api import sync_playwright  # noqa: E402

from tests.e2e.pages_stack import launch_chromium, start_pages_stack  # noqa: E402
from tests.support.databases import create_template, database_from, drop_database  # noqa: E402
from tests.support.processes import RedisServer  # noqa: E402


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, round(fraction * len(ordered)) - 1))
    return ordered[index]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deals", type=int, default=50)
    args = parser.parse_args()

    templates = {section: create_template(section) for section in ("crm", "omni")}
    try:
        with (
            database_from(templates["crm"]) as crm_url,
            database_from(templates["omni"]) as omni_url,
            RedisServer() as redis,
        ):
            stack = start_pages_stack(
                crm_database_url=crm_url,
                omni_database_url=omni_url,
                broker_url=redis.url(0),
                redis_url=redis.url(1),
                log_dir=Path(tempfile.mkdtemp(prefix="inbox-bench-")),
            )
            try:
                tenant = stack.tenant()
                latencies: list[float] = []
                with sync_playwright() as playwright:
                    browser = launch_chromium(playwright)
                    page = browser.new_page(viewport={"width": 360, "height": 760})
                    page.goto(f"{stack.omni.url}/inbox/sign-in?next=/inbox/")
                    page.get_by_label("Token").fill(tenant.omni_token)
                    page.get_by_role("button", name="Sign in").click()
                    page.wait_for_url(f"{stack.omni.url}/inbox/")
                    for number in range(args.deals):
                        room = f"room-{uuid.uuid4().hex[:10]}"
                        page.goto(f"{stack.omni.url}/inbox/rooms/{room}")
                        page.wait_for_selector('[data-room-sidebar][data-state="live"]')
                        started = time.monotonic()
                        stack.crm(
                            "POST",
                            "/api/v3.1/deals",
                            tenant,
                            json={
                                "name": f"Bench deal {number}",
                                "channel_integration_room_id": room,
                                "creator_flag": "bot",
                            },
                        )
                        page.wait_for_selector(
                            '[data-card="deal"]', state="visible", timeout=10_000
                        )
                        latencies.append(time.monotonic() - started)
                    browser.close()
            finally:
                stack.close()
    finally:
        for name in templates.values():
            drop_database(name)

    ms = [value * 1000 for value in latencies]
    print(
        f"create -> card on screen over {len(ms)} deals: "
        f"p50 {statistics.median(ms):.0f} ms, p95 {percentile(ms, 0.95):.0f} ms, "
        f"max {max(ms):.0f} ms"
    )


if __name__ == "__main__":
    main()
