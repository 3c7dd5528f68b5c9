from __future__ import annotations

from pydantic import BaseModel

from omni_service.receiver.models import Outcome


class Receipt(BaseModel):
    """``applied``: stored; ``ignored``: stale (a newer state is held); ``duplicate``:
    this webhook id was received before."""

    status: Outcome
