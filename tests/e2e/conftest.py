"""End-to-end fixtures: the CRM as real processes (uvicorn API, Celery worker, beat)
on a fresh PostgreSQL database and a private Redis, talking to a loopback receiver.

- :func:`crm_env` — the environment of a CRM process (short retry schedule, sweep and
  timeout by default, so a test sees retries in tenths of a second).
- :func:`run_crm` — start the API and (optionally) a worker and a beat, each exactly as
  DESIGN.md §8 names it (``celery -A crm_service.worker:celery_app worker`` with no
  ``-Q``; ``... beat`` a process of its own, as compose runs it), yield a
  :class:`CrmStack`, stop them afterwards.
- :data:`POOLS` / :func:`worker_pool` — the pools an operator may choose (prefork,
  threads with concurrency 8, solo); tests that take ``worker_pool`` run under each.
  Several tests can share one stack (module scope) as long as each makes its own team
  (:meth:`CrmStack.create_team`) with its own receiver endpoint.
- :class:`CrmStack` — a synchronous admin/API client with the steps every scenario
  needs: team + link + flag, create / update / delete records, the delivery log.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared_contracts.signatures import generate_secret
from tests.support.databases import database_from
from tests.support.processes import (
    LoopbackReceiver,
    RedisServer,
    ServiceProcess,
    service_env,
    start_celery_beat,
    start_celery_worker,
    start_uvicorn,
    wait_until,
)

ADMIN_KEY = "e2e-admin-key"
PUBLIC_URL = "https://crm.e2e.test"


@dataclass(frozen=True)
class Pool:
    """A worker pool and its concurrency, as an operator passes them (``--pool``,
    ``--concurrency``)."""

    name: str
    concurrency: int

    @property
    def options(self) -> dict[str, Any]:
        return {"pool": self.name, "concurrency": self.concurrency}


POOLS = (Pool("prefork", 2), Pool("threads", 8), Pool("solo", 1))
# Fast enough that retries and sweeps happen within a test, slow enough to observe them.
E2E_SETTINGS: dict[str, object] = {
    "CRM_WEBHOOK_RETRY_SCHEDULE": "0.2,0.2,0.5",
    "CRM_OUTBOX_SWEEP_SECONDS": "0.5",
    "CRM_WEBHOOK_TIMEOUT_SECONDS": "1",
}


def crm_env(
    database_url: str, broker_url: str, redis_url: str | None, **overrides: object
) -> dict[str, str]:
    """Environment of a CRM API or worker process; ``overrides`` are env names."""
    values: dict[str, object] = {
        "CRM_DATABASE_URL": database_url,
        "CELERY_BROKER_URL": broker_url,
        "REDIS_URL": redis_url,
        "CRM_ADMIN_KEY": ADMIN_KEY,
        "CRM_PUBLIC_URL": PUBLIC_URL,
        **E2E_SETTINGS,
    }
    values.update(overrides)
    return service_env(**values)


@dataclass
class Team:
    id: int
    external_company_id: str
    access_token: str
    webhook_secret: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


class CrmStack:
    def __init__(
        self,
        *,
        api: ServiceProcess,
        api_url: str,
        env: dict[str, str],
        log_dir: Path,
        worker: ServiceProcess | None = None,
        beat: ServiceProcess | None = None,
        worker_options: dict[str, Any] | None = None,
    ) -> None:
        """``env`` and ``worker_options`` are what :meth:`start_worker` starts workers
        with (unless it is told otherwise)."""
        self.api = api
        self.api_url = api_url
        self.env = env
        self.log_dir = log_dir
        self.worker = worker
        self.beat = beat
        self.worker_options = dict(worker_options or {})
        self.extra: list[ServiceProcess] = []
        self.http = httpx.Client(base_url=api_url, timeout=30)

    # -- processes ---------------------------------------------------------------

    def start_worker(self, **options: Any) -> ServiceProcess:
        """Another worker (the first one is replaced as :attr:`worker`; it keeps running
        until :meth:`close` if it was not stopped)."""
        if self.worker is not None:
            self.extra.append(self.worker)
        self.worker = start_celery_worker(
            self.env, log_dir=self.log_dir, **{**self.worker_options, **options}
        )
        return self.worker

    def start_beat(self) -> ServiceProcess:
        if self.beat is None or not self.beat.running:
            self.beat = start_celery_beat(self.env, log_dir=self.log_dir)
        return self.beat

    def logs(self) -> str:
        """Tails of the process logs, for failure messages."""
        parts = [self.api.tail()]
        for process in (*self.extra, self.worker, self.beat):
            if process is not None:
                parts.append(process.tail())
        return "\n".join(parts)

    def close(self) -> None:
        self.http.close()
        for process in (self.beat, *self.extra, self.worker, self.api):
            if process is not None:
                process.stop()

    # -- admin -------------------------------------------------------------------

    def admin(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.request(method, path, headers={"X-Admin-Key": ADMIN_KEY}, **kwargs)

    def create_team(self, base_url: str | None, *, parity: bool = True) -> Team:
        """A team of its own, linked to ``base_url`` (if given), flag on (if ``parity``)."""
        company = f"company-{uuid.uuid4().hex[:12]}"
        created = self.admin(
            "POST", "/admin/teams", json={"name": company, "external_company_id": company}
        )
        assert created.status_code == 201, created.text
        body = created.json()
        team = Team(body["id"], company, body["access_token"], generate_secret())
        if base_url is not None:
            self.link(team, base_url)
        if parity:
            flag = self.admin(
                "PUT",
                f"/admin/teams/{team.id}/features/bot_ai_creation_parity",
                json={"enabled": True},
            )
            assert flag.status_code == 200, flag.text
        return team

    def link(self, team: Team, base_url: str, webhook_secret: str | None = None) -> None:
        if webhook_secret is not None:
            team.webhook_secret = webhook_secret
        linked = self.admin(
            "PUT",
            f"/admin/teams/{team.id}/omnichannel",
            json={
                "base_url": base_url,
                "public_url": base_url,
                "webhook_secret": team.webhook_secret,
                "api_token": "omni-token",
            },
        )
        assert linked.status_code == 200, linked.text

    def deliveries(self, team: Team, **params: Any) -> list[dict[str, Any]]:
        listed = self.admin("GET", "/admin/deliveries", params={"team_id": team.id, **params})
        assert listed.status_code == 200, listed.text
        items: list[dict[str, Any]] = listed.json()["items"]
        return items

    def wait_for_deliveries(
        self, team: Team, condition: Any, *, timeout: float, **params: Any
    ) -> list[dict[str, Any]]:
        """Poll the delivery log of ``team`` until ``condition(items)`` holds."""
        return wait_until(
            lambda: (items := self.deliveries(team, **params)) and condition(items) and items,
            timeout=timeout,
            message=lambda: f"deliveries: {self.deliveries(team, **params)}\n{self.logs()}",
        )

    # -- records -----------------------------------------------------------------

    def create(self, team: Team, kind: str, **fields: Any) -> dict[str, Any]:
        """POST a bot deal or ticket in a room of its own unless ``fields`` say otherwise."""
        body = {
            "name": f"{kind} {uuid.uuid4().hex[:6]}",
            "channel_integration_room_id": f"room-{uuid.uuid4().hex[:10]}",
            "creator_flag": "bot",
            **fields,
        }
        created = self.http.post(f"/api/v3.1/{kind}", json=body, headers=team.auth)
        assert created.status_code == 201, created.text
        record: dict[str, Any] = created.json()
        return record

    def update(self, team: Team, kind: str, record_id: int, **fields: Any) -> dict[str, Any]:
        updated = self.http.patch(f"/api/v3.1/{kind}/{record_id}", json=fields, headers=team.auth)
        assert updated.status_code == 200, updated.text
        record: dict[str, Any] = updated.json()
        return record

    def delete(self, team: Team, kind: str, record_id: int) -> None:
        deleted = self.http.delete(f"/api/v3.1/{kind}/{record_id}", headers=team.auth)
        assert deleted.status_code == 204, deleted.text


@contextmanager
def run_crm(
    env: dict[str, str],
    log_dir: Path,
    *,
    worker: bool = True,
    beat: bool | None = None,
    worker_env: dict[str, str] | None = None,
    **worker_options: Any,
) -> Iterator[CrmStack]:
    """The API and, if ``worker``, a worker and a beat (``beat`` defaults to ``worker``),
    started side by side. The worker and beat run with ``worker_env`` if given (e.g.
    worker-only metrics settings), else ``env``; ``worker_options`` (pool, concurrency,
    name) go to :func:`start_celery_worker` and stay the stack's default for later
    :meth:`CrmStack.start_worker` calls."""
    worker_env = worker_env or env
    beat = worker if beat is None else beat
    with ThreadPoolExecutor(max_workers=3) as pool:
        starts = {
            "api": pool.submit(start_uvicorn, "crm_service.main:app", env, log_dir=log_dir),
            "worker": pool.submit(
                start_celery_worker, worker_env, log_dir=log_dir, **worker_options
            )
            if worker
            else None,
            "beat": pool.submit(start_celery_beat, worker_env, log_dir=log_dir) if beat else None,
        }
    failures = [f.exception() for f in starts.values() if f is not None and f.exception()]
    if failures:
        for role, started in starts.items():
            if started is not None and started.exception() is None:
                process = started.result()[0] if role == "api" else started.result()
                process.stop()
        raise failures[0]  # type: ignore[misc]
    api, api_url = starts["api"].result()  # type: ignore[union-attr]
    stack = CrmStack(
        api=api,
        api_url=api_url,
        env=worker_env,
        log_dir=log_dir,
        worker=starts["worker"].result() if starts["worker"] is not None else None,
        beat=starts["beat"].result() if starts["beat"] is not None else None,
        worker_options=worker_options,
    )
    try:
        yield stack
    finally:
        stack.close()


@pytest.fixture(params=POOLS, ids=lambda pool: pool.name)
def worker_pool(request: pytest.FixtureRequest) -> Pool:
    """Each pool an operator may run the worker under."""
    pool: Pool = request.param
    return pool


@pytest.fixture(scope="module", params=POOLS, ids=lambda pool: pool.name)
def module_worker_pool(request: pytest.FixtureRequest) -> Pool:
    """:func:`worker_pool` for module-scoped stacks."""
    pool: Pool = request.param
    return pool


@pytest.fixture(scope="session")
def receiver() -> Iterator[LoopbackReceiver]:
    with LoopbackReceiver() as running:
        yield running


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A private Redis for this test alone (broker and flag cache)."""
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="module")
def module_redis() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="module")
def module_database_url(crm_template: str) -> Iterator[str]:
    """A fresh CRM database shared by one module's tests (each makes its own team)."""
    with database_from(crm_template) as url:
        yield url
