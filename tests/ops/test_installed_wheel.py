"""The built wheel, installed in a fresh venv, runs the exact commands docker-compose.yml
runs, from a folder that is not the repository, against a real PostgreSQL and Redis:
migrate succeeds, both APIs answer /readyz, the worker logs ready (and answers its health
check's ping), beat starts."""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg2
import pytest

from tests.ops.compose import interpolate, services
from tests.support.databases import POSTGRES_DSN, async_url, drop_database
from tests.support.processes import ROOT, RedisServer, free_port, service_env, wait_until

pytestmark = pytest.mark.e2e

BUILD_CONTEXT_IGNORED = (".git", ".venv", "var", "build", "*.egg-info", "__pycache__")
ADMIN_KEYS = {"CRM_ADMIN_KEY": "wheel-crm-admin-key", "OMNI_ADMIN_KEY": "wheel-omni-admin-key"}


@pytest.fixture(scope="module")
def venv_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the locked runtime dependencies and the wheel (no source tree)."""
    root = tmp_path_factory.mktemp("wheel")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, "-r", str(ROOT / "requirements.lock")], check=True)
    # Built from a copy of the build context (as .dockerignore leaves it), not in the tree.
    source = root / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*BUILD_CONTEXT_IGNORED))
    wheel_command = ["wheel", "--quiet", "--no-deps", "-w", str(root / "dist"), str(source)]
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", *wheel_command], check=True)
    (wheel,) = (root / "dist").glob("crm_parity-*.whl")
    subprocess.run([*pip, "--no-deps", str(wheel)], check=True)
    return venv / "bin"


@pytest.fixture
def empty_databases() -> Iterator[dict[str, str]]:
    names = {section: f"w_{section}_{uuid.uuid4().hex[:10]}" for section in ("crm", "omni")}
    connection = psycopg2.connect(POSTGRES_DSN)
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            for name in names.values():
                cursor.execute(f'CREATE DATABASE "{name}"')
    finally:
        connection.close()
    try:
        yield {section: async_url(name) for section, name in names.items()}
    finally:
        for name in names.values():
            drop_database(name)


def compose_command(name: str, replacements: dict[str, str]) -> list[str]:
    command = [interpolate(part, {}) for part in services()[name]["command"]]
    for old, new in replacements.items():
        command = [part.replace(old, new) for part in command]
    return command


def compose_env(name: str, venv_bin: Path, replacements: dict[str, str]) -> dict[str, str]:
    values = {}
    for key, value in services()[name]["environment"].items():
        value = interpolate(str(value), ADMIN_KEYS)
        for old, new in replacements.items():
            value = value.replace(old, new)
        values[key] = value
    env = service_env(**values)
    env["PATH"] = f"{venv_bin}{os.pathsep}{env['PATH']}"
    env.pop("PYTHONPATH", None)
    return env


def test_the_installed_wheel_runs_what_compose_runs(
    venv_bin: Path, empty_databases: dict[str, str], tmp_path: Path
) -> None:
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    ports = {"8000": str(free_port()), "8001": str(free_port()), "9100": str(free_port())}
    with RedisServer() as redis:
        host_port = f"127.0.0.1:{redis.port}"
        replacements = {
            "postgresql+asyncpg://postgres:postgres@postgres:5432/crm": empty_databases["crm"],
            "postgresql+asyncpg://postgres:postgres@postgres:5432/omni": empty_databases["omni"],
            "redis:6379": host_port,
            "0.0.0.0": "127.0.0.1",
            "/tmp/": f"{tmp_path}/",
            **{f"--port {port}": f"--port {new}" for port, new in ports.items()},
            **{f'"--port", "{port}"': f'"--port", "{new}"' for port, new in ports.items()},
            "9100": ports["9100"],
        }
        processes: list[tuple[str, subprocess.Popen[bytes], Path]] = []

        def start(name: str) -> tuple[subprocess.Popen[bytes], Path]:
            command = compose_command(name, replacements)
            command = [ports.get(part, part) for part in command]
            log = tmp_path / f"{name}.log"
            with log.open("wb") as out:
                process = subprocess.Popen(
                    command,
                    cwd=workdir,
                    env=compose_env(name, venv_bin, replacements),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            processes.append((name, process, log))
            return process, log

        def logs() -> str:
            return "\n".join(
                f"--- {n}\n{log.read_text(errors='replace')}" for n, _, log in processes
            )

        try:
            migrate, _ = start("migrate")
            assert migrate.wait(timeout=120) == 0, logs()

            for name, port in (("crm-api", ports["8000"]), ("omni-api", ports["8001"])):
                start(name)
                url = f"http://127.0.0.1:{port}/readyz"
                wait_until(lambda url=url: _answers(url), timeout=60, message=logs)

            _, worker_log = start("crm-worker")
            wait_until(lambda: " ready." in worker_log.read_text(), timeout=60, message=logs)
            ping = shlex.split(
                interpolate(services()["crm-worker"]["healthcheck"]["test"][1], {}).replace(
                    "$HOSTNAME", socket.gethostname()
                )
            )
            env = compose_env("crm-worker", venv_bin, replacements)
            answer = subprocess.run(
                ping, cwd=workdir, env=env, capture_output=True, text=True, timeout=60
            )
            assert answer.returncode == 0, answer.stdout + answer.stderr + logs()

            _, beat_log = start("crm-beat")
            wait_until(lambda: "beat: Starting" in beat_log.read_text(), timeout=60, message=logs)
        finally:
            for _, process, _ in processes:
                if process.poll() is None:
                    os.killpg(process.pid, 15)
            for _, process, _ in processes:
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, 9)
                    process.wait(timeout=10)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
