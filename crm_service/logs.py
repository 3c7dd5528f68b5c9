"""The CRM's logs are the JSON lines of :mod:`service_kit.logs` (shared with Omni)."""

from service_kit.logs import configure_logging

__all__ = ["configure_logging"]
