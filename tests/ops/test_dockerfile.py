"""The image installs the locked dependencies in a layer of its own, before the source, and
the build context leaves the developer's venv, data and history out."""

from __future__ import annotations

from tests.support.processes import ROOT


def test_locked_dependencies_are_installed_before_the_source_is_copied() -> None:
    lines = [line.strip() for line in (ROOT / "Dockerfile").read_text().splitlines()]
    install = lines.index("RUN pip install --no-cache-dir -r requirements.lock")
    first_source = next(i for i, line in enumerate(lines) if line.startswith("COPY service_kit"))

    assert lines.index("COPY requirements.lock ./") < install < first_source
    assert "RUN pip install --no-cache-dir --no-deps ." in lines[first_source:]


def test_the_build_context_leaves_out_venv_data_and_history() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())

    assert {".git", ".venv", "var", "__pycache__", ".pytest_cache"} <= ignored
