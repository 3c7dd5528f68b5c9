"""Server-rendered pages both services share: the Jinja2 environment, the sign-in form
and its CSRF check, the session cookie, and the shared static files (CSS, time zones).

Each service keeps its own templates next to its routes (``omni_service/inbox/``,
``crm_service/pages/``) and extends ``base.html`` from here.

Choices (README "Pages"): the token lives in an HttpOnly cookie, so no script (and no
injected one) can read it, and it is never in a URL or in ``localStorage``. The cookie is
``SameSite=Lax`` rather than ``Strict`` so that the link from the inbox card to the CRM
(another site) opens signed in; nothing that changes state answers a GET, and the one
form (sign-in) carries a double-submit CSRF token: a random value in an HttpOnly cookie
of its own and the same value in a hidden field, compared in constant time. Cookies do
not separate by port, so each service names its cookies with its own prefix.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from fastapi import Request, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, select_autoescape

KIT_DIR = Path(__file__).parent
KIT_STATIC_PATH = "/assets/kit"
SESSION_MAX_AGE_SECONDS = 8 * 3600


def templates(own_dir: Path) -> Jinja2Templates:
    """A service's templates first, then the shared ones (``base.html``, ``sign_in.html``)."""
    environment = Environment(
        loader=ChoiceLoader([FileSystemLoader(own_dir), FileSystemLoader(KIT_DIR / "templates")]),
        autoescape=select_autoescape(default=True),
    )
    environment.globals["kit_static"] = KIT_STATIC_PATH
    return Jinja2Templates(env=environment)


def kit_static_files() -> StaticFiles:
    return StaticFiles(directory=KIT_DIR / "static")


@dataclass(frozen=True)
class SessionCookies:
    """The two cookies of one service: the signed-in token and the sign-in form's CSRF
    token."""

    prefix: str

    @property
    def session(self) -> str:
        return f"{self.prefix}_session"

    @property
    def csrf(self) -> str:
        return f"{self.prefix}_csrf"

    def token(self, request: Request) -> str | None:
        return request.cookies.get(self.session) or None

    def set_token(self, response: Response, request: Request, token: str) -> None:
        self._set(response, request, self.session, token, SESSION_MAX_AGE_SECONDS)

    def clear_token(self, response: Response) -> None:
        response.delete_cookie(self.session, path="/", httponly=True, samesite="lax")

    def issue_csrf(self, response: Response, request: Request) -> str:
        """The form's token: reuse the cookie's value if it has one (two open tabs)."""
        value = request.cookies.get(self.csrf) or secrets.token_urlsafe(32)
        self._set(response, request, self.csrf, value, 3600)
        return value

    def csrf_valid(self, request: Request, submitted: str | None) -> bool:
        expected = request.cookies.get(self.csrf)
        if not expected or not submitted:
            return False
        if not secrets.compare_digest(expected.encode(), submitted.encode()):
            return False
        # Belt and braces: a browser that sends Origin must send ours.
        origin = request.headers.get("origin")
        return origin is None or origin == "null" or _same_origin(origin, request)

    @staticmethod
    def _set(response: Response, request: Request, name: str, value: str, max_age: int) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path="/",
            httponly=True,
            samesite="lax",
            secure=request.url.scheme == "https",
        )


def _same_origin(origin: str, request: Request) -> bool:
    parts = urlsplit(origin)
    return parts.netloc == request.headers.get("host", request.url.netloc)


def safe_next(raw: str | None, *, allowed_prefix: str, default: str) -> str:
    """Where to go after sign-in: a path of ours only (no ``//host``, no scheme)."""
    if not raw or not raw.startswith(allowed_prefix) or raw.startswith("//") or "\\" in raw:
        return default
    return raw
