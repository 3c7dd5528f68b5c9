"""Where each hot path spends its time: py-spy on the process that serves it, while
``make bench``'s own phase functions drive it.

    .venv/bin/python -m bench.profile_paths --out bench/results/profiles

On the stack ``make bench`` starts (``bench.stack.running_stack``), one after the other:

- ``create``: the CRM API under ``bench.run.create`` (wrk -c16, the bare app taking turns);
- ``delivery``: the worker host and its pool children (``--subprocesses``) while they drain
  the backlog the create left, webhooks and timeline notes;
- ``poll``: Omni under ``bench.run.preview`` (304 and 200 polls, after ``/hello``);
- ``receiver``: Omni under ``bench.run.receiver`` (signed events, after the bare receiver).

py-spy samples at ``--rate`` Hz without native frames (with them it slowed the CRM
tenfold) and does not count idle time, so the phases' baseline halves add nothing. Each
profile is written raw (``<path>.txt``, one stack a line, for flamegraph.pl or speedscope)
and its top frames are printed: by own time, and by inclusive time for the project's code
and the libraries on its hot paths. py-spy comes with the dev extra; it needs ptrace
(root here, or ``kernel.yama.ptrace_scope=0``).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from bench import run as bench_run
from bench.stack import Stack, plain_dsn, running_stack
from tests.support.processes import wait_until

# The venv's own py-spy (the dev extra), else one on PATH.
PY_SPY = (
    str(Path(sys.executable).with_name("py-spy"))
    if Path(sys.executable).with_name("py-spy").exists()
    else shutil.which("py-spy")
)
# Inclusive time is shown for frames of these modules (the project and its hot libraries).
SHOWN = re.compile(
    r"\((crm_service|omni_service|service_kit|shared_contracts|standardwebhooks|asyncpg"
    r"|httpx|kombu|redis|pydantic|uvicorn/protocols|celery/app/trace)/"
)


@contextmanager
def profiling(pid: int, out: Path, rate: int, *, subprocesses: bool = False) -> Iterator[None]:
    """py-spy on ``pid`` while the block runs; the raw profile lands in ``out``."""
    assert PY_SPY is not None
    command = [PY_SPY, "record", "--pid", str(pid), "--rate", str(rate)]
    command += ["--format", "raw", "--output", str(out), "--nonblocking"]
    if subprocesses:
        command.append("--subprocesses")
    spy = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)  # py-spy writes its output on an interrupt
        _, errors = spy.communicate(timeout=60)
    if not out.exists():
        raise RuntimeError(f"py-spy wrote no profile: {errors.decode(errors='replace')[-500:]}")


def summary(profile: Path, top: int) -> str:
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in profile.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        samples = int(count)
        total += samples
        frames = [re.sub(r":\d+\)$", ")", frame) for frame in stack.split(";")]
        own[frames[-1]] += samples
        for frame in set(frames):
            inclusive[frame] += samples
    if not total:
        return f"{profile.name}: no samples"
    lines = [f"{profile.name}: {total} samples", "  own time:"]
    lines += [f"  {100 * n / total:5.1f} %  {frame}" for frame, n in own.most_common(top)]
    lines.append("  inclusive, the project and its hot libraries:")
    shown = [(frame, n) for frame, n in inclusive.most_common() if SHOWN.search(frame)]
    lines += [f"  {100 * n / total:5.1f} %  {frame}" for frame, n in shown[:top]]
    return "\n".join(lines)


def drain(stack: Stack) -> None:
    """Wait until the workers have sent the create's backlog and written its notes."""
    tenant = stack.tenant
    assert tenant is not None
    dsn = plain_dsn(stack.crm_database)

    def done() -> bool:
        pending, _, _ = asyncio.run(bench_run._delivery_progress(dsn, tenant.team_id))
        return pending == 0 and asyncio.run(bench_run._pending_notes(dsn, tenant.team_id)) == 0

    wait_until(done, timeout=600, interval=0.5, message="the backlog was not drained")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("bench/results/profiles"))
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per wrk run")
    parser.add_argument("--rate", type=int, default=100, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=15, help="frames shown per list")
    args = parser.parse_args()
    if PY_SPY is None:
        parser.error("py-spy is not installed (make install brings it with the dev extra)")
    args.out.mkdir(parents=True, exist_ok=True)
    report = bench_run.Report(machine=bench_run.machine(), options={})
    phase_args = argparse.Namespace(duration=args.duration)
    with (
        tempfile.TemporaryDirectory(prefix="bench-") as scratch,
        running_stack(Path(scratch), workers=False) as stack,
    ):
        paths: list[tuple[str, str, bool, Callable[[], None]]] = [
            ("create", "crm", False, lambda: bench_run.create(stack, report, phase_args)),
            ("delivery", "worker0", True, lambda: drain(stack)),
            ("poll", "omni", False, lambda: bench_run.preview(stack, report, phase_args)),
            ("receiver", "omni", False, lambda: bench_run.receiver(stack, report, phase_args)),
        ]
        for path, process, subprocesses, drive in paths:
            if process.startswith("worker") and not stack.workers:
                stack.start_workers()  # py-spy attaches to a running worker host
            out = args.out / f"{path}.txt"
            with profiling(stack.pids()[process], out, args.rate, subprocesses=subprocesses):
                drive()
            print(summary(out, args.top), flush=True)


if __name__ == "__main__":
    main()
