"""``uuid4_hex`` gives what ``uuid.uuid4().hex`` gives: a version-4 UUID's 32 hex digits,
never the same bytes twice (across blocks, threads and a fork)."""

from __future__ import annotations

import os
import re
import threading
import uuid

import pytest

from service_kit import ids as ids_module
from service_kit.ids import uuid4_hex


def test_each_id_is_the_hex_of_a_version_4_uuid() -> None:
    for _ in range(2000):
        text = uuid4_hex()
        assert re.fullmatch(r"[0-9a-f]{32}", text)
        parsed = uuid.UUID(hex=text)
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
        assert parsed.hex == text


def test_the_random_bits_vary_in_every_position() -> None:
    ids = [uuid4_hex() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    # Every hex digit but the fixed version digit takes more than one value.
    varying = [len({text[i] for text in ids}) > 1 for i in range(32)]
    assert varying == [i != 12 for i in range(32)]


def test_ids_past_a_block_boundary_are_all_new() -> None:
    ids = [uuid4_hex() for _ in range(3 * ids_module.BLOCK // 16 + 5)]
    assert len(set(ids)) == len(ids)


def test_threads_never_share_bytes() -> None:
    per_thread: list[list[str]] = [[] for _ in range(4)]

    def make(into: list[str]) -> None:
        into.extend(uuid4_hex() for _ in range(1000))

    threads = [threading.Thread(target=make, args=(into,)) for into in per_thread]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = [text for ids in per_thread for text in ids]
    assert len(set(everything)) == len(everything)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_does_not_repeat_its_parents_ids() -> None:
    uuid4_hex()  # the parent holds a block with bytes left in it
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids, to the parent
        os.close(read)
        os.write(write, "".join(uuid4_hex() for _ in range(10)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        child = pipe.read().decode()
    os.waitpid(pid, 0)
    parent = "".join(uuid4_hex() for _ in range(10))
    assert len(child) == len(parent) == 320
    child_ids = {child[i : i + 32] for i in range(0, 320, 32)}
    parent_ids = {parent[i : i + 32] for i in range(0, 320, 32)}
    assert not child_ids & parent_ids
