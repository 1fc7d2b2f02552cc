"""A real gateway process and headless Chromium (Debian's ``chromium``, through Playwright).

Playwright drives the system browser (``executable_path``), so nothing is downloaded: no
``playwright install``, no network. The gateway serves the app from its own origin, which is
therefore in ``MOOSIC_WS_ALLOWED_ORIGINS`` (as a deployment must do, docs/web.md).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    Playwright,
    sync_playwright,
)

from tests.support.servers import GatewayNode, local_env

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
WAIT_MS = 30_000
"""Generous: a busy CI machine may be slow, and nothing here asserts a duration."""
PHONE = {"width": 390, "height": 844}


def gateway_env(tmp: Path, **extra: str) -> dict[str, str]:
    return local_env(
        tmp,
        MOOSIC_MEDIA_LADDER="72:96,96:128,144:192",
        MOOSIC_VIDEO_READY_ON_CREATE="1",
        # Each test signs up several users from loopback; other limits keep their defaults.
        MOOSIC_RATE_LIMITS="publish=off,register=1000/1h,login=1000/1h",
        **extra,
    )


@pytest.fixture(scope="package")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayNode]:
    tmp = tmp_path_factory.mktemp("web-gateway")
    node = GatewayNode(gateway_env(tmp), tmp / "gateway.log")
    node.env["MOOSIC_WS_ALLOWED_ORIGINS"] = node.base_url  # the port is chosen in __init__
    node.start()
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="package")
def browser(playwright: Playwright) -> Iterator[Browser]:
    if not os.path.exists(CHROMIUM):
        raise RuntimeError("chromium is not installed; run `make services` (it installs it)")
    browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
    try:
        yield browser
    finally:
        browser.close()


@pytest.fixture
def new_context(browser: Browser, gateway: GatewayNode) -> Iterator[Callable[[], BrowserContext]]:
    """Make phone-sized browser contexts (each its own storage: its own user); close them all."""
    made: list[BrowserContext] = []
    refused: list[str] = []

    def note_refusal(message: ConsoleMessage) -> None:
        """The page's CSP must allow everything the app does: a refusal fails the test."""
        if "Content Security Policy" in message.text:
            refused.append(message.text)

    def make() -> BrowserContext:
        context = browser.new_context(
            base_url=gateway.base_url, viewport=PHONE, is_mobile=True, has_touch=True
        )
        context.set_default_timeout(WAIT_MS)
        context.on("console", note_refusal)
        made.append(context)
        return context

    yield make
    for context in made:
        context.close()
    assert refused == []


def screenshot(page: Page, name: str) -> None:
    """Write tests/artifacts/{name}.png (git-ignored), on every run."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
