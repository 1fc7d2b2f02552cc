"""Group conversations: create, read, add and remove members.

The owner adds and removes members; any member may remove themselves (leave), except the owner.
A removed member's live subscriptions to ``group:{id}`` end on every node.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from handlers.base import Context, Params, Result, operation
from handlers.channels import is_user_id
from handlers.errors import FORBIDDEN, INVALID_PARAMS, LIMIT_EXCEEDED, NOT_FOUND, OpError
from storage.base import Group

GroupId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
UserId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class CreateGroupParams(Params, tag="create_group"):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
    members: Annotated[list[UserId], msgspec.Meta(max_length=1024)] = msgspec.field(
        default_factory=list
    )


class GetGroupParams(Params, tag="get_group"):
    group_id: GroupId


class AddMemberParams(Params, tag="add_member"):
    group_id: GroupId
    user_id: UserId


class RemoveMemberParams(Params, tag="remove_member"):
    group_id: GroupId
    user_id: UserId


async def _group(ctx: Context, group_id: str) -> Group:
    group = await ctx.services.store.get_group(group_id)
    if group is None or not await ctx.services.store.is_member(group_id, ctx.user_id):
        # Same answer for "no such group" and "not yours": group ids are not disclosed.
        raise OpError(NOT_FOUND, f"no group {group_id} that you belong to")
    return group


async def _require_users(ctx: Context, user_ids: list[str]) -> None:
    for user_id in user_ids:
        if not is_user_id(user_id) or await ctx.services.store.get_user(user_id) is None:
            raise OpError(NOT_FOUND, f"no user {user_id}")


async def _describe(ctx: Context, group: Group) -> Result:
    store = ctx.services.store
    members = await store.list_members(group.id, limit=ctx.services.limits.max_group_members)
    return {
        "group_id": group.id,
        "channel": f"group:{group.id}",
        "name": group.name,
        "owner": group.owner,
        "created_at": group.created_at,
        "members": members,
    }


@operation(CreateGroupParams)
async def create_group(ctx: Context, params: CreateGroupParams) -> Result:
    members = [m for m in dict.fromkeys(params.members) if m != ctx.user_id]
    limit = ctx.services.limits.max_group_members
    if len(members) + 1 > limit:
        raise OpError(INVALID_PARAMS, f"a group has at most {limit} members - at `$.members`")
    await _require_users(ctx, members)
    group = await ctx.services.store.create_group(params.name, ctx.user_id, members)
    return await _describe(ctx, group)


@operation(GetGroupParams)
async def get_group(ctx: Context, params: GetGroupParams) -> Result:
    return await _describe(ctx, await _group(ctx, params.group_id))


@operation(AddMemberParams)
async def add_member(ctx: Context, params: AddMemberParams) -> Result:
    store = ctx.services.store
    group = await _group(ctx, params.group_id)
    if group.owner != ctx.user_id:
        raise OpError(FORBIDDEN, "only the group's owner adds members")
    await _require_users(ctx, [params.user_id])
    limit = ctx.services.limits.max_group_members
    already = await store.is_member(group.id, params.user_id)
    if not already and await store.count_members(group.id) >= limit:
        raise OpError(LIMIT_EXCEEDED, f"a group has at most {limit} members")
    added = await store.add_member(group.id, params.user_id)
    return {"group_id": group.id, "user_id": params.user_id, "added": added}


@operation(RemoveMemberParams)
async def remove_member(ctx: Context, params: RemoveMemberParams) -> Result:
    group = await _group(ctx, params.group_id)
    if params.user_id == group.owner:
        raise OpError(FORBIDDEN, "the owner cannot leave or be removed")
    if ctx.user_id not in (group.owner, params.user_id):
        raise OpError(FORBIDDEN, "only the owner removes other members")
    removed = await ctx.services.store.remove_member(group.id, params.user_id)
    if removed:
        await ctx.services.fanout.kick(params.user_id, f"group:{group.id}", "removed_from_group")
    return {"group_id": group.id, "user_id": params.user_id, "removed": removed}
