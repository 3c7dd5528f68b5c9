"""docker-compose.yml as data: the services, their commands and environment, with compose's
own escapes and ``${VAR:-default}`` substitutions resolved (PyYAML resolves the anchors)."""

from __future__ import annotations

import re
from typing import Any

import yaml

from tests.support.processes import ROOT

APP_SERVICES = ("migrate", "crm-api", "omni-api", "crm-worker", "crm-beat")
LONG_RUNNING = ("postgres", "redis", "crm-api", "omni-api", "crm-worker", "crm-beat")


def services() -> dict[str, Any]:
    document = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return dict(document["services"])


def interpolate(value: str, variables: dict[str, str]) -> str:
    """``${NAME:-default}`` from ``variables`` (else the default), ``$$`` to ``$``."""

    def substitute(match: re.Match[str]) -> str:
        return variables.get(match.group(1), match.group(2) or "")

    value = re.sub(r"(?<!\$)\$\{([A-Z0-9_]+)(?::-([^}]*))?\}", substitute, value)
    return value.replace("$$", "$")
