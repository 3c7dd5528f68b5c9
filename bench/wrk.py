"""Drive an HTTP server with ``wrk`` and read its results as numbers.

``run`` starts ``wrk --latency`` with the given threads, connections, duration, headers
and optional Lua script, and parses the JSON line that ``bench/wrk_report.lua``'s
``done()`` prints (appended to every script, or used alone) into a :class:`WrkResult`:
requests per second, latency percentiles, error counts. ``write_events`` stores
pre-signed CRM events for ``bench/receiver_events.lua`` (wrk cannot compute HMACs).

    from bench import wrk
    result = wrk.run("http://127.0.0.1:8101/hello")
    result = wrk.run(url, headers={"Authorization": "Bearer ...", "If-None-Match": etag})
    result = wrk.receiver(base_url, events_file)      # POST /webhooks/crm, each event once
    print(result.requests_per_second, result.latency_ms["p99"])

Defaults are the issue's: ``-t2 -c32 -d10s``. Every call needs ``/usr/bin/wrk`` (or
``WRK`` in the environment).
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPORT_LUA = HERE / "wrk_report.lua"
RECEIVER_LUA = HERE / "receiver_events.lua"
MARKER = "WRK_JSON "


@dataclass(frozen=True)
class WrkResult:
    """One wrk run. ``errors`` are wrk's counts (``status`` = responses >= 400)."""

    requests: int
    duration_seconds: float
    errors: dict[str, int]
    latency_ms: dict[str, float]
    extra: dict[str, Any] = field(default_factory=dict)
    command: list[str] = field(default_factory=list)

    @property
    def requests_per_second(self) -> float:
        return self.requests / self.duration_seconds if self.duration_seconds else 0.0

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def summary(self) -> str:
        latency = self.latency_ms
        return (
            f"{self.requests_per_second:8.0f} req/s  p50 {latency['p50']:.2f} ms"
            f"  p90 {latency['p90']:.2f} ms  p99 {latency['p99']:.2f} ms"
            f"  errors {self.error_count}"
        )


def parse(output: str, command: list[str] | None = None) -> WrkResult:
    """The :class:`WrkResult` in wrk's stdout (the ``WRK_JSON`` line ``done()`` printed)."""
    for line in output.splitlines():
        if line.startswith(MARKER):
            raw = json.loads(line[len(MARKER) :])
            break
    else:
        raise ValueError(f"no {MARKER.strip()} line in wrk output:\n{output}")
    latency = {name: value / 1000 for name, value in raw["latency_us"].items()}
    return WrkResult(
        requests=raw["requests"],
        duration_seconds=raw["duration_us"] / 1e6,
        errors=raw["errors"],
        latency_ms=latency,
        extra=raw.get("extra", {}),
        command=command or [],
    )


def run(
    url: str,
    *,
    threads: int = 2,
    connections: int = 32,
    duration_seconds: float = 10,
    headers: Mapping[str, str] | None = None,
    script: Path | None = None,
    script_args: Iterable[str] = (),
    timeout_seconds: float = 10,
) -> WrkResult:
    """Run ``wrk --latency`` against ``url``; ``script``'s own ``done()`` is replaced by
    the JSON reporter (a script may define ``wrk_report_extra()`` to add fields)."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as combined:
        if script is not None:
            combined.write(Path(script).read_text() + "\n")
        combined.write(REPORT_LUA.read_text())
    command = [
        os.environ.get("WRK", "/usr/bin/wrk"),
        f"-t{threads}",
        f"-c{connections}",
        f"-d{duration_seconds:g}s",
        f"--timeout={timeout_seconds:g}s",
        "--latency",
        "-s",
        combined.name,
    ]
    for name, value in (headers or {}).items():
        command += ["-H", f"{name}: {value}"]
    command.append(url)
    args = list(script_args)
    if args:
        command += ["--", *args]
    try:
        completed = subprocess.run(command, capture_output=True, text=True, check=True)
    finally:
        os.unlink(combined.name)
    return parse(completed.stdout, command)


def write_events(path: Path, events: Iterable[tuple[str, Mapping[str, str]]]) -> int:
    """Store ``(body, signed headers)`` pairs for ``receiver_events.lua``; returns the count.

    Bodies must be one line (``build_envelope`` writes compact JSON). Sign them no more
    than five minutes before the run ends: the receiver refuses older timestamps.
    """
    count = 0
    with Path(path).open("w") as out:
        for body, headers in events:
            if "\n" in body:
                raise ValueError("an event body must be a single line")
            lowered = {name.lower(): value for name, value in headers.items()}
            out.write(
                f"{lowered['webhook-id']}\n{lowered['webhook-timestamp']}\n"
                f"{lowered['webhook-signature']}\n{body}\n"
            )
            count += 1
    return count


def receiver(
    base_url: str,
    events_file: Path,
    *,
    threads: int = 2,
    connections: int = 32,
    duration_seconds: float = 10,
) -> WrkResult:
    """POST the events of ``events_file`` to ``{base_url}/webhooks/crm``, each thread its
    own slice. ``extra["wrapped"]`` > 0 means a thread ran out and resent (duplicates):
    write more events."""
    return run(
        f"{base_url}/webhooks/crm",
        threads=threads,
        connections=connections,
        duration_seconds=duration_seconds,
        script=RECEIVER_LUA,
        script_args=[str(events_file), str(threads)],
    )


def preview_poll(
    base_url: str,
    room_id: str,
    token: str,
    *,
    etag: str | None = None,
    threads: int = 2,
    connections: int = 32,
    duration_seconds: float = 10,
) -> WrkResult:
    """GET one room's ``crm_preview`` as the inbox polls it; with ``etag`` every answer
    should be a 304 (check with one request first: wrk counts 304 as success)."""
    headers = {"Authorization": f"Bearer {token}"}
    if etag is not None:
        headers["If-None-Match"] = etag
    return run(
        f"{base_url}/api/v1/rooms/{room_id}/crm_preview",
        threads=threads,
        connections=connections,
        duration_seconds=duration_seconds,
        headers=headers,
    )
