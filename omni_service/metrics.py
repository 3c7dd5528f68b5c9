"""Prometheus metrics of the Omni API, in a registry of their own.

A dedicated registry keeps ``/metrics`` of this service free of whatever else the
process registers (the test suite imports both services), and lets any number of apps
be created in one process without "duplicated timeseries" errors.
"""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CollectorRegistry, Counter, PlatformCollector, ProcessCollector

from service_kit.metrics import exposition

REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)

DEAL_PREVIEW_DISPLAYED = Counter(
    "deal_preview_displayed",
    "Preview polls that showed a deal card (200 or 304).",
    registry=REGISTRY,
)
RECEIVED_EVENTS = Counter(
    "omni_received_events",
    "CRM webhook events received, by outcome (applied, ignored, duplicate, rejected).",
    ["outcome"],
    registry=REGISTRY,
)

router = APIRouter(tags=["operations"])


@router.get("/metrics", include_in_schema=False)
async def metrics() -> Response:
    return exposition(REGISTRY)
