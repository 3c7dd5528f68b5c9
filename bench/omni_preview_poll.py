"""Preview poll throughput: requests per second and the share answered 304, through a
real uvicorn process on loopback.

    .venv/bin/python -m bench.omni_preview_poll \\
        --database-url postgresql+asyncpg://postgres@127.0.0.1:5432/omni_bench

Seeds ``--rooms`` rooms with a deal and a ticket preview. Then ``--concurrency`` open
inboxes poll, back to back, each its own room (spread over the rooms), sending the last
ETag they saw in ``If-None-Match``, while a writer changes ``--updates-per-second`` deals
in random rooms, so some polls find a changed preview. The count of polls is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
from collections import Counter

import httpx

from bench.omni_harness import (
    DEFAULT_DATABASE_URL,
    Organization,
    create_organization,
    deal_event,
    migrate,
    omni_server,
    signed,
    ticket_event,
)
from shared_contracts.events import EventType


async def seed(client: httpx.AsyncClient, org: Organization, rooms: int) -> None:
    requests = []
    for room in range(rooms):
        room_id = f"room-{room}"
        requests.append(signed(org, EventType.DEAL_CREATE, deal_event(org, room, room_id, 1)))
        requests.append(signed(org, EventType.TICKET_CREATE, ticket_event(org, room, room_id, 1)))
    pending = iter(requests)

    async def sender() -> None:
        for body, headers in pending:
            (await client.post("/webhooks/crm", content=body, headers=headers)).raise_for_status()

    await asyncio.gather(*(sender() for _ in range(16)))


async def write_updates(
    client: httpx.AsyncClient, org: Organization, rooms: int, per_second: float, stop: asyncio.Event
) -> int:
    versions = dict.fromkeys(range(rooms), 1)
    sent = 0
    while not stop.is_set() and per_second > 0:
        room = random.randrange(rooms)
        versions[room] += 1
        body, headers = signed(
            org, EventType.DEAL_UPDATE, deal_event(org, room, f"room-{room}", versions[room])
        )
        (await client.post("/webhooks/crm", content=body, headers=headers)).raise_for_status()
        sent += 1
        await asyncio.sleep(1 / per_second)
    return sent


async def run(
    base_url: str, rooms: int, polls: int, concurrency: int, updates_per_second: float
) -> None:
    limits = httpx.Limits(max_connections=concurrency + 2, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=60) as client:
        org = await create_organization(client)
        await seed(client, org, rooms)

        statuses: Counter[int] = Counter()
        latencies: list[float] = []
        remaining = polls

        async def inbox(room: int) -> None:
            nonlocal remaining
            url = f"/api/v1/rooms/room-{room}/crm_preview"
            etag: str | None = None
            while remaining > 0:
                remaining -= 1
                headers = dict(org.auth)
                if etag is not None:
                    headers["If-None-Match"] = etag
                started = time.perf_counter()
                response = await client.get(url, headers=headers)
                latencies.append(time.perf_counter() - started)
                statuses[response.status_code] += 1
                etag = response.headers["etag"]

        stop = asyncio.Event()
        writer = asyncio.create_task(write_updates(client, org, rooms, updates_per_second, stop))
        started = time.perf_counter()
        await asyncio.gather(*(inbox(number % rooms) for number in range(concurrency)))
        elapsed = time.perf_counter() - started
        stop.set()
        updates = await writer

    total = sum(statuses.values())
    latencies.sort()
    p50 = statistics.median(latencies) * 1000
    p95 = latencies[int(len(latencies) * 0.95)] * 1000
    print(
        f"omni preview poll: {total} polls in {elapsed:.2f} s = {total / elapsed:.0f} requests/s,"
        f" 304 share {statuses[304] / total:.1%}"
        f" (statuses {dict(sorted(statuses.items()))}, p50 {p50:.1f} ms, p95 {p95:.1f} ms;"
        f" {rooms} rooms, concurrency {concurrency}, {updates} deal updates during the run)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--rooms", type=int, default=100)
    parser.add_argument("--polls", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--updates-per-second", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    args = parser.parse_args()

    migrate(args.database_url)
    with omni_server(args.database_url, args.workers) as base_url:
        asyncio.run(
            run(base_url, args.rooms, args.polls, args.concurrency, args.updates_per_second)
        )


if __name__ == "__main__":
    main()
