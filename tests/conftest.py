from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.databases import create_template, database_from, drop_database


@pytest.fixture(scope="session")
def crm_template() -> Iterator[str]:
    name = create_template("crm")
    yield name
    drop_database(name)


@pytest.fixture(scope="session")
def omni_template() -> Iterator[str]:
    name = create_template("omni")
    yield name
    drop_database(name)


@pytest.fixture
def crm_database_url(crm_template: str) -> Iterator[str]:
    """A fresh, migrated CRM database on PostgreSQL for this test alone."""
    with database_from(crm_template) as url:
        yield url


@pytest.fixture
def omni_database_url(omni_template: str) -> Iterator[str]:
    """A fresh, migrated Omni database on PostgreSQL for this test alone."""
    with database_from(omni_template) as url:
        yield url
