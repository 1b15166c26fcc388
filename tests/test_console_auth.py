"""Console sign-in, sessions, roles and CSRF: the gateway app in-process (real Redis, real
HTTP semantics through httpx's ASGI transport), each test from its own client address so
per-IP sign-in counters never meet."""

from __future__ import annotations

import hashlib
import itertools
import logging
import re
import secrets
from contextlib import asynccontextmanager

import httpx
import pytest

from service.app import create_app
from service.config import load_settings
from service.console.auth import hash_token
from service.records.audit import read_audit
from service.store import session_key
from tests.conftest import TEST_SECRET

ALICE, VICTOR = "alice-token-0123456789abcdef", "victor-token-0123456789abcdef"
REVIEWERS = [
    {"name": "alice", "role": "reviewer", "token_sha256": hash_token(ALICE)},
    {"name": "victor", "role": "viewer", "token_sha256": hash_token(VICTOR)},
]
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")
_addresses = itertools.count(1)


def settings_for(redis_url: str, *, reviewers=REVIEWERS, **overrides):
    admin = {"reviewers": reviewers, **overrides.pop("admin", {})}
    return load_settings(redis_url=redis_url, key_secret=TEST_SECRET, detection={"enabled": False},
                         admin=admin, **overrides)


@asynccontextmanager
async def console(settings, *, base_url: str = "http://gateway.test"):
    """The gateway app started in-process; a client with an address no other test uses."""
    app = create_app(settings)
    await app.state.start()

    number = next(_addresses)
    transport = httpx.ASGITransport(app, client=(f"10.9.{number // 250}.{number % 250}", 40000))
    try:
        async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
            client.app = app
            client.ip = transport.client[0]
            yield client
    finally:
        await app.state.stop()


def form_csrf(page: httpx.Response) -> str:
    return re.search(r'name="csrf_token" value="([^"]*)"', page.text).group(1)


async def sign_in(client: httpx.AsyncClient, token: str, next_path: str = "/admin/audit") -> httpx.Response:
    form = await client.get("/admin/login")
    return await client.post("/admin/login", data={"token": token, "csrf_token": form_csrf(form), "next": next_path})


def cookie_header(response: httpx.Response, name: str) -> str:
    return next(value for value in response.headers.get_list("set-cookie") if value.startswith(f"{name}="))


@pytest.fixture
def redis_url(redis_server):
    return redis_server.url


async def test_without_reviewers_the_console_and_admin_api_do_not_exist(redis_url):
    async with console(settings_for(redis_url, reviewers=[])) as client:
        for path in ("/admin/login", "/admin/audit", "/admin/static/console.css", "/admin/api/flags"):
            response = await client.get(path, headers={"authorization": f"Bearer {ALICE}"})
            assert response.status_code == 404, path
            assert response.json()["error"]["code"] == "not_found"
        assert (await client.post("/admin/login", data={"token": ALICE})).status_code == 404


async def test_the_legacy_admin_token_opens_only_the_admin_api(redis_url, caplog):
    with caplog.at_level(logging.WARNING, logger="distillguard.console"):
        settings = settings_for(redis_url, reviewers=[], admin_token="legacy-plaintext-token")
        async with console(settings) as client:
            assert (await client.get("/admin/api/flags", headers={"authorization": "Bearer legacy-plaintext-token"})
                    ).status_code == 200
            assert (await client.get("/admin/login")).status_code == 404
    assert any("admin_token is deprecated" in record.getMessage() for record in caplog.records)


async def test_a_configured_token_signs_in_and_opens_the_console(redis_url):
    async with console(settings_for(redis_url)) as client:
        signed_in = await sign_in(client, ALICE, next_path="/admin/audit?actor=alice")
        assert signed_in.status_code == 303
        assert signed_in.headers["location"] == "/admin/audit?actor=alice"
        page = await client.get("/admin/audit")
        assert page.status_code == 200
        assert 'class="who">alice' in page.text and 'action="/admin/logout"' in page.text


async def test_pages_redirect_to_sign_in_and_back(redis_url):
    async with console(settings_for(redis_url)) as client:
        response = await client.get("/admin/audit?actor=scorer")
        assert response.status_code == 303
        assert response.headers["location"] == "/admin/login?next=%2Fadmin%2Faudit%3Factor%3Dscorer"
        form = await client.get(response.headers["location"])
        assert 'name="next" value="/admin/audit?actor=scorer"' in form.text


async def test_sign_in_never_redirects_off_the_console(redis_url):
    async with console(settings_for(redis_url)) as client:
        for target in ("//evil.example/admin", "https://evil.example/", "/\\evil.example", "/v1/models"):
            response = await sign_in(client, ALICE, next_path=target)
            assert response.headers["location"] == "/admin", target


async def test_a_wrong_token_is_refused_logged_without_the_token_and_audited(redis_url, caplog):
    wrong = "not-a-token-of-anyone-123456"
    async with console(settings_for(redis_url)) as client:
        ip = client.ip
        with caplog.at_level(logging.INFO, logger="distillguard.console"):
            response = await sign_in(client, wrong)
        assert response.status_code == 401
        assert "That token is not valid." in response.text
        assert (await client.get("/admin/audit")).status_code == 303  # no session
        entries = await read_audit(client.app.state.store.client, actor="anonymous", limit=1000)
    failures = [entry for entry in entries if entry["details"].get("ip") == ip]
    assert [entry["action"] for entry in failures] == ["sign_in_failed"]
    logged = [record.getMessage() for record in caplog.records]
    assert any("sign-in failed" in line and ip in line for line in logged)
    assert not any(wrong in line for line in logged)


async def test_the_session_cookie_is_httponly_strict_and_scoped_to_the_console(redis_url):
    async with console(settings_for(redis_url, admin={"session_ttl": "2h"})) as client:
        cookie = cookie_header(await sign_in(client, ALICE), "dg_session")
    attributes = [part.strip().lower() for part in cookie.split(";")]
    assert "httponly" in attributes and "samesite=strict" in attributes and "path=/admin" in attributes
    assert "max-age=7200" in attributes
    assert "secure" not in attributes  # plain HTTP: a Secure cookie would never come back


async def test_the_session_cookie_is_secure_over_tls(redis_url):
    async with console(settings_for(redis_url), base_url="https://gateway.test") as client:
        cookie = cookie_header(await sign_in(client, ALICE), "dg_session")
    assert "secure" in [part.strip().lower() for part in cookie.split(";")]


async def test_x_forwarded_proto_makes_the_cookie_secure_only_when_trusted(redis_url):
    forwarded = {"x-forwarded-proto": "https"}
    for trusted in (False, True):
        async with console(settings_for(redis_url, admin={"trust_forwarded_proto": trusted})) as client:
            form = await client.get("/admin/login", headers=forwarded)
            login_cookie = cookie_header(form, "dg_login").split(";")[0]  # a Secure cookie httpx keeps for https
            response = await client.post("/admin/login", headers={**forwarded, "cookie": login_cookie},
                                         data={"token": ALICE, "csrf_token": form_csrf(form)})
            attributes = [part.strip().lower() for part in cookie_header(response, "dg_session").split(";")]
            assert ("secure" in attributes) is trusted


async def test_redis_keeps_only_the_hash_of_the_session_cookie_with_the_session_ttl(redis_url):
    async with console(settings_for(redis_url, admin={"session_ttl": "1h"})) as client:
        await sign_in(client, ALICE)
        cookie = client.cookies["dg_session"]
        store = client.app.state.store.client
        assert await store.exists(session_key(cookie)) == 0
        name = session_key(hashlib.sha256(cookie.encode()).hexdigest())
        assert 3500 < await store.ttl(name) <= 3600
        record = await store.hgetall(name)
        assert record[b"name"] == b"alice" and cookie.encode() not in b"".join(record.values())


async def test_an_expired_session_sends_the_browser_back_to_sign_in(redis_url):
    async with console(settings_for(redis_url)) as client:
        await sign_in(client, ALICE)
        assert (await client.get("/admin/audit")).status_code == 200
        name = session_key(hashlib.sha256(client.cookies["dg_session"].encode()).hexdigest())
        store = client.app.state.store.client
        await store.pexpire(name, 1)
        while await store.exists(name):
            pass
        response = await client.get("/admin/audit")
        assert response.status_code == 303 and response.headers["location"].startswith("/admin/login")


async def test_sign_out_ends_the_session_and_is_audited(redis_url):
    async with console(settings_for(redis_url)) as client:
        await sign_in(client, ALICE)
        page = await client.get("/admin/audit")
        old_cookie = client.cookies["dg_session"]
        response = await client.post("/admin/logout", data={"csrf_token": form_csrf(page)})
        assert response.status_code == 303 and response.headers["location"] == "/admin/login"
        assert "dg_session" not in client.cookies
        client.cookies.set("dg_session", old_cookie, path="/admin")
        replayed = await client.get("/admin/audit")
        assert replayed.status_code == 303
        entries = await read_audit(client.app.state.store.client, actor="alice", limit=50)
        assert entries[0]["action"] == "sign_out"


async def test_sign_out_without_the_csrf_token_is_refused(redis_url):
    async with console(settings_for(redis_url)) as client:
        await sign_in(client, ALICE)
        response = await client.post("/admin/logout")
        assert response.status_code == 403
        assert response.headers["content-security-policy"] == CSP
        assert (await client.post("/admin/logout", data={"csrf_token": "forged"})).status_code == 403
        assert (await client.get("/admin/audit")).status_code == 200  # still signed in


def a_key_id() -> str:
    return secrets.token_hex(8)


async def notes_on(client: httpx.AsyncClient, key_id: str) -> list[str]:
    return [entry["actor"] for entry in await read_audit(client.app.state.store.client, target=key_id)]


async def test_a_reviewer_acts_with_the_csrf_token_from_a_form_or_header(redis_url):
    key_id = a_key_id()
    note = {"action": "note", "reason": "triage", "note": "looked at it"}
    async with console(settings_for(redis_url)) as client:
        await sign_in(client, ALICE)
        csrf = form_csrf(await client.get("/admin/audit"))
        assert (await client.post(f"/admin/keys/{key_id}/actions", data={**note, "csrf_token": csrf})
                ).status_code == 303
        assert (await client.post(f"/admin/keys/{key_id}/actions", data=note, headers={"x-csrf-token": csrf})
                ).status_code == 303
        assert await notes_on(client, key_id) == ["alice", "alice"]
        refused = await client.post(f"/admin/keys/{key_id}/actions", data=note)
        assert refused.status_code == 403 and "did not come from the console" in refused.text
        forged = await client.post(f"/admin/keys/{key_id}/actions", data={**note, "csrf_token": csrf[:-1]})
        assert forged.status_code == 403
        assert await notes_on(client, key_id) == ["alice", "alice"]  # the refused ones did nothing


async def test_a_viewer_reads_but_cannot_act(redis_url, caplog):
    key_id = a_key_id()
    async with console(settings_for(redis_url)) as client:
        await sign_in(client, VICTOR)
        page = await client.get("/admin/audit")
        assert page.status_code == 200 and "role-viewer" in page.text
        with caplog.at_level(logging.WARNING, logger="distillguard.console"):
            refused = await client.post(f"/admin/keys/{key_id}/actions",
                                        data={"action": "block", "reason": "x", "csrf_token": form_csrf(page)})
        assert refused.status_code == 403 and "only reviewers can act" in refused.text
        assert await notes_on(client, key_id) == []
    assert any("viewer victor refused" in record.getMessage() for record in caplog.records)


async def test_sign_in_is_refused_with_429_after_too_many_failures(redis_url, caplog):
    settings = settings_for(redis_url, admin={"sign_in_attempts": 3, "sign_in_window": "5m"})
    async with console(settings) as client:
        for attempt in range(3):
            assert (await sign_in(client, f"wrong-{attempt}")).status_code == 401
        with caplog.at_level(logging.WARNING, logger="distillguard.console"):
            limited = await sign_in(client, ALICE)  # the right token is not even checked now
        assert limited.status_code == 429
        assert 0 < int(limited.headers["retry-after"]) <= 300
        assert "dg_session" not in client.cookies
        assert limited.headers["content-security-policy"] == CSP
    assert any("3 failed attempts" in record.getMessage() for record in caplog.records)


async def test_the_sign_in_form_needs_its_own_csrf_token(redis_url):
    async with console(settings_for(redis_url)) as client:
        assert (await client.post("/admin/login", data={"token": ALICE})).status_code == 403
        await client.get("/admin/login")  # has the pre-session cookie, but no token from the form
        refused = await client.post("/admin/login", data={"token": ALICE, "csrf_token": "guessed"})
        assert refused.status_code == 403 and "dg_session" not in client.cookies


async def test_sign_in_with_redis_down_answers_503_without_crashing(own_redis):
    settings = settings_for(own_redis.url, redis_timeout="0.3s")
    async with console(settings) as client:
        await sign_in(client, ALICE)
        form = await client.get("/admin/login")
        own_redis.stop()
        response = await client.post("/admin/login", data={"token": ALICE, "csrf_token": form_csrf(form)})
        assert response.status_code == 503 and "Redis" in response.text
        assert (await client.get("/admin/audit")).status_code == 503  # the session cannot be checked
        assert (await client.get("/healthz")).status_code == 200


async def test_every_console_response_carries_the_security_headers(redis_url):
    async with console(settings_for(redis_url)) as client:
        responses = [await client.get("/admin/login"), await client.get("/admin/audit"),
                     await client.get("/admin/static/console.css")]
        await sign_in(client, VICTOR)
        responses += [await client.get("/admin/audit"), await client.post(f"/admin/keys/{a_key_id()}/actions")]
    for response in responses:
        assert response.headers["content-security-policy"] == CSP
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
    assert "<script" not in responses[0].text and "https://" not in responses[0].text


async def test_bearer_tokens_of_reviewers_open_the_admin_api_by_role(redis_url):
    key_id = a_key_id()
    note = {"action": "note", "reason": "triage", "note": "from a script"}
    async with console(settings_for(redis_url)) as client:
        for token in (ALICE, VICTOR):
            listed = await client.get("/admin/api/flags", headers={"authorization": f"Bearer {token}"})
            assert listed.status_code == 200
        viewer = await client.post(f"/admin/api/keys/{key_id}/actions", json=note,
                                   headers={"authorization": f"Bearer {VICTOR}"})
        assert viewer.status_code == 403 and viewer.json()["error"]["type"] == "permission_error"
        acted = await client.post(f"/admin/api/keys/{key_id}/actions", json=note,
                                  headers={"authorization": f"Bearer {ALICE}"})
        assert acted.status_code == 200
        assert await notes_on(client, key_id) == ["alice"]
        wrong = await client.get("/admin/api/flags", headers={"authorization": f"Bearer {ALICE}x"})
        assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_admin_token"
        hashed = await client.get("/admin/api/flags", headers={"authorization": f"Bearer {hash_token(ALICE)}"})
        assert hashed.status_code == 401  # the hash in the config is not itself a token


def test_reviewer_config_refuses_tokens_in_clear_and_duplicate_names():
    from service.config import ConfigError

    with pytest.raises(ConfigError, match="token_sha256"):
        load_settings(admin={"reviewers": [{"name": "a", "token_sha256": "plaintext-token"}]})
    with pytest.raises(ConfigError, match="unique"):
        load_settings(admin={"reviewers": [REVIEWERS[0], {**REVIEWERS[1], "name": "alice"}]})
    with pytest.raises(ConfigError, match="role"):
        load_settings(admin={"reviewers": [{**REVIEWERS[0], "role": "admin"}]})


def test_hash_token_makes_a_random_token_and_its_hash(capsys):
    from service.cli import main

    main(["admin", "hash-token"])
    printed = dict(line.split(": ", 1) for line in capsys.readouterr().out.splitlines())
    assert len(printed["token"]) >= 43
    assert printed["token_sha256"] == hash_token(printed["token"])

