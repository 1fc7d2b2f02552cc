"""Typed application state: every ``AppKey`` the gateway uses, in one place."""

from __future__ import annotations

from aiohttp import web

from gateway.connection import WsNode
from gateway.geo import CountryGate
from gateway.hub import Hub
from gateway.metrics import Metrics
from gateway.ratelimit import Limiter
from gateway.registry import Registry
from gateway.revocation import Revocations
from gateway.settings import Settings
from gateway.tokens import TokenService
from handlers.base import Services
from handlers.feed import FeedFanout
from storage.base import Store

SETTINGS = web.AppKey("settings", Settings)
METRICS = web.AppKey("metrics", Metrics)
TOKENS = web.AppKey("tokens", TokenService)
GATE = web.AppKey("gate", CountryGate)
REGISTRY = web.AppKey("registry", Registry)
STORE = web.AppKey("store", Store)
HUB = web.AppKey("hub", Hub)
SERVICES = web.AppKey("services", Services)
WS_NODE = web.AppKey("ws_node", WsNode)
LIMITER = web.AppKey("limiter", Limiter)
REVOCATIONS = web.AppKey("revocations", Revocations)
FEEDS = web.AppKey("feeds", FeedFanout)
