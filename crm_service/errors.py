"""Domain errors: an HTTP status and a message a caller can act on. One handler turns
them into JSON, so no bad input ends as a bare 500."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse


class DomainError(Exception):
    status_code = 400

    def __init__(self, message: str, *, field: str | None = None, location: str = "body") -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.location = location

    def body(self) -> dict[str, Any]:
        if self.field is None:
            return {"detail": self.message}
        # Same shape as FastAPI's own validation errors, so clients parse one format.
        return {
            "detail": [
                {"loc": [self.location, self.field], "msg": self.message, "type": "value_error"}
            ]
        }


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


def install_error_handlers(app: FastAPI) -> None:
    async def handle(_request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, DomainError)
        headers = {"WWW-Authenticate": "Bearer"} if isinstance(error, Unauthorized) else None
        return JSONResponse(error.body(), status_code=error.status_code, headers=headers)

    app.add_exception_handler(DomainError, handle)
