from __future__ import annotations

import ipaddress

import pytest

from gateway.settings import FIELDS, PREFIX, SECTION_OF, Settings, SettingsError, load_settings

SECRET = "x" * 32


def test_defaults_need_only_a_secret() -> None:
    settings = load_settings({"MOOSIC_JWT_SECRET": SECRET})
    assert settings == Settings.of(jwt_secret=SECRET)
    assert (settings.server.host, settings.server.port, settings.storage.store) == (
        "127.0.0.1",
        8080,
        "sqlite",
    )
    assert settings.redis.redis_url is None
    assert settings.guard.allowed_countries == frozenset({"KH"})
    assert settings.server.dev is False


def test_dev_run_generates_a_secret() -> None:
    one = load_settings({"MOOSIC_DEV": "1"})
    two = load_settings({"MOOSIC_DEV": "true"})
    assert one.auth.jwt_secret_generated
    assert two.auth.jwt_secret_generated
    assert len(one.auth.jwt_secret) >= 32
    assert one.auth.jwt_secret != two.auth.jwt_secret


def test_every_bad_value_is_reported_on_its_own_line() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(
            {
                "MOOSIC_PORT": "eighty",
                "MOOSIC_ALLOWED_COUNTRIES": "KHM,T1",
                "MOOSIC_REDIS_URL": "http://x",
                "MOOSIC_TRUSTED_PROXIES": "10.0.0.0/8,nonsense",
                "MOOSIC_STORE": "postgres",
                "MOOSIC_DEV": "maybe",
                "MOOSIC_WS_HEARTBEAT": "0",
                "MOOSIC_SCRYPT_N": "1000",
                "MOOSIC_TYPO": "1",
            }
        )
    problems = caught.value.problems
    assert sorted(problems) == sorted(
        [
            "MOOSIC_PORT='eighty': must be a whole number",
            "MOOSIC_DEV='maybe': must be one of 1, 0, true, false, yes, no, on, off",
            "MOOSIC_REDIS_URL=(not shown): must start with redis://, rediss:// or unix://",
            "MOOSIC_STORE='postgres': must be one of sqlite, dynamodb",
            "MOOSIC_ALLOWED_COUNTRIES='KHM,T1': not two-letter country codes: KHM, T1",
            "MOOSIC_TRUSTED_PROXIES='10.0.0.0/8,nonsense': 'nonsense' is not an IP address or CIDR block",
            "MOOSIC_WS_HEARTBEAT='0': must be between 1 and 3600",
            "MOOSIC_SCRYPT_N='1000': must be a power of two between 2 and 1048576",
            "MOOSIC_TYPO: unknown setting (typo?)",
            "MOOSIC_JWT_SECRET: required (or set MOOSIC_DEV=1 for a generated one)",
        ]
    )


def test_short_secret_and_frame_limits_are_checked() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(
            {
                "MOOSIC_JWT_SECRET": "short",
                "MOOSIC_WS_MAX_FRAME_BYTES": "9000",
                "MOOSIC_WS_CLOSE_FRAME_BYTES": "4096",
            }
        )
    assert caught.value.problems == [
        "MOOSIC_JWT_SECRET=(not shown): must be at least 32 characters",
        "MOOSIC_WS_CLOSE_FRAME_BYTES: must be at least MOOSIC_WS_MAX_FRAME_BYTES (9000)",
    ]


def test_parsed_values() -> None:
    settings = load_settings(
        {
            "MOOSIC_JWT_SECRET": SECRET,
            "MOOSIC_ALLOWED_COUNTRIES": " kh, th ",
            "MOOSIC_TRUSTED_PROXIES": "10.0.0.0/8, 2600:9000::/28",
            "MOOSIC_REDIS_URL": "redis://127.0.0.1:6390/1",
            "MOOSIC_PORT": "0",
        }
    )
    assert settings.guard.allowed_countries == frozenset({"KH", "TH"})
    assert settings.guard.trusted_proxies == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("2600:9000::/28"),
    )
    assert settings.redis.redis_url == "redis://127.0.0.1:6390/1"
    assert (
        load_settings(
            {"MOOSIC_JWT_SECRET": SECRET, "MOOSIC_ALLOWED_COUNTRIES": "*"}
        ).guard.allowed_countries
        is None
    )


def test_every_field_is_a_settings_attribute() -> None:
    names = {name for name, _parse, _doc in FIELDS.values()}
    assert names <= set(SECTION_OF)
    assert all(doc for _name, _parse, doc in FIELDS.values())
    assert PREFIX == "MOOSIC_"


def test_dynamodb_settings() -> None:
    settings = load_settings(
        {
            "MOOSIC_JWT_SECRET": SECRET,
            "MOOSIC_STORE": "dynamodb",
            "MOOSIC_DYNAMODB_ENDPOINT": "http://127.0.0.1:8000",
            "MOOSIC_DYNAMODB_TABLE_PREFIX": "stage-",
            "MOOSIC_DAX_ENDPOINT": "daxs://cluster.example:9111",
        }
    )
    assert (settings.storage.store, settings.storage.dynamodb_endpoint) == (
        "dynamodb",
        "http://127.0.0.1:8000",
    )
    assert (settings.storage.dynamodb_table_prefix, settings.storage.dax_endpoint) == (
        "stage-",
        "daxs://cluster.example:9111",
    )
    with pytest.raises(SettingsError) as caught:
        load_settings(
            {
                "MOOSIC_JWT_SECRET": SECRET,
                "MOOSIC_STORE": "dynamodb",
                "MOOSIC_MAX_MESSAGE_BYTES": "500000",
                "MOOSIC_DYNAMODB_ENDPOINT": "localhost:8000",
                "MOOSIC_DYNAMODB_TABLE_PREFIX": "bad prefix",
                "MOOSIC_DAX_ENDPOINT": "http://dax",
            }
        )
    assert sorted(caught.value.problems) == [
        "MOOSIC_DAX_ENDPOINT='http://dax': must start with dax:// or daxs://",
        "MOOSIC_DYNAMODB_ENDPOINT='localhost:8000': must start with http:// or https://",
        "MOOSIC_DYNAMODB_TABLE_PREFIX='bad prefix': may hold only letters, digits, '_', '-' and '.'",
        "MOOSIC_MAX_MESSAGE_BYTES: at most 393216 with the DynamoDB store",
    ]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MOOSIC_JWT_SECRET", "hunter2-is-too-short"),
        ("MOOSIC_JWT_PREVIOUS_SECRETS", "x" * 40 + ",hunter2-is-too-short"),
        ("MOOSIC_REDIS_URL", "http://:hunter2-is-too-short@cache.internal:6379"),
    ],
)
def test_a_bad_secret_is_named_never_shown(name: str, value: str) -> None:
    environ = {"MOOSIC_JWT_SECRET": SECRET, name: value}
    with pytest.raises(SettingsError) as caught:
        load_settings(environ)
    assert [p for p in caught.value.problems if p.startswith(name + "=")] != []
    assert all("hunter2" not in problem for problem in caught.value.problems)
    assert "hunter2" not in str(caught.value)


def test_mail_settings() -> None:
    settings = load_settings(
        {
            "MOOSIC_JWT_SECRET": SECRET,
            "MOOSIC_MAIL_SINK": "ses",
            "MOOSIC_MAIL_FROM": "Moosic <no-reply@example.com>",
            "MOOSIC_SES_REGION": "eu-west-1",
            "MOOSIC_SES_ENDPOINT": "http://127.0.0.1:5000",
            "MOOSIC_MAIL_QUEUE": "10",
            "MOOSIC_RESET_TOKEN_TTL": "600",
        }
    )
    assert (settings.mail.mail_sink, settings.mail.mail_from) == (
        "ses",
        "Moosic <no-reply@example.com>",
    )
    assert (settings.mail.ses_region, settings.mail.ses_endpoint) == (
        "eu-west-1",
        "http://127.0.0.1:5000",
    )
    assert (settings.mail.mail_queue, settings.mail.reset_token_ttl) == (10, 600)
    with pytest.raises(SettingsError) as refused:
        load_settings(
            {
                "MOOSIC_JWT_SECRET": SECRET,
                "MOOSIC_MAIL_SINK": "smtp",
                "MOOSIC_MAIL_FROM": "not an address",
                "MOOSIC_MAIL_QUEUE": "0",
                "MOOSIC_RESET_TOKEN_TTL": "5",
                "MOOSIC_SES_ENDPOINT": "ftp://x",
            }
        )
    text = str(refused.value)
    for name in ("MAIL_SINK", "MAIL_FROM", "MAIL_QUEUE", "RESET_TOKEN_TTL", "SES_ENDPOINT"):
        assert f"MOOSIC_{name}" in text
    with pytest.raises(SettingsError, match="MOOSIC_MAIL_FROM: required"):
        load_settings({"MOOSIC_JWT_SECRET": SECRET, "MOOSIC_MAIL_SINK": "ses"})


REGION_KEY = "k" * 32


def test_region_map_settings() -> None:
    settings = load_settings(
        {
            "MOOSIC_JWT_SECRET": SECRET,
            "MOOSIC_REGION": "au",
            "MOOSIC_REGIONS": "kh=http://127.0.0.1:9001/, au=https://au.internal:9443",
            "MOOSIC_REGION_LINK_KEY": REGION_KEY,
            "MOOSIC_REGION_ROOMS": "au",
        }
    )
    assert settings.regions.regions == (
        ("kh", "http://127.0.0.1:9001"),
        ("au", "https://au.internal:9443"),
    )
    assert (settings.server.region, settings.regions.region_rooms) == ("au", "au")
    assert settings.regions.region_link_key == REGION_KEY


def test_region_map_problems_are_each_reported() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(
            {
                "MOOSIC_JWT_SECRET": SECRET,
                "MOOSIC_REGION": "us",
                "MOOSIC_REGIONS": "kh=http://a:1,au=http://b:2",
                "MOOSIC_REGION_ROOMS": "eu",
                "MOOSIC_STORE": "dynamodb",
            }
        )
    text = str(caught.value)
    assert "MOOSIC_REGION: must be one of MOOSIC_REGIONS (kh, au)" in text
    assert "MOOSIC_REGION_LINK_KEY: required" in text
    assert "MOOSIC_REGION_ROOMS: must be one of" in text
    assert "needs MOOSIC_STORE=sqlite" in text
    for bad in (
        "kh=http://a:1",
        "kh=ftp://a,au=http://b",
        "k_h=http://a,au=http://b",
        "kh=http://a,kh=http://b",
    ):
        with pytest.raises(SettingsError):
            load_settings({"MOOSIC_JWT_SECRET": SECRET, "MOOSIC_REGIONS": bad})
    with pytest.raises(SettingsError) as short:
        load_settings({"MOOSIC_JWT_SECRET": SECRET, "MOOSIC_REGION_LINK_KEY": "secret-but-short"})
    assert "secret-but-short" not in str(short.value)
