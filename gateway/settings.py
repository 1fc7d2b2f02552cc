"""Settings from ``MOOSIC_*`` environment variables, validated once at start-up.

Every bad value is reported on its own line, all at once, so an operator fixes them in one go.
The README's configuration table lists each variable; :data:`FIELDS` is its source.

:class:`Settings` holds one small frozen dataclass per concern (``server``, ``auth``, ``guard``,
``redis``, ``storage``, ``ws``, ``http``, ``chat``, ``presence``, ``counts``, ``feed``, ``media``,
``clickstream``, ``mail``, ``push``, ``regions``), so a reader finds a setting beside its neighbours and
the wiring in ``gateway/app.py`` reads one concern at a time. Inside its section a setting
keeps its variable's name: ``MOOSIC_PUSH_DELAY`` is ``settings.push.push_delay``.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from functools import partial
from typing import Any

from gateway.guard.ratelimit import SPECIAL_RULES, RateLimits
from media.model import DEFAULT_LADDER, Rung, parse_ladder
from storage.dynamodb import MAX_DATA_BYTES as DYNAMODB_MAX_DATA_BYTES
from storage.redis.cluster import parse_seeds

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class SettingsError(ValueError):
    """One or more settings are invalid; ``problems`` has one line per bad value."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """The process: where it listens, its logs and metrics, its region, how it stops."""

    host: str = "127.0.0.1"
    port: int = 8080
    dev: bool = False
    log_level: str = "INFO"
    log_format: str = "text"
    shutdown_timeout: float = 10.0
    fd_reserve: int = 128
    emf_interval: float = 0.0
    region: str = "local"


@dataclass(frozen=True, slots=True)
class AuthSettings:
    """Sign-in and tokens: gateway/auth/, handlers/auth.py."""

    jwt_secret: str = ""
    jwt_secret_generated: bool = False
    jwt_previous_secrets: tuple[str, ...] = ()
    jwt_issuer: str = "moosic"
    jwt_audience: str = "moosic"
    access_token_ttl: int = 900
    refresh_token_ttl: int = 30 * 24 * 3600
    scrypt_n: int = 2**14
    kdf_concurrency: int = 2
    jwks_url: str | None = None
    jwks_refresh: float = 3600.0
    jwks_issuer: str | None = None
    jwks_audience: str | None = None


@dataclass(frozen=True, slots=True)
class GuardSettings:
    """Edge defences: the country gate, proxies trusted for the client address, origins, rate limits (gateway/guard/)."""

    allowed_countries: frozenset[str] | None = frozenset({"KH"})
    trusted_proxies: tuple[IPNetwork, ...] = ()
    ws_allowed_origins: frozenset[str] | None = frozenset()
    """Browser origins allowed to open a WebSocket; None = any. Requests without Origin pass."""
    rate_limits: RateLimits = field(default_factory=RateLimits)
    max_connections_per_user: int = 20

    @property
    def countries_label(self) -> str:
        if self.allowed_countries is None:
            return "*"
        return ",".join(sorted(self.allowed_countries))


@dataclass(frozen=True, slots=True)
class RedisSettings:
    """Redis, one server or a Redis Cluster, and the breaker in front of it (storage/redis/)."""

    redis_url: str | None = None
    redis_prefix: str = "moosic:"
    redis_cluster: bool = False
    redis_cluster_refresh: float = 5.0
    redis_breaker_failures: int = 5
    redis_breaker_cooldown: float = 2.0


@dataclass(frozen=True, slots=True)
class StorageSettings:
    """The message store: SQLite (embedded default) or DynamoDB with DAX (storage/)."""

    store: str = "sqlite"
    sqlite_path: str = "data/moosic.db"
    dynamodb_region: str = "us-east-1"
    dynamodb_endpoint: str | None = None
    dynamodb_table_prefix: str = "moosic-"
    dax_endpoint: str | None = None
    store_max_pending: int = 1024


@dataclass(frozen=True, slots=True)
class WsSettings:
    """The WebSocket transport: frames, buffers, heartbeats, per-socket limits (gateway/ws/)."""

    ws_max_frame_bytes: int = 64 * 1024
    ws_close_frame_bytes: int = 1024 * 1024
    ws_max_backlog_bytes: int = 1024 * 1024
    ws_heartbeat: float = 30.0
    ws_close_timeout: float = 5.0
    ws_max_queued_messages: int = 64
    ws_frames_per_second: float = 1000.0
    ws_frame_burst: int = 2000
    ws_flood_close_seconds: float = 10.0
    max_subscriptions: int = 100


@dataclass(frozen=True, slots=True)
class HttpSettings:
    """HTTP: REST bodies, long polls, connections held without signing in, the server API (gateway/http/)."""

    rest_max_body_bytes: int = 64 * 1024
    longpoll_max_seconds: float = 25.0
    max_longpolls: int = 10000
    http_keepalive_timeout: float = 15.0
    http_body_timeout: float = 15.0
    http_body_min_rate: int = 8192
    http_max_unauthenticated_per_address: int = 64
    server_api_keys: tuple[str, ...] = ()
    server_api_port: int | None = None
    server_api_host: str = "127.0.0.1"


@dataclass(frozen=True, slots=True)
class ChatSettings:
    """Chat: message and group sizes, history pages, the recovery window (handlers/chat.py, gateway/fanout/)."""

    max_message_bytes: int = 8192
    history_max_limit: int = 100
    max_group_members: int = 1024
    recovery_window: int = 500
    recovery_ttl: float = 300.0
    recovery_max_events: int = 1000
    recovery_memory_channels: int = 2000


@dataclass(frozen=True, slots=True)
class PresenceSettings:
    """Presence: how long a node's word lasts, users one socket may watch (gateway/fanout/presence.py)."""

    presence_ttl: float = 30.0
    max_watched_users: int = 500


@dataclass(frozen=True, slots=True)
class CountsSettings:
    """Hot counters of videos and trending (gateway/fanout/counts.py, trending.py)."""

    counts_push_window: float = 0.25
    counts_flush_interval: float = 1.0
    video_cache_seconds: float = 2.0
    trending_window: float = 3600.0


@dataclass(frozen=True, slots=True)
class FeedSettings:
    """The home feed's fan-out on post (handlers/feed.py)."""

    feed_fanout_threshold: int = 10_000
    feed_fanout_batch: int = 500
    feed_item_ttl: int = 30 * 86400


@dataclass(frozen=True, slots=True)
class MediaSettings:
    """Media: uploads, transcoding, moderation, signed playback (media/)."""

    media_backend: str = "local"
    video_ready_on_create: bool = False
    max_upload_bytes: int = 256 * 1024 * 1024
    media_upload_ttl: int = 900
    media_playback_ttl: int = 900
    media_max_seconds: float = 300.0
    media_max_dimension: int = 4096
    media_max_pixels: int = 4096 * 4096
    media_ffmpeg_memory_bytes: int = 2 * 1024**3
    media_ffmpeg_cpu_seconds: int = 3600
    media_ffmpeg_threads: int = 2
    media_ladder: tuple[Rung, ...] = DEFAULT_LADDER
    media_segment_seconds: int = 4
    media_public_url: str | None = None
    media_dir: str = "data/media"
    media_workers: int = 1
    media_ffmpeg: str | None = None
    media_watermark: str | None = None
    media_moderation: str = "allow"
    media_region: str = "us-east-1"
    media_bucket: str | None = None
    media_aws_endpoint: str | None = None
    media_sqs_url: str | None = None
    media_mediaconvert_endpoint: str | None = None
    media_mediaconvert_role: str | None = None
    media_mediaconvert_queue: str | None = None
    media_min_confidence: float = 80.0
    cloudfront_domain: str | None = None
    cloudfront_key_id: str | None = None
    cloudfront_private_key_file: str | None = None


@dataclass(frozen=True, slots=True)
class ClickstreamSettings:
    """Clickstream: the buffer per node and its sinks, files or Kinesis (gateway/clickstream/)."""

    clickstream_sink: str = "file"
    clickstream_dir: str = "data/clickstream"
    clickstream_buffer: int = 100_000
    clickstream_flush_events: int = 500
    clickstream_flush_interval: float = 1.0
    clickstream_max_file_bytes: int = 64 * 1024 * 1024
    clickstream_rotate_seconds: float = 3600.0
    clickstream_dedupe_size: int = 100_000
    clickstream_stream: str | None = None
    clickstream_kinesis_region: str = "us-east-1"
    clickstream_kinesis_endpoint: str | None = None
    clickstream_retries: int = 5
    clickstream_retry_backoff: float = 0.1


@dataclass(frozen=True, slots=True)
class MailSettings:
    """Mail: email verification and password reset, files or SES (gateway/mail/, handlers/recovery.py)."""

    mail_sink: str = "file"
    mail_dir: str = "data/mail"
    mail_from: str = "Moosic <no-reply@moosic.invalid>"
    ses_region: str = "us-east-1"
    ses_endpoint: str | None = None
    mail_queue: int = 1000
    mail_retries: int = 5
    mail_retry_backoff: float = 1.0
    email_token_ttl: int = 86400
    reset_token_ttl: int = 1800


@dataclass(frozen=True, slots=True)
class PushSettings:
    """Push notifications: devices, the outbox's drain, files or SNS (gateway/push/, handlers/notify.py)."""

    max_devices: int = 20
    push_sink: str = "file"
    push_dir: str = "data/push"
    sns_region: str = "us-east-1"
    sns_endpoint: str | None = None
    sns_apns_arn: str | None = None
    sns_fcm_arn: str | None = None
    push_delay: float = 2.0
    push_max_pending: int = 50
    push_per_minute: int = 10
    push_queue: int = 10_000
    push_batch: int = 50
    push_poll: float = 0.5
    push_lease: float = 60.0
    push_retries: int = 5
    push_retry_backoff: float = 1.0
    push_max_age: float = 3600.0
    # Push preferences and mutes (issue 16): handlers/preferences.py.
    push_max_mutes: int = 200


@dataclass(frozen=True, slots=True)
class RegionsSettings:
    """Regions: each user's socket in the nearest one, each channel ordered by its home
    (docs/regions.md, handlers/regions.py, gateway/regions/)."""

    regions: tuple[tuple[str, str], ...] = ()
    """(name, server API URL) of every region, the original one first; () = one region."""
    region_link_key: str = ""
    region_rooms: str | None = None
    region_timeout: float = 5.0
    region_forward_concurrency: int = 64
    region_relay_channels: int = 10_000


@dataclass(frozen=True, slots=True)
class Settings:
    """Every setting, one small dataclass per concern (as Synapse's config classes).

    A setting's attribute is its variable's name without ``MOOSIC_``, in lower case, in its
    section: ``MOOSIC_REDIS_URL`` is ``settings.redis.redis_url``. :meth:`of` and :meth:`changed`
    take those names flat, so a caller need not know which section holds which.
    """

    server: ServerSettings = field(default_factory=ServerSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    guard: GuardSettings = field(default_factory=GuardSettings)
    redis: RedisSettings = field(default_factory=RedisSettings)
    storage: StorageSettings = field(default_factory=StorageSettings)
    ws: WsSettings = field(default_factory=WsSettings)
    http: HttpSettings = field(default_factory=HttpSettings)
    chat: ChatSettings = field(default_factory=ChatSettings)
    presence: PresenceSettings = field(default_factory=PresenceSettings)
    counts: CountsSettings = field(default_factory=CountsSettings)
    feed: FeedSettings = field(default_factory=FeedSettings)
    media: MediaSettings = field(default_factory=MediaSettings)
    clickstream: ClickstreamSettings = field(default_factory=ClickstreamSettings)
    mail: MailSettings = field(default_factory=MailSettings)
    push: PushSettings = field(default_factory=PushSettings)
    regions: RegionsSettings = field(default_factory=RegionsSettings)

    @classmethod
    def of(cls, **values: Any) -> Settings:
        """Settings with the named ones (``redis_url=...``) changed from their defaults."""
        return cls().changed(**values)

    def changed(self, **values: Any) -> Settings:
        """A copy with the named settings changed (flat names, as in :meth:`of`)."""
        by_section: dict[str, dict[str, Any]] = {}
        for name, value in values.items():
            section = SECTION_OF.get(name)
            if section is None:
                raise TypeError(f"no setting named {name!r}")
            by_section.setdefault(section, {})[name] = value
        changes = {s: replace(getattr(self, s), **v) for s, v in by_section.items()}
        return replace(self, **changes)


SECTION_OF: dict[str, str] = {
    f.name: section.name
    for section in fields(Settings)
    for f in fields(getattr(Settings(), section.name))
}
"""Each setting's section, by its flat name."""


def _int(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise ValueError("must be a whole number") from None
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}")
        return value

    return parse


def _float(low: float, high: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise ValueError("must be a number") from None
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}")
        return value

    return parse


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError("must be one of 1, 0, true, false, yes, no, on, off")


def _choice(*options: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in options:
            raise ValueError(f"must be one of {', '.join(options)}")
        return text

    return parse


def _nonempty(text: str) -> str:
    if not text.strip():
        raise ValueError("must not be empty")
    return text


def _redis_url(text: str) -> str | None:
    if not text:
        return None
    if not text.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError("must start with redis://, rediss:// or unix://")
    return text


def _countries(text: str) -> frozenset[str] | None:
    if text.strip() == "*":
        return None
    codes = [c.strip().upper() for c in text.split(",") if c.strip()]
    if not codes:
        raise ValueError("must list ISO country codes (e.g. KH,TH) or be *")
    bad = [c for c in codes if len(c) != 2 or not c.isalpha()]
    if bad:
        raise ValueError(f"not two-letter country codes: {', '.join(bad)}")
    return frozenset(codes)


def _networks(text: str) -> tuple[IPNetwork, ...]:
    nets = []
    for part in text.split(","):
        if part.strip():
            try:
                nets.append(ipaddress.ip_network(part.strip(), strict=False))
            except ValueError:
                raise ValueError(f"{part.strip()!r} is not an IP address or CIDR block") from None
    return tuple(nets)


def _url(text: str) -> str | None:
    if not text:
        return None
    if not text.startswith(("http://", "https://")):
        raise ValueError("must start with http:// or https://")
    return text


def _sender(text: str) -> str:
    from email.utils import parseaddr

    _name, address = parseaddr(text)
    local, at, domain = address.rpartition("@")
    if not at or not local or "." not in domain or not text.isascii():
        raise ValueError('must be an address, e.g. "Moosic <no-reply@example.com>"')
    return text


def _dax_url(text: str) -> str | None:
    if not text:
        return None
    if not text.startswith(("dax://", "daxs://")):
        raise ValueError("must start with dax:// or daxs://")
    return text


def _table_prefix(text: str) -> str:
    if re.fullmatch(r"[A-Za-z0-9_.-]{0,200}", text) is None:
        raise ValueError("may hold only letters, digits, '_', '-' and '.'")
    return text


def _secret(text: str) -> str:
    if len(text) < 32:
        raise ValueError("must be at least 32 characters")
    return text


def _previous_secrets(text: str) -> tuple[str, ...]:
    secrets_ = tuple(part.strip() for part in text.split(",") if part.strip())
    short = [i + 1 for i, part in enumerate(secrets_) if len(part) < 32]
    if short:
        raise ValueError(f"every secret must be at least 32 characters (not number {short[0]})")
    return secrets_


def _api_keys(text: str) -> tuple[str, ...]:
    # Never quotes a key: the message names the key by its position only.
    keys = tuple(part.strip() for part in text.split(",") if part.strip())
    short = [i + 1 for i, part in enumerate(keys) if len(part) < 32]
    if short:
        raise ValueError(f"every key must be at least 32 characters (not number {short[0]})")
    if any(not part.isascii() or not part.isprintable() for part in keys):
        raise ValueError("keys must be printable ASCII")
    if len(set(keys)) != len(keys):
        raise ValueError("a key is listed twice")
    return keys


def _optional_port(text: str) -> int | None:
    if not text:
        return None
    return _int(1, 65535)(text)


def _jwks_url(text: str) -> str | None:
    if not text:
        return None
    if text.startswith(("http://", "https://", "file:///", "/")):
        return text
    raise ValueError("must be an http:// or https:// URL, a file:/// URL or an absolute path")


def _optional(text: str) -> str | None:
    return text.strip() or None


REGION_NAME = re.compile(r"[a-z0-9-]{1,32}")
"""A region's name: no ``_``, which tags ids with their region (``handlers/regions.py``)."""


def _region_name(text: str) -> str:
    if REGION_NAME.fullmatch(text) is None:
        raise ValueError("a region name is 1-32 of lowercase letters, digits and '-'")
    return text


def _optional_region(text: str) -> str | None:
    return _region_name(text) if text else None


def _regions(text: str) -> tuple[tuple[str, str], ...]:
    found: list[tuple[str, str]] = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        name, sep, url = part.partition("=")
        if not sep or not url.startswith(("http://", "https://")):
            raise ValueError(f"{part!r} is not name=http(s)://host:port")
        found.append((_region_name(name.strip()), url.strip().rstrip("/")))
    names = [name for name, _url in found]
    if len(set(names)) != len(names):
        raise ValueError("a region is listed twice")
    if len(found) == 1:
        raise ValueError("list at least two regions (or none: one region)")
    return tuple(found)


def _known_rule(name: str) -> bool:
    # Imported here: the op table is only needed to catch typos in MOOSIC_RATE_LIMITS.
    from handlers import OPERATIONS
    from handlers.chat import events
    from handlers.events import TrackParams

    ops = {op.name for op in OPERATIONS} | {events.name, TrackParams.__struct_config__.tag}
    return name in SPECIAL_RULES or name in RateLimits().as_dict() or name in ops


def _rate_limits(text: str) -> RateLimits:
    return RateLimits.parse(text, known=_known_rule)


def _origins(text: str) -> frozenset[str] | None:
    if text.strip() == "*":
        return None
    origins = set()
    for part in text.split(","):
        origin = part.strip().lower().rstrip("/")
        if not origin:
            continue
        if origin != "null" and re.fullmatch(r"https?://[a-z0-9.\-\[\]:]+", origin) is None:
            raise ValueError(f"{part.strip()!r} is not an origin like https://app.example.com")
        origins.add(origin)
    return frozenset(origins)


def _file(text: str) -> str | None:
    if not text:
        return None
    if not os.path.isfile(text):
        raise ValueError("no such file")
    return text


def _rsa_key_file(text: str) -> str | None:
    path = _file(text)
    if path is None:
        return None
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    try:
        with open(path, "rb") as pem:
            key = serialization.load_pem_private_key(pem.read(), password=None)
    except (OSError, ValueError, TypeError):
        raise ValueError("is not an unencrypted PEM private key") from None
    if isinstance(key, rsa.RSAPrivateKey):
        return path
    raise ValueError("must hold an RSA private key (what CloudFront verifies)")


def _bucket(text: str) -> str | None:
    if not text:
        return None
    if re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", text) is None:
        raise ValueError("is not an S3 bucket name")
    return text


def _domain(text: str) -> str | None:
    if not text:
        return None
    if re.fullmatch(r"[A-Za-z0-9.-]{1,253}", text) is None:
        raise ValueError("must be a host name such as d111111abcdef8.cloudfront.net (no scheme)")
    return text.lower()


def _power_of_two(text: str) -> int:
    value = _int(2, 2**20)(text)
    if value < 2 or value & (value - 1) or value > 2**20:
        raise ValueError("must be a power of two between 2 and 1048576")
    return value


def _stream_name(text: str) -> str | None:
    if not text:
        return None
    if re.fullmatch(r"[A-Za-z0-9_.-]{1,128}", text) is None:
        raise ValueError("is not a Kinesis stream name (1-128 letters, digits, '_', '-', '.')")
    return text


def _log_level(text: str) -> str:
    upper = text.upper()
    if upper not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
    return upper


# variable suffix -> (Settings field, parser, description for the README)
FIELDS: dict[str, tuple[str, Callable[[str], Any], str]] = {
    "HOST": ("host", _nonempty, "address to listen on"),
    "PORT": ("port", _int(0, 65535), "TCP port (0 = any free port)"),
    "DEV": (
        "dev",
        _bool,
        (
            "development run: loopback/private clients pass the country gate, "
            "a JWT secret is generated when unset"
        ),
    ),
    "LOG_LEVEL": ("log_level", _log_level, "DEBUG, INFO, WARNING or ERROR"),
    "LOG_FORMAT": ("log_format", _choice("text", "json"), "log line format"),
    "JWT_SECRET": (
        "jwt_secret",
        _secret,
        "HS256 signing key, at least 32 characters; required unless MOOSIC_DEV=1",
    ),
    "JWT_PREVIOUS_SECRETS": (
        "jwt_previous_secrets",
        _previous_secrets,
        "older HS256 secrets still accepted for verification (rotation), comma-separated",
    ),
    "JWKS_URL": (
        "jwks_url",
        _jwks_url,
        "JWKS document of an identity provider whose RS256 tokens are accepted; unset = none",
    ),
    "JWKS_REFRESH": ("jwks_refresh", _float(1, 86400), "seconds between JWKS reloads"),
    "JWKS_ISSUER": ("jwks_issuer", _optional, "`iss` required of RS256 tokens (default: ours)"),
    "JWKS_AUDIENCE": (
        "jwks_audience",
        _optional,
        "`aud` required of RS256 tokens (default: ours)",
    ),
    "JWT_ISSUER": ("jwt_issuer", _nonempty, "`iss` claim issued and required"),
    "JWT_AUDIENCE": ("jwt_audience", _nonempty, "`aud` claim issued and required"),
    "ACCESS_TOKEN_TTL": ("access_token_ttl", _int(30, 86400), "access token lifetime, seconds"),
    "REFRESH_TOKEN_TTL": (
        "refresh_token_ttl",
        _int(60, 365 * 86400),
        "refresh token lifetime, seconds",
    ),
    "SCRYPT_N": ("scrypt_n", _power_of_two, "scrypt cost (memory = 1 KiB x N)"),
    "KDF_CONCURRENCY": ("kdf_concurrency", _int(1, 64), "password hashes computed at once"),
    "REDIS_URL": ("redis_url", _redis_url, "Redis for cross-node fan-out; unset = in-process"),
    "REDIS_PREFIX": ("redis_prefix", _nonempty, "prefix of every Redis channel name"),
    "REDIS_CLUSTER": (
        "redis_cluster",
        _bool,
        "1 = MOOSIC_REDIS_URL is a Redis Cluster: one seed or several (h1:p1,h2:p2)",
    ),
    "REDIS_CLUSTER_REFRESH": (
        "redis_cluster_refresh",
        _float(0.5, 3600),
        "seconds between reads of the cluster's slot map (also read on MOVED and lost nodes)",
    ),
    "REDIS_BREAKER_FAILURES": (
        "redis_breaker_failures",
        _int(1, 10_000),
        "Redis timeouts or lost connections in a row before calls to it fail fast (circuit open)",
    ),
    "REDIS_BREAKER_COOLDOWN": (
        "redis_breaker_cooldown",
        _float(0.05, 600),
        "seconds an open Redis circuit fails fast before one probe call is let through",
    ),
    "STORE": ("store", _choice("sqlite", "dynamodb"), "message store backend"),
    "SQLITE_PATH": ("sqlite_path", _nonempty, "SQLite database file"),
    "DYNAMODB_REGION": ("dynamodb_region", _nonempty, "AWS region of the DynamoDB tables"),
    "DYNAMODB_ENDPOINT": ("dynamodb_endpoint", _url, "DynamoDB endpoint; unset = AWS's own"),
    "DYNAMODB_TABLE_PREFIX": ("dynamodb_table_prefix", _table_prefix, "prefix of every table name"),
    "DAX_ENDPOINT": (
        "dax_endpoint",
        _dax_url,
        "DAX cluster endpoint for cached reads; unset = none",
    ),
    "STORE_MAX_PENDING": (
        "store_max_pending",
        _int(1, 1_000_000),
        "store calls queued at once before callers wait",
    ),
    "ALLOWED_COUNTRIES": (
        "allowed_countries",
        _countries,
        "ISO codes allowed to log in and connect, comma-separated; * = all",
    ),
    "TRUSTED_PROXIES": (
        "trusted_proxies",
        _networks,
        "CIDRs whose CloudFront-Viewer-Country / X-Forwarded-For are believed",
    ),
    "WS_MAX_FRAME_BYTES": (
        "ws_max_frame_bytes",
        _int(256, 16 * 1024 * 1024),
        "larger frames get a frame_too_large error",
    ),
    "WS_CLOSE_FRAME_BYTES": (
        "ws_close_frame_bytes",
        _int(1024, 64 * 1024 * 1024),
        "larger frames close the socket with 1009",
    ),
    "WS_MAX_BACKLOG_BYTES": (
        "ws_max_backlog_bytes",
        _int(1024, 1024 * 1024 * 1024),
        "unsent bytes per socket before it is closed as a slow consumer",
    ),
    "WS_HEARTBEAT": ("ws_heartbeat", _float(1, 3600), "seconds between server pings"),
    "WS_CLOSE_TIMEOUT": (
        "ws_close_timeout",
        _float(0.1, 60),
        "seconds to wait for a closing peer before dropping it",
    ),
    "WS_MAX_QUEUED_MESSAGES": (
        "ws_max_queued_messages",
        _int(1, 100_000),
        "received, unhandled messages per socket before reading pauses",
    ),
    "WS_FRAMES_PER_SECOND": (
        "ws_frames_per_second",
        _float(1, 1_000_000),
        "inbound frames a second per socket (every kind counts) before reading pauses",
    ),
    "WS_FRAME_BURST": (
        "ws_frame_burst",
        _int(1, 10_000_000),
        "inbound frames a socket may send at once before its frame rate applies",
    ),
    "WS_FLOOD_CLOSE_SECONDS": (
        "ws_flood_close_seconds",
        _float(0.1, 3600),
        "seconds a socket may stay over its frame rate before it is closed (4502)",
    ),
    "MAX_SUBSCRIPTIONS": ("max_subscriptions", _int(1, 100_000), "subscriptions per connection"),
    "MAX_MESSAGE_BYTES": (
        "max_message_bytes",
        _int(16, 1024 * 1024),
        "size of a message's data, encoded",
    ),
    "HISTORY_MAX_LIMIT": ("history_max_limit", _int(1, 1000), "messages per history page"),
    "MAX_GROUP_MEMBERS": ("max_group_members", _int(2, 100_000), "members per group"),
    "LONGPOLL_MAX_SECONDS": ("longpoll_max_seconds", _float(0, 300), "longest long-poll wait"),
    "MAX_LONGPOLLS": (
        "max_longpolls",
        _int(1, 1_000_000),
        "long polls waiting at once on a node; more get server_busy",
    ),
    "REST_MAX_BODY_BYTES": (
        "rest_max_body_bytes",
        _int(1024, 64 * 1024 * 1024),
        "largest REST request body",
    ),
    "SHUTDOWN_TIMEOUT": ("shutdown_timeout", _float(0, 300), "seconds to drain on SIGTERM"),
    "HTTP_KEEPALIVE_TIMEOUT": (
        "http_keepalive_timeout",
        _float(1, 3600),
        "seconds an idle HTTP connection is kept, and within which a request's headers must come",
    ),
    "HTTP_BODY_TIMEOUT": (
        "http_body_timeout",
        _float(0.5, 3600),
        "seconds a request body may take before it must average MOOSIC_HTTP_BODY_MIN_RATE",
    ),
    "HTTP_BODY_MIN_RATE": (
        "http_body_min_rate",
        _int(1, 1024**3),
        "bytes a second a request body must average once MOOSIC_HTTP_BODY_TIMEOUT has passed",
    ),
    "HTTP_MAX_UNAUTHENTICATED_PER_ADDRESS": (
        "http_max_unauthenticated_per_address",
        _int(0, 10_000_000),
        "connections one address may hold open before signing in; 0 = no cap",
    ),
    "FD_RESERVE": (
        "fd_reserve",
        _int(0, 10_000_000),
        "file descriptors kept free: past RLIMIT_NOFILE minus this, unauthenticated connections are shed",
    ),
    "PRESENCE_TTL": (
        "presence_ttl",
        _float(3, 3600),
        "seconds after which a crashed node's users count as offline (nodes refresh every third)",
    ),
    "RATE_LIMITS": (
        "rate_limits",
        _rate_limits,
        "rate limit rules changed from their defaults (name=N/PERIOD or name=off), or off",
    ),
    "MAX_CONNECTIONS_PER_USER": (
        "max_connections_per_user",
        _int(1, 100_000),
        "WebSockets one user may hold open on one node",
    ),
    "WS_ALLOWED_ORIGINS": (
        "ws_allowed_origins",
        _origins,
        "browser origins allowed to open a WebSocket, comma-separated; * = any",
    ),
    "MEDIA_BACKEND": (
        "media_backend",
        _choice("local", "aws"),
        "media backend: local (folder + ffmpeg) or aws (S3, MediaConvert, Rekognition, CloudFront)",
    ),
    "MAX_UPLOAD_BYTES": (
        "max_upload_bytes",
        _int(1024, 5 * 1024**3),
        "largest video upload, bytes",
    ),
    "MEDIA_UPLOAD_TTL": ("media_upload_ttl", _int(60, 86400), "seconds an upload form is valid"),
    "MEDIA_PLAYBACK_TTL": (
        "media_playback_ttl",
        _int(60, 86400),
        "seconds signed playback links and cookies are valid",
    ),
    "MEDIA_MAX_SECONDS": ("media_max_seconds", _float(1, 3600), "longest video, seconds"),
    # Limits of each local ffmpeg job, whatever the upload's header claims (issue 21, 5).
    "MEDIA_MAX_DIMENSION": (
        "media_max_dimension",
        _int(64, 16384),
        "widest and tallest video frame, pixels; larger is rejected before decoding (local)",
    ),
    "MEDIA_MAX_PIXELS": (
        "media_max_pixels",
        _int(64 * 64, 16384 * 16384),
        "largest video frame, pixels (width x height); also each decoder's max_pixels (local)",
    ),
    "MEDIA_FFMPEG_MEMORY_BYTES": (
        "media_ffmpeg_memory_bytes",
        _int(256 * 1024**2, 64 * 1024**3),
        "address space (RLIMIT_AS) of each ffmpeg run, bytes; past it the video is rejected",
    ),
    "MEDIA_FFMPEG_CPU_SECONDS": (
        "media_ffmpeg_cpu_seconds",
        _int(10, 86400),
        "CPU time (RLIMIT_CPU, all threads) of each ffmpeg run, seconds",
    ),
    "MEDIA_FFMPEG_THREADS": (
        "media_ffmpeg_threads",
        _int(1, 64),
        "threads of each ffmpeg decoder, encoder and filter graph",
    ),
    "MEDIA_LADDER": (
        "media_ladder",
        parse_ladder,
        "the three HLS renditions, SHORT_SIDE:VIDEO_KBPS comma-separated",
    ),
    "MEDIA_SEGMENT_SECONDS": (
        "media_segment_seconds",
        _int(1, 30),
        "HLS segment length, seconds",
    ),
    "MEDIA_PUBLIC_URL": (
        "media_public_url",
        _url,
        "base URL of this gateway in local upload and playback links; unset = from the request",
    ),
    "MEDIA_DIR": ("media_dir", _nonempty, "folder of uploads and outputs (local backend)"),
    "MEDIA_WORKERS": ("media_workers", _int(1, 64), "transcodes run at once (local backend)"),
    "MEDIA_FFMPEG": ("media_ffmpeg", _file, "ffmpeg binary; unset = the one imageio-ffmpeg ships"),
    "MEDIA_WATERMARK": ("media_watermark", _file, "watermark PNG; unset = the Moosic logo"),
    "MEDIA_MODERATION": (
        "media_moderation",
        _choice("allow", "hold"),
        "local backend: allow (ready, marked unmoderated) or hold (wait for review)",
    ),
    "MEDIA_REGION": ("media_region", _nonempty, "AWS region of the media bucket and services"),
    "MEDIA_BUCKET": ("media_bucket", _bucket, "S3 bucket of uploads and outputs (aws)"),
    "MEDIA_AWS_ENDPOINT": (
        "media_aws_endpoint",
        _url,
        "S3 and SQS endpoint (a local emulator); unset = AWS's own",
    ),
    "MEDIA_SQS_URL": (
        "media_sqs_url",
        _url,
        "SQS queue of upload and MediaConvert events; unset = no media worker on this node",
    ),
    "MEDIA_MEDIACONVERT_ENDPOINT": (
        "media_mediaconvert_endpoint",
        _url,
        "MediaConvert endpoint; unset = the region's",
    ),
    "MEDIA_MEDIACONVERT_ROLE": (
        "media_mediaconvert_role",
        _optional,
        "IAM role ARN MediaConvert jobs run as (aws)",
    ),
    "MEDIA_MEDIACONVERT_QUEUE": (
        "media_mediaconvert_queue",
        _optional,
        "MediaConvert queue ARN; unset = the default queue",
    ),
    "MEDIA_MIN_CONFIDENCE": (
        "media_min_confidence",
        _float(0, 100),
        "Rekognition confidence (percent) at which a moderation label rejects a video",
    ),
    "CLOUDFRONT_DOMAIN": (
        "cloudfront_domain",
        _domain,
        "CloudFront distribution host serving the outputs (aws)",
    ),
    "CLOUDFRONT_KEY_ID": (
        "cloudfront_key_id",
        _optional,
        "id of the CloudFront public key (in the distribution's key group)",
    ),
    "CLOUDFRONT_PRIVATE_KEY_FILE": (
        "cloudfront_private_key_file",
        _rsa_key_file,
        "PEM file of the RSA private key that signs playback URLs and cookies",
    ),
    "MAX_WATCHED_USERS": (
        "max_watched_users",
        _int(1, 100_000),
        "users one connection may watch with watch_presence",
    ),
    "RECOVERY_WINDOW": (
        "recovery_window",
        _int(1, 100_000),
        "recent events remembered per channel for reconnecting clients",
    ),
    "RECOVERY_TTL": (
        "recovery_ttl",
        _float(1, 86400),
        "seconds a channel's recent events are remembered after its last event",
    ),
    "RECOVERY_MAX_EVENTS": (
        "recovery_max_events",
        _int(1, 100_000),
        "events one subscribe may replay; a client further behind refetches history",
    ),
    "RECOVERY_MEMORY_CHANNELS": (
        "recovery_memory_channels",
        _int(1, 10_000_000),
        "channels whose recent events the in-process broker remembers (least recent dropped)",
    ),
    "COUNTS_PUSH_WINDOW": (
        "counts_push_window",
        _float(0.01, 60),
        "seconds per video between two counts pushes (likes, comments, shares), across all nodes",
    ),
    "COUNTS_FLUSH_INTERVAL": (
        "counts_flush_interval",
        _float(0.05, 60),
        "seconds between two batch writes of videos' changed totals to the store",
    ),
    "VIDEO_CACHE_SECONDS": (
        "video_cache_seconds",
        _float(0, 3600),
        "max-age of video and comment reads, and how long a node caches a video record",
    ),
    "VIDEO_READY_ON_CREATE": (
        "video_ready_on_create",
        _bool,
        "POST /v1/videos creates ready videos with no media (development, tests); off = 403",
    ),
    "FEED_FANOUT_THRESHOLD": (
        "feed_fanout_threshold",
        _int(0, 100_000_000),
        "authors with more followers than this are merged into feeds at read time",
    ),
    "FEED_FANOUT_BATCH": (
        "feed_fanout_batch",
        _int(1, 10_000),
        "followers read, written and pushed to per step of a post's fan-out",
    ),
    "FEED_ITEM_TTL": (
        "feed_item_ttl",
        _int(3600, 3650 * 86400),
        "seconds a feed item is kept (DynamoDB deletes it by TTL; reads skip it)",
    ),
    "REGION": (
        "region",
        _nonempty,
        (
            "region this node runs in: reported in every clickstream event; with "
            "MOOSIC_REGIONS, one of its names"
        ),
    ),
    "CLICKSTREAM_SINK": (
        "clickstream_sink",
        _choice("file", "kinesis"),
        "where clickstream events go: file (JSON lines) or kinesis (Kinesis Data Streams)",
    ),
    "CLICKSTREAM_DIR": (
        "clickstream_dir",
        _nonempty,
        "folder of the JSON-lines event files and of the dead-letter files",
    ),
    "CLICKSTREAM_BUFFER": (
        "clickstream_buffer",
        _int(1, 10_000_000),
        "events buffered on a node at most; past it new events get server_busy (retryable)",
    ),
    "CLICKSTREAM_FLUSH_EVENTS": (
        "clickstream_flush_events",
        _int(1, 100_000),
        "buffered events that start a flush at once, and events per sink write",
    ),
    "CLICKSTREAM_FLUSH_INTERVAL": (
        "clickstream_flush_interval",
        _float(0.01, 60),
        "seconds between two flushes of the buffer when it holds fewer events",
    ),
    "CLICKSTREAM_MAX_FILE_BYTES": (
        "clickstream_max_file_bytes",
        _int(1024, 1024**4),
        "size of an event file after which the next one starts",
    ),
    "CLICKSTREAM_ROTATE_SECONDS": (
        "clickstream_rotate_seconds",
        _float(1, 7 * 86400),
        "age of an event file after which the next write starts a new one",
    ),
    "CLICKSTREAM_DEDUPE_SIZE": (
        "clickstream_dedupe_size",
        _int(0, 10_000_000),
        "(user, event id) pairs a node remembers to drop repeated events; 0 = no dedupe",
    ),
    "EMF_INTERVAL": (
        "emf_interval",
        _float(0, 3600),
        "seconds between two CloudWatch Embedded Metric Format lines on stdout; 0 = none",
    ),
    "TRENDING_WINDOW": (
        "trending_window",
        _float(60, 7 * 86400),
        "seconds of engagement GET /v1/trending sums (a sliding window of 12 buckets)",
    ),
    "CLICKSTREAM_STREAM": (
        "clickstream_stream",
        _stream_name,
        "Kinesis stream name; required with MOOSIC_CLICKSTREAM_SINK=kinesis",
    ),
    "CLICKSTREAM_KINESIS_REGION": (
        "clickstream_kinesis_region",
        _nonempty,
        "AWS region of the Kinesis stream",
    ),
    "CLICKSTREAM_KINESIS_ENDPOINT": (
        "clickstream_kinesis_endpoint",
        _url,
        "Kinesis endpoint (an emulator); unset = AWS's own",
    ),
    "CLICKSTREAM_RETRIES": (
        "clickstream_retries",
        _int(0, 100),
        "retries of the PutRecords entries that failed before they go to the dead-letter file",
    ),
    "CLICKSTREAM_RETRY_BACKOFF": (
        "clickstream_retry_backoff",
        _float(0.001, 60),
        "seconds before the first retry of failed records; doubled each retry (jittered)",
    ),
    "SERVER_API_KEYS": (
        "server_api_keys",
        _api_keys,
        (
            "API keys of the server API (/server/v1), comma-separated, each at least 32 "
            "characters; several at once to rotate; unset = the server API is off (404)"
        ),
    ),
    "SERVER_API_PORT": (
        "server_api_port",
        _optional_port,
        (
            "a second port serving only the server API and the admin page (then not on "
            "MOOSIC_PORT); unset = served on MOOSIC_PORT"
        ),
    ),
    "SERVER_API_HOST": (
        "server_api_host",
        _nonempty,
        "address MOOSIC_SERVER_API_PORT listens on (keep it private)",
    ),
    "MAIL_SINK": (
        "mail_sink",
        _choice("file", "ses"),
        "where mail goes: file (.eml files in MOOSIC_MAIL_DIR) or ses (Amazon SES)",
    ),
    "MAIL_DIR": ("mail_dir", _nonempty, "folder of the .eml files of the file mail sink"),
    "MAIL_FROM": (
        "mail_from",
        _sender,
        "From address of every mail (with SES: an identity SES has verified)",
    ),
    "SES_REGION": ("ses_region", _nonempty, "AWS region of SES"),
    "SES_ENDPOINT": ("ses_endpoint", _url, "SES endpoint (an emulator); unset = AWS's own"),
    "MAIL_QUEUE": (
        "mail_queue",
        _int(1, 1_000_000),
        "mails a node holds for delivery; a mail beyond them is dropped (and counted)",
    ),
    "MAIL_RETRIES": (
        "mail_retries",
        _int(0, 100),
        "retries of a mail whose delivery failed (not of one the provider refused)",
    ),
    "MAIL_RETRY_BACKOFF": (
        "mail_retry_backoff",
        _float(0.001, 600),
        "seconds before the first retry of a mail; doubled each retry (jittered, at most 60)",
    ),
    "EMAIL_TOKEN_TTL": (
        "email_token_ttl",
        _int(300, 7 * 86400),
        "seconds an email verification token may be used",
    ),
    "RESET_TOKEN_TTL": (
        "reset_token_ttl",
        _int(60, 86400),
        "seconds a password reset token may be used",
    ),
    "MAX_DEVICES": (
        "max_devices",
        _int(1, 100),
        "push devices kept per user; registering one more drops the least recently registered",
    ),
    "PUSH_SINK": (
        "push_sink",
        _choice("file", "sns"),
        "where push notifications go: file (JSON lines in MOOSIC_PUSH_DIR) or sns",
    ),
    "PUSH_DIR": ("push_dir", _nonempty, "folder of the JSON-lines files of the file push sink"),
    "SNS_REGION": ("sns_region", _nonempty, "AWS region of SNS"),
    "SNS_ENDPOINT": ("sns_endpoint", _url, "SNS endpoint (an emulator); unset = AWS's own"),
    "SNS_APNS_ARN": (
        "sns_apns_arn",
        _optional,
        "SNS platform application ARN of apns devices (unset: they cannot be sent to)",
    ),
    "SNS_FCM_ARN": (
        "sns_fcm_arn",
        _optional,
        "SNS platform application ARN of fcm devices (unset: they cannot be sent to)",
    ),
    "PUSH_DELAY": (
        "push_delay",
        _float(0, 600),
        "seconds a new notification waits for more messages of its conversation to fold in",
    ),
    "PUSH_MAX_PENDING": (
        "push_max_pending",
        _int(1, 10_000),
        "conversations with a pending notification per user; another gets none (counted)",
    ),
    "PUSH_PER_MINUTE": (
        "push_per_minute",
        _int(1, 10_000),
        "notifications sent per user per minute; beyond them they wait for the next minute",
    ),
    "PUSH_QUEUE": (
        "push_queue",
        _int(1, 1_000_000),
        "messages a node holds for a push decision; one more is dropped (and counted)",
    ),
    "PUSH_BATCH": ("push_batch", _int(1, 1000), "notifications a node claims per outbox round"),
    "PUSH_POLL": (
        "push_poll",
        _float(0.01, 60),
        "seconds between outbox rounds that found less than a batch due",
    ),
    "PUSH_LEASE": (
        "push_lease",
        _float(20, 3600),
        "seconds a claimed notification is a node's; after it another node may send it",
    ),
    "PUSH_RETRIES": (
        "push_retries",
        _int(1, 100),
        "attempts of a notification whose every device failed, before it is given up",
    ),
    "PUSH_RETRY_BACKOFF": (
        "push_retry_backoff",
        _float(0.001, 600),
        "seconds before a failed notification is tried again; doubled each time (at most 300)",
    ),
    "PUSH_MAX_AGE": (
        "push_max_age",
        _float(1, 7 * 86400),
        "seconds after its first message a notification not yet sent is given up",
    ),
    # Push preferences and mutes (issue 16): handlers/preferences.py.
    "PUSH_MAX_MUTES": (
        "push_max_mutes",
        _int(1, 10_000),
        "conversations a user may have muted at once (one more is refused: limit_exceeded)",
    ),
    "REGIONS": (
        "regions",
        _regions,
        (
            "every region as name=URL of its gateways' server API, comma-separated, the "
            "original region first (docs/regions.md); unset = one region"
        ),
    ),
    "REGION_LINK_KEY": (
        "region_link_key",
        _secret,
        "the key this region presents to the others (one of their MOOSIC_SERVER_API_KEYS)",
    ),
    "REGION_ROOMS": (
        "region_rooms",
        _optional_region,
        "home region of rooms whose name names no region; unset = the original region",
    ),
    "REGION_TIMEOUT": (
        "region_timeout",
        _float(0.1, 60),
        "seconds a forwarded publish (slot wait included) or a first catch-up may take",
    ),
    "REGION_FORWARD_CONCURRENCY": (
        "region_forward_concurrency",
        _int(1, 10_000),
        "publishes a node forwards to home regions at once; more wait for a slot",
    ),
    "REGION_RELAY_CHANNELS": (
        "region_relay_channels",
        _int(1, 1_000_000),
        "remote-home channels a node follows, and channels one link may follow at a home",
    ),
}

PREFIX = "MOOSIC_"

# Settings whose values carry secrets (keys, passwords in URLs): a bad value is named, not shown,
# so the startup log never holds it.
_UNECHOED = frozenset(
    {"JWT_SECRET", "JWT_PREVIOUS_SECRETS", "REDIS_URL", "SERVER_API_KEYS", "REGION_LINK_KEY"}
)


def load_settings(environ: Mapping[str, str]) -> Settings:
    """Build :class:`Settings` from an environment; raise :class:`SettingsError` on bad values."""
    values: dict[str, Any] = {}
    problems: list[str] = []
    for suffix, (name, parse, _doc) in FIELDS.items():
        key = PREFIX + suffix
        if key not in environ:
            continue
        try:
            values[name] = parse(environ[key])
        except ValueError as exc:
            shown = "(not shown)" if suffix in _UNECHOED else repr(environ[key])
            problems.append(f"{key}={shown}: {exc}")
    known = {PREFIX + suffix for suffix in FIELDS}
    unknown = sorted(k for k in environ if k.startswith(PREFIX) and k not in known)
    problems.extend(f"{key}: unknown setting (typo?)" for key in unknown)
    if "jwt_secret" not in values and PREFIX + "JWT_SECRET" not in environ:
        if values.get("dev"):
            values["jwt_secret"] = secrets.token_urlsafe(48)
            values["jwt_secret_generated"] = True
        else:
            problems.append(
                f"{PREFIX}JWT_SECRET: required (or set {PREFIX}DEV=1 for a generated one)"
            )
    setting = partial(_loaded, values)
    ws_frame = setting("ws_max_frame_bytes")
    ws_close = setting("ws_close_frame_bytes")
    if ws_close < ws_frame:
        problems.append(
            f"{PREFIX}WS_CLOSE_FRAME_BYTES: must be at least {PREFIX}WS_MAX_FRAME_BYTES ({ws_frame})"
        )
    store = setting("store")
    message_bytes = setting("max_message_bytes")
    if store == "dynamodb" and message_bytes > DYNAMODB_MAX_DATA_BYTES:
        problems.append(
            f"{PREFIX}MAX_MESSAGE_BYTES: at most {DYNAMODB_MAX_DATA_BYTES} with the DynamoDB store"
        )
    if values.get("media_backend") == "aws":
        needed = {
            "MEDIA_BUCKET": "media_bucket",
            "MEDIA_MEDIACONVERT_ROLE": "media_mediaconvert_role",
            "CLOUDFRONT_DOMAIN": "cloudfront_domain",
            "CLOUDFRONT_KEY_ID": "cloudfront_key_id",
            "CLOUDFRONT_PRIVATE_KEY_FILE": "cloudfront_private_key_file",
        }
        problems.extend(
            f"{PREFIX}{suffix}: required with {PREFIX}MEDIA_BACKEND=aws"
            for suffix, name in needed.items()
            if not values.get(name) and PREFIX + suffix not in environ
        )
    url = values.get("redis_url")
    if values.get("redis_cluster"):
        if not url:
            problems.append(f"{PREFIX}REDIS_URL: required with {PREFIX}REDIS_CLUSTER=1")
        elif url.startswith("unix://"):
            problems.append(f"{PREFIX}REDIS_URL: a Redis Cluster is reached over TCP")
        else:
            try:
                parse_seeds(url)
            except ValueError as exc:
                problems.append(f"{PREFIX}REDIS_URL: {exc}")
    elif url and "," in url:
        problems.append(
            f"{PREFIX}REDIS_URL: several nodes name a Redis Cluster: set {PREFIX}REDIS_CLUSTER=1"
        )
    if values.get("mail_sink") == "ses" and PREFIX + "MAIL_FROM" not in environ:
        problems.append(
            f"{PREFIX}MAIL_FROM: required with {PREFIX}MAIL_SINK=ses (an identity SES verified)"
        )
    if (
        values.get("push_sink") == "sns"
        and not values.get("sns_apns_arn")
        and not values.get("sns_fcm_arn")
    ):
        problems.append(
            f"{PREFIX}SNS_APNS_ARN / {PREFIX}SNS_FCM_ARN: at least one is required with "
            f"{PREFIX}PUSH_SINK=sns (a platform application ARN)"
        )
    if values.get("clickstream_sink") == "kinesis" and not values.get("clickstream_stream"):
        problems.append(
            f"{PREFIX}CLICKSTREAM_STREAM: required with {PREFIX}CLICKSTREAM_SINK=kinesis"
        )
    flush_events = setting("clickstream_flush_events")
    buffer = setting("clickstream_buffer")
    if flush_events > buffer:
        problems.append(
            f"{PREFIX}CLICKSTREAM_FLUSH_EVENTS: at most {PREFIX}CLICKSTREAM_BUFFER ({buffer})"
        )
    api_port = values.get("server_api_port")
    if api_port is not None and api_port == setting("port"):
        problems.append(f"{PREFIX}SERVER_API_PORT: must differ from {PREFIX}PORT")
    problems.extend(_region_problems(values, environ))
    if problems:
        raise SettingsError(problems)
    return Settings.of(**values)


_DEFAULTS = Settings()


def _loaded(values: Mapping[str, Any], name: str) -> Any:
    """The value loaded for a setting (by its flat name), else its default."""
    if name in values:
        return values[name]
    return getattr(getattr(_DEFAULTS, SECTION_OF[name]), name)


def _region_problems(values: dict[str, Any], environ: Mapping[str, str]) -> list[str]:
    """What a region map needs: this region in it, a link key, the SQLite store (for now)."""
    regions = values.get("regions")
    if not regions:
        return []
    names = [name for name, _url in regions]
    problems = []
    region = _loaded(values, "region")
    if region not in names:
        problems.append(f"{PREFIX}REGION: must be one of {PREFIX}REGIONS ({', '.join(names)})")
    if not values.get("region_link_key") and PREFIX + "REGION_LINK_KEY" not in environ:
        problems.append(f"{PREFIX}REGION_LINK_KEY: required with {PREFIX}REGIONS")
    rooms = values.get("region_rooms")
    if rooms is not None and rooms not in names:
        problems.append(f"{PREFIX}REGION_ROOMS: must be one of {PREFIX}REGIONS")
    if _loaded(values, "store") != "sqlite":
        problems.append(
            f"{PREFIX}REGIONS: needs {PREFIX}STORE=sqlite for now (the relay's replica writes "
            "are built on SQLite only; docs/regions.md)"
        )
    return problems
