"""Fixtures: a :class:`World` of services on a fresh SQLite file, and users in it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.auth.tokens import TokenService
from handlers.base import Context, Limits, Services
from handlers.channels import dm_channel
from handlers.passwords import ScryptHasher
from handlers.replay import Replay
from storage.base import Store
from storage.factory import build_store
from storage.videos import Video, VideoStatus
from tests.handlers.fakes import FakeFanout, FakeHotCounts, FakePresence, FakeSession
from tests.support.servers import TEST_JWT_SECRET

LIMITS = Limits(
    history_max_limit=10,
    max_subscriptions=3,
    max_group_members=3,
    max_replay=5,
    max_watched_users=2,
)


@dataclass
class World:
    store: Store
    fanout: FakeFanout
    presence: FakePresence
    hot_counts: FakeHotCounts
    tokens: TokenService
    services: Services

    def ctx(self, user_id: str, session: FakeSession | None = None) -> Context:
        return Context(user_id, self.services, session)

    async def user(self, name: str) -> str:
        return (await self.store.create_user(name, "not-a-hash")).id

    async def dm(self, name_a: str, name_b: str) -> tuple[str, str, str]:
        a, b = await self.user(name_a), await self.user(name_b)
        return a, b, dm_channel(a, b)

    async def video(self, owner: str, status: VideoStatus = VideoStatus.READY) -> Video:
        return await self.store.create_video(owner, "My cat", status=status)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    store = build_store("sqlite", sqlite_path=str(tmp_path / "handlers.db"), max_pending=64)
    await store.open()
    fanout, presence, hot_counts = FakeFanout(), FakePresence(), FakeHotCounts()
    tokens = TokenService(TEST_JWT_SECRET, issuer="moosic", audience="moosic", ttl=900)
    services = Services(
        store=store,
        fanout=fanout,
        tokens=tokens,
        passwords=ScryptHasher(n=2**10),
        limits=LIMITS,
        presence=presence,
        hot_counts=hot_counts,
        replay=Replay(store, fanout),
    )
    try:
        yield World(store, fanout, presence, hot_counts, tokens, services)
    finally:
        await store.close()
