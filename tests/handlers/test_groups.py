"""Group membership rules: who sees, adds and removes; the size cap; removal ends access."""

from __future__ import annotations

from handlers import chat, groups
from tests.handlers.conftest import LIMITS, World
from tests.handlers.test_chat import publish_params, refused


async def test_a_group_is_hidden_from_non_members_and_needs_real_users(world: World) -> None:
    owner, eve = await world.user("ann"), await world.user("eve")
    await refused(
        groups.create_group(world.ctx(owner), groups.CreateGroupParams(name="g", members=["nope"])),
        "not_found",
    )
    group = await groups.create_group(
        world.ctx(owner), groups.CreateGroupParams(name="g", members=[owner])
    )
    assert group["members"] == [owner]
    assert group["channel"] == f"group:{group['group_id']}"
    # Not a member: the same answer as for a group that does not exist.
    await refused(
        groups.get_group(world.ctx(eve), groups.GetGroupParams(group_id=group["group_id"])),
        "not_found",
    )
    await refused(
        groups.get_group(world.ctx(eve), groups.GetGroupParams(group_id="no-such-group")),
        "not_found",
    )


async def test_only_the_owner_adds_and_the_cap_holds(world: World) -> None:
    owner, bob, cat, dan = [await world.user(n) for n in ("ann", "bob", "cat", "dan")]
    too_many = [bob, cat, dan]  # with the owner: one over the cap
    await refused(
        groups.create_group(world.ctx(owner), groups.CreateGroupParams(name="g", members=too_many)),
        "invalid_params",
    )
    group = await groups.create_group(
        world.ctx(owner), groups.CreateGroupParams(name="g", members=[bob])
    )
    gid = group["group_id"]
    await refused(
        groups.add_member(world.ctx(bob), groups.AddMemberParams(group_id=gid, user_id=cat)),
        "forbidden",
    )
    added = await groups.add_member(
        world.ctx(owner), groups.AddMemberParams(group_id=gid, user_id=cat)
    )
    again = await groups.add_member(
        world.ctx(owner), groups.AddMemberParams(group_id=gid, user_id=cat)
    )
    assert (added["added"], again["added"]) == (True, False)  # already in: not a refusal
    assert await world.store.count_members(gid) == LIMITS.max_group_members
    await refused(
        groups.add_member(world.ctx(owner), groups.AddMemberParams(group_id=gid, user_id=dan)),
        "limit_exceeded",
    )


async def test_leaving_removing_and_what_a_removed_member_loses(world: World) -> None:
    owner, bob, cat = [await world.user(n) for n in ("ann", "bob", "cat")]
    group = await groups.create_group(
        world.ctx(owner), groups.CreateGroupParams(name="g", members=[bob, cat])
    )
    gid, channel = group["group_id"], group["channel"]
    remove = groups.RemoveMemberParams
    await refused(
        groups.remove_member(world.ctx(owner), remove(group_id=gid, user_id=owner)), "forbidden"
    )
    await refused(
        groups.remove_member(world.ctx(bob), remove(group_id=gid, user_id=cat)), "forbidden"
    )
    left = await groups.remove_member(world.ctx(bob), remove(group_id=gid, user_id=bob))
    assert left["removed"] is True
    assert world.fanout.kicks == [(bob, channel, "removed_from_group")]
    await refused(chat.publish(world.ctx(bob), publish_params(channel)), "forbidden")
    await refused(
        chat.history(world.ctx(bob), chat.HistoryParams(channel=channel, limit=5)), "forbidden"
    )
    # The owner removes cat; removing a non-member changes nothing and kicks nobody.
    await groups.remove_member(world.ctx(owner), remove(group_id=gid, user_id=cat))
    again = await groups.remove_member(world.ctx(owner), remove(group_id=gid, user_id=cat))
    assert again["removed"] is False
    assert [k[0] for k in world.fanout.kicks] == [bob, cat]
    await chat.publish(world.ctx(owner), publish_params(channel))  # the owner still writes
