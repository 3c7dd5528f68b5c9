"""The CRM database: its declarative base (its own ``MetaData``), the id bound, and the
shared plumbing (``service_kit.database``) under the names its code imports.

The request's session, which commits once or rolls back, is ``dependencies.get_session``.
"""

from __future__ import annotations

from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase

from service_kit.bounds import MAX_INT32
from service_kit.database import (
    NAMING_CONVENTION,
    UTCDateTime,
    create_engine,
    on_commit,
    run_after_commit,
    session_factory,
    utcnow,
)

__all__ = [
    "MAX_INTEGER_ID",
    "Base",
    "UTCDateTime",
    "create_engine",
    "on_commit",
    "run_after_commit",
    "session_factory",
    "utcnow",
]

# Primary keys are 32-bit INTEGER columns. API ids are bounded by this, so a larger number
# is a 422 instead of an out-of-range error from the driver (a 500).
MAX_INTEGER_ID = MAX_INT32


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
