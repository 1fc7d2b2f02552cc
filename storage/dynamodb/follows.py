"""The DynamoDB side of :class:`storage.follows.FollowStore`: one ``follows`` table.

An aggregate on :class:`storage.dynamodb.base.DynamoDBBase`; ``keys`` has the item layout. A
follow is two edge items (``fr#`` for the followee's follower list, ``fg#`` for the follower's list) and
the two users' totals, written in one transaction whose condition (the edge is absent, or
present for an unfollow) decides once whether it changed anything. Feed items are written with
``BatchWriteItem`` (25 a request, a few requests at once) and carry ``purge_at``, the table's
TTL attribute, so old items go without a write of ours.
"""

from __future__ import annotations

import asyncio
from typing import Any

from storage.dynamodb import keys
from storage.dynamodb.base import BATCH_GET_KEYS, BATCH_WRITE_ITEMS, DynamoDBBase
from storage.dynamodb.keys import Item, get_n, get_s, n, s
from storage.errors import Unavailable
from storage.follows import FeedItem, FollowCounts

WRITE_CONCURRENCY = 4


def _item(item: Item) -> FeedItem:
    return FeedItem(id=get_s(item, "sk"), video_id=get_s(item, "video"), author=get_s(item, "by"))


class DynamoDBFollows(DynamoDBBase):
    """:class:`storage.follows.FollowStore` on DynamoDB."""

    @property
    def _follows(self) -> str:
        return self._tables[keys.FOLLOWS]

    # -- the graph -------------------------------------------------------------------------

    def _follow_total(self, user: str, field: str, step: int) -> Item:
        return {
            "Update": {
                "TableName": self._follows,
                "Key": {"pk": s(keys.follow_count_pk(user)), "sk": s(keys.FOLLOW_COUNT_SK)},
                "UpdateExpression": "ADD #f :step",
                "ExpressionAttributeNames": {"#f": field},
                "ExpressionAttributeValues": {":step": n(step)},
            }
        }

    async def follow(self, follower: str, followee: str) -> bool:
        ts = n(self._now_ms())
        items: list[Item] = [
            {
                "Put": {
                    "TableName": self._follows,
                    "Item": {"pk": s(keys.following_pk(follower)), "sk": s(followee), "ts": ts},
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            },
            {
                "Put": {
                    "TableName": self._follows,
                    "Item": {"pk": s(keys.followers_pk(followee)), "sk": s(follower), "ts": ts},
                }
            },
            self._follow_total(follower, "following", 1),
            self._follow_total(followee, "followers", 1),
        ]
        return await self._transact(items, "follow") is None

    async def unfollow(self, follower: str, followee: str) -> bool:
        items: list[Item] = [
            {
                "Delete": {
                    "TableName": self._follows,
                    "Key": {"pk": s(keys.following_pk(follower)), "sk": s(followee)},
                    "ConditionExpression": "attribute_exists(pk)",
                }
            },
            {
                "Delete": {
                    "TableName": self._follows,
                    "Key": {"pk": s(keys.followers_pk(followee)), "sk": s(follower)},
                }
            },
            self._follow_total(follower, "following", -1),
            self._follow_total(followee, "followers", -1),
        ]
        return await self._transact(items, "unfollow") is None

    async def _has(self, pk: str, sk: str) -> bool:
        response = await self._call(
            "get_item",
            {
                "TableName": self._follows,
                "Key": {"pk": s(pk), "sk": s(sk)},
                "ConsistentRead": True,
                "ProjectionExpression": "pk",
            },
        )
        return "Item" in response

    async def is_following(self, follower: str, followee: str) -> bool:
        return await self._has(keys.following_pk(follower), followee)

    async def _sort_keys(self, pk: str, limit: int, after: str | None) -> list[str]:
        if limit <= 0:
            return []
        condition = "pk = :pk"
        values: dict[str, Any] = {":pk": s(pk)}
        if after is not None:
            condition += " AND sk > :after"
            values[":after"] = s(after)
        arguments: dict[str, Any] = {
            "TableName": self._follows,
            "KeyConditionExpression": condition,
            "ExpressionAttributeValues": values,
            "ProjectionExpression": "sk",
            "ConsistentRead": True,
        }
        found: list[str] = []
        while len(found) < limit:
            arguments["Limit"] = limit - len(found)
            response = await self._call("query", arguments)
            found.extend(get_s(item, "sk") for item in response.get("Items", []))
            last_key = response.get("LastEvaluatedKey")
            if not last_key:
                break
            arguments["ExclusiveStartKey"] = last_key
        return found[:limit]

    async def list_followers(self, user: str, *, limit: int, after: str | None) -> list[str]:
        return await self._sort_keys(keys.followers_pk(user), limit, after)

    async def list_following(self, user: str, *, limit: int, after: str | None) -> list[str]:
        return await self._sort_keys(keys.following_pk(user), limit, after)

    async def follow_counts(self, user: str) -> FollowCounts:
        response = await self._call(
            "get_item",
            {
                "TableName": self._follows,
                "Key": {"pk": s(keys.follow_count_pk(user)), "sk": s(keys.FOLLOW_COUNT_SK)},
                "ConsistentRead": True,
            },
        )
        item = response.get("Item") or {}
        return FollowCounts(
            followers=get_n(item, "followers") if "followers" in item else 0,
            following=get_n(item, "following") if "following" in item else 0,
        )

    async def block(self, blocker: str, blocked: str) -> bool:
        # The block is written first: from then on the handlers refuse new follows between the
        # two, so the edges removed next cannot come back.
        added = (
            await self._transact(
                [
                    {
                        "Put": {
                            "TableName": self._follows,
                            "Item": {
                                "pk": s(keys.block_pk(blocker)),
                                "sk": s(blocked),
                                "ts": n(self._now_ms()),
                            },
                            "ConditionExpression": "attribute_not_exists(pk)",
                        }
                    }
                ],
                "block",
            )
            is None
        )
        await asyncio.gather(self.unfollow(blocker, blocked), self.unfollow(blocked, blocker))
        return added

    async def unblock(self, blocker: str, blocked: str) -> bool:
        response = await self._call(
            "delete_item",
            {
                "TableName": self._follows,
                "Key": {"pk": s(keys.block_pk(blocker)), "sk": s(blocked)},
                "ReturnValues": "ALL_OLD",
            },
        )
        return "Attributes" in response

    async def is_blocked(self, blocker: str, blocked: str) -> bool:
        return await self._has(keys.block_pk(blocker), blocked)

    # -- posts and feeds -------------------------------------------------------------------

    async def add_post(self, item: FeedItem, *, wide: bool) -> bool:
        post: Item = {
            "pk": s(keys.post_pk(item.author)),
            "sk": s(item.id),
            "video": s(item.video_id),
            "by": s(item.author),
        }
        once: Item = {"pk": s(keys.posted_pk(item.author, item.video_id)), "sk": s(keys.POSTED_SK)}
        # The marker's condition decides once per (author, video); a timeout is retried with
        # the same request token, so an applied post is not reported as a repeat.
        reasons = await self._transact(
            [
                {
                    "Put": {
                        "TableName": self._follows,
                        "Item": once,
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                },
                {"Put": {"TableName": self._follows, "Item": post}},
            ],
            "add_post",
        )
        if reasons is not None:
            return False
        if wide:
            await self._call(
                "put_item",
                {
                    "TableName": self._follows,
                    "Item": {"pk": s(keys.wide_pk(item.author)), "sk": s(keys.WIDE_SK)},
                },
            )
        return True

    async def _items(
        self, pk: str, limit: int, before: str | None, *, unexpired: bool
    ) -> list[FeedItem]:
        if limit <= 0:
            return []
        condition = "pk = :pk"
        values: dict[str, Any] = {":pk": s(pk)}
        if before is not None:
            condition += " AND sk < :before"
            values[":before"] = s(before)
        arguments: dict[str, Any] = {
            "TableName": self._follows,
            "KeyConditionExpression": condition,
            "ExpressionAttributeValues": values,
            "ScanIndexForward": False,
        }
        if unexpired:
            # TTL deletes within days of expiry, not at once: skip what is due.
            arguments["FilterExpression"] = f"{keys.PURGE_ATTRIBUTE} > :now"
            values[":now"] = n(int(self._clock()))
        found: list[FeedItem] = []
        while len(found) < limit:
            arguments["Limit"] = limit - len(found)
            response = await self._call("query", arguments)
            found.extend(_item(i) for i in response.get("Items", []))
            last_key = response.get("LastEvaluatedKey")
            if not last_key:
                break
            arguments["ExclusiveStartKey"] = last_key
        return found[:limit]

    async def list_posts(self, author: str, *, limit: int, before: str | None) -> list[FeedItem]:
        return await self._items(keys.post_pk(author), limit, before, unexpired=False)

    async def wide_followees(self, user: str) -> list[str]:
        following = await self._sort_keys(keys.following_pk(user), 1 << 30, None)
        wide: list[str] = []
        for start in range(0, len(following), BATCH_GET_KEYS):
            request: dict[str, Any] = {
                self._follows: {
                    "Keys": [
                        {"pk": s(keys.wide_pk(u)), "sk": s(keys.WIDE_SK)}
                        for u in following[start : start + BATCH_GET_KEYS]
                    ],
                    "ProjectionExpression": "pk",
                }
            }
            for _attempt in range(8):
                response = await self._call("batch_get_item", {"RequestItems": request})
                for item in response.get("Responses", {}).get(self._follows, []):
                    wide.append(get_s(item, "pk").removeprefix("w#"))
                request = response.get("UnprocessedKeys") or {}
                if not request:
                    break
            else:
                raise Unavailable("DynamoDB batch_get_item kept leaving keys unprocessed")
        return sorted(wide)

    async def add_feed_items(self, users: list[str], item: FeedItem, *, expires_at: int) -> None:
        records = [
            {
                "pk": s(keys.feed_pk(user)),
                "sk": s(item.id),
                "video": s(item.video_id),
                "by": s(item.author),
                keys.PURGE_ATTRIBUTE: n(expires_at),
            }
            for user in users
        ]
        chunks = [
            records[i : i + BATCH_WRITE_ITEMS] for i in range(0, len(records), BATCH_WRITE_ITEMS)
        ]
        slots = asyncio.Semaphore(WRITE_CONCURRENCY)

        async def write(chunk: list[Item]) -> None:
            async with slots:
                await self._batch_write(self._follows, chunk)

        await asyncio.gather(*(write(chunk) for chunk in chunks))

    async def list_feed(self, user: str, *, limit: int, before: str | None) -> list[FeedItem]:
        return await self._items(keys.feed_pk(user), limit, before, unexpired=True)
