"""``/inbox``: sign-in with the organization's API token, and the room sidebar
(``/inbox/rooms/{room_id}``) with its deal and ticket cards, kept live by the preview
stream (``previews/stream.py``) with ETag polling as fallback (``static/inbox.js``)."""

from __future__ import annotations

from pathlib import Path as FilePath
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Form, Path, Request, Response, status
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from omni_service.database import SessionDep
from omni_service.inbox.auth import COOKIES
from omni_service.organizations import service as organizations_service
from omni_service.previews import service as previews_service
from omni_service.rooms.models import ROOM_ID_MAX_LENGTH
from service_kit.pages import safe_next, templates
from shared_contracts.creators import CREATOR_LABELS

HERE = FilePath(__file__).parent
INBOX_STATIC_PATH = "/assets/inbox"
SIGN_IN_PATH = "/inbox/sign-in"
TEMPLATES = templates(HERE / "templates")
TEMPLATES.env.globals["inbox_static"] = INBOX_STATIC_PATH
TEMPLATES.env.globals["creator_labels"] = {
    str(flag): label for flag, label in CREATOR_LABELS.items()
}

router = APIRouter(tags=["inbox pages"], include_in_schema=False)


def inbox_static_files() -> StaticFiles:
    return StaticFiles(directory=HERE / "static")


def _sign_in_page(
    request: Request, *, next_path: str, error: str | None = None, status_code: int = 200
) -> HTMLResponse:
    response = HTMLResponse("")
    csrf = COOKIES.issue_csrf(response, request)
    page = TEMPLATES.TemplateResponse(
        request,
        "sign_in.html",
        {
            "product": "Omni inbox",
            "token_hint": "Paste your organization's API token.",
            "action": SIGN_IN_PATH,
            "csrf_token": csrf,
            "next": next_path,
            "error": error,
            "sign_out_url": None,
        },
        status_code=status_code,
        headers={"Cache-Control": "no-store"},
    )
    page.raw_headers.extend(h for h in response.raw_headers if h[0] == b"set-cookie")
    return page


@router.get(SIGN_IN_PATH, response_class=HTMLResponse)
async def sign_in_form(request: Request, next: str | None = None) -> HTMLResponse:
    return _sign_in_page(
        request, next_path=safe_next(next, allowed_prefix="/inbox/", default="/inbox/")
    )


@router.post(SIGN_IN_PATH, response_class=HTMLResponse)
async def sign_in(
    request: Request,
    session: SessionDep,
    token: Annotated[str, Form(max_length=512)] = "",
    csrf_token: Annotated[str, Form(max_length=128)] = "",
    next: Annotated[str, Form(max_length=2048)] = "",
) -> Response:
    next_path = safe_next(next, allowed_prefix="/inbox/", default="/inbox/")
    if not COOKIES.csrf_valid(request, csrf_token):
        return _sign_in_page(
            request,
            next_path=next_path,
            error="The form expired. Please sign in again.",
            status_code=status.HTTP_403_FORBIDDEN,
        )
    organization = await organizations_service.by_token(session, token.strip()) if token else None
    if organization is None:
        return _sign_in_page(
            request,
            next_path=next_path,
            error="That token is not valid. Check it and try again.",
            status_code=status.HTTP_401_UNAUTHORIZED,
        )
    response = RedirectResponse(next_path, status_code=status.HTTP_303_SEE_OTHER)
    COOKIES.set_token(response, request, token.strip())
    return response


@router.post("/inbox/sign-out")
async def sign_out(
    request: Request, csrf_token: Annotated[str, Form(max_length=128)] = ""
) -> Response:
    response = RedirectResponse(SIGN_IN_PATH, status_code=status.HTTP_303_SEE_OTHER)
    if COOKIES.csrf_valid(request, csrf_token):
        COOKIES.clear_token(response)
    return response


@router.get("/inbox/", response_class=HTMLResponse)
async def inbox_home(request: Request, session: SessionDep) -> Response:
    token = COOKIES.token(request)
    if token is None or await organizations_service.by_token(session, token) is None:
        return RedirectResponse(SIGN_IN_PATH, status_code=status.HTTP_303_SEE_OTHER)
    return _page(request, "home.html", {})


@router.get("/inbox/rooms/{room_id}", response_class=HTMLResponse)
async def room_page(
    request: Request,
    session: SessionDep,
    room_id: Annotated[str, Path(min_length=1, max_length=ROOM_ID_MAX_LENGTH)],
) -> Response:
    token = COOKIES.token(request)
    organization = await organizations_service.by_token(session, token) if token else None
    if organization is None:
        here = f"/inbox/rooms/{quote(room_id, safe='')}"
        return RedirectResponse(
            f"{SIGN_IN_PATH}?next={quote(here, safe='')}", status_code=status.HTTP_303_SEE_OTHER
        )
    preview = await previews_service.room_preview(session, organization.id, room_id)
    encoded = quote(room_id, safe="")
    return _page(
        request,
        "room.html",
        {
            "organization": organization,
            "preview": preview,
            "stream_url": f"/api/v1/rooms/{encoded}/crm_preview/stream",
            "poll_url": f"/api/v1/rooms/{encoded}/crm_preview",
        },
    )


def _page(request: Request, name: str, context: dict[str, object]) -> HTMLResponse:
    response = HTMLResponse("")
    csrf = COOKIES.issue_csrf(response, request)
    page = TEMPLATES.TemplateResponse(
        request,
        name,
        {**context, "csrf_token": csrf, "sign_out_url": "/inbox/sign-out"},
        headers={"Cache-Control": "no-store"},
    )
    page.raw_headers.extend(h for h in response.raw_headers if h[0] == b"set-cookie")
    return page
