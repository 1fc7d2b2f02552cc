"""Groups and their members on DynamoDB (the ``groups`` table).

A group is its record, a member count and one item per member (``joined`` orders them in the
``by_joined`` index). Membership writes keep conversation lists in step in the same
transaction: a member added starts with what is already in the channel read, and one removed
leaves the list (the read position stays).
"""

from __future__ import annotations

import asyncio
from typing import Any

from storage.base import Group
from storage.conversations import group_channel, list_key
from storage.dynamodb import keys
from storage.dynamodb.base import BATCH_WRITE_ITEMS, CONDITION_FAILED, DynamoDBBase
from storage.dynamodb.keys import Item, get_n, get_s, n, s
from storage.errors import StorageError


class DynamoDBGroups(DynamoDBBase):
    """:class:`storage.base.GroupStore` on DynamoDB."""

    async def create_group(self, name: str, owner: str, members: list[str]) -> Group:
        everyone = list(dict.fromkeys([owner, *members]))
        now = self._now_ms()
        group = Group(self._ids.new(now), name, owner, now // 1000)
        channel = group_channel(group.id)
        pk = s(group.id)
        items: list[Item] = [
            {
                "pk": pk,
                "sk": s(keys.GROUP_SK),
                "name": s(name),
                "owner": s(owner),
                "created_at": n(group.created_at),
            },
            {"pk": pk, "sk": s(keys.COUNT_SK), "members": n(len(everyone))},
        ]
        items.extend(
            {
                "pk": pk,
                "sk": s(keys.member_sk(user)),
                "joined": s(keys.joined_key(group.created_at, user)),
                "joined_at": n(group.created_at),
            }
            for user in everyone
        )
        items.extend(
            {
                **keys.conversation_key(user, channel),
                "last_read": n(0),
                "joined": s(list_key(now, channel)),
            }
            for user in everyone
        )
        # No transaction needed: the id is new and nobody knows it before this returns, so no
        # one can see the group half-written. Plain batch writes cost half a transaction's.
        chunks = [items[i : i + BATCH_WRITE_ITEMS] for i in range(0, len(items), BATCH_WRITE_ITEMS)]
        slots = asyncio.Semaphore(4)

        async def write(chunk: list[Item]) -> None:
            async with slots:
                await self._batch_write(self._tables[keys.GROUPS], chunk)

        await asyncio.gather(*(write(chunk) for chunk in chunks))
        return group

    async def get_group(self, group_id: str) -> Group | None:
        item = await self._group_item(group_id, keys.GROUP_SK)
        if item is None:
            return None
        return Group(group_id, get_s(item, "name"), get_s(item, "owner"), get_n(item, "created_at"))

    async def _group_item(self, group_id: str, sk: str) -> Item | None:
        # Strongly consistent: a member just removed must not keep writing to the group.
        response = await self._call(
            "get_item",
            {
                "TableName": self._tables[keys.GROUPS],
                "Key": {"pk": s(group_id), "sk": s(sk)},
                "ConsistentRead": True,
            },
        )
        item: Item | None = response.get("Item")
        return item

    async def list_members(self, group_id: str, *, limit: int) -> list[str]:
        members: list[str] = []
        arguments: dict[str, Any] = {
            "TableName": self._tables[keys.GROUPS],
            "IndexName": keys.GROUP_MEMBERS_BY_JOINED,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": s(group_id)},
            "ConsistentRead": True,
        }
        while len(members) < limit:
            arguments["Limit"] = limit - len(members)
            response = await self._call("query", arguments)
            members.extend(get_s(item, "sk")[2:] for item in response.get("Items", []))
            last_key = response.get("LastEvaluatedKey")
            if not last_key:
                break
            arguments["ExclusiveStartKey"] = last_key
        return members

    async def count_members(self, group_id: str) -> int:
        item = await self._group_item(group_id, keys.COUNT_SK)
        return 0 if item is None else get_n(item, "members")

    async def is_member(self, group_id: str, user_id: str) -> bool:
        return await self._group_item(group_id, keys.member_sk(user_id)) is not None

    async def add_member(self, group_id: str, user_id: str) -> bool:
        now = self._now_ms()
        joined_at = now // 1000
        table = self._tables[keys.GROUPS]
        channel = group_channel(group_id)
        # A new member starts with what is already in the channel read.
        head = await self._read_head(channel, consistent=True)
        start = 0 if head is None else head.offset
        member: Item = {
            "Put": {
                "TableName": table,
                "Item": {
                    "pk": s(group_id),
                    "sk": s(keys.member_sk(user_id)),
                    "joined": s(keys.joined_key(joined_at, user_id)),
                    "joined_at": n(joined_at),
                },
                "ConditionExpression": "attribute_not_exists(pk)",
            }
        }
        entry: Item = {
            "Update": {
                "TableName": table,
                "Key": keys.conversation_key(user_id, channel),
                "UpdateExpression": "SET joined = :j, last_read = :r",
                # The read position only grows: a higher one (kept from an earlier membership)
                # stays, and the entry is then listed without touching it (second round).
                "ConditionExpression": "attribute_not_exists(last_read) OR last_read <= :r",
                "ExpressionAttributeValues": {":j": s(list_key(now, channel)), ":r": n(start)},
            }
        }
        for _ in range(2):
            reasons = await self._transact(
                [member, self._count_update(table, group_id, 1), entry], "add_member"
            )
            if reasons is None:
                return True
            if reasons[0].get("Code") == CONDITION_FAILED:
                return False  # already a member
            entry = {
                "Update": {
                    "TableName": table,
                    "Key": keys.conversation_key(user_id, channel),
                    "UpdateExpression": "SET joined = :j",
                    "ExpressionAttributeValues": {":j": s(list_key(now, channel))},
                }
            }
        raise StorageError(f"add_member {user_id} to {group_id}: the list entry kept conflicting")

    async def remove_member(self, group_id: str, user_id: str) -> bool:
        table = self._tables[keys.GROUPS]
        reasons = await self._transact(
            [
                {
                    "Delete": {
                        "TableName": table,
                        "Key": {"pk": s(group_id), "sk": s(keys.member_sk(user_id))},
                        "ConditionExpression": "attribute_exists(pk)",
                    }
                },
                self._count_update(table, group_id, -1),
                {
                    # Off the list; the read position stays, for a member who comes back.
                    "Update": {
                        "TableName": table,
                        "Key": keys.conversation_key(user_id, group_channel(group_id)),
                        "UpdateExpression": "SET last_read = if_not_exists(last_read, :z)"
                        " REMOVE joined",
                        "ExpressionAttributeValues": {":z": n(0)},
                    }
                },
            ],
            "remove_member",
        )
        return reasons is None

    @staticmethod
    def _count_update(table: str, group_id: str, delta: int) -> Item:
        return {
            "Update": {
                "TableName": table,
                "Key": {"pk": s(group_id), "sk": s(keys.COUNT_SK)},
                "UpdateExpression": "ADD members :delta",
                "ExpressionAttributeValues": {":delta": n(delta)},
            }
        }
