"""The SDK's own tests (tests/web/sdk_page/sdk_tests.js), run in Chromium against the gateway.

They run in the gateway's own page (``/``, with its CSP and its origin), into which the test
module is imported from a path Playwright answers: a page Playwright made up itself would have
no address space, and Chromium's local network access checks would refuse its loopback socket.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Route

from tests.support.servers import GatewayNode

PAGE_DIR = Path(__file__).parent / "sdk_page"
TESTS = [
    "backoff_bounds",
    "request_timeout",
    "requests_against_the_gateway",
    "resubscribe_with_since",
    "resync_when_not_recovered",
    "close_4000_waits_retry_ms",
    "close_4001_reconnects_with_backoff",
    "close_4500_refreshes_then_reconnects",
    "close_4501_stops",
    "other_45xx_codes_stop",
    "refresh_before_expiry_with_auth_op",
    "rest_fallback_with_long_poll",
    "typed_push_events",
]


@pytest.fixture(scope="module")
def sdk_page(browser: Browser, gateway: GatewayNode) -> Iterator[Page]:
    def serve(route: Route) -> None:
        name = route.request.url.rsplit("/", 1)[-1]
        route.fulfill(body=(PAGE_DIR / name).read_bytes(), content_type="text/javascript")

    context = browser.new_context(base_url=gateway.base_url)
    context.set_default_timeout(60_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.route(f"{gateway.base_url}/__sdk_tests__/*.js", serve)
    page.goto("/")
    page.evaluate("() => import('/__sdk_tests__/sdk_tests.js')")
    page.wait_for_function("() => window.sdkTests !== undefined")
    assert errors == []
    yield page
    context.close()


def test_every_sdk_test_is_run_here(sdk_page: Page) -> None:
    assert sdk_page.evaluate("() => window.sdkTests.names") == TESTS


@pytest.mark.parametrize("name", TESTS)
def test_sdk(sdk_page: Page, name: str) -> None:
    outcome = sdk_page.evaluate("(name) => window.sdkTests.run(name)", name)
    assert outcome == "ok", outcome
