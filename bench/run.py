"""``make bench``: every hot path of the real stack as a ratio to a bare baseline started
in the same run, and the end-to-end latency from a bot's create to the inbox preview.

    .venv/bin/python -m bench.run                      # writes bench/results/latest.json
    .venv/bin/python -m bench.run --scale-out          # 2 API processes, 2 worker hosts

It starts, on fresh PostgreSQL databases and a private Redis, what an operator runs
(:mod:`bench.stack`: both APIs under uvicorn, plain Celery workers) and the bare apps
(``bench/bare_insert_app.py``, ``bench/bare_hello_app.py``, ``bench/bare_receiver_app.py``),
then measures, in this order:

1. **create**: ``POST /api/v3.1/deals`` (a bot deal in a room of its own, with a contact,
   flag on), wrk against the CRM with no worker running and the same body against the
   bare one-INSERT endpoint on the same database, taking turns: :data:`CREATE_PAIRS`
   pairs of runs of half ``--duration`` each, each side's figure its runs together.
2. **delivery**: the workers start and deliver the webhooks those creates queued, to the
   real Omni (which also answers the chat histories of the notes written alongside);
   signed events/s between the first and the last attempt. Then the issue's own measure:
   one plain worker host (no flags) against a receiver fast enough not to be the limit
   (:mod:`bench.delivery_throughput`), the backlog handed over as the API hands it.
3. **preview poll**: one room's ``crm_preview`` with ``If-None-Match`` (all 304) and
   without (200), against bare ``GET /hello``.
4. **receiver**: distinct pre-signed events into ``POST /webhooks/crm`` of Omni, against
   the bare endpoint that verifies the same signature and does one upsert.
5. **create → preview visible**: an open-loop generator sends creates at ``--rate`` per
   second on a fixed schedule; each latency runs from the create's *scheduled* send time
   to the moment Omni wrote its preview row (``deal_previews.changed_at``), so a client
   or server that falls behind shows as latency, never as a lower rate. Once per pool.
6. **memory**: the peak RSS of every process of the stack over the whole run.

Throughput is wrk's (``-t2``), never a Python client's. Before each measured wrk run of
a write (the creates, the events, the project's and the bare app's alike) the database is
vacuumed and analyzed, as ``pgbench`` does by default: otherwise the dead rows and
statistics left by the run before (the other side's, on the same tables) are
autovacuumed during the next one, on the same two cores, and charged to whichever side
comes second. Every server, baseline or not,
runs one uvicorn worker at log level ``warning`` (no access lines) unless ``--scale-out``.
Needs ``wrk`` (``apt-get install wrk``), PostgreSQL on 127.0.0.1:5432 and redis-server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from bench import delivery_throughput, wrk
from bench.omni_harness import Organization
from bench.omni_wrk import receiver_events
from bench.open_loop import OpenLoopClient
from bench.stack import QUIET, Stack, plain_dsn, running_stack
from tests.support.processes import ServiceProcess, service_env, start_uvicorn, wait_until

ROOT = Path(__file__).resolve().parents[1]
CREATE_LUA = ROOT / "bench" / "lua" / "create.lua"
DEFAULT_OUT = ROOT / "bench" / "results" / "latest.json"
TARGETS = {
    "create": 0.6,
    "preview_304": 0.5,
    "preview_200": 0.3,
    "receiver": 0.5,
    "delivery_events_per_second": 500.0,
    "create_to_preview_p95_ms": 100.0,
    "rss_mb": 150.0,
}


@dataclass
class Report:
    machine: dict[str, Any]
    options: dict[str, Any]
    throughput: dict[str, dict[str, Any]] = field(default_factory=dict)
    delivery: dict[str, Any] = field(default_factory=dict)
    delivery_fast: dict[str, Any] = field(default_factory=dict)
    latency: dict[str, dict[str, Any]] = field(default_factory=dict)
    rss_mb: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0


def machine() -> dict[str, Any]:
    memory_kb = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "cpus": os.cpu_count(),
        "cpu": model,
        "memory_gb": round(memory_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


# -- memory -------------------------------------------------------------------------------


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (uvicorn's and Celery's pool children)."""
    found, stack = [], [pid]
    while stack:
        current = stack.pop()
        found.append(current)
        try:
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        stack.extend(int(child) for child in children)
    return found


def _rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` (0 for a process that is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _backend_pids(dsn: str, databases: list[str]) -> list[int]:
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = ANY($1::text[])"
            " AND pid <> pg_backend_pid()",
            databases,
        )
    finally:
        await connection.close()
    return [int(row["pid"]) for row in rows]


def cpu_by_role(stack: Stack) -> dict[str, dict[int, float]]:
    """CPU seconds so far of every process of the stack, by role: ``crm``, ``omni``,
    ``worker`` (every host and pool child) and ``postgres`` (the backends serving the
    stack's two databases)."""
    roles: dict[str, dict[int, float]] = {"crm": {}, "omni": {}, "worker": {}, "postgres": {}}
    for name, pid in stack.pids().items():
        role = "worker" if name.startswith("worker") else name
        for member in _tree(pid):
            roles.setdefault(role, {})[member] = _cpu_seconds(member)
    backends = asyncio.run(
        _backend_pids(plain_dsn("postgres"), [stack.crm_database, stack.omni_database])
    )
    roles["postgres"] = {pid: _cpu_seconds(pid) for pid in backends}
    return roles


def cpu_spent(
    before: dict[str, dict[int, float]], after: dict[str, dict[int, float]]
) -> dict[str, float]:
    """CPU seconds each role spent between two :func:`cpu_by_role` samples (a process
    that started in between counts from zero)."""
    return {
        role: sum(seconds - before.get(role, {}).get(pid, 0.0) for pid, seconds in pids.items())
        for role, pids in after.items()
    }


@contextmanager
def peak_rss(stack: Stack, into: dict[str, float]) -> Iterator[None]:
    """Sample every process of the stack twice a second; keep each one's peak, by role
    (``crm``, ``omni``, ``worker0``… and ``…/child`` for pool processes)."""
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.5):
            for name, pid in stack.pids().items():
                for member in _tree(pid):
                    rss = _rss_mb(member)
                    if rss is None:
                        continue
                    role = name if member == pid else f"{name}/child"
                    into[role] = round(max(into.get(role, 0.0), rss), 1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield
    finally:
        stop.set()
        sampler.join()


# -- throughput ---------------------------------------------------------------------------


def _bare(app: str, env: dict[str, str], log_dir: Path, name: str) -> tuple[ServiceProcess, str]:
    return start_uvicorn(app, service_env(**env), log_dir=log_dir, name=name, extra_args=QUIET)


def vacuum(dsn: str) -> None:
    """``VACUUM ANALYZE`` the database: each measured write run starts from the same
    clean tables, with no vacuum debt of the run before it."""

    async def run() -> None:
        connection = await asyncpg.connect(dsn)
        try:
            await connection.execute("VACUUM ANALYZE")
        finally:
            await connection.close()

    asyncio.run(run())


def _entry(result: wrk.WrkResult, baseline: wrk.WrkResult | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "requests_per_second": round(result.requests_per_second, 1),
        "p50_ms": result.latency_ms["p50"],
        "p99_ms": result.latency_ms["p99"],
        "errors": result.errors,
    }
    if baseline is not None:
        entry["baseline_requests_per_second"] = round(baseline.requests_per_second, 1)
        entry["ratio"] = round(result.requests_per_second / baseline.requests_per_second, 3)
    return entry


# The create and its bare baseline take turns, in this many pairs of runs of half the
# --duration each: the machine's speed drifts within a minute (a shared 2-core VM), and
# one run of each side after the other charged the whole drift to the ratio.
CREATE_PAIRS = 3


def combined(runs: list[wrk.WrkResult]) -> wrk.WrkResult:
    """Several wrk runs of one side as one: their requests over their time together, their
    errors summed, and each latency percentile the median of the runs'."""
    keys = runs[0].latency_ms.keys()
    errors: dict[str, int] = {}
    for run in runs:
        for name, count in run.errors.items():
            errors[name] = errors.get(name, 0) + count
    return wrk.WrkResult(
        requests=sum(run.requests for run in runs),
        duration_seconds=sum(run.duration_seconds for run in runs),
        errors=errors,
        latency_ms={key: statistics.median(run.latency_ms[key] for run in runs) for key in keys},
        command=runs[0].command,
    )


def start_bare_insert(stack: Stack) -> tuple[ServiceProcess, str]:
    """The bare one-INSERT app on the stack's CRM database, for the stack's tenant."""
    tenant = stack.tenant
    assert tenant is not None
    return _bare(
        "bench.bare_insert_app:app",
        {
            "BENCH_DATABASE_DSN": plain_dsn(stack.crm_database),
            "BENCH_TEAM_ID": str(tenant.team_id),
            "BENCH_PIPELINE_ID": str(tenant.pipeline_id),
            "BENCH_STAGE_ID": str(tenant.stage_id),
        },
        stack.log_dir,
        "bare-insert",
    )


def create_sides(stack: Stack, bare_url: str) -> dict[str, tuple[str, str, str]]:
    """Each side of the create's comparison: its base URL, path and Authorization."""
    tenant = stack.tenant
    assert tenant is not None
    return {
        "crm": (stack.crm_url, "/api/v3.1/deals", f"Bearer {tenant.crm_token}"),
        "bare": (bare_url, "/deals", ""),
    }


def drive_create(
    stack: Stack, side: tuple[str, str, str], run: str, seconds: float
) -> wrk.WrkResult:
    """wrk -c16 of bot deals in new rooms (``bench/lua/create.lua``) against one side."""
    tenant = stack.tenant
    assert tenant is not None
    url, path, auth = side
    os.environ.update(CREATE_PATH=path, AUTH=auth, CONTACT_ID=str(tenant.contact_id), RUN_ID=run)
    return wrk.run(url, connections=16, duration_seconds=seconds, script=CREATE_LUA)


def create(stack: Stack, report: Report, args: argparse.Namespace) -> None:
    tag = uuid.uuid4().hex[:6]
    bare, bare_url = start_bare_insert(stack)
    sides = create_sides(stack, bare_url)
    runs: dict[str, list[wrk.WrkResult]] = {"crm": [], "bare": []}
    try:
        for name, side in sides.items():
            drive_create(stack, side, f"{name}-warm-{tag}", 2)
        seconds = max(1.0, args.duration / 2)
        for pair in range(CREATE_PAIRS):
            for name, side in sides.items():
                # Each run starts from clean tables, whichever side wrote last.
                vacuum(plain_dsn(stack.crm_database))
                runs[name].append(drive_create(stack, side, f"{name}-{pair}-{tag}", seconds))
    finally:
        bare.stop()
    crm, baseline = combined(runs["crm"]), combined(runs["bare"])
    report.throughput["create"] = _entry(crm, baseline)
    report.throughput["create"]["pair_ratios"] = [
        round(ours.requests_per_second / theirs.requests_per_second, 3)
        for ours, theirs in zip(runs["crm"], runs["bare"], strict=True)
        if theirs.requests_per_second
    ]
    print(
        f"create           {crm.summary()}  bare {baseline.requests_per_second:.0f} req/s"
        f"  (pairs {report.throughput['create']['pair_ratios']})"
    )


async def _delivery_progress(dsn: str, team_id: int) -> tuple[int, int, float | None]:
    connection = await asyncpg.connect(dsn)
    try:
        row = await connection.fetchrow(
            """
            SELECT count(*) FILTER (WHERE status = 'pending') AS pending,
                   count(*) FILTER (WHERE status = 'delivered') AS delivered
            FROM outbox_events WHERE team_id = $1 AND kind = 'webhook'
            """,
            team_id,
        )
        span = await connection.fetchval(
            """
            SELECT extract(epoch FROM max(a.created_at) - min(a.created_at))
            FROM delivery_attempts a JOIN outbox_events o ON o.id = a.outbox_event_id
            WHERE o.team_id = $1
            """,
            team_id,
        )
    finally:
        await connection.close()
    return int(row["pending"]), int(row["delivered"]), None if span is None else float(span)


async def _pending_notes(dsn: str, team_id: int) -> int:
    connection = await asyncpg.connect(dsn)
    try:
        return int(
            await connection.fetchval(
                "SELECT count(*) FROM outbox_events"
                " WHERE team_id = $1 AND kind = 'timeline_note' AND status = 'pending'",
                team_id,
            )
        )
    finally:
        await connection.close()


# The slowest drain rate the delivery phase waits for (the real Omni, notes alongside,
# gave 361-434 events/s on one host, 225 with --scale-out): below it the phase fails.
DRAIN_FLOOR_EVENTS_PER_SECOND = 150.0


def delivery(stack: Stack, report: Report, args: argparse.Namespace) -> None:
    """Start the workers on the backlog the create phase left, until it is drained (its
    notes too)."""
    tenant = stack.tenant
    assert tenant is not None
    dsn = plain_dsn(stack.crm_database)
    pending, _, _ = asyncio.run(_delivery_progress(dsn, tenant.team_id))
    # The backlog is whatever the create phase made, so a faster create (a fast hour of
    # the machine, --scale-out) makes a longer drain: the cap grows with it.
    timeout = max(args.drain_timeout, pending / DRAIN_FLOOR_EVENTS_PER_SECOND)
    started = time.monotonic()
    stack.start_workers()
    wait_until(
        lambda: asyncio.run(_delivery_progress(dsn, tenant.team_id))[0] == 0,
        timeout=timeout,
        interval=0.5,
        message="the create backlog was not delivered in time",
    )
    _, delivered, span = asyncio.run(_delivery_progress(dsn, tenant.team_id))
    rate = delivered / span if span else 0.0
    # The notes the creates queued drain after their webhooks; the phases that follow
    # measure the APIs against bare apps and must not share the machine with that drain
    # (it also reads each room's history from Omni): they start once it is done. The
    # workers stay, idle, for the preview phase's one deal.
    wait_until(
        lambda: asyncio.run(_pending_notes(dsn, tenant.team_id)) == 0,
        timeout=timeout,
        interval=0.5,
        message="the create backlog's notes were not written in time",
    )
    notes_drained = time.monotonic() - started
    report.delivery = {
        "events": delivered,
        "backlog_at_start": pending,
        "seconds_first_to_last_attempt": round(span or 0.0, 2),
        "events_per_second": round(rate, 1),
        "drained_after_seconds": round(time.monotonic() - started, 1),
        "notes_drained_after_seconds": round(notes_drained, 1),
        "pool": stack.worker_options["pool"],
        "worker_hosts": stack.worker_options["hosts"],
    }
    print(f"delivery         {rate:8.0f} events/s  ({delivered} events, {span or 0:.1f} s)")


def delivery_fast(report: Report, args: argparse.Namespace) -> None:
    """One worker host as an operator starts it (no -Q, no --concurrency; a second one
    with ``--scale-out``) against the bare receiver; PostgreSQL and Redis of their own."""
    events = args.fast_delivery_events
    hosts = 2 if args.scale_out else 1
    run = delivery_throughput.measure(
        events, concurrency=None, pool="prefork", queues=None, hosts=hosts
    )
    report.delivery_fast = {
        "events": run.events,
        "events_per_second": round(run.events_per_second, 1),
        "worker_cpu_ms_per_event": round(run.cpu_ms_per_event, 2),
        "attempt_p50_ms": _percentile([float(value) for value in run.latencies_ms], 50),
        "received": run.received,
        "pool": "prefork",
        "worker_hosts": hosts,
    }
    print(
        f"delivery (fast)  {run.events_per_second:8.0f} events/s  ({run.events} events,"
        f" {run.cpu_ms_per_event:.2f} ms worker CPU each)"
    )


def preview(stack: Stack, report: Report, args: argparse.Namespace) -> None:
    tenant = stack.tenant
    assert tenant is not None
    room = f"poll-{uuid.uuid4().hex[:8]}"
    with httpx.Client(timeout=30) as http:
        http.post(
            f"{stack.crm_url}/api/v3.1/deals",
            json={"name": "Polled", "channel_integration_room_id": room, "creator_flag": "bot"},
            headers=tenant.crm_auth,
        ).raise_for_status()
        url = f"{stack.omni_url}/api/v1/rooms/{room}/crm_preview"

        def shown() -> str | None:
            answer = http.get(url, headers=tenant.omni_auth)
            return answer.headers.get("etag") if answer.json().get("deal") else None

        etag = wait_until(shown, timeout=30, message="the polled room never showed its deal")
        probe = http.get(url, headers={**tenant.omni_auth, "If-None-Match": etag})
        assert probe.status_code == 304, probe.status_code
    hello, hello_url = _bare("bench.bare_hello_app:app", {}, stack.log_dir, "bare-hello")
    try:
        baseline = wrk.run(f"{hello_url}/hello", duration_seconds=args.duration)
    finally:
        hello.stop()
    hit = wrk.preview_poll(
        stack.omni_url, room, tenant.omni_token, etag=etag, duration_seconds=args.duration
    )
    full = wrk.preview_poll(stack.omni_url, room, tenant.omni_token, duration_seconds=args.duration)
    report.throughput["preview_304"] = _entry(hit, baseline)
    report.throughput["preview_200"] = _entry(full, baseline)
    print(f"preview 304      {hit.summary()}  /hello {baseline.requests_per_second:.0f} req/s")
    print(f"preview 200      {full.summary()}")


async def _organization_id(dsn: str, company_id: str) -> int:
    connection = await asyncpg.connect(dsn)
    try:
        return int(
            await connection.fetchval(
                "SELECT id FROM organizations WHERE company_id = $1", company_id
            )
        )
    finally:
        await connection.close()


def receiver(stack: Stack, report: Report, args: argparse.Namespace) -> None:
    tenant = stack.tenant
    assert tenant is not None
    organization = Organization(tenant.company_id, tenant.omni_token, tenant.webhook_secret)
    dsn = plain_dsn(stack.omni_database)
    rooms = max(1000, int(args.duration * 4000 / 4))  # more events than either can take
    bare, bare_url = _bare(
        "bench.bare_receiver_app:app",
        {
            "BENCH_DATABASE_DSN": dsn,
            "BENCH_WEBHOOK_SECRET": tenant.webhook_secret,
            "BENCH_ORGANIZATION_ID": str(asyncio.run(_organization_id(dsn, tenant.company_id))),
        },
        stack.log_dir,
        "bare-receiver",
    )
    with tempfile.TemporaryDirectory() as scratch:
        try:
            events = Path(scratch) / "bare.events"
            wrk.write_events(events, receiver_events(organization, rooms, 10_000_000))
            vacuum(dsn)
            baseline = wrk.receiver(bare_url, events, duration_seconds=args.duration)
        finally:
            bare.stop()
        events = Path(scratch) / "omni.events"
        wrk.write_events(events, receiver_events(organization, rooms, 20_000_000))
        vacuum(dsn)
        real = wrk.receiver(stack.omni_url, events, duration_seconds=args.duration)
    report.throughput["receiver"] = _entry(real, baseline)
    print(f"receiver         {real.summary()}  bare {baseline.requests_per_second:.0f} req/s")


# -- create → preview, open loop ----------------------------------------------------------


async def _open_loop(stack: Stack, rate: float, seconds: float) -> tuple[dict[str, float], int]:
    """Send ``rate * seconds`` creates on a fixed schedule; returns each room's scheduled
    send time (epoch seconds) and how many requests failed."""
    tenant = stack.tenant
    assert tenant is not None
    tag = uuid.uuid4().hex[:6]
    scheduled: dict[str, float] = {}
    failures = 0
    async with OpenLoopClient(stack.crm_url, tenant.crm_auth) as http:

        async def send(room: str) -> None:
            nonlocal failures
            body = {
                "name": f"Open loop {room}",
                "channel_integration_room_id": room,
                "creator_flag": "bot",
                "crm_lead_ids": [tenant.contact_id],
            }
            try:
                # Not ``failures += await …``: that reads the count before the await and
                # would write back a stale one over the other sends' failures.
                status = await http.post_json("/api/v3.1/deals", body)
                failures += status != 201
            except (OSError, EOFError, ValueError, asyncio.IncompleteReadError):
                failures += 1

        start_wall, start = time.time() + 0.2, time.monotonic() + 0.2
        tasks = []
        for number in range(int(rate * seconds)):
            offset = number / rate
            delay = start + offset - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            room = f"lat-{tag}-{number}"
            scheduled[room] = start_wall + offset
            tasks.append(asyncio.create_task(send(room)))
        await asyncio.gather(*tasks)
    return scheduled, failures


async def _visible_at(dsn: str, rooms: list[str]) -> dict[str, float]:
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch(
            "SELECT room_id, extract(epoch FROM changed_at) AS at FROM deal_previews"
            " WHERE room_id = ANY($1::text[])",
            rooms,
        )
    finally:
        await connection.close()
    return {row["room_id"]: float(row["at"]) for row in rows}


def _percentile(values: list[float], percent: int) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[percent - 1]


def latency(stack: Stack, report: Report, args: argparse.Namespace, pool: str) -> None:
    if stack.workers and stack.worker_options.get("running_pool") != pool:
        stack.stop_workers()
    if not stack.workers:
        stack.start_workers(pool)
        stack.worker_options["running_pool"] = pool
    cpu_before = cpu_by_role(stack)
    scheduled, failures = asyncio.run(_open_loop(stack, args.rate, args.latency_seconds))
    dsn = plain_dsn(stack.omni_database)
    rooms = list(scheduled)
    deadline = time.monotonic() + 30
    seen = asyncio.run(_visible_at(dsn, rooms))
    while len(seen) < len(rooms) and time.monotonic() < deadline:
        time.sleep(0.25)
        seen = asyncio.run(_visible_at(dsn, rooms))
    # What each create cost the whole stack, its notes included (they are written by the
    # time the preview is: the notes queue drains alongside; the last ones may miss).
    spent = cpu_spent(cpu_before, cpu_by_role(stack))
    cpu_ms = {role: round(1000 * seconds / len(rooms), 2) for role, seconds in spent.items()}
    cpu_ms["total"] = round(sum(cpu_ms.values()), 2)
    delays = [(seen[room] - scheduled[room]) * 1000 for room in rooms if room in seen]
    third = max(1, len(delays) // 3)
    entry = {
        "rate_per_second": args.rate,
        "seconds": args.latency_seconds,
        "creates": len(rooms),
        "failed_creates": failures,
        "not_visible_after_30s": len(rooms) - len(seen),
        "p50_ms": round(_percentile(delays, 50), 1),
        "p95_ms": round(_percentile(delays, 95), 1),
        "p99_ms": round(_percentile(delays, 99), 1),
        "max_ms": round(max(delays, default=float("nan")), 1),
        # A backlog that grows shows as the last third waiting longer than the first.
        "first_third_p50_ms": round(_percentile(delays[:third], 50), 1),
        "last_third_p50_ms": round(_percentile(delays[-third:], 50), 1),
        "cpu_ms_per_create": cpu_ms,
        # Cores the stack needs to keep up with the rate at that cost per create.
        "cores_needed": round(cpu_ms["total"] * args.rate / 1000, 2),
    }
    report.latency[pool] = entry
    print(
        f"create→preview   {pool:<8} p50 {entry['p50_ms']} ms  p95 {entry['p95_ms']} ms"
        f"  p99 {entry['p99_ms']} ms  (first third p50 {entry['first_third_p50_ms']} ms,"
        f" last third {entry['last_third_p50_ms']} ms, {entry['not_visible_after_30s']} missing)"
    )


# -- report -------------------------------------------------------------------------------


def table(report: Report) -> str:
    """The Markdown table the README shows."""
    rows = ["| path | project | bare, same run | ratio | target |", "|---|---|---|---|---|"]
    names = {
        "create": "`POST /api/v3.1/deals` (wrk -c16)",
        "preview_304": "`crm_preview` with `If-None-Match` (304)",
        "preview_200": "`crm_preview` (200)",
        "receiver": "`POST /webhooks/crm` (distinct signed events)",
    }
    for key, label in names.items():
        entry = report.throughput.get(key)
        if entry is None:
            continue
        rows.append(
            f"| {label} | {entry['requests_per_second']:,.0f} req/s, p50 {entry['p50_ms']:.1f} ms"
            f" | {entry['baseline_requests_per_second']:,.0f} req/s | {entry['ratio']:.2f}"
            f" | ≥ {TARGETS[key]} |"
        )
    if report.delivery:
        rows.append(
            f"| delivery drain to the real Omni, notes alongside"
            f" ({report.delivery['worker_hosts']} x {report.delivery['pool']}) |"
            f" {report.delivery['events_per_second']:,.0f} events/s | | | |"
        )
    if report.delivery_fast:
        fast = report.delivery_fast
        rows.append(
            f"| delivery to a fast receiver ({fast['worker_hosts']} x plain {fast['pool']}"
            f" worker) | {fast['events_per_second']:,.0f} events/s,"
            f" {fast['worker_cpu_ms_per_event']:.2f} ms worker CPU each | | |"
            f" ≥ {TARGETS['delivery_events_per_second']:.0f} |"
        )
    for pool, entry in report.latency.items():
        rows.append(
            f"| create → preview visible, {entry['rate_per_second']:g}/s open loop, {pool} |"
            f" p50 {entry['p50_ms']} ms, p95 {entry['p95_ms']} ms"
            f" (first/last third p50 {entry['first_third_p50_ms']}/{entry['last_third_p50_ms']} ms)"
            f" | | | p95 < {TARGETS['create_to_preview_p95_ms']:.0f} ms |"
        )
        cpu = entry["cpu_ms_per_create"]
        rows.append(
            f"| CPU per create in that run, {pool} | {cpu['total']:.1f} ms: CRM {cpu['crm']:.1f},"
            f" worker {cpu['worker']:.1f}, Omni {cpu['omni']:.1f}, PostgreSQL"
            f" {cpu['postgres']:.1f} → {entry['cores_needed']:.2f} cores at"
            f" {entry['rate_per_second']:g}/s | | | |"
        )
    if report.rss_mb:
        peak = max(report.rss_mb.items(), key=lambda item: item[1])
        rows.append(
            f"| peak RSS of any process | {peak[1]:.0f} MB ({peak[0]}) | | |"
            f" ≤ {TARGETS['rss_mb']:.0f} MB |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON report path")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per wrk run")
    parser.add_argument("--rate", type=float, default=100.0, help="open-loop creates per second")
    parser.add_argument("--latency-seconds", type=float, default=10.0, help="open-loop length")
    parser.add_argument(
        "--pools", default="prefork,threads", help="pools for the latency phase, comma-separated"
    )
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=90.0,
        help="delivery phase cap (at least the backlog at 150 events/s)",
    )
    parser.add_argument(
        "--fast-delivery-events", type=int, default=4000, help="events for the fast receiver"
    )
    parser.add_argument(
        "--scale-out", action="store_true", help="2 uvicorn workers per API, 2 worker hosts"
    )
    args = parser.parse_args()
    if not 1 <= args.duration <= 60 or not 1 <= args.rate <= 1000:
        parser.error("--duration must be 1..60 and --rate 1..1000")
    if not 2 <= args.fast_delivery_events <= delivery_throughput.MAX_EVENTS:
        parser.error(f"--fast-delivery-events must be 2..{delivery_throughput.MAX_EVENTS}")
    pools = [pool.strip() for pool in args.pools.split(",") if pool.strip()]
    began = time.monotonic()
    report = Report(machine=machine(), options={**vars(args), "out": str(args.out)})
    with tempfile.TemporaryDirectory(prefix="bench-") as scratch:
        log_dir = Path(scratch)
        with running_stack(
            log_dir,
            pool=pools[0] if pools else "prefork",
            api_workers=2 if args.scale_out else 1,
            worker_hosts=2 if args.scale_out else 1,
            workers=False,
        ) as stack:
            try:
                with peak_rss(stack, report.rss_mb):
                    create(stack, report, args)
                    delivery(stack, report, args)
                    stack.worker_options["running_pool"] = stack.worker_options["pool"]
                    preview(stack, report, args)
                    receiver(stack, report, args)
                    for pool in pools:
                        latency(stack, report, args, pool)
            except BaseException:
                for process in (*stack.apis, *stack.workers):
                    sys.stderr.write(process.tail(20) + "\n")
                raise
        # After the stack has stopped: its own databases and Redis, the machine to itself.
        delivery_fast(report, args)
    report.seconds = round(time.monotonic() - began, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(asdict(report), indent=2, default=str) + "\n")
    print()
    print(table(report))
    print(
        f"\n{report.machine['cpus']} cores, {report.machine['cpu']}; {report.seconds} s; {args.out}"
    )


if __name__ == "__main__":
    main()
