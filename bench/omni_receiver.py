"""Receiver throughput: signed CRM events applied per second, through a real uvicorn
process on loopback.

    .venv/bin/python -m bench.omni_receiver \\
        --database-url postgresql+asyncpg://postgres@127.0.0.1:5432/omni_bench

Every room gets a deal create, a few deal updates and a ticket create. Requests are
pre-signed, then sent by ``--concurrency`` clients at once, so a room's events race each
other exactly as retries and parallel workers make them do in production. "Applied"
counts every event committed (``applied`` or ``ignored`` as stale); the count is bounded
so the run ends well inside the five-minute signature window.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter

import httpx

from bench.omni_harness import (
    DEFAULT_DATABASE_URL,
    create_organization,
    deal_event,
    migrate,
    omni_server,
    signed,
    ticket_event,
)
from shared_contracts.events import EventType


async def run(base_url: str, events: int, concurrency: int, updates: int) -> None:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=60) as client:
        org = await create_organization(client)
        per_room = updates + 2
        requests: list[tuple[str, dict[str, str]]] = []
        for room in range(events // per_room):
            room_id = f"room-{room}"
            requests.append(signed(org, EventType.DEAL_CREATE, deal_event(org, room, room_id, 1)))
            requests.extend(
                signed(org, EventType.DEAL_UPDATE, deal_event(org, room, room_id, version))
                for version in range(2, updates + 2)
            )
            requests.append(
                signed(org, EventType.TICKET_CREATE, ticket_event(org, room, room_id, 1))
            )

        outcomes: Counter[str] = Counter()
        queue = iter(requests)

        async def sender() -> None:
            for body, headers in queue:
                response = await client.post("/webhooks/crm", content=body, headers=headers)
                outcomes[
                    response.json()["status"]
                    if response.status_code == 200
                    else str(response.status_code)
                ] += 1

        started = time.perf_counter()
        await asyncio.gather(*(sender() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started

    committed = outcomes["applied"] + outcomes["ignored"]
    print(
        f"omni receiver: {committed}/{len(requests)} signed events applied in {elapsed:.2f} s"
        f" = {committed / elapsed:.0f} events/s"
        f" (outcomes {dict(sorted(outcomes.items()))}, concurrency {concurrency})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--updates", type=int, default=3, help="deal updates per room")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    args = parser.parse_args()

    migrate(args.database_url)
    with omni_server(args.database_url, args.workers) as base_url:
        asyncio.run(run(base_url, args.events, args.concurrency, args.updates))


if __name__ == "__main__":
    main()
