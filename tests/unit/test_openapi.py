"""The OpenAPI document matches the route table: every route is in it, and nothing else is."""

from __future__ import annotations

import re

import schemathesis

from gateway.app import create_app
from gateway.openapi import document
from gateway.settings import Settings
from handlers.errors import ALL_KINDS

SETTINGS = Settings(jwt_secret="x" * 32)


def test_every_route_is_in_the_openapi_document_and_nothing_else() -> None:
    app = create_app(SETTINGS)
    routes = {
        (route.method.lower(), route.resource.canonical)
        for route in app.router.routes()
        if route.method != "HEAD" and route.resource is not None
    }
    paths = document(SETTINGS)["paths"]
    documented = {(method, path) for path, methods in paths.items() for method in methods}
    assert routes == documented


def test_path_parameters_match_the_route_templates() -> None:
    for path, methods in document(SETTINGS)["paths"].items():
        names = set(re.findall(r"{(\w+)}", path))
        for method, operation in methods.items():
            declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert declared == names, (method, path)


def test_error_schema_lists_every_code() -> None:
    codes = document(SETTINGS)["components"]["schemas"]["Error"]["properties"]["code"]["enum"]
    assert set(codes) == {kind.code for kind in ALL_KINDS}


def test_every_operation_answers_rate_limited_except_probes() -> None:
    for path, methods in document(SETTINGS)["paths"].items():
        for operation in methods.values():
            if path in ("/healthz", "/readyz", "/metrics"):
                assert "429" not in operation["responses"]
            else:
                assert "429" in operation["responses"], path


def test_limits_from_settings_are_in_the_document() -> None:
    small = Settings(jwt_secret="x" * 32, history_max_limit=7)
    operation = document(small)["paths"]["/v1/channels/{channel}/messages"]["get"]
    limit = next(p for p in operation["parameters"] if p["name"] == "limit")
    assert limit["schema"]["maximum"] == 7


def test_the_document_loads_as_openapi() -> None:
    schema = schemathesis.openapi.from_dict(document(SETTINGS))
    operations = list(schema.get_all_operations())
    assert len(operations) == sum(len(m) for m in document(SETTINGS)["paths"].values())
