"""Bounded integer types for every integer a request carries, on both services.

Ids are 32-bit ``INTEGER`` columns; page numbers and offsets end up multiplied by a page
size of at most 100 in an ``OFFSET`` (a ``BIGINT``). An integer past these bounds is a
422 naming the field, never an out-of-range error from the driver (a 500).
``tests/test_bad_input.py`` walks both apps' OpenAPI and fails on any request integer
without both bounds, so a new endpoint cannot forget them.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query
from pydantic import Field

MAX_INT32 = 2**31 - 1
MAX_INT64 = 2**63 - 1

# A body field holding a row id (``crm_lead_ids``, ``contact_id``, ``crm_stage_id``...).
PositiveId = Annotated[int, Field(gt=0, le=MAX_INT32)]
PathId = Annotated[int, Path(gt=0, le=MAX_INT32)]
QueryId = Annotated[int, Query(gt=0, le=MAX_INT32)]
# 1-based page number. The services answer a page past the end without querying it, so
# (page - 1) * page size never reaches SQL beyond the rows there are; the bound keeps the
# number itself a BIGINT.
MAX_PAGE_NUMBER = 2**62
PageNumber = Annotated[int, Query(ge=1, le=MAX_PAGE_NUMBER, description="1-based page number")]
# 0-based row offset.
RowOffset = Annotated[int, Query(ge=0, le=MAX_INT32, description="0-based row offset")]
# Page size: bounded so it parses into a column-sized int; callers clamp it further
# (above their maximum is clamped, not refused — DESIGN.md §10).
PageSize = Annotated[int, Query(ge=1, le=MAX_INT32, description="page size, clamped")]
