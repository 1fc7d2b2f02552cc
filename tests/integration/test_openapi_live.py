"""Schemathesis against a live gateway process: no 5xx, and every answer is as documented.

The document is read from the gateway itself (``GET /v1/openapi.json``). Requests are generated
from it, valid and invalid, signed in as a real user; each answer is checked for a server error,
a status, content type, headers and body that the document does not declare, and the document
is checked to be exactly as strict as the server: a request it calls valid is not refused with
400 (``positive_data_acceptance``), one it calls invalid is refused (``negative_data_rejection``).
Examples per operation are bounded and derandomized, so the run is short and the same every time.

Rules a JSON Schema cannot say are applied to generated valid requests here, and written in
the document's descriptions: a DM channel's two user ids are different and sorted, a logout
without a refresh token needs an access token that has a session (each gets a fresh one), a
mute's ``until`` is in the future (at most 366 days ahead), and quiet hours start and end at
different times.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.config import SchemathesisConfig
from schemathesis.generation.modes import GenerationMode

from gateway.http.openapi import document
from gateway.settings import Settings
from tests.conftest import JWT_SECRET, PASSWORD
from tests.integration.test_ws import token_for
from tests.support.servers import GatewayNode

EXAMPLES = 25
NEGATIVE_STATUSES = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "429"]
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    positive_data_acceptance,
    negative_data_rejection,
]


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayNode]:
    work: Path = tmp_path_factory.mktemp("openapi")
    node = GatewayNode(
        {
            "MOOSIC_DEV": "1",
            "MOOSIC_JWT_SECRET": JWT_SECRET,
            "MOOSIC_SQLITE_PATH": str(work / "api.db"),
            "MOOSIC_MAIL_DIR": str(work / "mail"),
            "MOOSIC_LOG_LEVEL": "WARNING",
            "MOOSIC_LONGPOLL_MAX_SECONDS": "0.2",  # generated long polls must not wait 25 s
            "MOOSIC_RATE_LIMITS": "off",  # explore the API; limits have their own tests
            "MOOSIC_SCRYPT_N": "1024",
        },
        work / "gateway.log",
    ).start()
    yield node
    node.stop()


@pytest.fixture(scope="module")
def user_token(node: GatewayNode) -> str:
    response = requests.post(
        node.base_url + "/v1/auth/register",
        json={"username": "schemathesis", "password": PASSWORD},
        timeout=10,
    )
    assert response.status_code == 201, response.text
    # A token without a session: a generated logout cannot end it (it answers 400 instead).
    return token_for(response.json()["user_id"], exp=2**40)


@pytest.fixture(scope="module")
def api(node: GatewayNode) -> Any:
    config = SchemathesisConfig.from_dict(
        {
            "generation": {"deterministic": True, "database": "none", "max-examples": EXAMPLES},
            # A size over the upload limit is refused with 413 `upload_too_large`, as documented.
            "checks": {"negative_data_rejection": {"expected-statuses": NEGATIVE_STATUSES}},
        }
    )
    return schemathesis.openapi.from_url(node.base_url + "/v1/openapi.json", config=config)


def canonical_dm(name: Any) -> Any:
    """``dm:{b}:{a}`` as the server wants it: ``dm:{a}:{b}``, two different ids, sorted."""
    if not isinstance(name, str) or not name.startswith("dm:"):
        return name
    a, _, b = name[3:].partition(":")
    if a == b:
        b = a[:-1] + ("1" if a[-1] == "0" else "0")
    return f"dm:{min(a, b)}:{max(a, b)}"


def as_the_server_reads(case: Any) -> None:
    """Apply to a valid case the rules JSON Schema cannot say (see the module's text)."""
    path = case.path_parameters
    if "channel" in path:  # generated path parameters arrive percent-encoded
        path["channel"] = quote(canonical_dm(unquote(path["channel"])), safe="")
    if isinstance(case.body, dict):
        if "channel" in case.body:
            case.body["channel"] = canonical_dm(case.body["channel"])
        if isinstance(case.body.get("until"), int):
            case.body["until"] = int(time.time() * 1000) + 3_600_000
        quiet = case.body.get("quiet_hours")
        if isinstance(quiet, dict) and quiet.get("start") == quiet.get("end"):
            quiet["end"] = "00:00" if quiet["start"] != "00:00" else "00:01"
        for name, value in case.body.items():
            # JSON Schema counts 16.0 as an integer; the server wants integers written as such.
            if isinstance(value, float) and value.is_integer():
                case.body[name] = int(value)


def fresh_session(node: GatewayNode) -> str:
    response = requests.post(
        node.base_url + "/v1/auth/login",
        json={"username": "schemathesis", "password": PASSWORD},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def operation_labels() -> list[str]:
    """The operations to test, from the same code that serves the document."""
    paths = document(Settings.of(jwt_secret="x" * 32))["paths"]
    return [
        f"{method.upper()} {path}"
        for path, methods in paths.items()
        for method in methods
        if path != "/ws"  # the upgrade is tested over real sockets
    ]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
@pytest.mark.parametrize("label", operation_labels())
def test_every_answer_is_documented_and_none_is_a_server_error(
    api: Any, node: GatewayNode, user_token: str, label: str, mode: GenerationMode
) -> None:
    operation = api.find_operation_by_label(label)
    assert operation is not None, f"{label} is not in the served document"
    # Explicit, so schemathesis neither drops it in a "negative" case (that the call would put
    # back, making the case valid) nor counts it as generated.
    headers = {"Authorization": f"Bearer {user_token}"} if operation.security else {}

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode, headers=headers or None))
    def run(case: Any) -> None:
        if case.meta.generation.mode.is_positive:
            as_the_server_reads(case)
        extra = {}
        if label == "POST /v1/auth/logout":
            # A logout ends the session it is given: each case ends a new one.
            extra = {"Authorization": f"Bearer {fresh_session(node)}"}
        case.call_and_validate(base_url=node.base_url, headers=extra, checks=CHECKS, timeout=10)

    try:
        run()
    except Unsatisfiable:
        # Nothing in this operation can be made invalid (no parameters, or none constrained).
        assert mode is GenerationMode.NEGATIVE, label
    log = node.log_path.read_text()
    assert "Traceback" not in log, log[-3000:]
