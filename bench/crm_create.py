"""The CRM's create endpoint (the chatbot's hot path) against a bare asyncpg insert.

    .venv/bin/python -m bench.crm_create --requests 3000 --concurrency 16

Sets up a throw-away PostgreSQL database (migrated) and a private Redis broker, starts
the CRM (``crm_service.main:app``) and the baseline (``bench.bare_insert_app:app``)
under uvicorn on loopback, one worker each, and drives ``--requests`` POSTs with
``--concurrency`` in flight through httpx, after a short warm-up, each app for at most
``--duration`` seconds. Prints requests/s, p50/p95/p99 latency and the server process's
CPU per request for both (CPU time is what a busy machine distorts least).

The CRM request is what a chatbot sends: a bot deal in a chat room with the contact it
looked up, for a team with the parity flag on (so the outbox rows are written too). Then,
in-process on the same database, it counts the database round trips of one create:
statements (SQLAlchemy ``before_cursor_execute``), BEGIN/COMMIT, and pre-ping pings.

The load generator shares the machine with both servers, so absolute numbers are a
floor; the ratio between the two apps is the point. Needs PostgreSQL on 127.0.0.1:5432
(``TEST_POSTGRES_DSN``) and ``redis-server``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import logging
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import event

from crm_service.main import create_app
from crm_service.settings import Settings
from tests.support.databases import POSTGRES_DSN, async_url, create_template, drop_database
from tests.support.processes import (
    RedisServer,
    ServiceProcess,
    free_port,
    service_env,
)

ADMIN_KEY = "bench-admin-key"
MAX_REQUESTS = 100_000
MAX_CONCURRENCY = 256
Body = Callable[[int], dict[str, Any]]


@dataclass
class LoadResult:
    name: str
    latencies: list[float]
    statuses: Counter[int]
    elapsed: float
    server_cpu: float  # seconds of CPU the server process spent on the measured requests

    def line(self) -> str:
        ordered = sorted(self.latencies)
        cuts = statistics.quantiles(ordered, n=100, method="inclusive")
        ok = self.statuses.get(201, 0)
        return (
            f"{self.name:<10} {len(ordered):>6} req  {len(ordered) / self.elapsed:>8.1f} req/s  "
            f"p50 {cuts[49] * 1000:>6.1f} ms  p95 {cuts[94] * 1000:>6.1f} ms  "
            f"p99 {cuts[98] * 1000:>6.1f} ms  server CPU "
            f"{self.server_cpu / len(ordered) * 1000:>5.2f} ms/req  201s {ok}/{len(ordered)}"
        )


def start_app(
    name: str, app: str, env: dict[str, str], log_dir: Path
) -> tuple[ServiceProcess, str]:
    """One uvicorn worker on a free loopback port, access log off (it is not what we
    measure); returns once ``/healthz`` answers."""
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port)]
    command += ["--workers", "1", "--no-access-log", "--log-level", "warning"]
    process = ServiceProcess(name, command, env, log_dir / f"{name}.log").start()
    url = f"http://127.0.0.1:{port}"
    try:
        process.wait_for_http(f"{url}/healthz", timeout=30)
    except BaseException:
        process.stop()
        raise
    return process, url


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (Linux ``/proc``): unlike requests/s, hardly
    moved by whatever else the machine is running."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def drive(
    name: str,
    server: ServiceProcess,
    url: str,
    path: str,
    headers: dict[str, str],
    body: Body,
    *,
    requests: int,
    concurrency: int,
    duration: float,
    warmup: int,
) -> LoadResult:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=30) as http:
        warm = await asyncio.gather(*[http.post(path, json=body(-n)) for n in range(warmup)])
        if any(response.status_code != 201 for response in warm):
            raise SystemExit(f"{name}: warm-up failed: {warm[0].status_code} {warm[0].text}")
        numbers = itertools.count()
        latencies: list[float] = []
        statuses: Counter[int] = Counter()
        deadline = time.monotonic() + duration

        async def client_loop() -> None:
            while (n := next(numbers)) < requests and time.monotonic() < deadline:
                started = time.perf_counter()
                response = await http.post(path, json=body(n))
                latencies.append(time.perf_counter() - started)
                statuses[response.status_code] += 1

        assert server.process is not None
        cpu_before = cpu_seconds(server.process.pid)
        started = time.perf_counter()
        await asyncio.gather(*[client_loop() for _ in range(concurrency)])
        elapsed = time.perf_counter() - started
        server_cpu = cpu_seconds(server.process.pid) - cpu_before
    return LoadResult(name, latencies, statuses, elapsed, server_cpu)


@dataclass
class RoundTrips:
    statements: list[str]
    begins: int = 0
    commits: int = 0
    checkouts: int = 0


@contextmanager
def counting(engine: Any) -> Iterator[RoundTrips]:
    counts = RoundTrips(statements=[])

    def on_statement(*args: Any) -> None:
        counts.statements.append(" ".join(str(args[2]).split())[:90])

    def on_begin(*_: Any) -> None:
        counts.begins += 1

    def on_commit(*_: Any) -> None:
        counts.commits += 1

    def on_checkout(*_: Any) -> None:
        counts.checkouts += 1

    listeners = [
        (engine, "before_cursor_execute", on_statement),
        (engine, "begin", on_begin),
        (engine, "commit", on_commit),
        (engine.pool, "checkout", on_checkout),
    ]
    for target, name, listener in listeners:
        event.listen(target, name, listener)
    try:
        yield counts
    finally:
        for target, name, listener in listeners:
            event.remove(target, name, listener)


async def count_round_trips(database_url: str, samples: int) -> None:
    """Round trips of one create, measured in-process on the bench database."""
    settings = Settings(
        database_url=database_url,
        admin_key=ADMIN_KEY,
        celery_broker_url="memory://",
        redis_url=None,
    )
    app = create_app(settings)
    app.state.enqueue_outbox = lambda items: None
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://crm") as http:
            team = await set_up_team(http, "bench-in-process")
            engine = app.state.engine.sync_engine
            pre_ping = bool(getattr(engine.pool, "_pre_ping", False))
            scenarios: list[tuple[str, dict[str, Any]]] = [
                ("bot deal in a room, contact, flag on", bot_deal(team.contact_id)(0)),
                ("plain deal (no room, no contact)", {"name": "Plain deal"}),
                ("bot ticket in a room, contact, flag on", bot_deal(team.contact_id)(0)),
            ]
            print("\nround trips per create (in-process, after warm-up):")
            for label, body in scenarios:
                path = "/api/v3.1/tickets" if "ticket" in label else "/api/v3.1/deals"
                await http.post(path, json=body, headers=team.auth)
                per_request: list[RoundTrips] = []
                for _ in range(samples):
                    with counting(engine) as counts:
                        response = await http.post(path, json=body, headers=team.auth)
                    assert response.status_code == 201, response.text
                    per_request.append(counts)
                last = per_request[-1]
                statements = statistics.mean(len(c.statements) for c in per_request)
                # asyncpg's pre-ping outside a transaction is BEGIN, ";", ROLLBACK.
                pings = 3 * last.checkouts if pre_ping else 0
                total = statements + last.begins + last.commits + pings
                print(
                    f"  {label}: {statements:g} statements + {last.begins} BEGIN + "
                    f"{last.commits} COMMIT + {pings} pre-ping = {total:g} round trips"
                )
                for statement in last.statements:
                    print(f"      {statement}")


def bot_deal(contact_id: int) -> Body:
    def body(n: int) -> dict[str, Any]:
        return {
            "name": f"Deal from bot {n}",
            "channel_integration_room_id": f"room-{n}",
            "creator_flag": "bot",
            "crm_lead_ids": [contact_id],
            "size": 1500000,
        }

    return body


@dataclass(frozen=True)
class BenchTeam:
    id: int
    auth: dict[str, str]
    contact_id: int


async def set_up_team(http: httpx.AsyncClient, company: str) -> BenchTeam:
    """A team with the parity flag on and one contact, as the chatbot's tenant."""
    admin = {"X-Admin-Key": ADMIN_KEY}
    team = await http.post(
        "/admin/teams", json={"name": company, "external_company_id": company}, headers=admin
    )
    team.raise_for_status()
    created = team.json()
    flag = await http.put(
        f"/admin/teams/{created['id']}/features/bot_ai_creation_parity",
        json={"enabled": True},
        headers=admin,
    )
    flag.raise_for_status()
    auth = {"Authorization": f"Bearer {created['access_token']}"}
    contact = await http.post(
        "/api/v3.1/contacts", json={"first_name": "Budi", "phone": "081234567890"}, headers=auth
    )
    contact.raise_for_status()
    return BenchTeam(int(created["id"]), auth, int(contact.json()["id"]))


async def run(args: argparse.Namespace, database: str, log_dir: Path) -> None:
    database_url = async_url(database)
    with RedisServer() as redis:
        crm_env = service_env(
            CRM_DATABASE_URL=database_url,
            CRM_ADMIN_KEY=ADMIN_KEY,
            CELERY_BROKER_URL=redis.url(),
        )
        crm, crm_url = start_app("crm", "crm_service.main:app", crm_env, log_dir)
        try:
            async with httpx.AsyncClient(base_url=crm_url, timeout=30) as http:
                team = await set_up_team(http, "bench-http")
                default = (await http.get("/api/v3.1/pipelines", headers=team.auth)).json()
            crm_result = await drive(
                "crm",
                crm,
                crm_url,
                "/api/v3.1/deals",
                team.auth,
                bot_deal(team.contact_id),
                requests=args.requests,
                concurrency=args.concurrency,
                duration=args.duration,
                warmup=args.warmup,
            )
        finally:
            crm.stop()
    pipeline = default["items"][0]
    bare_env = service_env(
        BENCH_DATABASE_DSN=f"{POSTGRES_DSN.rsplit('/', 1)[0]}/{database}",
        BENCH_TEAM_ID=team.id,
        BENCH_PIPELINE_ID=pipeline["id"],
        BENCH_STAGE_ID=pipeline["stages"][0]["id"],
    )
    bare, bare_url = start_app("bare", "bench.bare_insert_app:app", bare_env, log_dir)
    try:
        bare_result = await drive(
            "bare",
            bare,
            bare_url,
            "/deals",
            {},
            bot_deal(team.contact_id),
            requests=args.requests,
            concurrency=args.concurrency,
            duration=args.duration,
            warmup=args.warmup,
        )
    finally:
        bare.stop()
    print(f"POST create, concurrency {args.concurrency}, one uvicorn worker each:")
    for result in (crm_result, bare_result):
        print("  " + result.line())
    ratio = len(crm_result.latencies) / crm_result.elapsed
    ratio /= len(bare_result.latencies) / bare_result.elapsed
    print(f"  crm throughput = {ratio:.0%} of the bare insert")
    await count_round_trips(database_url, args.round_trip_samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000, help="POSTs per app")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight")
    parser.add_argument("--duration", type=float, default=60.0, help="max seconds per app")
    parser.add_argument("--warmup", type=int, default=50, help="uncounted POSTs first")
    parser.add_argument("--round-trip-samples", type=int, default=20)
    args = parser.parse_args()
    if not 1 <= args.requests <= MAX_REQUESTS:
        parser.error(f"--requests must be 1..{MAX_REQUESTS}")
    if not 1 <= args.concurrency <= MAX_CONCURRENCY:
        parser.error(f"--concurrency must be 1..{MAX_CONCURRENCY}")
    logging.getLogger().setLevel(logging.WARNING)  # the app's JSON logs are not the report
    database = create_template("crm")
    try:
        with tempfile.TemporaryDirectory(prefix="crm-bench-") as log_dir:
            asyncio.run(run(args, database, Path(log_dir)))
    finally:
        drop_database(database)


if __name__ == "__main__":
    main()
