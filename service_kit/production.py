"""Refuse to serve a real database with a development secret.

Both APIs ship working admin keys for the embedded mode (SQLite). Once a server database
is configured the process stops before serving, with one line naming the variable to
set; ``change-me``, the placeholder ``.env.example`` and compose carry, is refused too.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping

PLACEHOLDER = "change-me"
# uvicorn's exit status for "the app cannot start": its supervisor then stops instead of
# restarting the worker processes forever.
STARTUP_FAILURE = 3


def refuse_development_secrets(database_url: str, secrets: Mapping[str, tuple[str, str]]) -> None:
    """``secrets`` maps an environment variable to (its value, its development default).
    With a non-SQLite ``database_url``, a default or placeholder value exits the process."""
    if database_url.startswith("sqlite"):
        return
    for name, (value, default) in secrets.items():
        if value in (default, PLACEHOLDER):
            print(
                f"refusing to start: {name} is {value!r} (a development value) and a server "
                f"database is configured; set {name} to a secret of your own",
                file=sys.stderr,
            )
            raise SystemExit(STARTUP_FAILURE)
