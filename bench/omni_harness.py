"""What both Omni benchmarks need: a migrated database, a real uvicorn process on
loopback, an organization, and signed events as the CRM sends them."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
from alembic import command
from alembic.config import Config

from shared_contracts.creators import CreatorFlag
from shared_contracts.events import DealData, EventType, NamedRef, TicketData, build_envelope
from shared_contracts.signatures import generate_secret, sign_headers

ROOT = Path(__file__).resolve().parents[1]
ADMIN_KEY = "bench-admin-key"
DEFAULT_DATABASE_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/omni_bench"


def migrate(database_url: str) -> None:
    config = Config(str(ROOT / "alembic.ini"), ini_section="omni")
    config.set_main_option("sqlalchemy.url", database_url)
    config.attributes["configure_logger"] = False
    command.upgrade(config, "head")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def omni_server(database_url: str, workers: int) -> Iterator[str]:
    """Run ``omni_service.main:app`` under uvicorn; yield its base URL."""
    port = _free_port()
    env = {**os.environ, "OMNI_DATABASE_URL": database_url, "OMNI_ADMIN_KEY": ADMIN_KEY}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "omni_service.main:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(base_url, process)
        yield base_url
    finally:
        process.terminate()
        process.wait(timeout=30)


def _wait_ready(base_url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("uvicorn exited during startup")
        try:
            if httpx.get(f"{base_url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError("uvicorn did not become ready in 30 s")


@dataclass(frozen=True)
class Organization:
    company_id: str
    token: str
    secret: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


async def create_organization(client: httpx.AsyncClient) -> Organization:
    company_id = f"bench-{uuid.uuid4().hex[:12]}"
    secret = generate_secret()
    response = await client.post(
        "/admin/organizations",
        json={"name": "Bench", "company_id": company_id, "webhook_secret": secret},
        headers={"X-Admin-Key": ADMIN_KEY},
    )
    response.raise_for_status()
    return Organization(company_id, response.json()["api_token"], secret)


T0 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)


def deal_event(org: Organization, record_id: int, room_id: str, version: int) -> DealData:
    return DealData(
        id=record_id,
        slug=f"deal-{record_id}",
        company_id=org.company_id,
        channel_integration_room_id=room_id,
        name=f"Deal {record_id} v{version}",
        stage=NamedRef(id=1, name="New"),
        pipeline=NamedRef(id=1, name="Sales"),
        size=Decimal("1200.00"),
        status="open",
        creator_flag=CreatorFlag.BOT,
        creator_name="Bot",
        external_url=f"https://crm.example.test/deals/{record_id}",
        created_at=T0 + timedelta(seconds=record_id),
        updated_at=T0 + timedelta(seconds=record_id, milliseconds=version),
        version=version,
    )


def ticket_event(org: Organization, record_id: int, room_id: str, version: int) -> TicketData:
    return TicketData(
        id=record_id,
        unique_ticket_id=f"TCK-{record_id:06d}",
        company_id=org.company_id,
        channel_integration_room_id=room_id,
        name=f"Ticket {record_id} v{version}",
        description="Cannot log in",
        status="open",
        priority="high",
        creator_flag=CreatorFlag.AGENTIC_AI,
        creator_name="AI",
        external_url=f"https://crm.example.test/tickets/{record_id}",
        created_at=T0 + timedelta(seconds=record_id),
        updated_at=T0 + timedelta(seconds=record_id, milliseconds=version),
        version=version,
    )


def signed(
    org: Organization, event_type: EventType, data: DealData | TicketData
) -> tuple[str, dict[str, str]]:
    """Body and headers of one send; signed now, so send within the five-minute window."""
    body = build_envelope(event_type, data)
    headers = sign_headers(f"msg_{uuid.uuid4().hex}", body, [org.secret])
    return body, {**headers, "content-type": "application/json"}
