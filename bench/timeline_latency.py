"""Time from a bot's create (201) to its chat note in the record's timeline.

    .venv/bin/python -m bench.timeline_latency --records 300 --concurrency 2

Real processes on loopback: the Omni API and the CRM API (uvicorn, each on a throw-away
migrated PostgreSQL database), one plain CRM Celery worker (``--concurrency`` pool processes,
every queue, so notes compete with the webhooks the same creates emit), a private Redis
broker. One Omni organization and CRM team, linked, flag on;
``--rooms`` rooms with ``--messages`` chat messages each. Then ``--records`` bot deals
and tickets (alternating, rooms in turn) are created one after the other; after each
201 the record's timeline is polled every ``--poll-ms`` until the note is there.

Printed, p50 / p95 / max over the records:
- ``observed``: the 201 answer to the first timeline read that shows the note (includes
  up to one poll interval);
- ``server``: the record's ``created_at`` to the note's ``created_at`` (both stamped on
  this host; no polling in it).

Polling is load on the same two cores: every 5 ms roughly doubles both numbers on a
2-core machine, hence the 20 ms default.

Needs PostgreSQL on 127.0.0.1:5432 (``TEST_POSTGRES_DSN``) and ``redis-server``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from shared_contracts.signatures import generate_secret
from tests.support.databases import async_url, create_template, drop_database
from tests.support.processes import (
    RedisServer,
    ServiceProcess,
    service_env,
    start_celery_worker,
    start_uvicorn,
    wait_until,
)

CRM_ADMIN_KEY = "bench-crm-admin-key"
OMNI_ADMIN_KEY = "bench-omni-admin-key"
COMPANY = "bench-company"
MAX_RECORDS = 5_000


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def set_up(crm: httpx.Client, omni: httpx.Client, omni_url: str) -> tuple[str, dict[str, str]]:
    """One organization and one linked team (flag on); returns the team's token and
    the organization's auth header."""
    secret = generate_secret()
    organization = omni.post(
        "/admin/organizations",
        json={"name": "Bench", "company_id": COMPANY, "webhook_secret": secret},
        headers={"X-Admin-Key": OMNI_ADMIN_KEY},
    )
    organization.raise_for_status()
    omni_auth = {"Authorization": f"Bearer {organization.json()['api_token']}"}
    admin = {"X-Admin-Key": CRM_ADMIN_KEY}
    team = crm.post(
        "/admin/teams", json={"name": "Bench", "external_company_id": COMPANY}, headers=admin
    )
    team.raise_for_status()
    team_id, token = team.json()["id"], team.json()["access_token"]
    crm.put(
        f"/admin/teams/{team_id}/omnichannel",
        json={
            "base_url": omni_url,
            "public_url": omni_url,
            "webhook_secret": secret,
            "api_token": organization.json()["api_token"],
        },
        headers=admin,
    ).raise_for_status()
    crm.put(
        f"/admin/teams/{team_id}/features/bot_ai_creation_parity",
        json={"enabled": True},
        headers=admin,
    ).raise_for_status()
    return token, omni_auth


def post_chat(omni: httpx.Client, omni_auth: dict[str, str], rooms: int, messages: int) -> None:
    for room in range(rooms):
        for number in range(messages):
            omni.post(
                f"/api/v1/rooms/bench-room-{room}/messages",
                json={
                    "sender": "Budi" if number % 2 == 0 else "Agent Sari",
                    "sender_type": "customer" if number % 2 == 0 else "agent",
                    "text": f"message {number} of room {room}: saya mau pesan {number} unit 🙏",
                },
                headers=omni_auth,
            ).raise_for_status()


def measure(
    crm: httpx.Client, token: str, records: int, rooms: int, poll_seconds: float, timeout: float
) -> tuple[list[float], list[float]]:
    auth = {"Authorization": f"Bearer {token}"}
    observed: list[float] = []
    server: list[float] = []
    for number in range(records):
        kind = "deals" if number % 2 == 0 else "tickets"
        created = crm.post(
            f"/api/v3.1/{kind}",
            json={
                "name": f"Bench {number}",
                "channel_integration_room_id": f"bench-room-{number % rooms}",
                "creator_flag": "bot" if number % 4 < 2 else "agentic_ai",
            },
            headers=auth,
        )
        answered = time.perf_counter()
        created.raise_for_status()
        record = created.json()

        def note(record_id: int = record["id"], kind: str = kind) -> dict[str, Any] | None:
            page = crm.get(f"/api/mobile/v2.8/{kind}/{record_id}/timeline", headers=auth)
            page.raise_for_status()
            items: list[dict[str, Any]] = page.json()["items"]
            return items[0] if items else None

        entry = wait_until(note, timeout=timeout, interval=poll_seconds)
        assert entry is not None  # wait_until returns only a truthy value
        observed.append(time.perf_counter() - answered)
        server.append(
            (parse_time(entry["created_at"]) - parse_time(record["created_at"])).total_seconds()
        )
        if entry["excerpt"] is None:
            raise RuntimeError(f"note of {kind} {record['id']} has no excerpt: Omni failed")
    return observed, server


def summary(name: str, seconds: list[float]) -> str:
    cuts = statistics.quantiles(seconds, n=100)
    return (
        f"{name:>9} ms: p50={cuts[49] * 1000:.1f} p95={cuts[94] * 1000:.1f} "
        f"max={max(seconds) * 1000:.1f} mean={statistics.fmean(seconds) * 1000:.1f}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--rooms", type=int, default=20)
    parser.add_argument("--messages", type=int, default=20)
    parser.add_argument("--poll-ms", type=float, default=20.0)
    args = parser.parse_args(argv)
    if not 2 <= args.records <= MAX_RECORDS:
        parser.error(f"--records must be between 2 and {MAX_RECORDS}")
    if args.rooms < 1 or args.messages < 0:
        parser.error("--rooms must be >= 1 and --messages >= 0")

    crm_database, omni_database = create_template("crm"), create_template("omni")
    processes: list[ServiceProcess] = []
    try:
        with RedisServer() as redis, tempfile.TemporaryDirectory() as logs:
            log_dir = Path(logs)
            omni_env = service_env(
                OMNI_DATABASE_URL=async_url(omni_database), OMNI_ADMIN_KEY=OMNI_ADMIN_KEY
            )
            omni_process, omni_url = start_uvicorn(
                "omni_service.main:app", omni_env, log_dir=log_dir, name="omni"
            )
            processes.append(omni_process)
            crm_env = service_env(
                CRM_DATABASE_URL=async_url(crm_database),
                CELERY_BROKER_URL=redis.url(0),
                REDIS_URL=redis.url(1),
                CRM_ADMIN_KEY=CRM_ADMIN_KEY,
            )
            crm_process, crm_url = start_uvicorn(
                "crm_service.main:app", crm_env, log_dir=log_dir, name="crm"
            )
            processes.append(crm_process)
            processes.append(
                start_celery_worker(
                    crm_env,
                    log_dir=log_dir,
                    concurrency=args.concurrency,
                )
            )
            with (
                httpx.Client(base_url=crm_url, timeout=30) as crm,
                httpx.Client(base_url=omni_url, timeout=30) as omni,
            ):
                token, omni_auth = set_up(crm, omni, omni_url)
                post_chat(omni, omni_auth, args.rooms, args.messages)
                observed, server = measure(
                    crm, token, args.records, args.rooms, args.poll_ms / 1000, timeout=30
                )
    finally:
        for process in reversed(processes):
            process.stop()
        drop_database(crm_database)
        drop_database(omni_database)

    print(
        f"records={args.records} worker_concurrency={args.concurrency} rooms={args.rooms} "
        f"messages_per_room={args.messages} poll_ms={args.poll_ms:g}\n"
        f"{summary('observed', observed)}\n{summary('server', server)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
