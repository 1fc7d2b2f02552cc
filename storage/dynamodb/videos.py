"""The DynamoDB side of :class:`storage.videos.VideoStore`: one ``videos`` table.

An aggregate on :class:`storage.dynamodb.base.DynamoDBBase`. Items (``keys`` has the layout):

- ``v#{video}`` / ``video``: the record, with the stored totals and their version ``cver``;
- ``l#{video}#{shard}`` / user id: a like, ``liked`` true or false (a tombstone after an unlike,
  so a retried call can still recognise its own change). A video's likes are spread over
  :data:`keys.LIKE_SHARDS` partition keys by a hash of the user id, so a flood of likes on one
  video is not capped by one partition's 1,000 writes a second;
- ``c#{video}`` / comment id: a comment; ``deleted`` marks a tombstone (its text removed);
- ``k#...`` / ``k``: the record that makes a client comment id idempotent.

Every conditional write that a lost answer could make ambiguous carries a random marker, so the
retry of a write that was applied recognises it (``ReturnValuesOnConditionCheckFailure``) rather
than reporting "nothing changed": a like counted once is counted, never twice, never lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

from botocore.exceptions import ClientError

from storage.dynamodb import keys
from storage.dynamodb.base import CONDITION_FAILED, CONDITION_FAILED_EXC, DynamoDBBase
from storage.dynamodb.keys import Item, boolean, get_n, get_n_or, get_s, n, opt_s, s
from storage.errors import StorageError
from storage.videos import Comment, CommentResult, Video, VideoCounts, VideoStatus

SAVE_CONCURRENCY = 16
"""Totals written at once by :meth:`DynamoDBVideos.save_video_counts` (one call per video)."""


def _video_from(video_id: str, item: Item) -> Video:
    return Video(
        id=video_id,
        owner=get_s(item, "owner"),
        title=get_s(item, "title"),
        status=VideoStatus(get_s(item, "status")),
        created_at=get_n(item, "created_at"),
        counts=VideoCounts(
            likes=get_n(item, "likes"),
            comments=get_n(item, "comments"),
            shares=get_n(item, "shares"),
            version=get_n(item, "cver"),
            views=get_n_or(item, "views", 0),
            watch_ms=get_n_or(item, "wms", 0),
        ),
    )


def _comment_from(video_id: str, item: Item) -> Comment:
    return Comment(
        id=get_s(item, "sk"),
        video_id=video_id,
        author=get_s(item, "author"),
        text=opt_s(item, "text") or "",
        ts=get_n(item, "ts"),
        client_msg_id=opt_s(item, "cmid"),
        deleted="deleted" in item,
    )


class DynamoDBVideos(DynamoDBBase):
    """:class:`storage.videos.VideoStore` on DynamoDB."""

    @property
    def _videos(self) -> str:
        return self._tables[keys.VIDEOS]

    async def _conditional_update(self, arguments: dict[str, Any]) -> Item | None:
        """Run a conditional ``UpdateItem``; None when applied, else the item as it was."""
        try:
            await self._call(
                "update_item",
                {**arguments, "ReturnValuesOnConditionCheckFailure": "ALL_OLD"},
                expected=CONDITION_FAILED_EXC,
            )
        except ClientError as exc:
            old: Item = exc.response.get("Item") or {}
            return old
        return None

    # -- videos ----------------------------------------------------------------------------

    async def create_video(
        self, owner: str, title: str, *, status: VideoStatus = VideoStatus.UPLOADING
    ) -> Video:
        now = self._now_ms()
        video = Video(self._ids.new(now), owner, title, status, now // 1000, VideoCounts())
        # A new id is unique: a failed condition is this call's own earlier attempt, applied.
        with contextlib.suppress(ClientError):
            await self._call(
                "put_item",
                {
                    "TableName": self._videos,
                    "Item": {
                        "pk": s(keys.video_pk(video.id)),
                        "sk": s(keys.VIDEO_SK),
                        "owner": s(owner),
                        "title": s(title),
                        "status": s(status.value),
                        "created_at": n(video.created_at),
                        "likes": n(0),
                        "comments": n(0),
                        "shares": n(0),
                        "cver": n(0),
                        "views": n(0),
                        "wms": n(0),
                    },
                    "ConditionExpression": "attribute_not_exists(pk)",
                },
                expected=CONDITION_FAILED_EXC,
            )
        return video

    async def get_video(self, video_id: str) -> Video | None:
        response = await self._call(
            "get_item",
            {
                "TableName": self._videos,
                "Key": {"pk": s(keys.video_pk(video_id)), "sk": s(keys.VIDEO_SK)},
                "ConsistentRead": True,
            },
        )
        item = response.get("Item")
        return None if item is None else _video_from(video_id, item)

    async def set_video_status(
        self, video_id: str, status: VideoStatus, *, expected: VideoStatus | None = None
    ) -> bool:
        marker = uuid.uuid4().hex
        values: dict[str, Any] = {":s": s(status.value), ":m": s(marker)}
        condition = "attribute_exists(pk)"
        if expected is not None:
            condition += " AND #status = :e"
            values[":e"] = s(expected.value)
        old = await self._conditional_update(
            {
                "TableName": self._videos,
                "Key": {"pk": s(keys.video_pk(video_id)), "sk": s(keys.VIDEO_SK)},
                "UpdateExpression": "SET #status = :s, status_by = :m",
                "ConditionExpression": condition,
                "ExpressionAttributeNames": {"#status": "status"},
                "ExpressionAttributeValues": values,
            }
        )
        return old is None or opt_s(old, "status_by") == marker

    async def save_video_counts(self, counts: dict[str, VideoCounts]) -> None:
        slots = asyncio.Semaphore(SAVE_CONCURRENCY)

        async def save(video_id: str, totals: VideoCounts) -> None:
            async with slots:
                # Absolute and versioned: a stale or repeated write fails its condition and
                # changes nothing, so no retry can count anything twice.
                await self._conditional_update(
                    {
                        "TableName": self._videos,
                        "Key": {"pk": s(keys.video_pk(video_id)), "sk": s(keys.VIDEO_SK)},
                        "UpdateExpression": (
                            "SET likes = :l, comments = :c, shares = :s, #views = :w,"
                            " wms = :m, cver = :v"
                        ),
                        "ExpressionAttributeNames": {"#views": "views"},
                        "ConditionExpression": "attribute_exists(pk) AND cver < :v",
                        "ExpressionAttributeValues": {
                            ":l": n(totals.likes),
                            ":c": n(totals.comments),
                            ":s": n(totals.shares),
                            ":w": n(totals.views),
                            ":m": n(totals.watch_ms),
                            ":v": n(totals.version),
                        },
                    }
                )

        await asyncio.gather(*(save(v, c) for v, c in counts.items()))

    # -- likes -----------------------------------------------------------------------------

    async def set_like(self, video_id: str, user_id: str, liked: bool) -> bool:
        # The marker of the last like (lb) and of the last unlike (ub) stay on the item, so a
        # retry whose first attempt was applied finds its own marker even if the opposite
        # change landed in between, and reports the change it made (once).
        marker = uuid.uuid4().hex
        if liked:
            condition = (
                "(attribute_not_exists(liked) OR liked = :f)"
                " AND (attribute_not_exists(lb) OR lb <> :m)"
            )
            update, mine = "SET liked = :t, lb = :m, ts = :now", "lb"
        else:
            condition = "liked = :t AND (attribute_not_exists(ub) OR ub <> :m)"
            update, mine = "SET liked = :f, ub = :m, ts = :now", "ub"
        old = await self._conditional_update(
            {
                "TableName": self._videos,
                "Key": {"pk": s(keys.like_pk(video_id, user_id)), "sk": s(user_id)},
                "UpdateExpression": update,
                "ConditionExpression": condition,
                "ExpressionAttributeValues": {
                    ":t": boolean(True),
                    ":f": boolean(False),
                    ":m": s(marker),
                    ":now": n(self._now_ms()),
                },
            }
        )
        return old is None or opt_s(old, mine) == marker

    async def has_liked(self, video_id: str, user_id: str) -> bool:
        response = await self._call(
            "get_item",
            {
                "TableName": self._videos,
                "Key": {"pk": s(keys.like_pk(video_id, user_id)), "sk": s(user_id)},
                "ConsistentRead": True,
            },
        )
        item = response.get("Item") or {}
        return bool(item.get("liked", {}).get("BOOL"))

    async def count_likes(self, video_id: str) -> int:
        async def shard(number: int) -> int:
            arguments: dict[str, Any] = {
                "TableName": self._videos,
                "KeyConditionExpression": "pk = :pk",
                "FilterExpression": "liked = :t",
                "ExpressionAttributeValues": {
                    ":pk": s(keys.like_shard_pk(video_id, number)),
                    ":t": boolean(True),
                },
                "Select": "COUNT",
                "ConsistentRead": True,
            }
            total = 0
            while True:
                response = await self._call("query", arguments)
                total += int(response.get("Count", 0))
                last_key = response.get("LastEvaluatedKey")
                if not last_key:
                    return total
                arguments["ExclusiveStartKey"] = last_key

        return sum(await asyncio.gather(*(shard(i) for i in range(keys.LIKE_SHARDS))))

    # -- comments --------------------------------------------------------------------------

    async def add_comment(
        self, video_id: str, author: str, text: str, client_msg_id: str | None
    ) -> CommentResult:
        ts = self._now_ms()
        comment = Comment(self._ids.new(ts), video_id, author, text, ts, client_msg_id)
        item: Item = {
            "pk": s(keys.comment_pk(video_id)),
            "sk": s(comment.id),
            "author": s(author),
            "text": s(text),
            "ts": n(ts),
        }
        put: dict[str, Any] = {
            "TableName": self._videos,
            "Item": item,
            # A new id is unique: a failed condition is this call's own earlier attempt.
            "ConditionExpression": "attribute_not_exists(pk)",
        }
        if client_msg_id is None:
            with contextlib.suppress(ClientError):
                await self._call("put_item", put, expected=CONDITION_FAILED_EXC)
            return CommentResult(comment, duplicate=False)
        item["cmid"] = s(client_msg_id)
        record = {
            "TableName": self._videos,
            "Item": {
                "pk": s(keys.comment_client_pk(video_id, author, client_msg_id)),
                "sk": s("k"),
                "id": s(comment.id),
            },
            "ConditionExpression": "attribute_not_exists(pk)",
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
        # One transaction (its token makes a retried attempt harmless); a repeated client id
        # cancels it on the record, which hands back the first comment's id.
        reasons = await self._transact([{"Put": put}, {"Put": record}], "add_comment")
        if reasons is None:
            return CommentResult(comment, duplicate=False)
        first = reasons[1] if len(reasons) > 1 else {}
        if first.get("Code") != CONDITION_FAILED or "Item" not in first:
            raise StorageError(f"add_comment to {video_id}: unexpected cancellation {reasons}")
        original = await self._comment(video_id, get_s(first["Item"], "id"))
        if original is None:
            raise StorageError(
                f"add_comment to {video_id}: the first comment of a client id is gone"
            )
        return CommentResult(original, duplicate=True)

    async def _comment(self, video_id: str, comment_id: str) -> Comment | None:
        response = await self._call(
            "get_item",
            {
                "TableName": self._videos,
                "Key": {"pk": s(keys.comment_pk(video_id)), "sk": s(comment_id)},
                "ConsistentRead": True,
            },
        )
        item = response.get("Item")
        return None if item is None else _comment_from(video_id, item)

    async def get_comment(self, video_id: str, comment_id: str) -> Comment | None:
        comment = await self._comment(video_id, comment_id)
        return None if comment is None or comment.deleted else comment

    async def list_comments(
        self, video_id: str, *, limit: int, before: str | None
    ) -> list[Comment]:
        if limit <= 0:
            return []
        condition = "pk = :pk"
        values: dict[str, Any] = {":pk": s(keys.comment_pk(video_id))}
        if before is not None:
            condition += " AND sk < :before"
            values[":before"] = s(before)
        arguments: dict[str, Any] = {
            "TableName": self._videos,
            "KeyConditionExpression": condition,
            "FilterExpression": "attribute_not_exists(deleted)",
            "ExpressionAttributeValues": values,
            "ScanIndexForward": False,
            "ConsistentRead": True,
        }
        comments: list[Comment] = []
        while len(comments) < limit:
            # Limit counts items read before the filter: tombstones make a page come back
            # short, and the next page carries on from where it stopped.
            arguments["Limit"] = limit - len(comments)
            response = await self._call("query", arguments)
            comments.extend(_comment_from(video_id, i) for i in response.get("Items", []))
            last_key = response.get("LastEvaluatedKey")
            if not last_key:
                break
            arguments["ExclusiveStartKey"] = last_key
        return comments[:limit]

    async def delete_comment(self, video_id: str, comment_id: str) -> bool:
        marker = uuid.uuid4().hex
        old = await self._conditional_update(
            {
                "TableName": self._videos,
                "Key": {"pk": s(keys.comment_pk(video_id)), "sk": s(comment_id)},
                "UpdateExpression": "SET deleted = :t, deleted_by = :m REMOVE #text",
                "ConditionExpression": "attribute_exists(pk) AND attribute_not_exists(deleted)",
                "ExpressionAttributeNames": {"#text": "text"},
                "ExpressionAttributeValues": {":t": boolean(True), ":m": s(marker)},
            }
        )
        return old is None or opt_s(old, "deleted_by") == marker
