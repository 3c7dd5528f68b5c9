"""Omni's hot paths under wrk, each as a ratio to its bare baseline measured in the same
run (``bench/bare_hello_app.py``, ``bench/bare_receiver_app.py``).

    PYTHONPATH=. .venv/bin/python -m bench.omni_wrk --rounds 3
    PYTHONPATH=. .venv/bin/python -m bench.omni_wrk --only preview --no-access-log

Servers run as operators run them: one uvicorn worker each, uvloop/httptools as
installed, the access log on (uvicorn's default) unless ``--no-access-log`` is given, and
then for every server alike. Output goes to log files under ``--log-dir``. Rounds
alternate baseline and Omni so that a neighbour's load on the machine hits both.

Measured: ``crm_preview`` of one room with ``If-None-Match`` (every answer a 304) and
without (200), against ``GET /hello``; ``POST /webhooks/crm`` of distinct signed events
(per room a deal create, two updates and a ticket create; wrk threads take contiguous
slices) against the bare receiver. ``--py-spy DIR`` records a speedscope profile of the
Omni process during each Omni run (it costs CPU: do not compare those numbers).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import asyncpg
import httpx

from bench import wrk
from bench.omni_harness import (
    ADMIN_KEY,
    DEFAULT_DATABASE_URL,
    ROOT,
    Organization,
    _free_port,
    create_organization,
    deal_event,
    migrate,
    signed,
    ticket_event,
)
from shared_contracts.events import DealData, EventType, TicketData


@contextmanager
def server(app: str, env: dict[str, str], log: Path, access_log: bool) -> Iterator[tuple[str, int]]:
    """``uvicorn app`` on a free port; yields (base URL, pid) once ``/healthz`` answers."""
    port = _free_port()
    command = [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port)]
    if not access_log:
        command.append("--no-access-log")
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    with log.open("ab") as out:
        process = subprocess.Popen(command, cwd=ROOT, env=full_env, stdout=out, stderr=out)
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{app} exited during startup; see {log}")
            try:
                if httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{app} did not start in 30 s; see {log}")
            time.sleep(0.1)
        yield base_url, process.pid
    finally:
        process.terminate()
        process.wait(timeout=30)


@contextmanager
def profiled(pid: int, out_dir: Path | None, name: str, seconds: float) -> Iterator[None]:
    if out_dir is None:
        yield
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{name}.speedscope.json"
    spy = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("py-spy")),
            "record",
            "--pid",
            str(pid),
            "-d",
            f"{seconds:g}",
            "--format",
            "speedscope",
            "-o",
            str(target),
            "--nonblocking",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        spy.wait(timeout=seconds + 30)


def receiver_events(
    org: Organization, rooms: int, first_record: int
) -> list[tuple[str, dict[str, str]]]:
    """Per room: deal create, two deal updates, ticket create; signed now."""
    events: list[tuple[str, dict[str, str]]] = []
    for number in range(rooms):
        record = first_record + number
        room_id = f"wrk-{record}"
        sends: list[tuple[EventType, DealData | TicketData]] = [
            (EventType.DEAL_CREATE, deal_event(org, record, room_id, 1)),
            (EventType.DEAL_UPDATE, deal_event(org, record, room_id, 2)),
            (EventType.DEAL_UPDATE, deal_event(org, record, room_id, 3)),
            (EventType.TICKET_CREATE, ticket_event(org, record, room_id, 1)),
        ]
        events.extend(signed(org, event_type, data) for event_type, data in sends)
    return events


async def _setup(
    omni_url: str, database_dsn: str
) -> tuple[Organization, Organization, int, str, str]:
    """The polled org with a room holding a deal and a ticket, and the receivers' orgs."""
    async with httpx.AsyncClient(base_url=omni_url, timeout=30) as client:
        polled = await create_organization(client)
        room_id = f"poll-{uuid.uuid4().hex[:8]}"
        for event_type, data in (
            (EventType.DEAL_CREATE, deal_event(polled, 1, room_id, 1)),
            (EventType.TICKET_CREATE, ticket_event(polled, 2, room_id, 1)),
        ):
            body, headers = signed(polled, event_type, data)
            (await client.post("/webhooks/crm", content=body, headers=headers)).raise_for_status()
        response = await client.get(f"/api/v1/rooms/{room_id}/crm_preview", headers=polled.auth)
        response.raise_for_status()
        etag = response.headers["etag"]
        receiving = await create_organization(client)
        bare = await create_organization(client)
    connection = await asyncpg.connect(database_dsn)
    try:
        bare_id = await connection.fetchval(
            "SELECT id FROM organizations WHERE company_id = $1", bare.company_id
        )
    finally:
        await connection.close()
    return polled, receiving, bare_id, room_id, etag


def _line(label: str, result: wrk.WrkResult, baseline: wrk.WrkResult | None = None) -> str:
    ratio = ""
    if baseline is not None:
        ratio = f"  ratio {result.requests_per_second / baseline.requests_per_second:.3f}"
    return f"{label:<24} {result.summary()}{ratio}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", choices=["preview", "receiver"], default=None)
    parser.add_argument("--no-access-log", dest="access_log", action="store_false")
    parser.add_argument("--events-per-run", type=int, default=40000)
    parser.add_argument("--log-dir", type=Path, default=Path(tempfile.gettempdir()) / "omni_wrk")
    parser.add_argument("--py-spy", type=Path, default=None, help="speedscope profiles here")
    args = parser.parse_args()

    dsn = args.database_url.replace("postgresql+asyncpg://", "postgresql://")
    migrate(args.database_url)
    args.log_dir.mkdir(parents=True, exist_ok=True)
    common = {
        "threads": args.threads,
        "connections": args.connections,
        "duration_seconds": args.duration,
    }
    print(
        f"access log {'on' if args.access_log else 'off'} for every server; logs in {args.log_dir}"
    )
    with ExitStack() as stack:
        omni_env = {"OMNI_DATABASE_URL": args.database_url, "OMNI_ADMIN_KEY": ADMIN_KEY}
        omni_url, omni_pid = stack.enter_context(
            server("omni_service.main:app", omni_env, args.log_dir / "omni.log", args.access_log)
        )
        polled, receiving, bare_id, room_id, etag = asyncio.run(_setup(omni_url, dsn))
        hello_url, _ = stack.enter_context(
            server("bench.bare_hello_app:app", {}, args.log_dir / "hello.log", args.access_log)
        )
        bare_env = {
            "BENCH_DATABASE_DSN": dsn,
            "BENCH_WEBHOOK_SECRET": receiving.secret,
            "BENCH_ORGANIZATION_ID": str(bare_id),
        }
        bare_url, _ = stack.enter_context(
            server(
                "bench.bare_receiver_app:app",
                bare_env,
                args.log_dir / "bare_receiver.log",
                args.access_log,
            )
        )
        probe = httpx.get(
            f"{omni_url}/api/v1/rooms/{room_id}/crm_preview",
            headers={**polled.auth, "If-None-Match": etag},
        )
        assert probe.status_code == 304, probe.status_code
        next_record = 1_000_000
        rooms = args.events_per_run // 4
        for round_number in range(1, args.rounds + 1):
            print(f"-- round {round_number}")
            if args.only in (None, "preview"):
                hello = wrk.run(f"{hello_url}/hello", **common)
                print(_line("bare GET /hello", hello))
                with profiled(omni_pid, args.py_spy, f"preview304-{round_number}", args.duration):
                    hit = wrk.preview_poll(omni_url, room_id, polled.token, etag=etag, **common)
                print(_line("crm_preview 304", hit, hello))
                with profiled(omni_pid, args.py_spy, f"preview200-{round_number}", args.duration):
                    full = wrk.preview_poll(omni_url, room_id, polled.token, **common)
                print(_line("crm_preview 200", full, hello))
            if args.only in (None, "receiver"):
                with tempfile.TemporaryDirectory() as scratch:
                    bare_file = Path(scratch) / "bare.events"
                    # The bare app verifies with the receiving org's secret, on its own rows.
                    wrk.write_events(bare_file, receiver_events(receiving, rooms, next_record))
                    next_record += rooms
                    bare = wrk.receiver(bare_url, bare_file, **common)
                    print(_line("bare POST /webhooks/crm", bare) + f"  {bare.extra}")
                    omni_file = Path(scratch) / "omni.events"
                    wrk.write_events(omni_file, receiver_events(receiving, rooms, next_record))
                    next_record += rooms
                    with profiled(omni_pid, args.py_spy, f"receiver-{round_number}", args.duration):
                        real = wrk.receiver(omni_url, omni_file, **common)
                    print(_line("omni POST /webhooks/crm", real, bare) + f"  {real.extra}")


if __name__ == "__main__":
    main()
