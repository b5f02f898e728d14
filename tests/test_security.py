"""Browser security headers (chat/security.py): HSTS only over HTTPS; Permissions-Policy and
Cross-Origin-Resource-Policy always."""

from __future__ import annotations

from typing import Any

import pytest
from quart import Quart

HSTS = "max-age=31536000; includeSubDomains"
OFF = ("camera=()", "microphone=()", "geolocation=()", "payment=()", "usb=()")


def assert_features_off(headers: Any) -> None:
    policy = headers["Permissions-Policy"]
    for feature in OFF:
        assert feature in policy
    assert headers["Cross-Origin-Resource-Policy"] == "same-origin"
    assert headers["Cross-Origin-Opener-Policy"] == "same-origin"


@pytest.mark.parametrize("path", ["/login", "/static/app.css", "/no-such-page", "/healthz"])
async def test_https_responses_carry_hsts_and_plain_http_never(app: Quart, path: str) -> None:
    client = app.test_client()
    secure = await client.get(path, scheme="https")
    plain = await client.get(path)
    assert secure.headers["Strict-Transport-Security"] == HSTS
    assert "Strict-Transport-Security" not in plain.headers
    for response in (secure, plain):
        assert_features_off(response.headers)


async def test_behind_a_proxy_the_forwarded_scheme_decides(make_app: Any) -> None:
    app = await make_app(PROXY_HOPS=1)
    client = app.test_client()
    through_tls = await client.get("/login", headers={"X-Forwarded-Proto": "https"})
    through_plain = await client.get("/login", headers={"X-Forwarded-Proto": "http"})
    assert through_tls.headers["Strict-Transport-Security"] == HSTS
    assert "Strict-Transport-Security" not in through_plain.headers
    assert_features_off(through_tls.headers)
    assert_features_off(through_plain.headers)


async def test_a_forwarded_scheme_is_not_believed_without_a_trusted_proxy(app: Quart) -> None:
    response = await app.test_client().get("/login", headers={"X-Forwarded-Proto": "https"})
    assert "Strict-Transport-Security" not in response.headers


async def test_refusals_carry_the_headers_too(app: Quart) -> None:
    client = app.test_client()
    foreign = await client.get("/login", scheme="https", headers={"Host": "evil.example"})
    cross_site = await client.post(
        "/login", scheme="https", headers={"Sec-Fetch-Site": "cross-site"}
    )
    for response in (foreign, cross_site):
        assert response.status_code in (400, 403)
        assert response.headers["Strict-Transport-Security"] == HSTS
        assert_features_off(response.headers)
