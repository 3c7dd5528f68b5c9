"""Omni's domain errors: the shared family (``service_kit.errors``) under the names its
code imports."""

from service_kit.errors import (
    BadRequest,
    Conflict,
    DomainError,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
    Unprocessable,
    install_error_handlers,
)

__all__ = [
    "BadRequest",
    "Conflict",
    "DomainError",
    "NotFound",
    "PayloadTooLarge",
    "Unauthorized",
    "Unprocessable",
    "install_error_handlers",
]
