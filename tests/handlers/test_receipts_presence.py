"""Read positions (grow only, clamped, pushed when moved), typing throttle, presence watches."""

from __future__ import annotations

from handlers import chat, presence, receipts
from tests.handlers.conftest import World
from tests.handlers.fakes import FakeSession
from tests.handlers.test_chat import publish_params, refused


async def test_a_read_position_only_grows_is_clamped_and_pushes_when_it_moves(
    world: World,
) -> None:
    a, b, dm = await world.dm("ann", "bob")
    for n in range(3):
        await chat.publish(world.ctx(a), publish_params(dm, f"m{n}"))
    # The sender's own messages are read: nothing unread in their list, three in bob's.
    for user, unread in ((a, 0), (b, 3)):
        page = await receipts.conversations(world.ctx(user), receipts.ConversationsParams())
        [entry] = page["conversations"]
        assert (entry["channel"], entry["unread"]) == (dm, unread)
    ctx = world.ctx(b)
    moved = await receipts.read(ctx, receipts.ReadParams(channel=dm, offset=2))
    lower = await receipts.read(ctx, receipts.ReadParams(channel=dm, offset=1))
    clamped = await receipts.read(ctx, receipts.ReadParams(channel=dm, offset=99))
    assert [(r["last_read"], r["unread"]) for r in (moved, lower, clamped)] == [
        (2, 1),
        (2, 1),
        (3, 0),
    ]
    reads = [p for p in world.fanout.on(dm) if p["op"] == "read"]
    assert reads == [
        {"op": "read", "channel": dm, "user": b, "offset": 2},
        {"op": "read", "channel": dm, "user": b, "offset": 3},
    ]


async def test_read_is_for_members_of_dms_and_groups_only(world: World) -> None:
    _a, _b, dm = await world.dm("ann", "bob")
    eve = await world.user("eve")
    params = receipts.ReadParams
    await refused(receipts.read(world.ctx(eve), params(channel=dm, offset=1)), "forbidden")
    await refused(receipts.read(world.ctx(eve), params(channel="room:a", offset=1)), "forbidden")
    assert world.fanout.published == []


async def test_typing_is_throttled_per_user_and_channel(world: World) -> None:
    a, b, dm = await world.dm("ann", "bob")
    typing = presence.TypingParams
    sent = [(await presence.typing(world.ctx(a), typing(channel=dm)))["sent"] for _ in range(2)]
    other = await presence.typing(world.ctx(b), typing(channel=dm))
    assert (sent, other["sent"]) == ([True, False], True)
    assert world.fanout.on(dm) == [
        {"op": "typing", "channel": dm, "user": a},
        {"op": "typing", "channel": dm, "user": b},
    ]
    await refused(presence.typing(world.ctx(a), typing(channel="video:v")), "invalid_params")
    await refused(presence.typing(world.ctx("eve"), typing(channel=dm)), "forbidden")


async def test_watching_presence_needs_a_socket_and_respects_the_cap(world: World) -> None:
    watch = presence.WatchPresenceParams
    await refused(presence.watch_presence(world.ctx("u1"), watch(users=["u2"])), "forbidden")
    world.presence.online = {"u2"}
    session = FakeSession()
    ctx = world.ctx("u1", session)
    now = await presence.watch_presence(ctx, watch(users=["u2", "u3", "u2"]))
    assert now["users"] == {
        "u2": {"online": True, "last_seen": None},
        "u3": {"online": False, "last_seen": 0},
    }
    assert session.subscribed(presence.WATCH_PREFIX) == 2
    await refused(presence.watch_presence(ctx, watch(users=["u4"])), "too_many_subscriptions")
    stopped = await presence.unwatch_presence(
        ctx, presence.UnwatchPresenceParams(users=["u3", "u9"])
    )
    assert stopped == {"unwatched": ["u3"]}
