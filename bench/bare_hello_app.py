"""The floor of any FastAPI endpoint on this machine: ``GET /hello`` answers a small JSON
object and does nothing else (no middleware, no dependency, no database).

Benchmarks of Omni's read paths report their requests per second as a ratio to this app
measured in the same run, so the ratio says what our code costs, not what the machine does.

    .venv/bin/python -m uvicorn bench.bare_hello_app:app --port 8101

Run it with the same uvicorn flags (access log on or off) as the app it is compared with.
"""

from __future__ import annotations

from fastapi import FastAPI

app = FastAPI(title="bare hello baseline")


@app.get("/hello")
async def hello() -> dict[str, str]:
    return {"hello": "world"}


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}
