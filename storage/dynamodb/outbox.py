"""The DynamoDB side of :class:`storage.push.NotificationStore`, in the ``follows`` table.

An aggregate on :class:`storage.dynamodb.base.DynamoDBBase`; ``keys`` has the item layout. A
pending notification is one item (``ob#{shard}`` / ``{user}#{conversation}``): folding a message
in is one conditional ``UpdateItem`` (``ADD count``), making one is a ``Query`` counting the
user's pending ones then a conditional put. A claim queries every shard for due items not under
a live lease and leases each with a conditional ``UpdateItem``; completing deletes the item only
while the lease and the version are the claim's (else subtracts what was sent). Sends per user
and minute are one conditional ``UpdateItem`` on ``pc#{user}`` (``count < cap``), removed by TTL.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

from botocore.exceptions import ClientError

from storage.dynamodb import keys
from storage.dynamodb.base import CONDITION_FAILED_EXC, DynamoDBBase
from storage.dynamodb.keys import Item, get_n, get_s, n, opt_s, s
from storage.push import Notification

CAP_PURGE_SECONDS = 300
"""How long a minute's send count outlives its minute before TTL may remove it."""


def _notification(item: Item) -> Notification:
    return Notification(
        user_id=get_s(item, "user_id"),
        conversation=get_s(item, "conversation"),
        count=get_n(item, "count"),
        sender=get_s(item, "sender"),
        preview=get_s(item, "preview"),
        last_offset=get_n(item, "last_offset"),
        first_at=get_n(item, "first_at"),
        due_at=get_n(item, "due_at"),
        version=get_n(item, "version"),
        attempts=get_n(item, "attempts"),
        lease=opt_s(item, "lease"),
    )


class DynamoDBOutbox(DynamoDBBase):
    """:class:`storage.push.NotificationStore` on DynamoDB."""

    @property
    def _outbox(self) -> str:
        return self._tables[keys.FOLLOWS]

    def _outbox_key(self, user_id: str, conversation: str) -> Item:
        return {
            "pk": s(keys.outbox_pk(user_id)),
            "sk": s(keys.outbox_sk(user_id, conversation)),
        }

    async def _conditional(
        self, operation: str, arguments: dict[str, Any]
    ) -> dict[str, Any] | None:
        """One conditional write: its answer, or None when the condition failed."""
        try:
            return await self._call(operation, arguments, expected=CONDITION_FAILED_EXC)
        except ClientError:
            return None

    async def _add_one(
        self,
        user: str,
        conversation: str,
        sender: str,
        preview: str,
        offset: int,
        now: int,
        due_at: int,
        max_pending: int,
    ) -> bool:
        key = self._outbox_key(user, conversation)
        names = {"#c": "count", "#v": "version", "#o": "last_offset"}
        folded = await self._conditional(
            "update_item",
            {
                "TableName": self._outbox,
                "Key": key,
                "UpdateExpression": "ADD #c :one, #v :one SET sender = :s, preview = :p, #o = :o",
                "ConditionExpression": "attribute_exists(pk)",
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": {
                    ":one": n(1),
                    ":s": s(sender),
                    ":p": s(preview),
                    ":o": n(offset),
                },
            },
        )
        if folded is not None:
            return True
        response = await self._call(
            "query",
            {
                "TableName": self._outbox,
                "KeyConditionExpression": "pk = :pk AND begins_with(sk, :user)",
                "ExpressionAttributeValues": {
                    ":pk": key["pk"],
                    ":user": s(keys.outbox_sk(user, "")),
                },
                "Select": "COUNT",
                "ConsistentRead": True,
                "Limit": max_pending + 1,
            },
        )
        if int(response.get("Count", 0)) >= max_pending:
            return False
        # Made now, or folded into one made since the query: either way the message counts.
        await self._call(
            "update_item",
            {
                "TableName": self._outbox,
                "Key": key,
                "UpdateExpression": "ADD #c :one, #v :one SET sender = :s, preview = :p,"
                " #o = :o, user_id = if_not_exists(user_id, :u),"
                " conversation = if_not_exists(conversation, :conv),"
                " first_at = if_not_exists(first_at, :now), due_at = if_not_exists(due_at, :due),"
                " attempts = if_not_exists(attempts, :zero),"
                " lease_until = if_not_exists(lease_until, :zero)",
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": {
                    ":one": n(1),
                    ":zero": n(0),
                    ":s": s(sender),
                    ":p": s(preview),
                    ":o": n(offset),
                    ":u": s(user),
                    ":conv": s(conversation),
                    ":now": n(now),
                    ":due": n(due_at),
                },
            },
        )
        return True

    async def add_notifications(
        self,
        users: list[str],
        conversation: str,
        sender: str,
        preview: str,
        offset: int,
        *,
        now: int,
        due_at: int,
        max_pending: int,
    ) -> list[str]:
        unique = list(dict.fromkeys(users))
        added = await asyncio.gather(
            *(
                self._add_one(user, conversation, sender, preview, offset, now, due_at, max_pending)
                for user in unique
            )
        )
        return [user for user, ok in zip(unique, added, strict=True) if not ok]

    async def claim_notifications(
        self, *, now: int, lease_until: int, limit: int
    ) -> list[Notification]:
        async def due(shard: int) -> list[Item]:
            return await self._query_all(
                {
                    "TableName": self._outbox,
                    "KeyConditionExpression": "pk = :pk",
                    "FilterExpression": "due_at <= :now AND lease_until < :now",
                    "ExpressionAttributeValues": {
                        ":pk": s(keys.outbox_shard_pk(shard)),
                        ":now": n(now),
                    },
                },
                limit=limit,
                cached=False,
            )

        found = [
            item
            for page in await asyncio.gather(*map(due, range(keys.OUTBOX_SHARDS)))
            for item in page
        ]
        found.sort(key=lambda item: get_n(item, "due_at"))

        async def lease(item: Item) -> Notification | None:
            token = secrets.token_hex(8)
            answer = await self._conditional(
                "update_item",
                {
                    "TableName": self._outbox,
                    "Key": {"pk": item["pk"], "sk": item["sk"]},
                    "UpdateExpression": "SET lease = :lease, lease_until = :until",
                    "ConditionExpression": "attribute_exists(pk) AND lease_until < :now",
                    "ExpressionAttributeValues": {
                        ":lease": s(token),
                        ":until": n(lease_until),
                        ":now": n(now),
                    },
                    "ReturnValues": "ALL_NEW",
                },
            )
            return None if answer is None else _notification(answer["Attributes"])

        leased = await asyncio.gather(*map(lease, found[:limit]))
        return [claimed for claimed in leased if claimed is not None]

    async def complete_notification(self, notification: Notification, *, due_at: int) -> bool:
        key = self._outbox_key(notification.user_id, notification.conversation)
        lease = s(notification.lease or "")
        gone = await self._conditional(
            "delete_item",
            {
                "TableName": self._outbox,
                "Key": key,
                "ConditionExpression": "lease = :lease AND #v = :v",
                "ExpressionAttributeNames": {"#v": "version"},
                "ExpressionAttributeValues": {":lease": lease, ":v": n(notification.version)},
            },
        )
        if gone is not None:
            return True
        kept = await self._conditional(
            "update_item",
            {
                "TableName": self._outbox,
                "Key": key,
                "UpdateExpression": "ADD #c :less SET due_at = :due, first_at = :due,"
                " attempts = :zero, lease_until = :zero REMOVE lease",
                "ConditionExpression": "lease = :lease",
                "ExpressionAttributeNames": {"#c": "count"},
                "ExpressionAttributeValues": {
                    ":less": n(-notification.count),
                    ":due": n(due_at),
                    ":zero": n(0),
                    ":lease": lease,
                },
            },
        )
        return kept is not None

    async def release_notification(
        self, notification: Notification, *, due_at: int, failed: bool
    ) -> bool:
        answer = await self._conditional(
            "update_item",
            {
                "TableName": self._outbox,
                "Key": self._outbox_key(notification.user_id, notification.conversation),
                "UpdateExpression": "ADD attempts :a SET due_at = :due, lease_until = :zero"
                " REMOVE lease",
                "ConditionExpression": "lease = :lease",
                "ExpressionAttributeValues": {
                    ":a": n(int(failed)),
                    ":due": n(due_at),
                    ":zero": n(0),
                    ":lease": s(notification.lease or ""),
                },
            },
        )
        return answer is not None

    async def pending_notifications(self, user_id: str) -> list[Notification]:
        items = await self._query_all(
            {
                "TableName": self._outbox,
                "KeyConditionExpression": "pk = :pk AND begins_with(sk, :user)",
                "ExpressionAttributeValues": {
                    ":pk": s(keys.outbox_pk(user_id)),
                    ":user": s(keys.outbox_sk(user_id, "")),
                },
            },
            limit=None,
            cached=False,
        )
        found = [_notification(item) for item in items]
        found.sort(key=lambda item: item.conversation)
        return found

    async def take_push_slot(self, user_id: str, window: int, cap: int) -> bool:
        answer = await self._conditional(
            "update_item",
            {
                "TableName": self._outbox,
                "Key": {"pk": s(keys.push_cap_pk(user_id)), "sk": s(str(window))},
                "UpdateExpression": "ADD #c :one SET #purge = if_not_exists(#purge, :purge)",
                "ConditionExpression": "attribute_not_exists(#c) OR #c < :cap",
                "ExpressionAttributeNames": {"#c": "count", "#purge": keys.PURGE_ATTRIBUTE},
                "ExpressionAttributeValues": {
                    ":one": n(1),
                    ":cap": n(cap),
                    ":purge": n(int(self._clock()) + 60 + CAP_PURGE_SECONDS),
                },
            },
        )
        return answer is not None
