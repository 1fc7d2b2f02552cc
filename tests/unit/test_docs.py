"""What is documented exists and what exists is documented."""

from __future__ import annotations

import re
from pathlib import Path

from gateway.app import create_app
from gateway.http import server_api
from gateway.http import web as web_pages
from gateway.settings import FIELDS, PREFIX, Settings
from gateway.ws.frames import CloseCode
from handlers import OPERATIONS
from handlers.errors import ALL_KINDS

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
PROTOCOL = (ROOT / "docs" / "protocol.md").read_text()


def test_every_setting_is_in_the_readme_table() -> None:
    documented = set(re.findall(r"^\| `(MOOSIC_[A-Z_]+)` \|", README, re.MULTILINE))
    assert documented == {PREFIX + suffix for suffix in FIELDS}


def test_every_error_code_is_documented_with_its_status() -> None:
    rows = dict(re.findall(r"^\| `([a-z_]+)` \| (\d{3}) \|", PROTOCOL, re.MULTILINE))
    assert {kind.code: str(kind.status) for kind in ALL_KINDS} == rows


def test_every_op_is_documented() -> None:
    for op in OPERATIONS:
        assert f"`{op.name}`" in PROTOCOL, op.name


def test_every_own_close_code_is_documented() -> None:
    for code in CloseCode:
        assert f"| {code.value} |" in PROTOCOL, code


def test_every_route_is_documented() -> None:
    app = create_app(Settings.of(jwt_secret="x" * 32))
    routes = {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.method != "HEAD" and route.resource is not None
    }
    documented = set(re.findall(r"^\| `(GET|POST|DELETE|PUT) (/[^`? ]*)", PROTOCOL, re.MULTILINE))
    assert routes - {("GET", "/ws")} - web_pages.pages() - server_api.pages() == documented
    assert "GET /ws" in PROTOCOL


SOURCE_PATH = re.compile(
    r"`((?:gateway|handlers|storage|media|infra|loadtest|tests|web|sdk|docs)/[A-Za-z0-9_./-]+)"
    r"(?:::[A-Za-z0-9_]+)?`"
)
MADE_WHEN_RUN = {"loadtest/.venv", "loadtest/reports", "loadtest/bench/.work", "tests/artifacts"}
"""Folders the tools make on their first run, not in a checkout."""


def test_every_file_the_docs_name_exists() -> None:
    documents = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    documents += [ROOT / "loadtest" / "README.md", ROOT / "infra" / "README.md"]
    missing = []
    for document in documents:
        for found in SOURCE_PATH.findall(document.read_text()):
            path = found.rstrip("/.")
            if "*" in path or "{" in path or path.split("/")[0:2] == ["loadtest", "reports"]:
                continue
            if path not in MADE_WHEN_RUN and not (ROOT / path).exists():
                missing.append(f"{document.relative_to(ROOT)}: {found}")
    assert not missing, missing
