"""The real stack a benchmark runs against, started the way an operator starts it.

Fresh migrated PostgreSQL databases for both services, a private Redis (broker and flag
cache), ``uvicorn omni_service.main:app``, ``uvicorn crm_service.main:app`` and a plain
``celery -A crm_service.worker:celery_app worker`` (no ``-Q``), on loopback. One team is
set up as a chatbot's tenant: linked to an Omni organization (real webhook secret and
API token), the parity flag on, one contact. Everything is stopped and dropped on exit.

Every process keeps the settings an operator gets by default, except the log level
(``warning``: one JSON line per request would measure the terminal, not the service;
the bare baselines log nothing either).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from shared_contracts.signatures import generate_secret
from tests.support.databases import POSTGRES_DSN, async_url, create_template, drop_database
from tests.support.processes import (
    RedisServer,
    ServiceProcess,
    service_env,
    start_celery_worker,
    start_uvicorn,
)

ADMIN_KEY = "bench-admin-key-0123456789"
QUIET = ["--log-level", "warning"]


def plain_dsn(database: str) -> str:
    """The libpq DSN of ``database`` (what the bare asyncpg apps take)."""
    return f"{POSTGRES_DSN.rsplit('/', 1)[0]}/{database}"


@dataclass
class Tenant:
    team_id: int
    company_id: str
    crm_token: str
    omni_token: str
    webhook_secret: str
    contact_id: int
    pipeline_id: int
    stage_id: int

    @property
    def crm_auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.crm_token}"}

    @property
    def omni_auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.omni_token}"}


@dataclass
class Stack:
    log_dir: Path
    crm_database: str
    omni_database: str
    redis: RedisServer
    crm_env: dict[str, str]
    omni_env: dict[str, str]
    crm_url: str = ""
    omni_url: str = ""
    apis: list[ServiceProcess] = field(default_factory=list)
    workers: list[ServiceProcess] = field(default_factory=list)
    tenant: Tenant | None = None
    worker_options: dict[str, Any] = field(default_factory=dict)

    def start_workers(self, pool: str | None = None) -> None:
        """``hosts`` plain workers (``celery ... worker``, no ``-Q``) with the pool and
        concurrency the stack was started with (or ``pool``)."""
        pool = pool or self.worker_options["pool"]
        concurrency = self.worker_options["concurrency"]
        for host in range(self.worker_options["hosts"]):
            self.workers.append(
                start_celery_worker(
                    self.crm_env,
                    log_dir=self.log_dir,
                    name=f"worker{host}",
                    pool=pool,
                    concurrency=concurrency,
                )
            )

    def stop_workers(self) -> None:
        while self.workers:
            self.workers.pop().stop()

    def pids(self) -> dict[str, int]:
        """Every process of the stack by name (``bench.run`` finds uvicorn's and a
        worker's pool children from these pids)."""
        return {
            process.name: process.process.pid
            for process in (*self.apis, *self.workers)
            if process.process is not None
        }


def _api(app: str, env: dict[str, str], log_dir: Path, name: str, workers: int) -> Any:
    extra = [*QUIET, "--workers", str(workers)] if workers > 1 else QUIET
    return start_uvicorn(app, env, log_dir=log_dir, name=name, extra_args=extra)


@contextmanager
def running_stack(
    log_dir: Path,
    *,
    pool: str = "prefork",
    concurrency: int | None = None,
    api_workers: int = 1,
    worker_hosts: int = 1,
    workers: bool = True,
) -> Iterator[Stack]:
    """The whole system on fresh databases; ``concurrency`` None is Celery's default (one
    pool process per core). With ``workers`` False no worker runs until
    :meth:`Stack.start_workers` (a throughput phase of the API alone)."""
    with ExitStack() as cleanup:
        crm_database = create_template("crm")
        cleanup.callback(drop_database, crm_database)
        omni_database = create_template("omni")
        cleanup.callback(drop_database, omni_database)
        redis = cleanup.enter_context(RedisServer())
        omni_env = service_env(OMNI_DATABASE_URL=async_url(omni_database), OMNI_ADMIN_KEY=ADMIN_KEY)
        crm_env = service_env(
            CRM_DATABASE_URL=async_url(crm_database),
            CRM_ADMIN_KEY=ADMIN_KEY,
            CELERY_BROKER_URL=redis.url(0),
            REDIS_URL=redis.url(1),
            CRM_PUBLIC_URL="https://crm.bench.test",
        )
        stack = Stack(log_dir, crm_database, omni_database, redis, crm_env, omni_env)
        stack.worker_options = {"pool": pool, "concurrency": concurrency, "hosts": worker_hosts}
        cleanup.callback(stack.stop_workers)
        omni, stack.omni_url = _api("omni_service.main:app", omni_env, log_dir, "omni", api_workers)
        cleanup.callback(omni.stop)
        crm, stack.crm_url = _api("crm_service.main:app", crm_env, log_dir, "crm", api_workers)
        cleanup.callback(crm.stop)
        stack.apis += [crm, omni]
        stack.tenant = set_up_tenant(stack)
        if workers:
            stack.start_workers()
        yield stack


def set_up_tenant(stack: Stack) -> Tenant:
    """An Omni organization and a CRM team linked to it, flag on, with one contact."""
    company = f"bench-{uuid.uuid4().hex[:10]}"
    secret = generate_secret()
    admin = {"X-Admin-Key": ADMIN_KEY}
    with httpx.Client(timeout=30) as http:
        organization = http.post(
            f"{stack.omni_url}/admin/organizations",
            json={"name": "Bench", "company_id": company, "webhook_secret": secret},
            headers=admin,
        )
        organization.raise_for_status()
        omni_token = organization.json()["api_token"]
        team = http.post(
            f"{stack.crm_url}/admin/teams",
            json={"name": company, "external_company_id": company},
            headers=admin,
        )
        team.raise_for_status()
        team_id, crm_token = team.json()["id"], team.json()["access_token"]
        linked = http.put(
            f"{stack.crm_url}/admin/teams/{team_id}/omnichannel",
            json={
                "base_url": stack.omni_url,
                "public_url": stack.omni_url,
                "webhook_secret": secret,
                "api_token": omni_token,
            },
            headers=admin,
        )
        linked.raise_for_status()
        http.put(
            f"{stack.crm_url}/admin/teams/{team_id}/features/bot_ai_creation_parity",
            json={"enabled": True},
            headers=admin,
        ).raise_for_status()
        auth = {"Authorization": f"Bearer {crm_token}"}
        contact = http.post(
            f"{stack.crm_url}/api/v3.1/contacts",
            json={"first_name": "Budi", "phone": "081234567890"},
            headers=auth,
        )
        contact.raise_for_status()
        pipeline = http.get(f"{stack.crm_url}/api/v3.1/pipelines", headers=auth).json()["items"][0]
    return Tenant(
        team_id=team_id,
        company_id=company,
        crm_token=crm_token,
        omni_token=omni_token,
        webhook_secret=secret,
        contact_id=int(contact.json()["id"]),
        pipeline_id=int(pipeline["id"]),
        stage_id=int(pipeline["stages"][0]["id"]),
    )
