"""The admin read API: off unless a token is configured, and refused without the right
bearer token, in OpenAI's error shape like every other refusal of the gateway."""

from __future__ import annotations

import httpx

from tests.conftest import base_config
from tests.support.traffic import key_id

TOKEN = "s3cret-admin-token"


def get(gateway, path: str, token: str | None = None) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"} if token is not None else {}
    return httpx.get(f"{gateway.url}/admin/api{path}", headers=headers, timeout=5)


def test_admin_routes_do_not_exist_without_a_configured_token(gateway_factory, upstream):
    gateway = gateway_factory(base_config(upstream.base_url))
    for path in ("/flags", f"/keys/{key_id('sk-any')}"):
        response = get(gateway, path, token="anything")
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"


def test_admin_routes_refuse_a_missing_or_wrong_token(gateway_factory, upstream):
    gateway = gateway_factory(base_config(upstream.base_url, admin_token=TOKEN))
    for path in ("/flags", f"/keys/{key_id('sk-any')}"):
        missing = get(gateway, path)
        assert missing.status_code == 401
        assert missing.json()["error"] == {"message": missing.json()["error"]["message"],
                                           "type": "invalid_request_error", "code": "missing_admin_token",
                                           "param": None}
        wrong = get(gateway, path, token=TOKEN + "x")
        assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_admin_token"
        assert get(gateway, path, token=TOKEN[:-1]).status_code == 401
    basic = httpx.get(f"{gateway.url}/admin/api/flags", headers={"authorization": f"Basic {TOKEN}"}, timeout=5)
    assert basic.status_code == 401


def test_the_token_from_the_environment_opens_the_admin_routes(gateway_factory, upstream):
    gateway = gateway_factory(base_config(upstream.base_url), env={"DISTILLGUARD_ADMIN_TOKEN": TOKEN})
    assert get(gateway, "/flags", token=TOKEN).json() == {"flags": []}
    unknown = get(gateway, f"/keys/{key_id('sk-never-seen')}", token=TOKEN).json()
    assert unknown["decision"]["action"] == "allow"
    assert unknown["flag"] is None and unknown["window"] is None and unknown["recent_events"] == []
    assert get(gateway, "/keys/not-a-key-id", token=TOKEN).status_code == 404
    assert get(gateway, "/flags?limit=0", token=TOKEN).status_code == 400
