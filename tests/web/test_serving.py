"""What the gateway serves for the web app, and that the API's headers did not change."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from gateway.http.security import SECURITY_HEADERS
from tests.support.servers import GatewayNode


def get(gateway: GatewayNode, path: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(gateway.base_url + path, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def directives(csp: str) -> dict[str, list[str]]:
    found = {}
    for part in csp.split(";"):
        name, *values = part.split()
        found[name] = values
    return found


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/", "text/html"),
        ("/app/app.js", "text/javascript"),
        ("/app/style.css", "text/css"),
        ("/app/icon.svg", "image/svg+xml"),
        ("/sdk/moosic.js", "text/javascript"),
    ],
)
def test_app_files_carry_the_page_policy(gateway: GatewayNode, path: str, kind: str) -> None:
    status, headers, body = get(gateway, path)
    assert status == 200
    assert body
    assert headers["Content-Type"].startswith(kind)
    host = gateway.base_url.removeprefix("http://")
    csp = directives(headers["Content-Security-Policy"])
    assert csp["default-src"] == ["'none'"]
    assert csp["script-src"] == ["'self'"]
    assert csp["style-src"] == ["'self'"]
    assert csp["connect-src"] == ["'self'", f"ws://{host}", f"wss://{host}"]
    assert csp["media-src"] == ["'self'", "blob:"]
    assert csp["frame-ancestors"] == ["'none'"]
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"


@pytest.mark.parametrize("path", ["/healthz", "/v1/openapi.json", "/v1/me", "/no-such-route"])
def test_api_answers_keep_the_policy_that_allows_nothing(gateway: GatewayNode, path: str) -> None:
    _status, headers, _body = get(gateway, path)
    for name, value in SECURITY_HEADERS.items():
        assert headers[name] == value, name


@pytest.mark.parametrize(
    "path",
    [
        "/app/../pyproject.toml",
        "/app/%2e%2e/pyproject.toml",
        "/app/.hidden",
        "/app/nothing.js",
        "/app/index.html/x",
        "/app/README.md",
        "/sdk/other.js",
    ],
)
def test_nothing_else_is_served(gateway: GatewayNode, path: str) -> None:
    status, headers, body = get(gateway, path)
    assert status == 404
    assert json.loads(body)["code"] == "not_found"
    assert headers["Content-Security-Policy"] == SECURITY_HEADERS["Content-Security-Policy"]
