"""``uuid4_hex`` gives what ``uuid.uuid4().hex`` gives: a version-4 UUID's 32 hex digits."""

from __future__ import annotations

import re
import uuid

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
