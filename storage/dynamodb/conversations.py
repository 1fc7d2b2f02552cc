"""Read positions and conversation lists on DynamoDB (entries in the ``groups`` table).

An entry ``v#{user}`` / channel holds the user's read position (``last_read``) and, while the
channel is in their list, ``joined`` (the list's order key, the sort key of the
``by_joined`` index). Entries follow from other writes, in the same transaction: an append
(:func:`append_updates`, laid out by :mod:`storage.dynamodb.messages`) and group membership
(:mod:`storage.dynamodb.groups`); this module reads them and moves read positions.
"""

from __future__ import annotations

import uuid
from typing import Any

from botocore.exceptions import ClientError

from storage import ids
from storage.base import Conversation, ReadMark
from storage.conversations import dm_users, group_id, list_key
from storage.dynamodb import keys
from storage.dynamodb.base import CONDITION_FAILED_EXC, DynamoDBBase, Head, head_from
from storage.dynamodb.keys import Item, get_n, get_s, n, opt_s, s


def append_updates(
    table: str, channel: str, sent: list[tuple[str, int]], *, created: bool, now: int
) -> list[Item]:
    """The actions that keep read positions and lists in step with an append transaction.

    Each sender's read position moves to their last message in the transaction, and a DM's
    first transaction lists the channel for both its users. One action per user (a
    transaction may touch an item once). ``last_read`` is set without a condition (which
    would cancel the append): it never exceeds the channel's last offset, and these offsets
    are above it, so the set only ever raises it.
    """
    latest: dict[str, int] = {}
    for sender, offset in sent:
        latest[sender] = max(latest.get(sender, 0), offset)
    listed = (dm_users(channel) if created else None) or ()
    updates: list[Item] = []
    for user in dict.fromkeys([*latest, *listed]):
        values: dict[str, Any] = {}
        if user in latest:
            parts = ["last_read = :r"]
            values[":r"] = n(latest[user])
        else:
            parts = ["last_read = if_not_exists(last_read, :r)"]
            values[":r"] = n(0)
        if user in listed:
            parts.append("joined = if_not_exists(joined, :j)")
            values[":j"] = s(list_key(now, channel))
        updates.append(
            {
                "Update": {
                    "TableName": table,
                    "Key": keys.conversation_key(user, channel),
                    "UpdateExpression": "SET " + ", ".join(parts),
                    "ExpressionAttributeValues": values,
                }
            }
        )
    return updates


class DynamoDBConversations(DynamoDBBase):
    """:class:`storage.base.ConversationStore` on DynamoDB."""

    async def mark_read(self, user_id: str, channel: str, offset: int) -> ReadMark:
        head = await self._read_head(channel, consistent=True)
        last_offset = 0 if head is None else head.offset
        target = min(offset, last_offset)
        if target <= 0:
            current = 0
            if last_offset > 0:
                current = (await self.read_positions(user_id, [channel]))[channel]
            return ReadMark(current, last_offset, moved=False)
        # A random marker tells this call's own earlier attempt (applied, answer lost) from a
        # position another call set.
        marker = uuid.uuid4().hex
        try:
            await self._call(
                "update_item",
                {
                    "TableName": self._tables[keys.GROUPS],
                    "Key": keys.conversation_key(user_id, channel),
                    "UpdateExpression": "SET last_read = :o, read_by = :m",
                    "ConditionExpression": "attribute_not_exists(last_read) OR last_read < :o",
                    "ExpressionAttributeValues": {":o": n(target), ":m": s(marker)},
                    "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                },
                expected=CONDITION_FAILED_EXC,
            )
        except ClientError as exc:
            item = exc.response.get("Item") or {}
            current = get_n(item, "last_read") if "last_read" in item else 0
            if opt_s(item, "read_by") == marker:
                return ReadMark(max(current, target), last_offset, moved=True)
            return ReadMark(current, last_offset, moved=False)
        return ReadMark(target, last_offset, moved=True)

    async def read_positions(self, user_id: str, channels: list[str]) -> dict[str, int]:
        found = await self._get_many(
            [(keys.GROUPS, keys.conversation_key(user_id, c)) for c in channels]
        )
        positions = dict.fromkeys(channels, 0)
        for _, item in found:
            if "last_read" in item:
                positions[get_s(item, "sk")] = get_n(item, "last_read")
        return positions

    async def list_conversations(
        self, user_id: str, *, limit: int, before: str | None
    ) -> list[Conversation]:
        if limit <= 0:
            return []
        condition = "pk = :pk"
        values: dict[str, Any] = {":pk": s(keys.conversation_pk(user_id))}
        if before is not None:
            condition += " AND joined < :before"
            values[":before"] = s(before)
        # Only listed entries carry `joined`, so the index holds the list and nothing else. It
        # projects keys only: ALL_ATTRIBUTES fetches `last_read` from the table, which keeps
        # read-position writes off the index.
        entries = await self._query_all(
            {
                "TableName": self._tables[keys.GROUPS],
                "IndexName": keys.GROUP_MEMBERS_BY_JOINED,
                "KeyConditionExpression": condition,
                "ExpressionAttributeValues": values,
                "ScanIndexForward": False,
                "Select": "ALL_ATTRIBUTES",
            },
            limit=limit,
            cached=False,
        )
        channels = [get_s(item, "sk") for item in entries]
        group_ids = {c: g for c in channels if (g := group_id(c)) is not None}
        found = await self._get_many(
            [(keys.CHANNELS, {"pk": s(c)}) for c in channels]
            + [(keys.GROUPS, {"pk": s(g), "sk": s(keys.GROUP_SK)}) for g in group_ids.values()]
        )
        heads: dict[str, Head] = {}
        names: dict[str, str] = {}
        for table, item in found:
            if table == keys.CHANNELS:
                head = head_from(item)
                if head is not None:
                    heads[get_s(item, "pk")] = head
            else:
                names[get_s(item, "pk")] = get_s(item, "name")
        conversations: list[Conversation] = []
        for item, channel in zip(entries, channels, strict=True):
            head = heads.get(channel)
            gid = group_ids.get(channel)
            conversations.append(
                Conversation(
                    channel=channel,
                    last_offset=0 if head is None else head.offset,
                    epoch="" if head is None else head.epoch,
                    last_ts=None if head is None else ids.timestamp_ms(head.last_id),
                    last_read=get_n(item, "last_read") if "last_read" in item else 0,
                    name=None if gid is None else names.get(gid),
                    cursor=get_s(item, "joined"),
                )
            )
        return conversations
