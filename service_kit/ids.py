"""Random ids of the form ``uuid.uuid4().hex``: 32 hex digits of a version-4 UUID.

The random bytes come from ``os.urandom`` (the kernel's CSPRNG, as ``uuid4`` uses), read
:data:`BLOCK` bytes at a time rather than 16 per id. Each ``os.urandom`` call is a
``getrandom`` system call that releases the GIL, and in an API process every release
invited the outbox dispatcher's thread to take the interpreter in the middle of a
request; a create makes four ids (request id, slug, two webhook ids). Each thread reads
its own block, and a forked child (a prefork worker) starts with none, so no two
processes or threads ever hand out the same bytes."""

from __future__ import annotations

import os
import threading

BLOCK = 4096  # bytes: 256 ids per system call


class _Block(threading.local):
    def __init__(self) -> None:
        self.data = b""
        self.offset = BLOCK


_block = _Block()


def _forget_block() -> None:
    global _block
    _block = _Block()


os.register_at_fork(after_in_child=_forget_block)


def uuid4_hex() -> str:
    """What ``uuid.uuid4().hex`` gives (122 random bits, the version and variant bits
    set), without the ``UUID`` object in between."""
    block = _block
    offset = block.offset
    if offset >= BLOCK:
        block.data = os.urandom(BLOCK)
        offset = 0
    block.offset = offset + 16
    raw = bytearray(block.data[offset : offset + 16])
    raw[6] = raw[6] & 0x0F | 0x40  # version 4
    raw[8] = raw[8] & 0x3F | 0x80  # variant: RFC 4122
    return raw.hex()
