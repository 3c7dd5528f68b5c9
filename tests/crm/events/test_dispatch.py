"""The API's outbox dispatcher (``events/dispatch.py``): a hand-over that returns at once,
rows published from one thread, a lone row at once, the rows of a kind that come within
its publish interval together, each kind on its own schedule, failures quiet and a full
backlog bounded."""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest

from crm_service.events.dispatch import PUBLISH_INTERVAL_SECONDS, OutboxDispatcher, OutboxItem
from crm_service.worker import TASK_BY_KIND

# Long enough that a test waiting it out would hit its timeout instead.
LONG = 60.0


class Broker:
    """Stands in for Celery: records each publish (one call per publish, in the
    dispatcher's thread), or fails while ``down``."""

    def __init__(self) -> None:
        self.publishes: list[list[OutboxItem]] = []
        self.threads: set[str] = set()
        self.down = False

    def __call__(self, items: list[OutboxItem]) -> None:
        self.threads.add(threading.current_thread().name)
        if self.down:
            raise ConnectionError("broker down")
        self.publishes.append(list(items))


def dispatcher_for(broker: Broker, **intervals: float) -> OutboxDispatcher:
    return OutboxDispatcher(lambda: broker, intervals=intervals)


async def test_a_lone_row_is_published_at_once_from_the_dispatch_thread() -> None:
    broker = Broker()
    dispatcher = dispatcher_for(broker, timeline_note=LONG)
    dispatcher.hand_over([(1, "timeline_note")])
    async with asyncio.timeout(5):
        await dispatcher.idle()
    await dispatcher.close()

    assert broker.publishes == [[(1, "timeline_note")]]
    assert len(broker.threads) == 1
    assert broker.threads != {threading.current_thread().name}


async def test_rows_of_a_kind_within_its_interval_travel_in_the_next_publish() -> None:
    broker = Broker()
    dispatcher = dispatcher_for(broker, timeline_note=1.0)
    dispatcher.hand_over([(1, "timeline_note")])
    await dispatcher.idle()
    dispatcher.hand_over([(2, "timeline_note")])
    await asyncio.sleep(0.05)  # row 2 waits out the interval; rows 3 and 4 join it
    dispatcher.hand_over([(3, "timeline_note"), (4, "timeline_note")])
    await dispatcher.idle()
    await dispatcher.close()

    assert broker.publishes == [
        [(1, "timeline_note")],
        [(2, "timeline_note"), (3, "timeline_note"), (4, "timeline_note")],
    ]


async def test_each_kind_keeps_its_own_interval() -> None:
    broker = Broker()
    dispatcher = dispatcher_for(broker, timeline_note=LONG, webhook=0.0)
    dispatcher.hand_over([(1, "webhook"), (2, "timeline_note")])
    await dispatcher.idle()
    dispatcher.hand_over([(4, "timeline_note")])
    dispatcher.hand_over([(3, "webhook")])
    webhook_publisher = dispatcher._lanes["webhook"].publisher
    assert webhook_publisher is not None
    async with asyncio.timeout(5):  # the webhook does not wait for the note's interval
        await webhook_publisher

    assert sorted(map(sorted, broker.publishes)) == [
        [(1, "webhook")],
        [(2, "timeline_note")],
        [(3, "webhook")],
    ]
    note_lane = dispatcher._lanes["timeline_note"]
    assert note_lane.waiting == [(4, "timeline_note")]  # still waiting out its interval
    assert note_lane.publisher is not None
    note_lane.publisher.cancel()


async def test_a_hand_over_returns_at_once_and_travels_with_the_lanes_next_publish() -> None:
    broker = Broker()
    dispatcher = dispatcher_for(broker, timeline_note=0.3, webhook=0.0)
    dispatcher.hand_over([(1, "timeline_note")])  # the notes' interval starts
    await dispatcher.idle()

    dispatcher.hand_over([(2, "webhook"), (3, "timeline_note")])
    dispatcher.hand_over([(4, "timeline_note")])
    assert broker.publishes == [[(1, "timeline_note")]]  # nothing waited for a publish

    async with asyncio.timeout(5):
        await dispatcher.idle()
    assert broker.publishes == [
        [(1, "timeline_note")],
        [(2, "webhook")],
        [(3, "timeline_note"), (4, "timeline_note")],  # after the interval, together
    ]
    await dispatcher.close()


async def test_idle_returns_at_once_when_nothing_is_queued() -> None:
    dispatcher = dispatcher_for(Broker(), webhook=LONG)
    async with asyncio.timeout(1):
        await dispatcher.idle()


async def test_close_publishes_what_still_waits_for_its_interval() -> None:
    broker = Broker()
    dispatcher = dispatcher_for(broker, timeline_note=0.3)
    dispatcher.hand_over([(1, "timeline_note")])
    await dispatcher.idle()
    dispatcher.hand_over([(2, "timeline_note")])
    await asyncio.sleep(0)  # queued, waiting for the interval
    async with asyncio.timeout(5):
        await dispatcher.close()

    assert broker.publishes == [[(1, "timeline_note")], [(2, "timeline_note")]]
    assert not dispatcher._lanes["timeline_note"].waiting


async def test_a_failed_publish_is_logged_and_the_request_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broker = Broker()
    broker.down = True
    dispatcher = dispatcher_for(broker)
    with caplog.at_level(logging.WARNING, logger="crm_service.events.dispatch"):
        dispatcher.hand_over([(1, "webhook")])
        await dispatcher.idle()
    broker.down = False
    dispatcher.hand_over([(2, "webhook")])
    await dispatcher.idle()
    await dispatcher.close()

    assert "outbox enqueue failed; the sweep will retry" in caplog.text
    assert broker.publishes == [[(2, "webhook")]]


async def test_a_full_backlog_leaves_the_rows_to_the_sweep(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broker = Broker()
    dispatcher = OutboxDispatcher(lambda: broker, max_waiting=2, intervals={"webhook": 0.2})
    dispatcher.hand_over([(1, "webhook")])
    await dispatcher.idle()
    with caplog.at_level(logging.WARNING, logger="crm_service.events.dispatch"):
        dispatcher.hand_over([(2, "webhook"), (3, "webhook")])
        dispatcher.hand_over([(4, "webhook")])  # past the bound: dropped
        await dispatcher.idle()
    await dispatcher.close()

    assert "outbox dispatch backlog full" in caplog.text
    assert broker.publishes == [[(1, "webhook")], [(2, "webhook"), (3, "webhook")]]


def test_every_kind_the_worker_runs_has_a_publish_interval() -> None:
    assert set(PUBLISH_INTERVAL_SECONDS) == set(TASK_BY_KIND)
