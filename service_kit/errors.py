"""Domain errors: an HTTP status and a message a caller can act on. One handler turns
them into JSON ``{"detail": ...}``, so no bad input ends as a bare 500."""

from __future__ import annotations

from typing import Any, overload

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse


class DomainError(Exception):
    """``detail`` is a message, or a list of FastAPI-style error objects made elsewhere
    (a payload model's validation errors). A message about one input names it with
    ``field`` (and ``location`` when it is not the body)."""

    status_code = 400

    @overload
    def __init__(
        self, detail: str, *, field: str | None = None, location: str = "body"
    ) -> None: ...

    @overload
    def __init__(self, detail: list[dict[str, Any]]) -> None: ...

    def __init__(
        self,
        detail: str | list[dict[str, Any]],
        *,
        field: str | None = None,
        location: str = "body",
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field
        self.location = location

    def body(self) -> dict[str, Any]:
        if self.field is None:
            return {"detail": self.detail}
        # Same shape as FastAPI's own validation errors, so clients parse one format.
        return {
            "detail": [
                {"loc": [self.location, self.field], "msg": self.detail, "type": "value_error"}
            ]
        }


class BadRequest(DomainError):
    status_code = 400


class Unauthorized(DomainError):
    status_code = 401


class NotFound(DomainError):
    status_code = 404


class Conflict(DomainError):
    status_code = 409


class PayloadTooLarge(DomainError):
    status_code = 413


class Unprocessable(DomainError):
    status_code = 422


def error_response(error: DomainError) -> JSONResponse:
    """The answer to a domain error, wherever it is raised."""
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(error, Unauthorized) else None
    return JSONResponse(error.body(), status_code=error.status_code, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    async def handle(_request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, DomainError)
        return error_response(error)

    app.add_exception_handler(DomainError, handle)
