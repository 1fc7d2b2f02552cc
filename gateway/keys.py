"""Typed application state: every ``AppKey`` the gateway uses, in one place."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CollectorRegistry

from gateway.auth.revocation import Revocations
from gateway.auth.tokens import TokenService
from gateway.fanout.counts import LocalHotCounts, RedisHotCounts
from gateway.fanout.hub import Hub
from gateway.guard.geo import CountryGate
from gateway.guard.ratelimit import Limiter
from gateway.metrics import Metrics
from gateway.regions.home import HomeLinks
from gateway.regions.relay import Relay
from gateway.settings import Settings
from gateway.ws.connection import WsNode
from gateway.ws.registry import Registry
from handlers.base import Services
from handlers.feed import FeedFanout
from handlers.replay import Replay
from storage.base import Store
from storage.presence import LocalPresence
from storage.redis.presence import RedisPresence

SETTINGS = web.AppKey("settings", Settings)
METRICS = web.AppKey("metrics", Metrics)
METRICS_REGISTRY = web.AppKey("metrics_registry", CollectorRegistry)
TOKENS = web.AppKey("tokens", TokenService)
GATE = web.AppKey("gate", CountryGate)
REGISTRY = web.AppKey("registry", Registry)
STORE = web.AppKey("store", Store)
HUB = web.AppKey("hub", Hub)
PRESENCE: web.AppKey[LocalPresence | RedisPresence] = web.AppKey("presence")
HOT_COUNTS: web.AppKey[LocalHotCounts | RedisHotCounts] = web.AppKey("hot_counts")
REPLAY = web.AppKey("replay", Replay)
SERVICES = web.AppKey("services", Services)
WS_NODE = web.AppKey("ws_node", WsNode)
LIMITER = web.AppKey("limiter", Limiter)
REVOCATIONS = web.AppKey("revocations", Revocations)
FEEDS = web.AppKey("feeds", FeedFanout)
RELAY = web.AppKey("relay", Relay)
"""This node's relay of remote-home channels (only with ``MOOSIC_REGIONS``)."""
HOME_LINKS = web.AppKey("home_links", HomeLinks)
"""The region links this node serves as a home (only with ``MOOSIC_REGIONS``)."""
