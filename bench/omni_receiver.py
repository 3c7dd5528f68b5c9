"""Receiver throughput: signed CRM events applied per second, through a real uvicorn
process on loopback.

    .venv/bin/python -m bench.omni_receiver \\
        --database-url postgresql+asyncpg://postgres@127.0.0.1:5432/omni_bench

Every room gets a deal create, a few deal updates and a ticket create, sent in that
order by ``--concurrency`` clients at once, so a room's events race each other as retries
and parallel workers make them do in production. "Applied" counts every event committed
(``applied``, or ``ignored`` as stale); the count of events is bounded.
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
from shared_contracts.events import DealData, EventType, TicketData


async def run(base_url: str, total: int, concurrency: int, updates: int) -> None:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=60) as client:
        org = await create_organization(client)
        per_room = updates + 2
        events: list[tuple[EventType, DealData | TicketData]] = []
        for room in range(total // per_room):
            room_id = f"room-{room}"
            events.append((EventType.DEAL_CREATE, deal_event(org, room, room_id, 1)))
            events.extend(
                (EventType.DEAL_UPDATE, deal_event(org, room, room_id, version))
                for version in range(2, updates + 2)
            )
            events.append((EventType.TICKET_CREATE, ticket_event(org, room, room_id, 1)))

        outcomes: Counter[str] = Counter()
        queue = iter(events)

        async def sender() -> None:
            for event_type, data in queue:
                # Signed when sent, as the CRM worker does, so a long run never goes stale.
                body, headers = signed(org, event_type, data)
                response = await client.post("/webhooks/crm", content=body, headers=headers)
                status = response.json()["status"] if response.status_code == 200 else None
                outcomes[status or str(response.status_code)] += 1

        started = time.perf_counter()
        await asyncio.gather(*(sender() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started

    committed = outcomes["applied"] + outcomes["ignored"]
    print(
        f"omni receiver: {committed}/{len(events)} signed events applied in {elapsed:.2f} s"
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
