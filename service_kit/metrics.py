"""Prometheus for both APIs: the ``/metrics`` exposition (HTTP request count and latency
by route, method and status are counted by :mod:`service_kit.edge`).

Each service keeps its metrics in a registry of its own. With ``PROMETHEUS_MULTIPROC_DIR``
set (an API run with ``uvicorn --workers N``; one directory per service, emptied before
it starts), every process writes its counts there and ``/metrics`` sums them, so any
process answers with the totals of all of them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator

from fastapi import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
METRICS_PATH = "/metrics"


class _Without:
    """A collector's metric families, less those named in ``excluded``."""

    def __init__(self, collector: MultiProcessCollector, excluded: Iterable[str]) -> None:
        self._collector = collector
        self._excluded = frozenset(excluded)

    def collect(self) -> Iterator[Metric]:
        for family in self._collector.collect():  # type: ignore[no-untyped-call]
            if family.name not in self._excluded:
                yield family


def exposition(registry: CollectorRegistry, *, excluded: Iterable[str] = ()) -> Response:
    """``/metrics``: this process's ``registry``, or in multiprocess mode the sum over
    every process of the service, less the ``excluded`` families (metrics another
    program of the same code counts, such as the worker's, would only show as zeros)."""
    directory = os.environ.get(MULTIPROC_ENV)
    if directory:
        summed = CollectorRegistry()
        every_process = MultiProcessCollector(None, path=directory)  # type: ignore[no-untyped-call]
        summed.register(_Without(every_process, excluded))
        registry = summed
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
