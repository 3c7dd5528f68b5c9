"""Sign-in of the inbox pages: the form's CSRF token, the session cookie's attributes,
where a successful sign-in may send the browser."""

from __future__ import annotations

import re

import httpx

from tests.omni.factories import OrgHandle

SIGN_IN = "/inbox/sign-in"


async def _form(client: httpx.AsyncClient, next_path: str = "/inbox/rooms/r-1") -> str:
    page = await client.get(SIGN_IN, params={"next": next_path})
    assert page.status_code == 200
    assert 'type="password"' in page.text
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found is not None
    assert client.cookies.get("omni_csrf") == found.group(1)
    return found.group(1)


async def test_a_room_page_without_a_session_redirects_to_the_sign_in_form(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/inbox/rooms/r-1")

    assert response.status_code == 303
    assert response.headers["location"] == "/inbox/sign-in?next=%2Finbox%2Frooms%2Fr-1"


async def test_a_post_without_the_forms_csrf_token_is_refused(
    client: httpx.AsyncClient, org: OrgHandle
) -> None:
    await _form(client)

    response = await client.post(SIGN_IN, data={"token": org.token, "csrf_token": "forged"})

    assert response.status_code == 403
    assert "omni_session" not in response.headers.get("set-cookie", "")


async def test_a_wrong_token_renders_the_form_with_its_error(client: httpx.AsyncClient) -> None:
    csrf = await _form(client)

    response = await client.post(SIGN_IN, data={"token": "wrong", "csrf_token": csrf})

    assert response.status_code == 401
    assert 'role="alert"' in response.text
    assert "That token is not valid" in response.text


async def test_the_right_token_sets_an_httponly_samesite_cookie_and_goes_back(
    client: httpx.AsyncClient, org: OrgHandle
) -> None:
    csrf = await _form(client)

    response = await client.post(
        SIGN_IN, data={"token": org.token, "csrf_token": csrf, "next": "/inbox/rooms/r-1"}
    )

    assert response.status_code == 303
    assert response.headers["location"] == "/inbox/rooms/r-1"
    session_cookie = next(
        value for value in response.headers.get_list("set-cookie") if "omni_session=" in value
    )
    assert "HttpOnly" in session_cookie
    assert "SameSite=lax" in session_cookie
    assert org.token not in response.headers["location"]
    page = await client.get("/inbox/rooms/r-1")
    assert page.status_code == 200
    assert "Create Deal" in page.text


async def test_sign_in_never_redirects_off_the_inbox(
    client: httpx.AsyncClient, org: OrgHandle
) -> None:
    csrf = await _form(client)

    response = await client.post(
        SIGN_IN, data={"token": org.token, "csrf_token": csrf, "next": "//evil.example/inbox/"}
    )

    assert response.headers["location"] == "/inbox/"


async def test_the_preview_poll_accepts_the_session_cookie(
    client: httpx.AsyncClient, org: OrgHandle
) -> None:
    csrf = await _form(client)
    await client.post(SIGN_IN, data={"token": org.token, "csrf_token": csrf})

    response = await client.get("/api/v1/rooms/r-1/crm_preview")

    assert response.status_code == 200
    assert response.json()["cta"] == {"create_deal": True, "create_ticket": True}
