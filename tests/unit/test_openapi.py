"""The OpenAPI document matches the route table: every route is in it, and nothing else is."""

from __future__ import annotations

import re
from typing import Any

import pytest
import schemathesis

from gateway.app import create_app
from gateway.http import server_api
from gateway.http import web as web_pages
from gateway.http.openapi import document
from gateway.settings import Settings
from handlers.channels import CHANNEL_PATTERN, ID_PATTERN, MAX_CHANNEL_LENGTH, parse_channel
from handlers.errors import ALL_KINDS, OpError
from handlers.preferences import zone_of
from media.keys import CONTENT_TYPES
from storage import ids

SETTINGS = Settings.of(jwt_secret="x" * 32)


def test_every_route_is_in_the_openapi_document_and_nothing_else() -> None:
    app = create_app(SETTINGS)
    routes = {
        (route.method.lower(), route.resource.canonical)
        for route in app.router.routes()
        if route.method != "HEAD" and route.resource is not None
    }
    paths = document(SETTINGS)["paths"]
    documented = {(method, path) for path, methods in paths.items() for method in methods}
    pages = {(method.lower(), path) for method, path in web_pages.pages() | server_api.pages()}
    assert routes - pages == documented


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
    small = Settings.of(jwt_secret="x" * 32, history_max_limit=7)
    operation = document(small)["paths"]["/v1/channels/{channel}/messages"]["get"]
    limit = next(p for p in operation["parameters"] if p["name"] == "limit")
    assert limit["schema"]["maximum"] == 7


def test_the_document_loads_as_openapi() -> None:
    schema = schemathesis.openapi.from_dict(document(SETTINGS))
    operations = list(schema.get_all_operations())
    assert len(operations) == sum(len(m) for m in document(SETTINGS)["paths"].values())


def _operation(path: str, method: str) -> dict[str, Any]:
    operation: dict[str, Any] = document(SETTINGS)["paths"][path][method]
    return operation


def test_a_request_body_is_required_when_its_params_have_required_fields() -> None:
    for path, methods in document(SETTINGS)["paths"].items():
        for method, operation in methods.items():
            body = operation.get("requestBody")
            if body is None:
                continue
            (content,) = body["content"].values()
            assert body["required"] is bool(content["schema"].get("required")), (method, path)
    assert _operation("/v1/auth/register", "post")["requestBody"]["required"] is True
    assert _operation("/v1/auth/logout", "post")["requestBody"]["required"] is False


CHANNEL_NAMES = [
    "room:lobby",
    "room:a.b-c_d",
    "group:g1",
    "video:v_1",
    "user:u-1",
    "dm:a:b",
    "dm:" + "a" * 64 + ":" + "b" * 64,
    "room:",
    "room:a b",
    "group:a.b",
    "lobby",
    "chan:x",
    "dm:a",
    "dm:a:b:c",
    "video:" + "v" * 65,
    "room:é",
]


@pytest.mark.parametrize("name", CHANNEL_NAMES)
def test_the_channel_parameter_accepts_what_the_server_parses(name: str) -> None:
    (parameter,) = _operation("/v1/channels/{channel}/messages", "post")["parameters"]
    schema = parameter["schema"]
    assert schema["maxLength"] == MAX_CHANNEL_LENGTH
    assert schema["pattern"] == CHANNEL_PATTERN
    try:
        parse_channel(name)
        parsed = True
    except OpError:
        parsed = False
    matched = re.search(schema["pattern"], name) is not None and len(name) <= schema["maxLength"]
    assert matched is parsed


def test_a_shared_video_goes_to_a_dm_or_a_group_only() -> None:
    body = _operation("/v1/videos/{video_id}/shares", "post")["requestBody"]
    pattern = body["content"]["application/json"]["schema"]["properties"]["channel"]["pattern"]
    for name in ("dm:a:b", "group:g"):
        assert re.search(pattern, name), name
    for name in ("room:lobby", "video:v", "user:u", "dm:a"):
        assert not re.search(pattern, name), name


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("put", "/v1/users/{user_id}/follow"),
        ("delete", "/v1/users/{user_id}/follow"),
        ("put", "/v1/users/{user_id}/block"),
        ("delete", "/v1/users/{user_id}/block"),
    ],
)
def test_follow_and_block_take_a_user_id_and_say_the_own_one_is_refused(
    method: str, path: str
) -> None:
    (parameter,) = _operation(path, method)["parameters"]
    assert parameter["schema"]["pattern"] == f"^{ID_PATTERN}$"
    assert "own" in parameter["schema"]["description"]
    assert "400" in _operation(path, method)["responses"]


def test_cursor_ids_are_the_ids_the_store_makes() -> None:
    made = "01ARZ3NDEKTSV4RRFFQ69G5FAV"  # an id as the store makes them
    assert ids.is_valid(made)
    for path in ("/v1/feed", "/v1/videos/{video_id}/comments"):
        (before,) = [p for p in _operation(path, "get")["parameters"] if p["name"] == "before"]
        pattern = before["schema"]["pattern"]
        assert re.search(pattern, made)
        for bad in (",", made.lower(), made[:-1], made + "0"):
            assert not re.search(pattern, bad), bad
            assert not ids.is_valid(bad), bad


def test_upload_content_types_are_the_accepted_ones() -> None:
    body = _operation("/v1/media/uploads", "post")["requestBody"]
    schema = body["content"]["application/json"]["schema"]["properties"]["content_type"]
    assert schema["enum"] == list(CONTENT_TYPES)
    form = _operation("/v1/media/uploads/local", "post")["requestBody"]
    assert form["required"] is True
    assert form["content"]["multipart/form-data"]["schema"]["additionalProperties"] is False


def test_the_dm_order_is_the_one_rule_the_channel_pattern_leaves_to_the_description() -> None:
    (parameter,) = _operation("/v1/channels/{channel}/messages", "post")["parameters"]
    for name in ("dm:b:a", "dm:a:a"):
        assert re.search(parameter["schema"]["pattern"], name), name
        with pytest.raises(OpError):
            parse_channel(name)
    assert "sorted" in parameter["schema"]["description"]


def test_every_reference_names_a_component() -> None:
    """A nested params struct documented as msgspec names it (``KindSwitches``) would be a
    reference to nothing; every one must resolve in ``components``."""
    doc = document(SETTINGS)
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                found.append(node["$ref"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(doc)
    names = {f"#/components/schemas/{name}" for name in doc["components"]["schemas"]}
    assert found
    assert sorted(set(found) - names) == []


@pytest.mark.parametrize(
    ("zone", "valid"),
    [
        ("Europe/Paris", True),
        ("+05:30", True),
        ("-14:00", True),
        ("+14:30", False),
        ("Mars/Base", False),
    ],
)
def test_quiet_hours_take_the_zones_the_server_knows(zone: str, valid: bool) -> None:
    body = _operation("/v1/notifications/settings", "put")["requestBody"]
    quiet = body["content"]["application/json"]["schema"]["properties"]["quiet_hours"]
    (hours, _null) = quiet["anyOf"]
    names, offset = hours["properties"]["timezone"]["anyOf"]
    documented = zone in names["enum"] or re.match(offset["pattern"], zone) is not None
    try:
        zone_of(zone)
        accepted = True
    except ValueError:
        accepted = False
    assert documented == accepted == valid
