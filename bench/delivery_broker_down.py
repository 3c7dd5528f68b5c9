"""How long the API's after-commit hand-off takes to give up when the broker is down.

    .venv/bin/python -m bench.delivery_broker_down

Two cases, each timed over ``--tries`` publishes: a Redis port that refuses connections
(broker never up), and a broker that was up and has been stopped (the producer's pooled
connection is dead). A publish that waited minutes would tie up the API's thread pool;
this shows it fails in milliseconds. Needs ``redis-server``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from celery import Celery
from kombu.exceptions import OperationalError

from crm_service.settings import Settings
from crm_service.worker import DELIVER_WEBHOOK, WEBHOOKS_QUEUE, make_celery
from tests.support.processes import RedisServer, free_port


def failed_publishes(app: Celery, tries: int) -> list[float]:
    """Milliseconds each of ``tries`` publishes took to fail."""
    return [_one_failure(app) for _ in range(tries)]


def _one_failure(app: Celery) -> float:
    started = time.perf_counter()
    try:
        app.send_task(DELIVER_WEBHOOK, args=[0], queue=WEBHOOKS_QUEUE, retry=False)
    except OperationalError:
        return (time.perf_counter() - started) * 1000
    raise RuntimeError("the publish succeeded: the broker is not down")


def describe(name: str, samples: list[float]) -> str:
    return (
        f"{name}: {len(samples)} publishes, median {statistics.median(samples):.1f} ms, "
        f"max {max(samples):.1f} ms"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tries", type=int, default=20)
    args = parser.parse_args(argv)

    refusing = make_celery(Settings(celery_broker_url=f"redis://127.0.0.1:{free_port()}/0"))
    print(describe("port refusing", failed_publishes(refusing, args.tries)))

    redis = RedisServer().start()
    app = make_celery(Settings(celery_broker_url=redis.url()))
    app.send_task(DELIVER_WEBHOOK, args=[0], queue=WEBHOOKS_QUEUE, retry=False)
    redis.stop()
    print(describe("broker stopped after use", failed_publishes(app, args.tries)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
