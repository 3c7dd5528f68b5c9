"""The system behind the pages, as real processes, for the browser tests and
``bench/inbox_card_latency.py``: a CRM API (its ``CRM_PUBLIC_URL`` is its own loopback
address, so ``external_url`` opens the real record page), a CRM Celery worker, and one or
more Omni APIs on one PostgreSQL database (so a change received by one is streamed by
another). Ports are fixed per process so that a stopped Omni can be restarted where the
open page expects it. Also: a headless Chromium as the README and the brief prescribe.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from shared_contracts.signatures import generate_secret
from tests.e2e.conftest import ADMIN_KEY, crm_env
from tests.support.processes import (
    ServiceProcess,
    free_port,
    service_env,
    start_celery_worker,
    start_uvicorn,
)

OMNI_ADMIN_KEY = "pages-omni-admin-key"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def launch_chromium(playwright: Any) -> Any:
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def uvicorn_on(
    app: str, env: dict[str, str], port: int, *, log_dir: Path, name: str
) -> ServiceProcess:
    # Open event streams must not hold a stop for ever: the flag compose's omni-api runs.
    process, _url = start_uvicorn(
        app,
        env,
        log_dir=log_dir,
        name=name,
        port=port,
        extra_args=("--timeout-graceful-shutdown", "5"),
    )
    return process


@dataclass
class OmniProcess:
    env: dict[str, str]
    port: int
    log_dir: Path
    name: str
    process: ServiceProcess | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> OmniProcess:
        self.process = uvicorn_on(
            "omni_service.main:app", self.env, self.port, log_dir=self.log_dir, name=self.name
        )
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(grace=3)
            self.process = None


@dataclass
class Tenant:
    """A CRM team and the Omni organization of the same company, linked."""

    company_id: str
    team_id: int
    crm_token: str
    omni_token: str

    @property
    def crm_auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.crm_token}"}

    @property
    def omni_auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.omni_token}"}


@dataclass
class PagesStack:
    crm_url: str
    omnis: list[OmniProcess]
    crm_api: ServiceProcess
    worker: ServiceProcess
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=30))

    @property
    def omni(self) -> OmniProcess:
        return self.omnis[0]

    def close(self) -> None:
        self.http.close()
        self.worker.stop()
        self.crm_api.stop()
        for omni in self.omnis:
            omni.stop()

    def logs(self) -> str:
        parts = [self.crm_api.tail(), self.worker.tail()]
        parts += [o.process.tail() for o in self.omnis if o.process is not None]
        return "\n".join(parts)

    def tenant(self, omni: OmniProcess | None = None) -> Tenant:
        """A team (parity on) linked to an organization; events go to ``omni``."""
        omni = omni or self.omni
        company = f"company-{uuid.uuid4().hex[:12]}"
        secret = generate_secret()
        admin = {"X-Admin-Key": ADMIN_KEY}
        team = self.http.post(
            f"{self.crm_url}/admin/teams",
            json={"name": company, "external_company_id": company},
            headers=admin,
        )
        assert team.status_code == 201, team.text
        organization = self.http.post(
            f"{omni.url}/admin/organizations",
            json={"name": company, "company_id": company, "webhook_secret": secret},
            headers={"X-Admin-Key": OMNI_ADMIN_KEY},
        )
        assert organization.status_code == 201, organization.text
        tenant = Tenant(
            company,
            team.json()["id"],
            team.json()["access_token"],
            organization.json()["api_token"],
        )
        linked = self.http.put(
            f"{self.crm_url}/admin/teams/{tenant.team_id}/omnichannel",
            json={
                "base_url": omni.url,
                "public_url": omni.url,
                "webhook_secret": secret,
                "api_token": tenant.omni_token,
            },
            headers=admin,
        )
        assert linked.status_code == 200, linked.text
        flag = self.http.put(
            f"{self.crm_url}/admin/teams/{tenant.team_id}/features/bot_ai_creation_parity",
            json={"enabled": True},
            headers=admin,
        )
        assert flag.status_code == 200, flag.text
        return tenant

    def chat(self, tenant: Tenant, room: str, *lines: tuple[str, str, str]) -> None:
        for sender, sender_type, text in lines:
            posted = self.http.post(
                f"{self.omni.url}/api/v1/rooms/{room}/messages",
                json={"sender": sender, "sender_type": sender_type, "text": text},
                headers=tenant.omni_auth,
            )
            assert posted.status_code == 201, posted.text

    def crm(self, method: str, path: str, tenant: Tenant, **kwargs: Any) -> dict[str, Any]:
        response = self.http.request(
            method, f"{self.crm_url}{path}", headers=tenant.crm_auth, **kwargs
        )
        assert response.status_code in (200, 201, 204), response.text
        return response.json() if response.status_code != 204 else {}

    def stage_id(self, tenant: Tenant, name: str) -> int:
        pipelines = self.crm("GET", "/api/v3.1/pipelines", tenant)["items"]
        for stage in pipelines[0]["stages"]:
            if stage["name"] == name:
                return int(stage["id"])
        raise AssertionError(f"no stage {name!r} in {pipelines}")


def start_pages_stack(
    *,
    crm_database_url: str,
    omni_database_url: str,
    broker_url: str,
    redis_url: str,
    log_dir: Path,
    omni_count: int = 1,
    omni_settings: dict[str, object] | None = None,
) -> PagesStack:
    crm_port = free_port()
    crm_url = f"http://127.0.0.1:{crm_port}"
    env = crm_env(crm_database_url, broker_url, redis_url, CRM_PUBLIC_URL=crm_url)
    omni_env = service_env(
        OMNI_DATABASE_URL=omni_database_url,
        OMNI_ADMIN_KEY=OMNI_ADMIN_KEY,
        **(omni_settings or {}),
    )
    omnis = [
        OmniProcess(omni_env, free_port(), log_dir, f"omni-{index}").start()
        for index in range(omni_count)
    ]
    crm_api = uvicorn_on("crm_service.main:app", env, crm_port, log_dir=log_dir, name="crm-api")
    worker = start_celery_worker(env, log_dir=log_dir, pool="threads", concurrency=4)
    return PagesStack(crm_url, omnis, crm_api, worker)
