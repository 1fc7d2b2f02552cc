"""The application factory: small ``setup_*`` steps, one cleanup context per resource.

Resources start in order (the Redis client, store, hub with its broker, services) and stop in
reverse: the one Redis client (none without ``MOOSIC_REDIS_URL``) is handed to the broker,
presence, hot counters, rate limits and revocations, and closes after all of them. On shutdown every
WebSocket is told to reconnect elsewhere (close code 4000) before the hub and the store go.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from functools import partial
from typing import cast

from aiohttp import web

from gateway.auth.jwks import JwksError, JwksKeys
from gateway.auth.revocation import Revocations
from gateway.auth.tokens import LEEWAY_SECONDS, TokenService
from gateway.clickstream import service as clickstream_service
from gateway.clickstream.service import CLICKSTREAM
from gateway.clickstream.tally import Tally
from gateway.emf import EmfWriter
from gateway.fanout.broker import Broker
from gateway.fanout.broker_cluster import ClusterBroker
from gateway.fanout.broker_memory import MemoryBroker
from gateway.fanout.broker_redis import RedisBroker
from gateway.fanout.counts import build_hot_counts, touch_channel
from gateway.fanout.hub import Hub, Publisher
from gateway.fanout.presence import PresenceTracker
from gateway.guard.geo import CountryGate
from gateway.guard.ratelimit import Limiter
from gateway.http import media, openapi, server, server_api
from gateway.http import web as web_pages
from gateway.http.errors import error_middleware
from gateway.http.request_id import request_id_middleware
from gateway.http.routes import mount
from gateway.http.security import add_security_headers, rest_limits
from gateway.keys import (
    FEEDS,
    GATE,
    HOME_LINKS,
    HOT_COUNTS,
    HUB,
    LIMITER,
    METRICS,
    METRICS_REGISTRY,
    PRESENCE,
    REGISTRY,
    RELAY,
    REPLAY,
    REVOCATIONS,
    SERVICES,
    SETTINGS,
    STORE,
    TOKENS,
    WS_NODE,
)
from gateway.mail import service as mail_service
from gateway.mail.service import MAIL
from gateway.metrics import Metrics, registry_for
from gateway.push import service as push_service
from gateway.regions.forward import Forwarder
from gateway.regions.home import HomeLinks
from gateway.regions.relay import RegionalBroker, Relay, ReplicaStore
from gateway.settings import Settings
from gateway.timed_store import timed_store
from gateway.ws.connection import Connection, WsNode
from gateway.ws.registry import Registry
from handlers import OPERATIONS
from handlers.base import Context, Limits, Services
from handlers.cache import TtlCache
from handlers.events import track_operation
from handlers.feed import FeedFanout
from handlers.passwords import ScryptHasher
from handlers.regions import RegionPlan, id_tag
from handlers.replay import Replay
from storage.dynamodb import DynamoDBConfig
from storage.factory import build_store
from storage.presence import LocalPresence
from storage.redis.client import RedisClient
from storage.redis.cluster import ClusterClient
from storage.redis.presence import RedisPresence
from storage.redis.trending import RedisTrending
from storage.trending import LocalTrending

log = logging.getLogger(__name__)


def create_app(settings: Settings) -> web.Application:
    """Build the gateway for ``settings``; nothing connects until the app starts."""
    app = web.Application(
        middlewares=[request_id_middleware, error_middleware, server_api.gate, rest_limits],
        client_max_size=settings.http.rest_max_body_bytes,
    )
    app.on_response_prepare.append(add_security_headers)
    metrics = Metrics()
    app[SETTINGS] = settings
    app[METRICS] = metrics
    app[METRICS_REGISTRY] = registry_for(metrics)  # read at each scrape (GET /metrics)
    server.setup(app)  # body limits and pace, innermost middleware; HTTP counters
    jwks = None
    if settings.auth.jwks_url:
        jwks = JwksKeys(settings.auth.jwks_url, refresh=settings.auth.jwks_refresh)
        app.cleanup_ctx.append(partial(_jwks_ctx, jwks))
    app[TOKENS] = TokenService(
        settings.auth.jwt_secret,
        issuer=settings.auth.jwt_issuer,
        audience=settings.auth.jwt_audience,
        ttl=settings.auth.access_token_ttl,
        previous_secrets=settings.auth.jwt_previous_secrets,
        jwks=jwks,
        jwks_issuer=settings.auth.jwks_issuer,
        jwks_audience=settings.auth.jwks_audience,
    )
    app[GATE] = CountryGate(
        settings.guard.allowed_countries,
        settings.guard.trusted_proxies,
        allow_local=settings.server.dev,
    )
    metrics.gauges["gc_frozen_objects"] = lambda: 0.0  # set when the node listens (server.py)
    clickstream = clickstream_service.setup(app, settings, metrics)  # drained after the sockets
    mail_service.setup(app, settings, metrics)  # queued mail drained after the services stop
    track = track_operation(clickstream.intake, _country_of)
    app[REGISTRY] = Registry((*OPERATIONS, track), metrics)
    redis = _redis_client(settings, metrics)
    if redis is not None:
        app.cleanup_ctx.append(partial(_redis_ctx, redis))
    app.cleanup_ctx.append(_store_ctx)
    app.cleanup_ctx.append(partial(_hub_ctx, redis))
    app.cleanup_ctx.append(partial(_services_ctx, redis))
    if settings.server.emf_interval > 0:
        emf = EmfWriter(
            metrics,
            interval=settings.server.emf_interval,
            node=clickstream.node,
            region=settings.server.region,
        )
        app.cleanup_ctx.append(partial(_emf_ctx, emf))
    app.on_shutdown.append(_close_websockets)
    if settings.regions.regions:
        app[HOME_LINKS] = HomeLinks(max_channels=settings.regions.region_relay_channels)
        app.on_shutdown.append(_close_region_links)
    mount(app.router, openapi.TABLES)  # every route, /ws included (gateway.http.routes)
    media.setup(app)  # its cleanup context runs after the services'
    server_api.setup(app)  # /server/v1/*: trusted back ends and the admin page
    web_pages.setup(app)  # /, /app/*, /sdk/moosic.js
    return app


async def _emf_ctx(emf: EmfWriter, app: web.Application) -> AsyncIterator[None]:
    await emf.start()
    yield
    await emf.close()


def _country_of(ctx: Context) -> str | None:
    return ctx.country  # the country gate's reading, kept by the connection (or the request)


def region_plan(settings: Settings) -> RegionPlan | None:
    """Every region, this one and the rooms' home (docs/regions.md); None: one region."""
    if not settings.regions.regions:
        return None
    names = tuple(name for name, _url in settings.regions.regions)
    return RegionPlan(settings.server.region, names, settings.regions.region_rooms or names[0])


async def _close_region_links(app: web.Application) -> None:
    await app[HOME_LINKS].close()


def _redis_client(settings: Settings, metrics: Metrics) -> RedisClient | None:
    """The node's one Redis client, its breaker in ``/metrics``; None without a Redis URL."""
    if not settings.redis.redis_url:
        return None
    redis: RedisClient
    if settings.redis.redis_cluster:
        cluster = ClusterClient(
            settings.redis.redis_url,
            breaker_failures=settings.redis.redis_breaker_failures,
            breaker_cooldown=settings.redis.redis_breaker_cooldown,
            refresh_interval=settings.redis.redis_cluster_refresh,
        )
        metrics.counters["redis_cluster_refreshes"] = lambda: cluster.refreshes
        metrics.counters["redis_cluster_redirects"] = lambda: cluster.redirects
        metrics.gauges["redis_cluster_primaries"] = lambda: len(cluster.primaries)
        metrics.gauges["redis_cluster_topology_version"] = lambda: cluster.topology_version
        redis = cluster
    else:
        redis = RedisClient(
            settings.redis.redis_url,
            breaker_failures=settings.redis.redis_breaker_failures,
            breaker_cooldown=settings.redis.redis_breaker_cooldown,
        )
    redis.observe = metrics.family("redis_latency").observe
    breaker = redis.breaker
    metrics.gauges["redis_circuit_state"] = lambda: breaker.state
    metrics.counters["redis_circuit_trips"] = lambda: breaker.trips
    metrics.counters["redis_circuit_rejected"] = lambda: breaker.rejected
    return redis


async def _redis_ctx(redis: RedisClient, app: web.Application) -> AsyncIterator[None]:
    yield
    await redis.close()  # after everything that used it


def _broker(settings: Settings, metrics: Metrics, redis: RedisClient | None) -> Broker:
    if isinstance(redis, ClusterClient):
        return ClusterBroker(
            redis,
            prefix=settings.redis.redis_prefix,
            metrics=metrics,
            window=settings.chat.recovery_window,
            window_ttl=settings.chat.recovery_ttl,
        )
    if redis is not None:
        return RedisBroker(
            redis,
            prefix=settings.redis.redis_prefix,
            metrics=metrics,
            window=settings.chat.recovery_window,
            window_ttl=settings.chat.recovery_ttl,
        )
    return MemoryBroker(
        recent_per_channel=settings.chat.recovery_window,
        recent_channels=settings.chat.recovery_memory_channels,
    )


async def _jwks_ctx(jwks: JwksKeys, app: web.Application) -> AsyncIterator[None]:
    """Read the identity provider's keys before serving, then keep them fresh."""
    try:
        await jwks.load()
    except JwksError as exc:
        # Start anyway (our own tokens work); RS256 tokens are refused until a read succeeds.
        log.warning("JWKS: %s; RS256 tokens are refused until it can be read", exc)
    task = asyncio.get_running_loop().create_task(jwks.run(), name="jwks-refresh")
    yield
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def _store_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    store = build_store(
        settings.storage.store,
        sqlite_path=settings.storage.sqlite_path,
        max_pending=settings.storage.store_max_pending,
        dynamodb=DynamoDBConfig(
            region=settings.storage.dynamodb_region,
            endpoint_url=settings.storage.dynamodb_endpoint,
            table_prefix=settings.storage.dynamodb_table_prefix,
            dax_endpoint=settings.storage.dax_endpoint,
        ),
        id_tag=id_tag(settings.server.region) if settings.regions.regions else "",
    )
    await store.open()
    app[STORE] = timed_store(store, app[METRICS].family("store_latency"), settings.storage.store)
    # The store's own view (storage.base.StoreHealth, no I/O): 0 while it refuses writes.
    app[METRICS].gauges["store_healthy"] = lambda: float(store.health().healthy)
    app[METRICS].counters["store_refused_writes"] = lambda: store.health().refused_writes
    yield
    await store.close()


async def _hub_ctx(redis: RedisClient | None, app: web.Application) -> AsyncIterator[None]:
    """The fan-out core, collaborators first: the hub is built with what it calls."""
    settings = app[SETTINGS]
    metrics = app[METRICS]
    broker = _broker(settings, metrics, redis)
    relay = _relay(app, settings, metrics)
    fanout = broker if relay is None else RegionalBroker(broker, relay)
    publish = Publisher(fanout, metrics)
    presence: LocalPresence | RedisPresence = LocalPresence()
    if redis is not None:
        presence = RedisPresence(
            redis, prefix=settings.redis.redis_prefix, ttl=settings.presence.presence_ttl
        )
    hot_counts = build_hot_counts(settings, app[STORE], publish, presence, redis)
    replay = Replay(app[STORE], fanout)
    hub = Hub(
        fanout,
        metrics,
        max_watchers=settings.http.max_longpolls,
        heartbeat=settings.ws.ws_heartbeat,
        backfill=replay.backfill,
        presence=PresenceTracker(
            presence,
            publish,
            refresh=settings.presence.presence_ttl / 3,
            audience=touch_channel(hot_counts),
        ),
    )
    started = int(time.time())
    node = app[CLICKSTREAM].node  # host:port, as events name it
    presence.card = lambda: {
        "address": node,
        "region": settings.server.region,
        "started_at": started,
        "connections": hub.member_count,
        "channels": hub.channel_count,
    }
    if relay is not None:
        relay.publish = publish  # relayed events enter the fan-out as local ones do
        relay.deliver_push = hub.deliver_push  # relayed pushes: this node's subscribers only
        await relay.start()
    await hub.start()
    app[HUB] = hub
    app[PRESENCE] = presence
    app[HOT_COUNTS] = hot_counts
    app[REPLAY] = replay
    metrics.gauges["ws_connections"] = lambda: hub.member_count
    metrics.gauges["channels"] = lambda: hub.channel_count
    metrics.gauges["ws_outbound_buffered_bytes"] = hub.buffered_bytes
    counters = replay.counters
    metrics.counters["recoveries_from_window"] = lambda: counters.recovery_from_window
    metrics.counters["recoveries_from_store"] = lambda: counters.recovery_from_store
    metrics.counters["video_counts_pushes"] = lambda: hot_counts.pushed
    metrics.counters["video_counts_flushed"] = lambda: hot_counts.flushed
    await hot_counts.start()
    yield
    await hot_counts.close()  # the last flush: a clean stop loses no counted change
    if relay is not None:
        await relay.close()  # no relayed event enters a closing hub
    await hub.close()


def _relay(app: web.Application, settings: Settings, metrics: Metrics) -> Relay | None:
    """The relay of remote-home channels, its figures in ``/metrics``; None: one region."""
    plan = region_plan(settings)
    if plan is None:
        return None
    relay = Relay(
        plan,
        dict(settings.regions.regions),
        settings.regions.region_link_key,
        cast(ReplicaStore, app[STORE]),  # SQLite's replicate (settings refuse other stores)
        timeout=settings.regions.region_timeout,
        max_channels=settings.regions.region_relay_channels,
    )
    app[RELAY] = relay
    stats = relay.stats
    metrics.counters["region_follows"] = lambda: stats.follows
    metrics.counters["region_follows_refused"] = lambda: stats.follows_refused
    metrics.counters["region_events_relayed"] = lambda: stats.relayed
    metrics.counters["region_link_connects"] = lambda: stats.connects
    metrics.counters["region_link_failures"] = lambda: stats.link_failures
    metrics.gauges["region_channels_followed"] = lambda: relay.following
    pushes = relay.push_stats
    homes = app[HOME_LINKS].push_stats
    metrics.counters["region_pushes_sent"] = lambda: pushes.sent + homes.sent
    metrics.counters["region_pushes_received"] = lambda: pushes.received + homes.received
    metrics.counters["region_pushes_coalesced"] = lambda: pushes.coalesced + homes.coalesced
    metrics.counters["region_pushes_dropped"] = lambda: pushes.dropped + homes.dropped
    return relay


async def _services_ctx(redis: RedisClient | None, app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    hub = app[HUB]
    presence = app[PRESENCE]
    hot_counts = app[HOT_COUNTS]
    trending: LocalTrending | RedisTrending = LocalTrending(window=settings.counts.trending_window)
    if redis is not None:
        trending = RedisTrending(
            redis, prefix=settings.redis.redis_prefix, window=settings.counts.trending_window
        )
    tally = Tally(hot_counts, trending, interval=settings.counts.counts_flush_interval)
    app[CLICKSTREAM].intake.observer = tally.observe
    limiter = Limiter(
        settings.guard.rate_limits, app[METRICS], redis=redis, prefix=settings.redis.redis_prefix
    )
    revocations = Revocations(
        ttl=settings.auth.access_token_ttl + LEEWAY_SECONDS,
        on_revoked=partial(_close_session, hub),
        redis=redis,
        prefix=settings.redis.redis_prefix,
    )
    if redis is not None:
        await revocations.sync()  # sessions revoked before this node started
    hub.spawn(revocations.run())
    app[LIMITER] = limiter
    app[REVOCATIONS] = revocations
    app[TOKENS].revocations = revocations
    feeds = FeedFanout(
        app[STORE],
        hub,
        presence,
        threshold=settings.feed.feed_fanout_threshold,
        batch=settings.feed.feed_fanout_batch,
        item_ttl=settings.feed.feed_item_ttl,
        observe_walk=app[METRICS].family("feed_fanout").observe,
    )
    app[FEEDS] = feeds
    notifier, drainer = push_service.build(settings, app[STORE], presence, app[METRICS])
    forwarder = None
    if settings.regions.regions:
        forwarder = Forwarder(
            dict(settings.regions.regions),
            settings.regions.region_link_key,
            timeout=settings.regions.region_timeout,
            concurrency=settings.regions.region_forward_concurrency,
        )
        await forwarder.start()
        if RELAY in app:
            forwarder.fresh = app[RELAY].is_fresh  # history from the local copy when current
        app[METRICS].counters["region_publishes_forwarded"] = lambda: forwarder.forwarded
        app[METRICS].counters["region_forwards_failed"] = lambda: forwarder.failed
    app[SERVICES] = Services(
        store=app[STORE],
        fanout=app[HUB],
        tokens=app[TOKENS],
        passwords=ScryptHasher(n=settings.auth.scrypt_n, concurrency=settings.auth.kdf_concurrency),
        limits=Limits(
            max_message_bytes=settings.chat.max_message_bytes,
            history_max_limit=settings.chat.history_max_limit,
            max_subscriptions=settings.ws.max_subscriptions,
            max_group_members=settings.chat.max_group_members,
            longpoll_max_seconds=settings.http.longpoll_max_seconds,
            refresh_token_ttl=settings.auth.refresh_token_ttl,
            max_replay=settings.chat.recovery_max_events,
            max_watched_users=settings.presence.max_watched_users,
            video_ready_on_create=settings.media.video_ready_on_create,
            access_token_ttl=settings.auth.access_token_ttl,
            email_token_ttl=settings.mail.email_token_ttl,
            reset_token_ttl=settings.mail.reset_token_ttl,
            max_devices=settings.push.max_devices,
            max_mutes=settings.push.push_max_mutes,
        ),
        presence=presence,
        hot_counts=hot_counts,
        replay=app[REPLAY],
        videos=TtlCache(ttl=settings.counts.video_cache_seconds),
        limiter=limiter,
        sessions=revocations,
        feeds=feeds,
        blocks=TtlCache(ttl=settings.counts.video_cache_seconds),
        trending=trending,
        mailer=app[MAIL],
        notifier=notifier,
        observe_op=app[METRICS].family("op_latency").observe,
        regions=region_plan(settings),
        forwarder=forwarder,
    )
    metrics = app[METRICS]
    metrics.counters["feed_posts"] = lambda: feeds.stats.posts
    metrics.counters["feed_wide_posts"] = lambda: feeds.stats.wide_posts
    metrics.counters["feed_items_written"] = lambda: feeds.stats.items_written
    metrics.counters["feed_pushes"] = lambda: feeds.stats.pushes
    metrics.counters["feed_fanouts_failed"] = lambda: feeds.stats.failed
    metrics.gauges["feed_fanouts_running"] = lambda: feeds.running
    metrics.gauges["feed_last_fanout_seconds"] = lambda: feeds.stats.last_walk_seconds
    metrics.gauges["feed_longest_batch_seconds"] = lambda: feeds.stats.longest_batch_seconds
    metrics.counters["clickstream_tally_dropped"] = lambda: tally.dropped
    metrics.counters["trending_handovers_failed"] = lambda: tally.failed
    metrics.gauges["clickstream_tally_videos"] = lambda: tally.waiting
    app[WS_NODE] = WsNode(
        hub=app[HUB],
        registry=app[REGISTRY],
        services=app[SERVICES],
        metrics=app[METRICS],
        max_frame=settings.ws.ws_max_frame_bytes,
        hard_frame=settings.ws.ws_close_frame_bytes,
        max_backlog=settings.ws.ws_max_backlog_bytes,
        close_timeout=settings.ws.ws_close_timeout,
        max_inbound=settings.ws.ws_close_frame_bytes + settings.ws.ws_max_frame_bytes,
        max_queued=settings.ws.ws_max_queued_messages,
        frame_rate=settings.ws.ws_frames_per_second,
        frame_burst=float(settings.ws.ws_frame_burst),
        flood_close=settings.ws.ws_flood_close_seconds,
    )
    await tally.start()
    await notifier.start()
    await drainer.start()
    yield
    await feeds.close(settings.server.shutdown_timeout)  # walks still running finish, bounded
    await notifier.close(settings.server.shutdown_timeout)  # decisions queued are written, bounded
    await drainer.close()  # the round under way finishes; what is left stays in the outbox
    await tally.close()  # views and watch time summed so far go to the hot counters
    if forwarder is not None:
        await forwarder.close()


def _close_session(hub: Hub, session_id: str, user_id: str) -> None:
    """Close this node's sockets of a revoked login session."""
    for member in hub.members_of(user_id):
        if isinstance(member, Connection) and member.session_id == session_id:
            member.session_revoked()


async def _close_websockets(app: web.Application) -> None:
    """Tell every client to reconnect elsewhere, then wait (bounded) for the sockets to end."""
    hub = app[HUB]
    members = hub.all_members()
    if not members:
        return
    log.info("closing %d WebSocket connections for shutdown", len(members))
    for member in members:
        member.shutdown()
    if not await hub.wait_no_members(app[SETTINGS].server.shutdown_timeout):
        log.warning("%d connections still open after the shutdown timeout", hub.member_count)
