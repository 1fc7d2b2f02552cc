"""The server API's admin page in headless Chromium: a wrong key is refused and shows why; the
right one opens the panels, which list the node, a live socket, its channel and the rates, and
a disconnect button closes that socket (issue 17)."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, expect

from tests.support.servers import GatewayNode
from tests.web.conftest import WAIT_MS, gateway_env, screenshot

KEY = "admin-key-" + "k" * 40


@pytest.fixture(scope="module")
def admin_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayNode]:
    tmp: Path = tmp_path_factory.mktemp("admin-gateway")
    node = GatewayNode(gateway_env(tmp, MOOSIC_SERVER_API_KEYS=KEY), tmp / "gateway.log")
    node.env["MOOSIC_WS_ALLOWED_ORIGINS"] = node.base_url
    node.start()
    try:
        yield node
    finally:
        node.stop()


def open_admin(browser: Browser, node: GatewayNode, refused: list[str]) -> Page:
    context = browser.new_context(base_url=node.base_url)
    context.set_default_timeout(WAIT_MS)

    def note(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            refused.append(message.text)

    context.on("console", note)
    page = context.new_page()
    page.goto("/server/v1/admin/")
    return page


def test_the_admin_page_needs_the_key_and_lists_the_node(
    browser: Browser, admin_gateway: GatewayNode
) -> None:
    refused: list[str] = []
    page = open_admin(browser, admin_gateway, refused)
    page.fill("#key", "w" * 40)
    page.click("#key-form button")
    expect(page.locator("#status")).to_have_text("wrong key")
    expect(page.locator("#panels")).to_be_hidden()

    # A user with a socket open (from the page itself: same origin), subscribed to a room.
    request = urllib.request.Request(
        admin_gateway.base_url + "/v1/auth/register",
        data=json.dumps({"username": "watched", "password": "a long password"}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        account = json.load(response)
    page.evaluate(
        """token => new Promise((resolve, reject) => {
            const ws = new WebSocket(`ws://${location.host}/ws?token=${token}`);
            window.watched = ws;
            window.closedWith = null;
            ws.onclose = (e) => { window.closedWith = e.code; };
            ws.onopen = () => ws.send(JSON.stringify(
                {op: "subscribe", id: 1, channel: "room:admin-test"}));
            ws.onmessage = (e) => { if (JSON.parse(e.data).id === 1) resolve(); };
            ws.onerror = reject;
        })""",
        account["access_token"],
    )

    page.fill("#key", KEY)
    page.click("#key-form button")
    expect(page.locator("#panels")).to_be_visible()
    expect(page.locator("#nodes tbody tr")).to_have_count(1)
    expect(page.locator("#nodes tbody tr td").first).to_contain_text(f":{admin_gateway.port}")
    expect(page.locator("#connections tbody tr")).to_have_count(1)
    expect(page.locator("#connections tbody tr td").first).to_have_text(account["user_id"])
    expect(page.locator("#channels tbody")).to_contain_text("room:admin-test")
    expect(page.locator("#rates tbody tr").first).to_be_visible()
    screenshot(page, "admin")

    page.locator("#connections tbody tr button").click()  # disconnect
    # (wait_for_function would evaluate a string in the page: the admin CSP forbids that)
    deadline = time.monotonic() + WAIT_MS / 1000
    while page.evaluate("window.closedWith") is None and time.monotonic() < deadline:
        page.wait_for_timeout(50)
    assert page.evaluate("window.closedWith") == 4503
    expect(page.locator("#connections tbody tr")).to_have_count(0)
    assert refused == []
