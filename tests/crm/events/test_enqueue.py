"""Handing outbox rows to the broker: each kind to its task and queue, and a clear error
(never a hang, never a silent drop) when the broker is down."""

from __future__ import annotations

import base64
import json

import pytest
from celery.utils.saferepr import saferepr
from kombu.exceptions import OperationalError
from redis import Redis

from crm_service import worker
from tests.crm.conftest import crm_settings
from tests.support.processes import RedisServer, free_port


def use_broker(monkeypatch: pytest.MonkeyPatch, broker_url: str) -> None:
    app = worker.make_celery(crm_settings("sqlite+aiosqlite://", celery_broker_url=broker_url))
    monkeypatch.setattr(worker, "celery_app", app)


def queued(redis: Redis, queue: str) -> list[tuple[str, list[int]]]:
    """(task name, args) of each message waiting in ``queue`` (kombu's Redis layout)."""
    messages = []
    for raw in redis.lrange(queue, 0, -1):
        message = json.loads(raw)
        args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
        messages.append((message["headers"]["task"], args))
    return messages


def test_each_kind_goes_to_its_task_on_its_queue(
    monkeypatch: pytest.MonkeyPatch, redis_server: RedisServer
) -> None:
    use_broker(monkeypatch, redis_server.url())

    worker.enqueue_outbox([(1, "webhook"), (2, "timeline_note"), (3, "webhook")])

    redis = Redis.from_url(redis_server.url())
    # Rows of a kind handed over together travel in one message; a lone row in its own.
    assert queued(redis, "webhooks") == [("crm.events.deliver_webhooks", [[1, 3]])]
    assert queued(redis, "notes") == [("crm.timeline.write_note", [2])]
    redis.close()


def test_a_large_hand_over_is_split_into_bounded_batches(
    monkeypatch: pytest.MonkeyPatch, redis_server: RedisServer
) -> None:
    use_broker(monkeypatch, redis_server.url())
    ids = list(range(1, 2 * worker.MAX_BATCH + 2))

    worker.enqueue_outbox([(outbox_id, "webhook") for outbox_id in ids])

    redis = Redis.from_url(redis_server.url())
    messages = queued(redis, "webhooks")
    redis.close()
    handed = [
        outbox_id
        for _task, args in messages
        for outbox_id in (args[0] if isinstance(args[0], list) else args)
    ]
    assert sorted(handed) == ids
    assert all(
        len(args[0]) <= worker.MAX_BATCH for task, args in messages if task.endswith("webhooks")
    )
    assert len(messages) == 3  # 50 + 50 + the last one alone


def test_the_messages_show_their_arguments_as_celery_would(
    monkeypatch: pytest.MonkeyPatch, redis_server: RedisServer
) -> None:
    """The publish writes the arguments' repr itself; it is the one Celery's own saferepr
    gives (what logs, events and monitors show for the task)."""
    use_broker(monkeypatch, redis_server.url())
    ids = [10**9 + n for n in range(worker.MAX_BATCH)]  # the longest a batch gets

    worker.enqueue_outbox([(outbox_id, "webhook") for outbox_id in ids])
    worker.enqueue_outbox([(7, "timeline_note")])

    redis = Redis.from_url(redis_server.url())
    headers = [
        json.loads(raw)["headers"]
        for queue in ("webhooks", "notes")
        for raw in redis.lrange(queue, 0, -1)
    ]
    redis.close()
    limit = worker.celery_app.amqp.argsrepr_maxsize
    assert [(h["argsrepr"], h["kwargsrepr"]) for h in headers] == [
        (saferepr([ids], limit), saferepr({}, limit)),
        (saferepr([7], limit), saferepr({}, limit)),
    ]


def test_an_unreachable_broker_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    use_broker(monkeypatch, f"redis://127.0.0.1:{free_port()}/0")

    with pytest.raises(OperationalError):
        worker.enqueue_outbox([(1, "webhook")])
