"""An API process's collector once the app has started: what survived startup frozen,
a larger young generation; both undone at shutdown. Cyclic garbage made while serving is
still collected."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from crm_service.main import create_app as create_crm_app
from omni_service.main import create_app as create_omni_app
from service_kit.garbage_collection import YOUNG_THRESHOLD, settle_after_startup, unsettle
from tests.crm.conftest import crm_settings
from tests.omni.factories import omni_settings


@pytest.fixture
def collector_defaults() -> Iterator[tuple[int, ...]]:
    before = gc.get_threshold()
    assert gc.get_freeze_count() == 0
    yield before
    unsettle()
    gc.set_threshold(*before)


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def test_settling_freezes_the_survivors_and_widens_the_young_generation(
    collector_defaults: tuple[int, ...],
) -> None:
    kept = Node()

    settle_after_startup()

    assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == (YOUNG_THRESHOLD, *collector_defaults[1:])
    # Frozen: in none of the generations a collection examines.
    assert gc.is_tracked(kept)
    assert all(tracked is not kept for tracked in gc.get_objects())

    unsettle()

    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == collector_defaults


def test_a_cycle_made_after_settling_is_still_collected(
    collector_defaults: tuple[int, ...],
) -> None:
    settle_after_startup()
    first, second = Node(), Node()
    first.other, second.other = second, first
    gone = weakref.ref(first)
    del first, second

    gc.collect()

    assert gone() is None


@pytest.mark.parametrize("which", ["crm", "omni"])
async def test_each_api_settles_once_started_and_unsettles_at_shutdown(
    which: str,
    crm_database_url: str,
    omni_database_url: str,
    collector_defaults: tuple[int, ...],
) -> None:
    app = (
        create_crm_app(crm_settings(crm_database_url))
        if which == "crm"
        else create_omni_app(omni_settings(omni_database_url))
    )
    async with app.router.lifespan_context(app):
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold()[0] == YOUNG_THRESHOLD
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == collector_defaults
