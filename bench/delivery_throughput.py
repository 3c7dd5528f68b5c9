"""Delivery throughput of one Celery worker against a local receiver.

    .venv/bin/python -m bench.delivery_throughput --events 2000 --concurrency 2

Sets up a throw-away PostgreSQL database (migrated), a private Redis (broker and flag
cache, as in compose) and a receiver answering 200; writes ``--events`` pending webhook
rows for one linked team and queues their tasks; then starts one worker
(``--concurrency`` pool processes, ``--pool``) and waits until every row is delivered.
Throughput is measured between the first and the last recorded attempt, so worker
start-up is not counted; the worker's CPU time (all its processes) over the same run is
printed per event, the steadier number on a shared machine.

The rows are deal update events: their delivery is a create's (the same claim, signature,
send and record), without the timeline-note job a create's attempt also writes
(``outbox.note_jobs_of_creates``), whose notes are the worker's other work and are
measured with the real Omni in ``make bench``'s drain phase. Only webhook rows are counted.

The receiver is a bare asyncio HTTP/1.1 server in a process of its own (``--receiver
fast``, the default): a few microseconds per request, so it is not what is measured.
``--receiver loopback`` is the tests' threaded receiver in this process. Needs PostgreSQL
on 127.0.0.1:5432 (``TEST_POSTGRES_DSN``) and ``redis-server``.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import statistics
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from sqlalchemy import func, select

from crm_service.database import create_engine, session_factory
from crm_service.events.models import DeliveryAttempt, OutboxEvent, OutboxStatus
from crm_service.events.outbox import WEBHOOK, new_webhook_id
from crm_service.settings import Settings
from crm_service.teams.features import BOT_AI_CREATION_PARITY
from crm_service.teams.models import OmnichannelLink, Team, TeamFeature
from crm_service.worker import (
    DELIVER_WEBHOOK,
    DELIVER_WEBHOOKS,
    MAX_BATCH,
    WEBHOOKS_QUEUE,
    make_celery,
)
from shared_contracts.events import DealData, EventType, NamedRef, build_envelope
from shared_contracts.signatures import generate_secret
from tests.support.databases import async_url, create_template, drop_database
from tests.support.processes import (
    LoopbackReceiver,
    RedisServer,
    service_env,
    start_celery_worker,
    wait_until,
)

MAX_EVENTS = 20_000
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
ANSWER = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"


class FastReceiver(asyncio.Protocol):
    """Answers every request 200 on a keep-alive connection; counts requests and
    distinct ``webhook-id`` values."""

    def __init__(self, seen: set[bytes], counts: list[int]) -> None:
        self._buffer = b""
        self._seen = seen
        self._counts = counts
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while True:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self._buffer[:end].lower()
            length = 0
            webhook_id = b""
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name == b"content-length":
                    length = int(value)
                elif name == b"webhook-id":
                    webhook_id = value.strip()
            if len(self._buffer) < end + 4 + length:
                return
            self._buffer = self._buffer[end + 4 + length :]
            self._counts[0] += 1
            self._seen.add(webhook_id)
            assert self._transport is not None
            self._transport.write(ANSWER)


def serve_fast(control: multiprocessing.Queue[int], totals: multiprocessing.Queue[int]) -> None:
    """The fast receiver's process: puts its port on ``control``, serves until it reads
    anything from ``control``, then puts requests and distinct ids on ``totals``."""

    async def run() -> None:
        seen: set[bytes] = set()
        counts = [0]
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: FastReceiver(seen, counts), "127.0.0.1", 0, backlog=1024
        )
        control.put(server.sockets[0].getsockname()[1])
        await loop.run_in_executor(None, control.get)
        server.close()
        totals.put(counts[0])
        totals.put(len(seen))

    asyncio.run(run())


@dataclass
class Received:
    url: str
    requests: int = 0
    distinct_ids: int = 0


@contextmanager
def receiver(kind: str) -> Iterator[Received]:
    """A receiver answering 200; its counts are filled in when the block ends."""
    if kind == "loopback":
        with LoopbackReceiver() as loopback:
            endpoint = loopback.endpoint()
            received = Received(endpoint.base_url)
            try:
                yield received
            finally:
                received.requests = len(endpoint.requests)
                received.distinct_ids = len(
                    {request.headers["webhook-id"] for request in endpoint.requests}
                )
        return
    context = multiprocessing.get_context("spawn")
    control: multiprocessing.Queue[int] = context.Queue()
    totals: multiprocessing.Queue[int] = context.Queue()
    process = context.Process(target=serve_fast, args=(control, totals), daemon=True)
    process.start()
    received = Received(f"http://127.0.0.1:{control.get(timeout=30)}")
    try:
        yield received
    finally:
        control.put(0)
        received.requests, received.distinct_ids = totals.get(timeout=10), totals.get(timeout=10)
        process.join(timeout=10)


def cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` and of its live children (the pool processes)."""
    total = 0.0
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    pids += [int(child) for child in children]
    for one in pids:
        try:
            fields = Path(f"/proc/{one}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return total


def event_body(record_id: int) -> str:
    now = datetime.now(UTC)
    data = DealData(
        id=record_id,
        slug=f"slug-{record_id}",
        company_id="bench-company",
        channel_integration_room_id=f"room-{record_id}",
        name=f"Deal {record_id}",
        stage=NamedRef(id=1, name="New"),
        pipeline=NamedRef(id=1, name="Sales"),
        size=Decimal("1500000"),
        status="open",
        creator_flag="bot",
        creator_name="Bot",
        external_url=f"https://crm.bench.test/deals/{record_id}",
        created_at=now,
        updated_at=now,
        version=1,
    )
    return build_envelope(EventType.DEAL_UPDATE, data)


async def write_events(database_url: str, receiver_url: str, count: int) -> list[int]:
    engine = create_engine(database_url)
    try:
        async with session_factory(engine)() as session:
            team = Team(name="Bench", external_company_id="bench-company", api_key_hash="bench")
            session.add(team)
            await session.flush()
            session.add(
                OmnichannelLink(
                    team_id=team.id,
                    base_url=receiver_url,
                    public_url=receiver_url,
                    webhook_secret=generate_secret(),
                    api_token="bench",
                )
            )
            # The worker checks the flag before each send, as it would for a real team.
            session.add(TeamFeature(team_id=team.id, name=BOT_AI_CREATION_PARITY, enabled=True))
            rows = [
                OutboxEvent(
                    webhook_id=new_webhook_id(),
                    team_id=team.id,
                    kind=WEBHOOK,
                    event_type=str(EventType.DEAL_UPDATE),
                    record_kind="deal",
                    record_id=number,
                    room_id=f"room-{number}",
                    body=event_body(number),
                )
                for number in range(1, count + 1)
            ]
            session.add_all(rows)
            await session.commit()
            return [row.id for row in rows]
    finally:
        await engine.dispose()


async def delivered_count(database_url: str) -> int:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            return int(
                await connection.scalar(
                    select(func.count())
                    .select_from(OutboxEvent)
                    .where(
                        OutboxEvent.kind == WEBHOOK, OutboxEvent.status == OutboxStatus.DELIVERED
                    )
                )
                or 0
            )
    finally:
        await engine.dispose()


async def attempt_stats(database_url: str) -> tuple[int, float, list[int]]:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            first, last, attempts = (
                await connection.execute(
                    select(
                        func.min(DeliveryAttempt.created_at),
                        func.max(DeliveryAttempt.created_at),
                        func.count(),
                    )
                )
            ).one()
            latencies = list(await connection.scalars(select(DeliveryAttempt.latency_ms)))
        return int(attempts), (last - first).total_seconds(), latencies
    finally:
        await engine.dispose()


@dataclass(frozen=True)
class Measured:
    events: int
    attempts: int
    received: int
    distinct_ids: int
    seconds: float
    worker_cpu_seconds: float
    latencies_ms: list[int]

    @property
    def events_per_second(self) -> float:
        return (self.attempts - 1) / self.seconds if self.seconds > 0 else float("inf")

    @property
    def cpu_ms_per_event(self) -> float:
        return 1000 * self.worker_cpu_seconds / self.events


def measure(
    events: int,
    *,
    concurrency: int | None = 2,
    pool: str = "prefork",
    receiver_kind: str = "fast",
    hand_off: str = "batch",
    queues: tuple[str, ...] | None = ("webhooks",),
    hosts: int = 1,
) -> Measured:
    """Write ``events`` pending webhook rows, queue them (``hand_off``), start ``hosts``
    workers (``concurrency`` None and ``queues`` None: as an operator starts one, no
    flags) and wait until every row is delivered."""
    database = create_template("crm")
    database_url = async_url(database)
    try:
        with (
            RedisServer() as redis,
            receiver(receiver_kind) as omni,
            tempfile.TemporaryDirectory() as logs,
        ):
            ids = asyncio.run(write_events(database_url, omni.url, events))
            settings = Settings(database_url=database_url, celery_broker_url=redis.url())
            producer = make_celery(settings)
            if hand_off == "row":
                for outbox_id in ids:
                    producer.send_task(DELIVER_WEBHOOK, args=[outbox_id], queue=WEBHOOKS_QUEUE)
            else:  # as the API's dispatcher hands a backlog over: MAX_BATCH rows a message
                for start in range(0, len(ids), MAX_BATCH):
                    chunk = ids[start : start + MAX_BATCH]
                    producer.send_task(DELIVER_WEBHOOKS, args=[chunk], queue=WEBHOOKS_QUEUE)

            env = service_env(
                CRM_DATABASE_URL=database_url, CELERY_BROKER_URL=redis.url(), REDIS_URL=redis.url()
            )
            workers = []
            try:
                for host in range(hosts):
                    workers.append(
                        start_celery_worker(
                            env,
                            log_dir=Path(logs),
                            name=f"worker{host}",
                            queues=queues,
                            concurrency=concurrency,
                            pool=pool,
                        )
                    )
                pids = [worker.process.pid for worker in workers if worker.process is not None]
                cpu_before = sum(cpu_seconds(pid) for pid in pids)
                wait_until(
                    lambda: asyncio.run(delivered_count(database_url)) == events,
                    timeout=max(60.0, events / 10),
                    interval=0.5,
                    message=workers[0].tail,
                )
                cpu = sum(cpu_seconds(pid) for pid in pids) - cpu_before
            finally:
                for worker in workers:
                    worker.stop()
            attempts, seconds, latencies = asyncio.run(attempt_stats(database_url))
    finally:
        drop_database(database)
    # The receiver's counts are known once it has stopped.
    return Measured(events, attempts, omni.requests, omni.distinct_ids, seconds, cpu, latencies)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--pool", default="prefork")
    parser.add_argument("--receiver", choices=("fast", "loopback"), default="fast")
    parser.add_argument(
        "--hand-off",
        choices=("batch", "row"),
        default="batch",
        help="batch: messages of MAX_BATCH rows, as the API hands a backlog over; row: one"
        " message per row (the sweep's and a lone create's shape)",
    )
    args = parser.parse_args(argv)
    if not 2 <= args.events <= MAX_EVENTS:
        parser.error(f"--events must be between 2 and {MAX_EVENTS}")
    run = measure(
        args.events,
        concurrency=args.concurrency,
        pool=args.pool,
        receiver_kind=args.receiver,
        hand_off=args.hand_off,
    )
    cuts = statistics.quantiles(run.latencies_ms, n=100)
    print(
        f"events={run.events} attempts={run.attempts} received={run.received} "
        f"distinct_ids={run.distinct_ids} "
        f"worker_concurrency={args.concurrency} pool={args.pool} receiver={args.receiver}\n"
        f"first-to-last attempt: {run.seconds:.2f} s -> {run.events_per_second:.0f} events/s\n"
        f"worker CPU: {run.worker_cpu_seconds:.2f} s -> {run.cpu_ms_per_event:.2f} ms per event "
        "(start-up and idle polling included)\n"
        f"attempt latency ms: p50={cuts[49]:.0f} p95={cuts[94]:.0f} max={max(run.latencies_ms)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
