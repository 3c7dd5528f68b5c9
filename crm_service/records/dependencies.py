from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from crm_service.dependencies import SettingsDep
from crm_service.records.service import RecordContext
from crm_service.teams.auth import CurrentCaller


def record_context(request: Request, caller: CurrentCaller, settings: SettingsDep) -> RecordContext:
    return RecordContext(caller=caller, settings=settings, flag_cache=request.app.state.flag_cache)


RecordContextDep = Annotated[RecordContext, Depends(record_context)]
