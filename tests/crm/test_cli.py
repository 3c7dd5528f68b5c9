"""``crm-parity``: every operator command on PostgreSQL, tables by default and JSON on
request, errors as one line on stderr with exit code 1, secrets only from the
environment or a hidden prompt."""

from __future__ import annotations

import asyncio
import io
import json
import sys
from typing import Any

import pytest

from crm_service import cli
from crm_service.settings import get_settings
from omni_service.settings import get_settings as omni_settings
from shared_contracts.signatures import generate_secret

SECRET = generate_secret()


@pytest.fixture
def run(
    crm_database_url: str,
    omni_database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Any:
    monkeypatch.setenv("CRM_DATABASE_URL", crm_database_url)
    monkeypatch.setenv("OMNI_DATABASE_URL", omni_database_url)
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.delenv(cli.WEBHOOK_SECRET_ENV, raising=False)
    monkeypatch.delenv(cli.API_TOKEN_ENV, raising=False)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    enqueued: list[tuple[int, str]] = []
    monkeypatch.setattr(cli, "_enqueue_or_warn", enqueued.extend)
    get_settings.cache_clear()
    omni_settings.cache_clear()

    def invoke(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = cli.main(list(args))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    invoke.enqueued = enqueued  # type: ignore[attr-defined]
    yield invoke
    get_settings.cache_clear()
    omni_settings.cache_clear()


def ok_json(run: Any, *args: str) -> Any:
    code, out, err = run(*args, "--json")
    assert code == 0, err
    return json.loads(out)


def assert_one_line_error(result: tuple[int, str, str], expected: str) -> None:
    code, _out, err = result
    assert code == 1
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("error: ")
    assert expected in err


def test_teams_create_then_list_shows_the_team_as_json_and_as_a_table(run: Any) -> None:
    created = ok_json(run, "teams", "create", "Acme", "acme")
    assert created["name"] == "Acme"
    assert created["api_key"].startswith("crm_key")
    assert ok_json(run, "teams", "list") == [
        {
            "id": created["id"],
            "name": "Acme",
            "external_company_id": "acme",
            "omni_base_url": None,
            "flags_on": [],
        }
    ]
    code, out, _ = run("teams", "list")
    assert code == 0
    assert "Acme" in out and "acme" in out


def test_create_team_alias_still_works(run: Any) -> None:
    assert ok_json(run, "create-team", "Acme", "acme")["external_company_id"] == "acme"


def test_duplicate_team_is_one_line_exit_1(run: Any) -> None:
    ok_json(run, "teams", "create", "Acme", "acme")
    assert_one_line_error(run("teams", "create", "Acme", "acme"), "already exists")


def test_flag_on_unknown_team_is_one_line_exit_1(run: Any) -> None:
    assert_one_line_error(run("flag", "999", "on"), "team 999 not found")


def test_flag_on_off_show(run: Any) -> None:
    team = ok_json(run, "teams", "create", "Acme", "acme")["id"]
    assert ok_json(run, "flag", str(team), "on") == {
        "team_id": team,
        "flag": "bot_ai_creation_parity",
        "enabled": True,
    }
    assert ok_json(run, "flag", str(team), "show") == [
        {"team_id": team, "flag": "bot_ai_creation_parity", "enabled": True}
    ]
    assert ok_json(run, "teams", "list")[0]["flags_on"] == ["bot_ai_creation_parity"]
    assert ok_json(run, "flag", str(team), "off")["enabled"] is False


def test_link_omni_reads_secrets_from_the_environment(
    run: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    team = ok_json(run, "teams", "create", "Acme", "acme")["id"]
    monkeypatch.setenv(cli.WEBHOOK_SECRET_ENV, SECRET)
    monkeypatch.setenv(cli.API_TOKEN_ENV, "omni-token")
    link = ok_json(run, "link-omni", str(team), "--base-url", "http://omni.test/")
    assert link["base_url"] == "http://omni.test"
    assert link["public_url"] == "http://omni.test"
    assert ok_json(run, "teams", "list")[0]["omni_base_url"] == "http://omni.test"


def test_link_omni_without_secret_in_env_and_no_input_is_one_line(run: Any) -> None:
    team = ok_json(run, "teams", "create", "Acme", "acme")["id"]
    assert_one_line_error(
        run("link-omni", str(team), "--base-url", "http://omni.test"),
        cli.WEBHOOK_SECRET_ENV,
    )


@pytest.mark.parametrize("option", ["--webhook-secret", "--api-token"])
def test_secrets_are_not_accepted_as_arguments(run: Any, option: str) -> None:
    team = ok_json(run, "teams", "create", "Acme", "acme")["id"]
    assert_one_line_error(
        run("link-omni", str(team), "--base-url", "http://omni.test", option, "x"),
        f"No such option: {option}",
    )


def test_link_omni_bad_url_is_one_line_exit_1(run: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    team = ok_json(run, "teams", "create", "Acme", "acme")["id"]
    monkeypatch.setenv(cli.WEBHOOK_SECRET_ENV, SECRET)
    monkeypatch.setenv(cli.API_TOKEN_ENV, "omni-token")
    assert_one_line_error(run("link-omni", str(team), "--base-url", "not a url"), "base_url")


def test_link_omni_bad_secret_is_one_line_exit_1(run: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    team = ok_json(run, "teams", "create", "Acme", "acme")["id"]
    monkeypatch.setenv(cli.WEBHOOK_SECRET_ENV, "not-a-secret")
    monkeypatch.setenv(cli.API_TOKEN_ENV, "omni-token")
    assert_one_line_error(
        run("link-omni", str(team), "--base-url", "http://omni.test"), "webhook_secret"
    )


def test_rotate_crm_secret_keeps_the_previous_one(
    run: Any, monkeypatch: pytest.MonkeyPatch, crm_database_url: str
) -> None:
    team = ok_json(run, "teams", "create", "Acme", "acme")["id"]
    monkeypatch.setenv(cli.WEBHOOK_SECRET_ENV, SECRET)
    monkeypatch.setenv(cli.API_TOKEN_ENV, "omni-token")
    ok_json(run, "link-omni", str(team), "--base-url", "http://omni.test")
    monkeypatch.delenv(cli.WEBHOOK_SECRET_ENV)
    rotated = ok_json(run, "secrets", "rotate-crm", str(team), "--generate-secret")
    assert rotated["secret_rotated_at"] is not None
    stored = _scalar(
        crm_database_url,
        "SELECT previous_webhook_secret FROM omnichannel_links WHERE team_id = :id",
        id=team,
    )
    assert stored == SECRET


def test_rotate_crm_secret_without_link_is_one_line(run: Any) -> None:
    team = ok_json(run, "teams", "create", "Acme", "acme")["id"]
    assert_one_line_error(
        run("secrets", "rotate-crm", str(team), "--generate-secret"), "no Omnichannel link"
    )


def test_orgs_create_list_and_rotate(run: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(cli.WEBHOOK_SECRET_ENV, SECRET)
    org = ok_json(run, "orgs", "create", "Acme Inbox", "acme")
    assert org["api_token"]
    assert "webhook_secret" not in org
    listed = ok_json(run, "orgs", "list")
    assert [(o["id"], o["company_id"], o["secret_rotated_at"]) for o in listed] == [
        (org["id"], "acme", None)
    ]
    monkeypatch.setenv(cli.WEBHOOK_SECRET_ENV, generate_secret())
    rotated = ok_json(run, "secrets", "rotate-omni", str(org["id"]))
    assert rotated["secret_rotated_at"] is not None
    code, out, _ = run("orgs", "list")
    assert code == 0 and "Acme Inbox" in out


def test_duplicate_org_and_unknown_org_are_one_line(
    run: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    ok_json(run, "orgs", "create", "Acme Inbox", "acme", "--generate-secret")
    assert_one_line_error(
        run("orgs", "create", "Again", "acme", "--generate-secret"), "already exists"
    )
    assert_one_line_error(
        run("secrets", "rotate-omni", "999", "--generate-secret"), "organization 999 not found"
    )


def test_deliveries_list_inspect_replay(run: Any, crm_database_url: str) -> None:
    team = ok_json(run, "teams", "create", "Acme", "acme")["id"]
    delivery = _failed_delivery(crm_database_url, team)
    page = ok_json(run, "deliveries", "list", "--status", "failed")
    assert [item["id"] for item in page["items"]] == [delivery]
    detail = ok_json(run, "deliveries", "inspect", str(delivery))
    assert detail["attempts"][0]["response_excerpt"] == "nope"
    code, out, _ = run("deliveries", "inspect", str(delivery))
    assert code == 0 and "nope" in out
    replayed = ok_json(run, "deliveries", "replay", str(delivery))
    assert replayed["status"] == "pending"
    assert run.enqueued == [(delivery, "webhook")]
    assert_one_line_error(run("deliveries", "replay", str(delivery)), "still pending")
    assert_one_line_error(run("deliveries", "inspect", "999"), "delivery 999 not found")


def test_deliveries_bad_status_is_one_line(run: Any) -> None:
    assert_one_line_error(run("deliveries", "list", "--status", "lost"), "status must be one of")


def test_database_unreachable_is_one_line(run: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRM_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:1/nothing")
    get_settings.cache_clear()
    assert_one_line_error(run("teams", "list"), "database unreachable")


def invoke_without_databases(
    capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, str, str]:
    """For what fails or finishes before any command touches a database."""
    capsys.readouterr()
    code = cli.main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["teams", "create", "--bogus"], "No such option: --bogus"),
        (["teams", "create", "Acme"], "Missing argument 'company_id'"),
        (["flag", "abc", "on"], "Invalid value for 'team_id'"),
        (["flag", "1", "sideways"], "Invalid value for 'action'"),
        (["deliveries", "list", "--limit", "0"], "Invalid value for '--limit'"),
        (["demo", "--crm-port"], "Option '--crm-port' requires an argument"),
        (["bogus"], "No such command 'bogus'"),
    ],
    ids=[
        "unknown-option",
        "missing-argument",
        "bad-integer",
        "bad-choice",
        "out-of-range",
        "option-without-value",
        "unknown-command",
    ],
)
def test_usage_errors_are_one_line_exit_1_with_a_help_hint(
    capsys: pytest.CaptureFixture[str], args: list[str], expected: str
) -> None:
    result = invoke_without_databases(capsys, *args)
    assert_one_line_error(result, expected)
    assert "--help`)" in result[2]
    assert result[1] == ""


def test_help_still_prints_usage_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = invoke_without_databases(capsys, "teams", "create", "--help")
    assert code == 0
    assert "Usage: crm-parity teams create" in out
    assert err == ""


def test_a_group_without_a_command_prints_its_help_and_exits_1(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _err = invoke_without_databases(capsys, "teams")
    assert code == 1
    assert "Usage: crm-parity teams" in out


def test_every_command_option_and_argument_has_help_text() -> None:
    import typer.main

    def walk(command: Any, path: str) -> Any:
        yield path, command
        for name, sub in getattr(command, "commands", {}).items():
            yield from walk(sub, f"{path} {name}")

    undocumented = []
    for path, command in walk(typer.main.get_command(cli.app), "crm-parity"):
        if not (command.help or "").strip():
            undocumented.append(path)
        undocumented += [
            f"{path} {parameter.param_type_name} {parameter.name}"
            for parameter in command.params
            if not (getattr(parameter, "help", None) or "").strip()
        ]
    assert not undocumented, "\n".join(undocumented)


def _scalar(url: str, sql: str, **params: Any) -> Any:
    from sqlalchemy import text

    from crm_service.database import create_engine

    async def query() -> Any:
        engine = create_engine(url)
        try:
            async with engine.connect() as connection:
                return await connection.scalar(text(sql), params)
        finally:
            await engine.dispose()

    return asyncio.run(query())


def _failed_delivery(url: str, team_id: int) -> int:
    from crm_service.database import create_engine, session_factory
    from crm_service.events.models import DeliveryAttempt, OutboxEvent

    async def insert() -> int:
        engine = create_engine(url)
        try:
            async with session_factory(engine)() as session:
                event = OutboxEvent(
                    webhook_id="msg_cli_test",
                    team_id=team_id,
                    kind="webhook",
                    event_type="qontak.crm.deal.create",
                    record_kind="deal",
                    record_id=1,
                    body="{}",
                    status="failed",
                    last_error="HTTP 400",
                )
                session.add(event)
                await session.flush()
                session.add(
                    DeliveryAttempt(
                        outbox_event_id=event.id,
                        status_code=400,
                        latency_ms=5,
                        error="HTTP 400",
                        response_excerpt="nope",
                    )
                )
                await session.commit()
                return event.id
        finally:
            await engine.dispose()

    return asyncio.run(insert())


def test_migrate_both_on_current_databases_is_a_no_op(run: Any) -> None:
    code, _out, err = run("migrate")
    assert code == 0, err
    assert "migrated: both" in err


def test_link_omni_prompts_hidden_when_env_is_unset_on_a_terminal(
    run: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    team = ok_json(run, "teams", "create", "Acme", "acme")["id"]
    prompts: list[tuple[str, bool]] = []

    def prompt(text: str, hide_input: bool = False) -> str:
        prompts.append((text, hide_input))
        return SECRET if "secret" in text else "omni-token"

    monkeypatch.setattr(sys.stdin, "isatty", lambda: True)
    monkeypatch.setattr(cli.typer, "prompt", prompt)
    link = ok_json(run, "link-omni", str(team), "--base-url", "http://omni.test")
    assert link["team_id"] == team
    assert prompts == [("Webhook secret", True), ("Omni API token", True)]
