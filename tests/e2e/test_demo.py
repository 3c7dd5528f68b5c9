"""The README's run command: `crm-parity demo` brings the embedded system up (SQLite,
SQLite broker, no Redis) and its walkthrough ends with every parity step observed."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.processes import free_port, service_env, wait_until

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def test_demo_walkthrough_runs_embedded_and_shows_every_parity_step(tmp_path: Path) -> None:
    command = [
        sys.executable, "-m", "crm_service.cli", "demo", "--exit",
        "--crm-port", str(free_port()), "--omni-port", str(free_port()),
        "--data-dir", str(tmp_path / "demo"),
    ]  # fmt: skip
    result = subprocess.run(
        command, cwd=ROOT, env=service_env(), capture_output=True, text=True, timeout=240
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    output = result.stdout
    for step in (
        "token refreshed after a 401",
        "creator 'Bot'",
        "The inbox shows the deal in the room",
        "The CRM timeline has the chat note",
        "Budi: Halo",
        "by AI",
        "stage Qualified, version 2",
        "'create_deal': True",
        "qontak.crm.deal.create delivered",
    ):
        assert step in output, f"missing {step!r} in:\n{output}"
    assert (tmp_path / "demo" / "crm.db").exists()
    assert (tmp_path / "demo" / "celery-broker.db").exists()


def _demo_command(tmp_path: Path, crm_port: int, omni_port: int) -> list[str]:
    return [
        sys.executable, "-m", "crm_service.cli", "demo",
        "--crm-port", str(crm_port), "--omni-port", str(omni_port),
        "--data-dir", str(tmp_path / "demo"),
    ]  # fmt: skip


def _descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (from /proc)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited; only its parent's wait is missing


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_sigterm_or_ctrl_c_stops_every_child_of_the_demo(tmp_path: Path, signum: int) -> None:
    demo = subprocess.Popen(
        _demo_command(tmp_path, free_port(), free_port()),
        cwd=ROOT, env=service_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        assert demo.stdout is not None
        lines: list[str] = []
        for raw in demo.stdout:
            lines.append(raw.decode(errors="replace"))
            if "crm-worker (pid" in lines[-1]:
                break
        assert any("crm-worker (pid" in line for line in lines), "".join(lines)
        # The worker's pool processes come a moment after the worker itself.
        wait_until(lambda: len(_descendants(demo.pid)) >= 5, timeout=30)
        children = _descendants(demo.pid)
        demo.send_signal(signum)
        assert demo.wait(timeout=30) == 0
        wait_until(
            lambda: not any(_alive(pid) for pid in children),
            timeout=5,
            message=lambda: f"still alive: {[p for p in children if _alive(p)]}",
        )
    finally:
        if demo.poll() is None:
            demo.kill()


def test_a_busy_port_is_a_one_line_error_at_once(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = time.monotonic()
        result = subprocess.run(
            _demo_command(tmp_path, port, free_port()),
            cwd=ROOT, env=service_env(), capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        elapsed = time.monotonic() - started
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: port {port} (crm API) is already in use; stop what holds it or pass --crm-port"
    ]
    assert "Traceback" not in result.stdout + result.stderr
    assert elapsed < 15
