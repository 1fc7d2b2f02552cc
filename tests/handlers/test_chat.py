"""Chat rules on their own: who may publish and subscribe, retries, history paging, recovery."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

import msgspec
import pytest

from gateway.fanout.broker_memory import RecentWindows
from handlers import auth, chat, follows
from handlers.errors import OpError
from tests.handlers.conftest import LIMITS, World
from tests.handlers.fakes import FakeSession


async def refused(call: Awaitable[Any], code: str) -> OpError:
    with pytest.raises(OpError) as caught:
        await call
    assert caught.value.kind.code == code, caught.value
    return caught.value


def publish_params(channel: str, text: str = "hi", **extra: Any) -> chat.PublishParams:
    data = msgspec.Raw(msgspec.json.encode({"text": text}))
    return chat.PublishParams(channel=channel, data=data, **extra)


async def test_publish_needs_write_access_and_stores_nothing_when_refused(world: World) -> None:
    a, b, dm = await world.dm("ann", "bob")
    eve = await world.user("eve")
    group = await world.store.create_group("g", a, [])
    cases = [
        (eve, dm, "forbidden"),  # not one of the DM's two users
        (a, f"user:{b}", "forbidden"),  # user channels carry server events only
        (a, f"user:{a}", "forbidden"),  # ... even one's own
        (a, "video:v1", "forbidden"),
        (b, f"group:{group.id}", "forbidden"),  # not a member
        (a, f"dm:{max(a, b)}:{min(a, b)}", "invalid_channel"),  # unsorted ids
    ]
    for user, channel, code in cases:
        await refused(chat.publish(world.ctx(user), publish_params(channel)), code)
    assert world.fanout.published == []
    assert (await world.store.position(dm)).offset == 0


async def test_a_blocked_user_cannot_publish_to_the_blockers_dm(world: World) -> None:
    a, b, dm = await world.dm("ann", "bob")
    await chat.publish(world.ctx(b), publish_params(dm))
    await follows.block(world.ctx(a), follows.BlockParams(user_id=b))
    await refused(chat.publish(world.ctx(b), publish_params(dm)), "blocked")
    await chat.publish(world.ctx(a), publish_params(dm))  # the blocker still may
    assert [e["from"] for e in world.fanout.on(dm)] == [b, a]


async def test_publish_pushes_once_and_a_retry_is_a_duplicate(world: World) -> None:
    a, _b, dm = await world.dm("ann", "bob")
    first = await chat.publish(world.ctx(a), publish_params(dm, client_msg_id="c-1"))
    again = await chat.publish(world.ctx(a), publish_params(dm, "changed", client_msg_id="c-1"))
    assert first["duplicate"] is False
    assert again["duplicate"] is True
    assert again["message_id"] == first["message_id"]
    assert again["offset"] == first["offset"] == 1
    [pushed] = world.fanout.published
    assert (pushed.channel, pushed.offset, pushed.epoch) == (dm, 1, first["epoch"])
    assert pushed.doc["data"] == {"text": "hi"}
    assert pushed.doc["client_msg_id"] == "c-1"


async def test_message_too_large_and_not_an_object(world: World) -> None:
    big = "x" * LIMITS.max_message_bytes
    await refused(chat.publish(world.ctx("u1"), publish_params("room:a", big)), "message_too_large")
    params = chat.PublishParams(channel="room:a", data=msgspec.Raw(b"[1]"))
    await refused(chat.publish(world.ctx("u1"), params), "invalid_params")
    assert world.fanout.published == []


async def test_a_dms_non_member_cannot_subscribe_or_read_history(world: World) -> None:
    _a, _b, dm = await world.dm("ann", "bob")
    eve = await world.user("eve")
    session = FakeSession()
    ctx = world.ctx(eve, session)
    await refused(chat.subscribe(ctx, chat.SubscribeParams(channel=dm)), "forbidden")
    await refused(chat.history(ctx, chat.HistoryParams(channel=dm, limit=5)), "forbidden")
    assert session.channels == set()
    assert session.activated == []


async def test_subscribe_needs_a_socket_and_respects_the_cap(world: World) -> None:
    await refused(
        chat.subscribe(world.ctx("u1"), chat.SubscribeParams(channel="room:a")), "forbidden"
    )
    session = FakeSession()
    ctx = world.ctx("u1", session)
    for n in range(LIMITS.max_subscriptions):
        await chat.subscribe(ctx, chat.SubscribeParams(channel=f"room:{n}"))
    again = await chat.subscribe(ctx, chat.SubscribeParams(channel="room:0"))  # harmless
    assert again == {"channel": "room:0", "offset": 0, "epoch": ""}
    await refused(
        chat.subscribe(ctx, chat.SubscribeParams(channel="room:over")), "too_many_subscriptions"
    )
    assert session.subscription_count == LIMITS.max_subscriptions


async def test_history_pages_newest_first_to_the_end(world: World) -> None:
    a, _b, dm = await world.dm("ann", "bob")
    for n in range(5):
        await chat.publish(world.ctx(a), publish_params(dm, f"m{n}"))
    ctx = world.ctx(a)
    seen: list[int] = []
    before: str | None = None
    pages = 0
    while True:
        page = await chat.history(ctx, chat.HistoryParams(channel=dm, limit=2, before=before))
        seen += [m["offset"] for m in page["messages"]]
        pages += 1
        before = page["next_before"]
        if before is None:
            break
    assert seen == [5, 4, 3, 2, 1]
    assert pages == 3
    over = chat.HistoryParams(channel=dm, limit=LIMITS.history_max_limit + 1)
    await refused(chat.history(ctx, over), "invalid_params")


async def test_recovery_replays_exactly_the_missed_events_or_says_why_not(world: World) -> None:
    a, _b, dm = await world.dm("ann", "bob")
    results = [await chat.publish(world.ctx(a), publish_params(dm, f"m{n}")) for n in range(3)]
    epoch = results[0]["epoch"]
    payloads = [p.payload for p in world.fanout.published]

    async def resubscribe(offset: int, with_epoch: str) -> tuple[dict[str, Any], FakeSession]:
        session = FakeSession()
        since = chat.Since(offset=offset, epoch=with_epoch)
        result = await chat.subscribe(
            world.ctx(a, session), chat.SubscribeParams(channel=dm, since=since)
        )
        return result, session

    result, session = await resubscribe(1, epoch)
    assert result == {"channel": dm, "offset": 3, "epoch": epoch, "recovered": True, "missed": 2}
    assert session.activated == [(dm, payloads[1:], 3, epoch)]
    assert world.services.replay.counters.recovery_from_window == 1

    result, session = await resubscribe(1, "another")
    assert (result["recovered"], result["reason"]) == (False, "epoch_changed")
    assert session.activated == [(dm, [], 3, epoch)]  # live from offset 3, nothing replayed
    result, _ = await resubscribe(9, epoch)
    assert (result["recovered"], result["reason"]) == (False, "offset_ahead")

    # Without the window the store answers, with the same bytes.
    world.fanout.windows = RecentWindows(per_channel=256, channels=1000)
    result, session = await resubscribe(0, epoch)
    assert (result["recovered"], result["missed"]) == (True, 3)
    assert session.activated == [(dm, payloads, 3, epoch)]
    assert world.services.replay.counters.recovery_from_store == 1


async def test_a_window_with_a_hole_or_a_short_end_defers_to_the_store(world: World) -> None:
    """The window misses an event Redis did not take (or a failover lost): the store has it."""
    a, _b, dm = await world.dm("ann", "bob")
    for n in range(4):
        await chat.publish(world.ctx(a), publish_params(dm, f"m{n}"))
    published = world.fanout.published
    epoch = published[0].epoch
    world.fanout.windows = RecentWindows(per_channel=256, channels=1000)
    for event in published:
        if event.offset != 3:  # offset 3 never reached the window
            world.fanout.windows.add(dm, event.offset, epoch, event.payload)
    payloads = [p.payload for p in published]

    session = FakeSession()
    params = chat.SubscribeParams(channel=dm, since=chat.Since(offset=1, epoch=epoch))
    result = await chat.subscribe(world.ctx(a, session), params)
    assert (result["recovered"], result["missed"]) == (True, 3)
    assert session.activated == [(dm, payloads[1:], 4, epoch)]
    assert world.services.replay.counters.recovery_from_store == 1
    assert await world.services.replay.backfill(dm, 1, 100) == (
        epoch,
        [(n, payloads[n - 1]) for n in (2, 3, 4)],
    )

    # The window ends short of the store (its last event was lost): only after an outage does
    # the gap fill ask the store where the channel ends.
    world.fanout.windows = RecentWindows(per_channel=256, channels=1000)
    for event in published[:2]:
        world.fanout.windows.add(dm, event.offset, epoch, event.payload)
    assert await world.services.replay.backfill(dm, 2, 100) == (epoch, [])
    assert await world.services.replay.backfill(dm, 2, 100, outage=True) == (
        epoch,
        [(3, payloads[2]), (4, payloads[3])],
    )


async def test_more_missed_than_may_be_replayed_is_too_old(world: World) -> None:
    for n in range(LIMITS.max_replay + 2):
        await chat.publish(world.ctx("u1"), publish_params("room:a", f"m{n}"))
    session = FakeSession()
    params = chat.SubscribeParams(channel="room:a", since=chat.Since(offset=0))
    result = await chat.subscribe(world.ctx("u1", session), params)
    assert (result["recovered"], result["reason"]) == (False, "too_old")
    assert session.activated[0][1] == []


async def test_auth_renews_only_with_a_token_of_the_same_user(world: World) -> None:
    session = FakeSession()
    theirs, _ = world.tokens.issue_access_token("u2", "s2")
    await refused(
        auth.reauthenticate(world.ctx("u1", session), auth.AuthParams(token=theirs)), "forbidden"
    )
    assert session.identity is None
    mine, _ = world.tokens.issue_access_token("u1", "s1")
    result = await auth.reauthenticate(world.ctx("u1", session), auth.AuthParams(token=mine))
    assert session.identity is not None
    assert session.identity.session_id == "s1"
    assert result["user_id"] == "u1"
