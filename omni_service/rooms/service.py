"""Rooms: the per-room lock of preview changes, and the chat messages of a room."""

from __future__ import annotations

from sqlalchemy import bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from omni_service.database import insert_ignoring_conflict, utcnow
from omni_service.rooms.models import Message, Room, SenderType

# Built once at import: every event takes this lock.
_LOCK_ROOM = (
    select(Room.id)
    .where(
        Room.organization_id == bindparam("organization_id"),
        Room.room_id == bindparam("room_id"),
    )
    .with_for_update()
)


async def lock_room(session: AsyncSession, organization_id: int, room_id: str) -> None:
    """Hold the room's row lock until the transaction ends, creating the row if needed.

    PostgreSQL: ``SELECT ... FOR UPDATE`` queues behind whoever holds the room; for a new
    room, ``INSERT ... ON CONFLICT DO NOTHING`` first waits for a concurrent creator of the
    same row. SQLite has a single writer per database, which serialises the same way.
    """
    room = {"organization_id": organization_id, "room_id": room_id}
    if await session.scalar(_LOCK_ROOM, room) is not None:
        return
    created = await session.scalar(
        insert_ignoring_conflict(
            session,
            Room,
            {"organization_id": organization_id, "room_id": room_id, "created_at": utcnow()},
            ["organization_id", "room_id"],
        ).returning(Room.id)
    )
    # A row this transaction inserted is already ours until it ends (a concurrent creator
    # waits on its unique index entry); only a row someone else created needs locking.
    if created is None:
        await session.execute(_LOCK_ROOM, room)


async def post_message(
    session: AsyncSession,
    organization_id: int,
    room_id: str,
    *,
    sender: str,
    sender_type: SenderType,
    text: str,
) -> Message:
    message = Message(
        organization_id=organization_id,
        room_id=room_id,
        sender=sender,
        sender_type=sender_type.value,
        text=text,
        created_at=utcnow(),
    )
    session.add(message)
    await session.flush()
    return message


async def history(
    session: AsyncSession, organization_id: int, room_id: str, *, page: int, page_size: int
) -> tuple[list[Message], int]:
    """One page of the room's messages, newest first (``page`` is 1-based), and the total."""
    in_room = (Message.organization_id == organization_id, Message.room_id == room_id)
    total = await session.scalar(select(func.count()).select_from(Message).where(*in_room)) or 0
    skip = (page - 1) * page_size
    # A page past the end is empty; not querying it also keeps an absurd page number from
    # overflowing the database's OFFSET type.
    if skip >= total:
        return [], total
    messages = await session.scalars(
        select(Message)
        .where(*in_room)
        .order_by(Message.created_at.desc(), Message.id.desc())
        .offset(skip)
        .limit(page_size)
    )
    return list(messages), total
