"""Receiver functions (PostgreSQL): one statement per event

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02

``omni_receive_event`` claims the webhook id, applies the event to the room's previews
under the room's lock and issues the change notification, in one call: the receiver's
whole transaction is one round trip, run in autocommit, and the room lock is held for
the function's few statements rather than across client round trips.
``omni_apply_{deal,ticket}_event`` are the rules of ``previews/service.py`` (the SQLite
path keeps them in Python; tests run both). Each statement inside a PL/pgSQL function
takes a fresh snapshot under READ COMMITTED, so the reads after the room lock see every
commit made before the lock was granted, as the Python path's separate statements do.
SQLite: nothing to create.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COMMON_DISPLAY = {
    "name": "p_record->>'name'",
    "status": "p_record->>'status'",
    "creator_flag": "p_record->>'creator_flag'",
    "creator_name": "p_record->>'creator_name'",
    "external_url": "p_record->>'external_url'",
    "crm_updated_at": "(p_record->>'updated_at')::timestamptz",
}
_DISPLAY = {
    "deal": {
        **_COMMON_DISPLAY,
        "slug": "p_record->>'slug'",
        "stage_id": "(p_record->'stage'->>'id')::bigint",
        "stage_name": "p_record->'stage'->>'name'",
        "pipeline_id": "(p_record->'pipeline'->>'id')::bigint",
        "pipeline_name": "p_record->'pipeline'->>'name'",
        "size": "(p_record->>'size')::numeric",
    },
    "ticket": {
        **_COMMON_DISPLAY,
        "unique_ticket_id": "p_record->>'unique_ticket_id'",
        "description": "p_record->>'description'",
        "priority": "p_record->>'priority'",
    },
}


def _apply_function(kind: str) -> str:
    table = f"{kind}_previews"
    display = _DISPLAY[kind]
    assignments = ", ".join(f"{column} = {value}" for column, value in display.items())
    columns = ", ".join(display)
    values = ", ".join(display.values())
    # Only the fixed fragments above are interpolated, never input.
    return f"""
CREATE OR REPLACE FUNCTION omni_apply_{kind}_event(
    p_organization_id integer, p_record jsonb, p_deleted boolean, p_now timestamptz
) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    v_room text := p_record->>'channel_integration_room_id';
    v_record bigint := (p_record->>'id')::bigint;
    v_version integer := (p_record->>'version')::integer;
    v_created timestamptz := (p_record->>'created_at')::timestamptz;
    v_row {table}%ROWTYPE;
    v_newest {table}%ROWTYPE;
    v_has_newest boolean;
    v_is_newest boolean;
BEGIN
    -- The room's lock, created if need be: ON CONFLICT DO UPDATE locks the existing row
    -- even when its WHERE updates nothing.
    INSERT INTO rooms (organization_id, room_id, created_at)
    VALUES (p_organization_id, v_room, p_now)
    ON CONFLICT (organization_id, room_id) DO UPDATE SET created_at = rooms.created_at
    WHERE false;

    SELECT * INTO v_row FROM {table}
    WHERE organization_id = p_organization_id AND record_id = v_record;
    IF FOUND THEN
        IF v_row.room_id <> v_room OR v_row.state = 'deleted' THEN
            RETURN false;
        END IF;
        IF p_deleted THEN
            UPDATE {table}
            SET version = greatest(version, v_version), state = 'deleted',
                deleted_at = p_now, changed_at = p_now
            WHERE id = v_row.id;
        ELSIF v_version > v_row.version THEN
            UPDATE {table} SET version = v_version, {assignments}, changed_at = p_now
            WHERE id = v_row.id;
        ELSE
            RETURN false;
        END IF;
        RETURN true;
    END IF;

    SELECT * INTO v_newest FROM {table}
    WHERE organization_id = p_organization_id AND room_id = v_room
    ORDER BY crm_created_at DESC, record_id DESC
    LIMIT 1;
    v_has_newest := FOUND;
    v_is_newest := NOT v_has_newest
        OR (v_created, v_record) > (v_newest.crm_created_at, v_newest.record_id);
    IF v_is_newest AND v_has_newest AND v_newest.state = 'active' THEN
        -- Demote first: the partial unique index allows one active row at a time.
        UPDATE {table} SET state = 'replaced', changed_at = p_now WHERE id = v_newest.id;
    END IF;
    IF p_deleted THEN
        INSERT INTO {table} (
            organization_id, room_id, record_id, state, version, crm_created_at,
            deleted_at, changed_at
        ) VALUES (
            p_organization_id, v_room, v_record, 'deleted', v_version, v_created, p_now, p_now
        );
    ELSE
        INSERT INTO {table} (
            organization_id, room_id, record_id, state, version, crm_created_at,
            changed_at, {columns}
        ) VALUES (
            p_organization_id, v_room, v_record,
            CASE WHEN v_is_newest THEN 'active' ELSE 'replaced' END,
            v_version, v_created, p_now, {values}
        );
    END IF;
    RETURN true;
END
$$
"""  # noqa: S608


_RECEIVE_FUNCTION = """
CREATE OR REPLACE FUNCTION omni_receive_event(
    p_organization_id integer, p_webhook_id text, p_event_type text, p_kind text,
    p_record jsonb, p_deleted boolean, p_now timestamptz, p_channel text
) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    v_claimed integer;
    v_changed boolean;
BEGIN
    -- Claim the id first: a concurrent duplicate waits here on the unique index until
    -- this transaction ends, then sees the id taken and applies nothing.
    INSERT INTO received_events (organization_id, webhook_id, event_type, outcome, received_at)
    VALUES (p_organization_id, p_webhook_id, p_event_type, 'applied', p_now)
    ON CONFLICT (organization_id, webhook_id) DO NOTHING
    RETURNING id INTO v_claimed;
    IF v_claimed IS NULL THEN
        RETURN 'duplicate';
    END IF;
    IF p_kind = 'deal' THEN
        v_changed := omni_apply_deal_event(p_organization_id, p_record, p_deleted, p_now);
    ELSE
        v_changed := omni_apply_ticket_event(p_organization_id, p_record, p_deleted, p_now);
    END IF;
    IF v_changed THEN
        PERFORM pg_notify(
            p_channel,
            json_build_array(p_organization_id, p_record->>'channel_integration_room_id')::text
        );
        RETURN 'applied';
    END IF;
    UPDATE received_events SET outcome = 'ignored' WHERE id = v_claimed;
    RETURN 'ignored';
END
$$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(_apply_function("deal"))
    op.execute(_apply_function("ticket"))
    op.execute(_RECEIVE_FUNCTION)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        "DROP FUNCTION omni_receive_event(integer, text, text, text, jsonb, boolean,"
        " timestamptz, text)"
    )
    for kind in ("deal", "ticket"):
        op.execute(f"DROP FUNCTION omni_apply_{kind}_event(integer, jsonb, boolean, timestamptz)")
