"""``Annotated`` dependency aliases shared by the routers (the session's is in database.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from omni_service.settings import Settings


async def get_app_settings(request: Request) -> Settings:
    """The settings the app was created with (tests pass their own).

    ``async`` although it awaits nothing: FastAPI runs a plain ``def`` dependency in the
    threadpool, a thread hop on every request for an attribute read.
    """
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
