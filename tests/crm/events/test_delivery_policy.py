"""The retry rules as pure functions: which answers retry, how long to wait."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from crm_service.events.delivery import (
    RETRY_AFTER_CAP_SECONDS,
    DeliveryPolicy,
    is_retryable,
    parse_retry_after,
)

NOW = datetime(2026, 11, 27, 12, 0, 0, tzinfo=UTC)


def policy(*schedule: float) -> DeliveryPolicy:
    return DeliveryPolicy(schedule=schedule, timeout_seconds=1.0, rotation_grace=timedelta(0))


class NoJitter(random.Random):
    def uniform(self, a: float, b: float) -> float:
        return 1.0


@pytest.mark.parametrize(
    ("status", "retry"),
    [
        (None, True),
        (500, True),
        (599, True),
        (408, True),
        (429, True),
        (400, False),
        (404, False),
        (409, False),
        (302, False),
    ],
)
def test_only_no_answer_5xx_408_and_429_are_retryable(status: int | None, retry: bool) -> None:
    assert is_retryable(status) is retry


def test_a_schedule_of_n_delays_allows_n_retries_after_the_first_attempt() -> None:
    rules = policy(1, 1, 2)
    delays = [rules.retry_delay(attempt, None, NoJitter()) for attempt in range(1, 5)]
    assert delays == [1.0, 1.0, 2.0, None]


def test_retry_after_longer_than_the_scheduled_delay_is_waited_for() -> None:
    assert policy(5).retry_delay(1, 90.0, NoJitter()) == 90.0


def test_retry_after_shorter_than_the_scheduled_delay_does_not_shorten_it() -> None:
    assert policy(5).retry_delay(1, 1.0, NoJitter()) == 5.0


def test_retry_after_is_capped() -> None:
    assert policy(5).retry_delay(1, 10 * 86_400.0, NoJitter()) == RETRY_AFTER_CAP_SECONDS


def test_retry_after_is_read_as_seconds() -> None:
    assert parse_retry_after("120", NOW) == 120.0


def test_retry_after_is_read_as_an_http_date() -> None:
    assert parse_retry_after("Fri, 27 Nov 2026 12:01:30 GMT", NOW) == 90.0


def test_a_retry_after_date_in_the_past_means_now() -> None:
    assert parse_retry_after("Fri, 27 Nov 2026 11:00:00 GMT", NOW) == 0.0


@pytest.mark.parametrize("value", [None, "", "soon", "-5", "1.5e3"])
def test_an_unreadable_retry_after_is_ignored(value: str | None) -> None:
    assert parse_retry_after(value, NOW) is None


def test_jitter_stays_within_twenty_percent_of_the_schedule() -> None:
    rng = random.Random(7)
    delays = [policy(1, 2, 4).retry_delay(2, None, rng) for _ in range(500)]
    assert all(delay is not None and 1.6 <= delay <= 2.4 for delay in delays)
    assert max(d for d in delays if d) - min(d for d in delays if d) > 0.5  # it does vary
