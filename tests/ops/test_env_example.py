""".env.example lists every setting the code reads, under the name an operator sets."""

from __future__ import annotations

import re

import pytest
from pydantic import AliasChoices
from pydantic_settings import BaseSettings

from crm_service.settings import Settings as CrmSettings
from omni_service.settings import Settings as OmniSettings
from tests.support.processes import ROOT

# Read by libraries, not by a Settings class: prometheus_client's multiprocess mode.
OTHER_NAMES = ["PROMETHEUS_MULTIPROC_DIR"]


def environment_names(settings: type[BaseSettings]) -> list[str]:
    prefix = settings.model_config.get("env_prefix", "")
    names = []
    for field_name, field in settings.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names.append(str(alias.choices[0]))
        else:
            names.append(str(alias or f"{prefix}{field_name}").upper())
    return names


def listed_names() -> set[str]:
    text = (ROOT / ".env.example").read_text()
    return set(re.findall(r"^(?:# )?([A-Z][A-Z0-9_]*)=", text, flags=re.MULTILINE))


@pytest.mark.parametrize(
    "name", [*environment_names(CrmSettings), *environment_names(OmniSettings), *OTHER_NAMES]
)
def test_env_example_lists_the_setting(name: str) -> None:
    assert name in listed_names()


def test_env_example_ships_no_working_admin_key() -> None:
    text = (ROOT / ".env.example").read_text()

    assert "CRM_ADMIN_KEY=change-me\n" in text
    assert "OMNI_ADMIN_KEY=change-me\n" in text
