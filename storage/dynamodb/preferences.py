"""The DynamoDB side of :class:`storage.push.PreferenceStore`, in the ``follows`` table.

A user's push settings and mutes share one partition (``np#{user}``): the settings item
(sort key :data:`storage.dynamodb.keys.PREFERENCES_SK`: the kinds off as a string set, the quiet
hours) and one item per muted conversation (``m#{conversation}``, its end in ``until``), so
reading them is one strongly consistent query. A new mute reads the partition, deletes the
mutes that ended, and writes only when fewer than ``limit`` remain: two calls, so concurrent
new mutes of one user may pass the bound together (by at most their number).
"""

from __future__ import annotations

import asyncio
from typing import Any

from storage.dynamodb import keys
from storage.dynamodb.base import DynamoDBBase
from storage.dynamodb.keys import Item, get_n, get_s, n, s
from storage.push import Mute, PushPreferences, QuietHours


def _until(item: Item) -> int | None:
    return get_n(item, "until") if "until" in item else None


class DynamoDBPreferences(DynamoDBBase):
    """:class:`storage.push.PreferenceStore` on DynamoDB."""

    @property
    def _preferences_table(self) -> str:
        return self._tables[keys.FOLLOWS]

    def _preference_key(self, user_id: str, sk: str) -> Item:
        return {"pk": s(keys.push_preferences_pk(user_id)), "sk": s(sk)}

    async def _preference_items(self, user_id: str) -> list[Item]:
        return await self._query_all(
            {
                "TableName": self._preferences_table,
                "KeyConditionExpression": "pk = :pk",
                "ExpressionAttributeValues": {":pk": s(keys.push_preferences_pk(user_id))},
            },
            limit=None,
            cached=False,
        )

    async def get_push_preferences(self, user_id: str) -> PushPreferences:
        kinds_off: frozenset[str] = frozenset()
        quiet = None
        mutes: list[Mute] = []
        for item in await self._preference_items(user_id):
            sk = get_s(item, "sk")
            if sk == keys.PREFERENCES_SK:
                kinds_off = frozenset(item.get("kinds_off", {}).get("SS", []))
                if "quiet_start" in item:
                    quiet = QuietHours(
                        get_n(item, "quiet_start"),
                        get_n(item, "quiet_end"),
                        get_s(item, "quiet_zone"),
                    )
            elif sk.startswith("m#"):
                mutes.append(Mute(sk.removeprefix("m#"), _until(item)))
        mutes.sort(key=lambda mute: mute.conversation)
        return PushPreferences(kinds_off=kinds_off, quiet=quiet, mutes=tuple(mutes))

    async def set_push_preferences(
        self, user_id: str, *, kinds_off: frozenset[str], quiet: QuietHours | None
    ) -> None:
        item: Item = self._preference_key(user_id, keys.PREFERENCES_SK)
        if kinds_off:  # a string set is never empty
            item["kinds_off"] = {"SS": sorted(kinds_off)}
        if quiet is not None:
            item["quiet_start"] = n(quiet.start)
            item["quiet_end"] = n(quiet.end)
            item["quiet_zone"] = s(quiet.zone)
        await self._call("put_item", {"TableName": self._preferences_table, "Item": item})

    async def mute_conversation(
        self, user_id: str, conversation: str, until: int | None, *, now: int, limit: int
    ) -> bool:
        mutes = [
            item
            for item in await self._preference_items(user_id)
            if get_s(item, "sk").startswith("m#")
        ]
        sk = keys.mute_sk(conversation)
        ended = [
            item
            for item in mutes
            if get_s(item, "sk") != sk and (end := _until(item)) is not None and end <= now
        ]
        await asyncio.gather(
            *(
                self._call(
                    "delete_item",
                    {
                        "TableName": self._preferences_table,
                        "Key": self._preference_key(user_id, get_s(item, "sk")),
                    },
                )
                for item in ended
            )
        )
        exists = any(get_s(item, "sk") == sk for item in mutes)
        if not exists and len(mutes) - len(ended) >= limit:
            return False
        item: Item = self._preference_key(user_id, sk)
        if until is not None:
            item["until"] = n(until)
        arguments: dict[str, Any] = {"TableName": self._preferences_table, "Item": item}
        await self._call("put_item", arguments)
        return True

    async def unmute_conversation(self, user_id: str, conversation: str) -> bool:
        response = await self._call(
            "delete_item",
            {
                "TableName": self._preferences_table,
                "Key": self._preference_key(user_id, keys.mute_sk(conversation)),
                "ReturnValues": "ALL_OLD",
            },
        )
        return bool(response.get("Attributes"))
