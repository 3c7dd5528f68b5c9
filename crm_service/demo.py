"""``crm-parity demo``: the whole system on one machine, nothing to install.

Starts the Omni API, the CRM API and a CRM Celery worker (with beat) as real processes
on SQLite files and a SQLite-backed broker, then walks through what a chatbot and an AI
agent do — and what the chat inbox and the CRM show for it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import httpx
from rich.console import Console

from service_kit.migrate import upgrade
from shared_contracts.signatures import generate_secret

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent
ROOM = "room-42"
CRM_ADMIN_KEY = os.environ.get("CRM_ADMIN_KEY", "dev-crm-admin-key")
OMNI_ADMIN_KEY = os.environ.get("OMNI_ADMIN_KEY", "dev-omni-admin-key")
console = Console(highlight=False, soft_wrap=True)


class DemoError(Exception):
    """Why the demo cannot run (a busy port, a child that died); one line for the operator."""


class _Stop(BaseException):
    """Raised by the SIGTERM / SIGHUP handler, so the children are stopped on the way out."""


def say(step: str, detail: str = "") -> None:
    console.print(f"\n[bold cyan]==>[/] [bold]{step}[/]", markup=True)
    if detail:
        console.print(f"    {detail}", markup=False)


def check_ports_free(ports: dict[str, int]) -> None:
    """Fail at once, in one line, when a port is taken (instead of a long wait on /readyz
    that the other process answers, or not)."""
    for name, port in ports.items():
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                raise DemoError(
                    f"port {port} ({name}) is already in use; stop what holds it or pass "
                    f"--{name.split()[0]}-port"
                ) from None


def wait_for(
    probe: Callable[[], T | None], what: str, timeout: float = 60.0, interval: float = 0.2
) -> T:
    deadline = time.monotonic() + timeout
    with console.status(f"waiting for {what}…"):
        while time.monotonic() < deadline:
            _check_children()
            try:
                value = probe()
            except httpx.HTTPError:
                value = None
            if value is not None:
                return value
            time.sleep(interval)
    raise DemoError(f"gave up waiting for {what} after {timeout:.0f}s")


_children: dict[str, subprocess.Popen[bytes]] = {}


def _check_children() -> None:
    for name, process in _children.items():
        if process.poll() is not None:
            raise DemoError(
                f"{name} exited with code {process.returncode}; see its log in the data dir"
            )


def demo_environment(data_dir: Path, crm_port: int, omni_port: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        CRM_DATABASE_URL=f"sqlite+aiosqlite:///{data_dir}/crm.db",
        OMNI_DATABASE_URL=f"sqlite+aiosqlite:///{data_dir}/omni.db",
        CELERY_BROKER_URL=f"sqla+sqlite:///{data_dir}/celery-broker.db",
        CRM_PUBLIC_URL=f"http://127.0.0.1:{crm_port}",
        CRM_OUTBOX_SWEEP_SECONDS="5",
        CRM_ADMIN_KEY=CRM_ADMIN_KEY,
        OMNI_ADMIN_KEY=OMNI_ADMIN_KEY,
        REDIS_URL="",
        PYTHONUNBUFFERED="1",
    )
    return env


@contextmanager
def services(data_dir: Path, env: dict[str, str], crm_port: int, omni_port: int) -> Iterator[None]:
    logs = data_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    commands = {
        "omni-api": [sys.executable, "-m", "uvicorn", "omni_service.main:app",
                     "--host", "127.0.0.1", "--port", str(omni_port)],
        "crm-api": [sys.executable, "-m", "uvicorn", "crm_service.main:app",
                    "--host", "127.0.0.1", "--port", str(crm_port)],
        "crm-worker": [sys.executable, "-m", "celery", "-A", "crm_service.worker:celery_app",
                       "worker", "--beat", "--schedule", str(data_dir / "beat-schedule"),
                       "--concurrency", "2",
                       "--loglevel", "INFO"],
    }  # fmt: skip
    processes = _children
    processes.clear()
    try:
        for name, command in commands.items():
            log = (logs / f"{name}.log").open("wb")
            # Each child leads its own process group, so stopping it reaches its own
            # children too (the worker's pool processes).
            processes[name] = subprocess.Popen(  # noqa: S603 - our own interpreter and modules
                command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        say("Started", ", ".join(f"{name} (pid {p.pid})" for name, p in processes.items()))
        console.print(f"    logs in {logs}", markup=False)
        yield
    finally:
        _stop_children(processes)


def _signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signum)


def _stop_children(processes: dict[str, subprocess.Popen[bytes]]) -> None:
    for process in processes.values():
        _signal_group(process, signal.SIGTERM)
    deadline = time.monotonic() + 10
    for process in processes.values():
        with suppress(subprocess.TimeoutExpired):
            process.wait(timeout=max(deadline - time.monotonic(), 0.1))
        _signal_group(process, signal.SIGKILL)
        process.wait()


def run_demo(*, crm_port: int, omni_port: int, exit_after: bool, data_dir: Path) -> int:
    """The demo; SIGTERM, SIGHUP and Ctrl-C stop every child before it returns."""

    def stop(signum: int, _frame: object) -> None:
        raise _Stop(signum)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        return _run_demo(
            crm_port=crm_port, omni_port=omni_port, exit_after=exit_after, data_dir=data_dir
        )
    except (_Stop, KeyboardInterrupt):
        say("Stopped", "every child process is gone")
        return 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _run_demo(*, crm_port: int, omni_port: int, exit_after: bool, data_dir: Path) -> int:
    if crm_port == omni_port:
        raise DemoError(f"--crm-port and --omni-port are both {crm_port}")
    check_ports_free({"crm API": crm_port, "omni API": omni_port})
    data_dir = data_dir.resolve()
    if data_dir.exists():
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True)
    env = demo_environment(data_dir, crm_port, omni_port)

    say("Migrating", f"SQLite databases in {data_dir}")
    with console.status("running the migrations…"):
        for section in ("crm", "omni"):
            upgrade(section, env[f"{section.upper()}_DATABASE_URL"])

    crm_url = f"http://127.0.0.1:{crm_port}"
    omni_url = f"http://127.0.0.1:{omni_port}"
    with services(data_dir, env, crm_port, omni_port):
        with httpx.Client(timeout=10) as http:
            for url in (crm_url, omni_url):
                wait_for(partial(_is_ready, http, url), f"{url}/readyz", timeout=60)
            # The worker creates the broker's tables when it starts; waiting for it keeps
            # the API's first publish from racing that (and the walkthrough from waiting on
            # the outbox sweep instead).
            worker_log = data_dir / "logs" / "crm-worker.log"
            wait_for(lambda: " ready." in worker_log.read_text(errors="replace") or None,
                     "the CRM worker", timeout=90)  # fmt: skip
            try:
                walkthrough(http, crm_url, omni_url)
            except Exception:
                _print_log_tails(data_dir / "logs")
                raise
        if exit_after:
            say("Done", "walkthrough complete; stopping the services")
            return 0
        say(
            "The system is running",
            f"CRM API {crm_url}/docs · Omni API {omni_url}/docs — Ctrl-C to stop",
        )
        while True:
            time.sleep(1)
            _check_children()


def _is_ready(http: httpx.Client, url: str) -> bool | None:
    return http.get(f"{url}/readyz").status_code == 200 or None


def _print_log_tails(logs: Path, lines: int = 40) -> None:
    for log in sorted(logs.glob("*.log")):
        tail = log.read_text(errors="replace").splitlines()[-lines:]
        print(f"\n--- last {len(tail)} lines of {log} ---", file=sys.stderr)
        print("\n".join(tail), file=sys.stderr)


def walkthrough(http: httpx.Client, crm: str, omni: str) -> None:
    crm_admin = {"X-Admin-Key": CRM_ADMIN_KEY}
    omni_admin = {"X-Admin-Key": OMNI_ADMIN_KEY}
    secret = generate_secret()

    organization = _ok(
        http.post(
            f"{omni}/admin/organizations",
            json={"name": "Acme Inbox", "company_id": "acme", "webhook_secret": secret},
            headers=omni_admin,
        )
    )
    inbox = {"Authorization": f"Bearer {organization['api_token']}"}
    team = _ok(
        http.post(
            f"{crm}/admin/teams",
            json={"name": "Acme", "external_company_id": "acme"},
            headers=crm_admin,
        )
    )
    _ok(
        http.put(
            f"{crm}/admin/teams/{team['id']}/omnichannel",
            json={
                "base_url": omni,
                "public_url": omni,
                "webhook_secret": secret,
                "api_token": organization["api_token"],
            },
            headers=crm_admin,
        )
    )
    _ok(
        http.put(
            f"{crm}/admin/teams/{team['id']}/features/bot_ai_creation_parity",
            json={"enabled": True},
            headers=crm_admin,
        )
    )
    say(
        "Set up",
        f"Omni organization {organization['id']} and CRM team {team['id']} share company "
        "'acme'; events are signed with one whsec_ secret; bot_ai_creation_parity is on",
    )

    for sender, sender_type, text in (
        ("Budi", "customer", "Halo, saya mau tanya paket internet kantor 100 Mbps 🙂"),
        ("Qontak Bot", "bot", "Baik Kak Budi! Untuk berapa karyawan?"),
        ("Budi", "customer", "Sekitar 40 orang, bisa kirim penawaran?"),
    ):
        _ok(
            http.post(
                f"{omni}/api/v1/rooms/{ROOM}/messages",
                json={"sender": sender, "sender_type": sender_type, "text": text},
                headers=inbox,
            )
        )
    say("Chat", f"3 messages in room {ROOM}")

    bot = _ChatbotClient(http, crm, team["api_key"], "expired-or-wrong-token")
    contact = bot.call(
        "POST", "/api/v3.1/contacts", json={"first_name": "Budi", "phone": "+62 812-3456-7890"}
    )
    leads = bot.call("GET", "/api/v3.1/contacts", params={"phone": "0812 3456 7890"})["items"]
    say(
        "Chatbot looked up the customer",
        f"token refreshed after a 401; contact {contact['id']} found by phone as "
        f"{[lead['id'] for lead in leads]}",
    )

    deal = bot.call(
        "POST",
        "/api/v3.1/deals",
        json={
            "name": "Internet kantor 100 Mbps — Budi",
            "channel_integration_room_id": ROOM,
            "crm_lead_ids": [lead["id"] for lead in leads],
            "creator_flag": "bot",
            "size": 12500000,
        },
        headers={"Idempotency-Key": "demo-deal-1"},
    )
    say(
        "Chatbot created a deal",
        f"#{deal['id']} '{deal['name']}', creator '{deal['creator_name']}', "
        f"stage {deal['stage']['name']}, contacts {deal['crm_lead_ids']}",
    )

    preview = _wait_preview(
        http, omni, inbox, lambda p: p["deal"] and p["deal"]["id"] == deal["id"]
    )
    say(
        "The inbox shows the deal in the room (no 'Create Deal' button)",
        f"{preview['deal']['name']} · {preview['deal']['stage']['name']} · "
        f"by {preview['deal']['creator_name']} · cta={preview['cta']}",
    )

    note = wait_for(
        lambda: bot.call("GET", f"/api/mobile/v2.8/deals/{deal['id']}/timeline")["items"] or None,
        "the timeline note",
    )[0]
    say(
        "The CRM timeline has the chat note",
        f"by {note['creator_name']}, link {note['room_deeplink']}",
    )
    for line in (note["excerpt"] or "(chat history unavailable)").splitlines():
        print(f"      {line}")

    ticket = bot.call(
        "POST",
        "/api/v3.1/tickets",
        json={
            "name": "Survey lokasi kantor Budi",
            "channel_integration_room_id": ROOM,
            "crm_lead_ids": [contact["id"]],
            "creator_flag": "agentic_ai",
            "priority": "high",
        },
    )
    preview = _wait_preview(
        http, omni, inbox, lambda p: p["ticket"] and p["ticket"]["id"] == ticket["id"]
    )
    say(
        "An AI agent created a ticket; the inbox shows it too",
        f"{ticket['unique_ticket_id']} '{ticket['name']}' by {preview['ticket']['creator_name']}",
    )

    qualified = next(
        stage["id"]
        for pipeline in bot.call("GET", "/api/v3.1/pipelines")["items"]
        for stage in pipeline["stages"]
        if stage["name"] == "Qualified"
    )
    updated = bot.call("PATCH", f"/api/v3.1/deals/{deal['id']}", json={"crm_stage_id": qualified})
    preview = _wait_preview(
        http, omni, inbox, lambda p: p["deal"] and p["deal"]["version"] == updated["version"]
    )
    say(
        "A salesperson moved the deal; the preview follows",
        f"stage {preview['deal']['stage']['name']}, version {preview['deal']['version']}",
    )

    bot.call("DELETE", f"/api/v3.1/deals/{deal['id']}")
    preview = _wait_preview(http, omni, inbox, lambda p: p["deal"] is None)
    say("The deal was deleted; the room offers 'Create Deal' again", f"cta={preview['cta']}")

    deliveries = _ok(http.get(f"{crm}/admin/deliveries", headers=crm_admin))["items"]
    say(
        "Delivery log",
        "; ".join(
            f"{d['event_type']} {d['status']} ({len(d['attempts'])} attempt)" for d in deliveries
        ),
    )


class _ChatbotClient:
    """What the chatbot's CRM client does: company token, one refresh on 401."""

    def __init__(self, http: httpx.Client, base: str, api_key: str, token: str) -> None:
        self.http, self.base, self.api_key, self.token = http, base, api_key, token

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        headers = kwargs.pop("headers", {})
        for attempt in range(2):
            response = self.http.request(
                method,
                self.base + path,
                headers={**headers, "Authorization": f"Bearer {self.token}"},
                **kwargs,
            )
            if response.status_code != 401 or attempt:
                return _ok(response) if response.status_code != 204 else None
            refreshed = _ok(
                self.http.post(
                    f"{self.base}/api/v3.1/teams/company_token",
                    json={"sso_id": "qontak-chatbot"},
                    headers={"X-Crm-Api-Key": self.api_key},
                )
            )
            self.token = refreshed["access_token"]
        raise AssertionError("unreachable")


def _wait_preview(
    http: httpx.Client, omni: str, inbox: dict[str, str], done: Callable[[dict[str, Any]], Any]
) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        preview: dict[str, Any] = _ok(
            http.get(f"{omni}/api/v1/rooms/{ROOM}/crm_preview", headers=inbox)
        )
        return preview if done(preview) else None

    return wait_for(probe, "the room preview")


def _ok(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        raise RuntimeError(
            f"{response.request.method} {response.request.url} -> {response.status_code}: "
            f"{response.text[:500]}"
        )
    return response.json() if response.content else None
