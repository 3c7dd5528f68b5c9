"""The worker's asyncio runtime: one loop per process, in a thread of its own, that any
pool's tasks submit to (prefork children one at a time, threads many at once, solo)."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import threading
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from celery.concurrency import get_implementation

from crm_service.settings import Settings
from crm_service.worker import (
    OnClaimed,
    Resources,
    TaskDeadlineExceeded,
    WorkerRuntime,
    in_claim_waves,
    pool_name,
)


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[WorkerRuntime]:
    running = WorkerRuntime()
    running.start(Settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'crm.db'}"))
    yield running
    running.stop()


async def loop_identity(_shared: Resources) -> tuple[int, int]:
    await asyncio.sleep(0.05)  # overlap with the other tasks
    return id(asyncio.get_running_loop()), threading.get_ident()


def test_tasks_from_many_threads_at_once_all_run_on_the_one_loop(runtime: WorkerRuntime) -> None:
    """The threads pool: concurrent tasks used to share a loop with run_until_complete and
    fail with 'This event loop is already running'."""
    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(lambda _: runtime.run(loop_identity, deadline=5), range(64)))

    assert len(results) == 64
    assert len(set(results)) == 1  # one loop, one loop thread
    assert results[0][1] != threading.get_ident()


def test_work_past_its_deadline_is_cancelled_on_the_loop(runtime: WorkerRuntime) -> None:
    cancelled = threading.Event()

    async def stuck(_shared: Resources) -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    with pytest.raises((TaskDeadlineExceeded, TimeoutError)):
        runtime.run(stuck, deadline=0.2)
    assert cancelled.wait(5)
    # The loop is still serving the next task.
    assert runtime.run(loop_identity, deadline=5)


def test_the_resources_are_shared_by_every_task_of_the_process(runtime: WorkerRuntime) -> None:
    async def engine_of(shared: Resources) -> int:
        return id(shared.engine)

    engines = {runtime.run(engine_of, deadline=5) for _ in range(3)}
    assert len(engines) == 1


def _child_runs_its_own_loop(runtime: WorkerRuntime, results: multiprocessing.Queue) -> None:
    results.put((runtime.started, os.getpid()))
    runtime.run(loop_identity, deadline=5)
    results.put((runtime.started, os.getpid()))


def test_a_forked_child_never_uses_its_parents_loop(runtime: WorkerRuntime) -> None:
    context = multiprocessing.get_context("fork")
    results: multiprocessing.Queue = context.Queue()
    child = context.Process(target=_child_runs_its_own_loop, args=(runtime, results))
    child.start()
    before, pid = results.get(timeout=30)
    after, same_pid = results.get(timeout=30)
    child.join(timeout=30)

    assert child.exitcode == 0
    assert pid == same_pid != os.getpid()
    assert (before, after) == (False, True)
    assert runtime.started  # the parent's runtime is untouched


def test_stop_then_start_opens_anew(tmp_path: Path) -> None:
    running = WorkerRuntime()
    settings = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'crm.db'}")
    first = running.start(settings)
    assert running.start(settings) is first  # idempotent
    running.stop()
    assert not running.started
    second = running.start(settings)
    assert second is not first
    running.stop()


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("prefork", "prefork"),
        ("processes", "prefork"),
        ("threads", "threads"),
        ("solo", "solo"),
        ("gevent", "gevent"),
        ("eventlet", "eventlet"),
        (get_implementation("threads"), "threads"),
        (get_implementation("solo"), "solo"),
        (get_implementation("prefork"), "prefork"),
    ],
)
def test_pool_names_resolve_from_aliases_and_classes(given: object, expected: str) -> None:
    assert pool_name(given) == expected


# -- claim waves: the rows of one message ----------------------------------------------


def claiming(
    takes: dict[int, list[int]], started: list[int], *, fail: int | None = None
) -> Callable[[int, OnClaimed], Awaitable[str]]:
    """A batch run whose claim takes ``takes[row]`` (the row and others), and records
    the order in which rows started."""

    async def run(outbox_id: int, on_claimed: OnClaimed) -> str:
        started.append(outbox_id)
        await asyncio.sleep(0)
        if outbox_id == fail:
            raise RuntimeError("database down")
        on_claimed(takes.get(outbox_id, []))
        await asyncio.sleep(0.01)  # the sends
        return f"batch of {outbox_id}"

    return run


async def test_a_row_an_earlier_batch_of_the_message_took_is_not_claimed_again() -> None:
    started: list[int] = []
    run = claiming({1: [1, 2, 3], 4: [4], 5: []}, started)

    results = await in_claim_waves([1, 2, 3, 4, 5], run, concurrency=5)

    assert started == [1, 4, 5]
    assert results == ["batch of 1", None, None, "batch of 4", "batch of 5"]


async def test_a_failing_batch_is_its_rows_result_and_the_others_still_run() -> None:
    started: list[int] = []
    run = claiming({2: [2], 3: [3]}, started, fail=1)

    results = await in_claim_waves([1, 2, 3], run, concurrency=2)

    assert started == [1, 2, 3]
    assert isinstance(results[0], RuntimeError)
    assert results[1:] == ["batch of 2", "batch of 3"]


async def test_batches_overlap_up_to_the_concurrency_after_each_claim() -> None:
    running, most = 0, 0

    async def run(outbox_id: int, on_claimed: OnClaimed) -> int:
        nonlocal running, most
        running += 1
        most = max(most, running)
        on_claimed([outbox_id])
        await asyncio.sleep(0.02)
        running -= 1
        return outbox_id

    results = await in_claim_waves(list(range(10)), run, concurrency=3)

    assert results == list(range(10))
    assert most == 3


def test_a_broker_channel_publishes_through_one_client_until_its_pool_changes() -> None:
    from kombu import Connection

    from crm_service.worker import RedisTransport
    from tests.support.processes import RedisServer

    with RedisServer() as server, Connection(server.url(0), transport=RedisTransport) as broker:
        channel = broker.default_channel
        with channel.conn_or_acquire() as first, channel.conn_or_acquire() as second:
            assert first is second
        first.lpush("probe", b"1")
        channel._disconnect_pools()  # what kombu does when the connection is lost
        with channel.conn_or_acquire() as after_reconnect:
            assert after_reconnect is not first
            assert after_reconnect.connection_pool is channel.pool
            assert after_reconnect.llen("probe") == 1
