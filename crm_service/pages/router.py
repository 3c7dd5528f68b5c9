"""``/deals/{id}``, ``/tickets/{id}``: one record's fields, creator, contacts and
timeline (with the chat note's excerpt and its link to the inbox room), for a person
signed in with a company access token (``/sign-in``; cookie and CSRF in
``service_kit.pages``). Everything shown is scoped to the token's team: another team's
record is the same "not found" page as a missing one."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Request, Response, status
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crm_service.contacts.models import Contact
from crm_service.deals.service import deal_service
from crm_service.dependencies import SessionDep, SettingsDep
from crm_service.errors import NotFound, Unauthorized
from crm_service.records.schemas import RecordId
from crm_service.records.service import RecordContext
from crm_service.teams.auth import Caller, caller_for_token
from crm_service.teams.features import PrefetchedFlags
from crm_service.tickets.service import ticket_service
from crm_service.timeline.service import timeline_service
from service_kit.pages import SessionCookies, safe_next, templates
from shared_contracts.creators import creator_label
from shared_contracts.events import RecordKind

TEMPLATES = templates(Path(__file__).parent / "templates")
COOKIES = SessionCookies("crm")
SIGN_IN_PATH = "/sign-in"
TIMELINE_PAGE_SIZE = 50

router = APIRouter(tags=["record pages"], include_in_schema=False)


def _with_csrf(
    request: Request, name: str, context: dict[str, Any], status_code: int = 200
) -> HTMLResponse:
    cookie_carrier = HTMLResponse("")
    csrf = COOKIES.issue_csrf(cookie_carrier, request)
    page = TEMPLATES.TemplateResponse(
        request,
        name,
        {"sign_out_url": "/sign-out", **context, "csrf_token": csrf},
        status_code=status_code,
        headers={"Cache-Control": "no-store"},
    )
    page.raw_headers.extend(h for h in cookie_carrier.raw_headers if h[0] == b"set-cookie")
    return page


def _sign_in_page(
    request: Request, next_path: str, error: str | None = None, status_code: int = 200
) -> HTMLResponse:
    return _with_csrf(
        request,
        "sign_in.html",
        {
            "product": "CRM",
            "token_hint": "Paste a company access token.",
            "action": SIGN_IN_PATH,
            "next": next_path,
            "error": error,
            "sign_out_url": None,
        },
        status_code,
    )


def _next(raw: str | None) -> str:
    for prefix in ("/deals/", "/tickets/"):
        if raw and raw.startswith(prefix):
            return safe_next(raw, allowed_prefix=prefix, default="/")
    return "/"


@router.get(SIGN_IN_PATH, response_class=HTMLResponse)
async def sign_in_form(request: Request, next: str | None = None) -> HTMLResponse:
    return _sign_in_page(request, _next(next))


@router.post(SIGN_IN_PATH, response_class=HTMLResponse)
async def sign_in(
    request: Request,
    session: SessionDep,
    token: Annotated[str, Form(max_length=512)] = "",
    csrf_token: Annotated[str, Form(max_length=128)] = "",
    next: Annotated[str, Form(max_length=2048)] = "",
) -> Response:
    next_path = _next(next)
    if not COOKIES.csrf_valid(request, csrf_token):
        return _sign_in_page(
            request, next_path, "The form expired. Please sign in again.", status.HTTP_403_FORBIDDEN
        )
    if await _caller(session, token.strip()) is None:
        return _sign_in_page(
            request,
            next_path,
            "That token is not valid or has expired.",
            status.HTTP_401_UNAUTHORIZED,
        )
    response = RedirectResponse(next_path, status_code=status.HTTP_303_SEE_OTHER)
    COOKIES.set_token(response, request, token.strip())
    return response


@router.post("/sign-out")
async def sign_out(
    request: Request, csrf_token: Annotated[str, Form(max_length=128)] = ""
) -> Response:
    response = RedirectResponse(SIGN_IN_PATH, status_code=status.HTTP_303_SEE_OTHER)
    if COOKIES.csrf_valid(request, csrf_token):
        COOKIES.clear_token(response)
    return response


@router.get("/", response_class=HTMLResponse)
async def home(request: Request, session: SessionDep) -> Response:
    token = COOKIES.token(request)
    if token is None or await _caller(session, token) is None:
        return RedirectResponse(SIGN_IN_PATH, status_code=status.HTTP_303_SEE_OTHER)
    return _with_csrf(request, "home.html", {})


@router.get("/deals/{record_id}", response_class=HTMLResponse)
async def deal_page(
    record_id: RecordId, request: Request, session: SessionDep, settings: SettingsDep
) -> Response:
    return await _record_page(request, session, settings, RecordKind.DEAL, record_id)


@router.get("/tickets/{record_id}", response_class=HTMLResponse)
async def ticket_page(
    record_id: RecordId, request: Request, session: SessionDep, settings: SettingsDep
) -> Response:
    return await _record_page(request, session, settings, RecordKind.TICKET, record_id)


async def _caller(session: AsyncSession, token: str) -> Caller | None:
    if not token:
        return None
    try:
        return await caller_for_token(session, token)
    except Unauthorized:
        return None


async def _record_page(
    request: Request,
    session: AsyncSession,
    settings: SettingsDep,
    kind: RecordKind,
    record_id: int,
) -> Response:
    token = COOKIES.token(request)
    caller = await _caller(session, token) if token else None
    if caller is None:
        return RedirectResponse(
            f"{SIGN_IN_PATH}?next={quote(request.url.path, safe='')}",
            status_code=status.HTTP_303_SEE_OTHER,
        )
    context = RecordContext(
        caller=caller,
        settings=settings,
        flag_cache=PrefetchedFlags(caller.team.id, caller.flags, request.app.state.flag_cache),
    )
    try:
        if kind is RecordKind.DEAL:
            record: Any = await deal_service.fetch(session, context, record_id)
        else:
            record = await ticket_service.fetch(session, context, record_id)
        notes, _total = await timeline_service.entries(
            session, caller.team.id, kind, record_id, page=1, page_size=TIMELINE_PAGE_SIZE
        )
    except NotFound:
        return _with_csrf(
            request,
            "not_found.html",
            {"kind": kind.value, "record_id": record_id},
            status.HTTP_404_NOT_FOUND,
        )
    contacts = await _contacts(session, caller.team.id, record.crm_lead_ids)
    return _with_csrf(
        request,
        "record.html",
        {
            "kind": kind.value,
            "record": record,
            "creator": creator_label(record.creator_flag) or record.creator_name or "—",
            "contacts": contacts,
            "notes": notes,
            "note_creator": lambda note: creator_label(note.creator_flag) or note.creator_name,
        },
    )


async def _contacts(session: AsyncSession, team_id: int, ids: list[int]) -> list[Contact]:
    if not ids:
        return []
    found = await session.scalars(
        select(Contact).where(Contact.team_id == team_id, Contact.id.in_(ids)).order_by(Contact.id)
    )
    return list(found)
