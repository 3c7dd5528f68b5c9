"""The CRM's domain errors are the shared family in ``service_kit.errors``; these are the
names CRM code imports from here."""

from service_kit.errors import (
    Conflict,
    NotFound,
    Unauthorized,
    Unprocessable,
    install_error_handlers,
)

__all__ = ["Conflict", "NotFound", "Unauthorized", "Unprocessable", "install_error_handlers"]
