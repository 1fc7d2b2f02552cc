"""The DynamoDB side of :class:`storage.push.DeviceStore`, in the ``follows`` table.

An aggregate on :class:`storage.dynamodb.base.DynamoDBBase`; ``keys`` has the item layout. A
device is an item under its user (``dv#{user}``, sort key = the device id) and its token has one
owner item (``dk#{token_key}``) naming the user and the device. A registration that makes a
device writes both in one transaction conditioned on the owner item being as it was read, so
two registrations of one token never both win; a token moving to another user deletes the
first user's device in the same transaction. The trim to the per-user bound and a deletion
remove the owner item first (only while it names the device), then the device: a crash in
between leaves an owner item naming no device, which the next registration of the token
replaces.
"""

from __future__ import annotations

import contextlib
from typing import Any

from botocore.exceptions import ClientError

from storage.dynamodb import keys
from storage.dynamodb.base import CONDITION_FAILED_EXC, DynamoDBBase
from storage.dynamodb.keys import Item, get_n, get_s, n, opt_s, s
from storage.errors import Unavailable
from storage.push import Device, DeviceRegistration, token_key

REGISTER_ATTEMPTS = 5
"""Tries of a registration that meets another registration of the same token."""


def _device(user_id: str, item: Item) -> Device:
    return Device(
        id=get_s(item, "sk"),
        user_id=user_id,
        platform=get_s(item, "platform"),
        token=get_s(item, "push_token"),
        app_version=get_s(item, "app_version"),
        locale=get_s(item, "locale"),
        created_at=get_n(item, "created_at"),
        seen_at=get_n(item, "seen_at"),
        endpoint=opt_s(item, "endpoint"),
    )


class DynamoDBDevices(DynamoDBBase):
    """:class:`storage.push.DeviceStore` on DynamoDB."""

    @property
    def _devices_table(self) -> str:
        return self._tables[keys.FOLLOWS]

    def _device_key(self, user_id: str, device_id: str) -> Item:
        return {"pk": s(keys.devices_pk(user_id)), "sk": s(device_id)}

    def _owner_key(self, key: str) -> Item:
        return {"pk": s(keys.device_token_pk(key)), "sk": s(keys.DEVICE_TOKEN_SK)}

    async def _owner(self, key: str) -> tuple[str, str] | None:
        response = await self._call(
            "get_item",
            {
                "TableName": self._devices_table,
                "Key": self._owner_key(key),
                "ConsistentRead": True,
            },
        )
        item = response.get("Item")
        if item is None:
            return None
        return get_s(item, "owner"), get_s(item, "device_id")

    async def _refresh(
        self, user_id: str, device_id: str, key: str, app_version: str, locale: str, now: int
    ) -> Device | None:
        try:
            response = await self._call(
                "update_item",
                {
                    "TableName": self._devices_table,
                    "Key": self._device_key(user_id, device_id),
                    "UpdateExpression": "SET #v = :v, #l = :l, #seen = :now",
                    "ConditionExpression": "attribute_exists(pk) AND #tk = :tk",
                    "ExpressionAttributeNames": {
                        "#v": "app_version",
                        "#l": "locale",
                        "#seen": "seen_at",
                        "#tk": "token_key",
                    },
                    "ExpressionAttributeValues": {
                        ":v": s(app_version),
                        ":l": s(locale),
                        ":now": n(now),
                        ":tk": s(key),
                    },
                    "ReturnValues": "ALL_NEW",
                },
                expected=CONDITION_FAILED_EXC,
            )
        except ClientError:
            return None
        return _device(user_id, response["Attributes"])

    async def register_device(
        self,
        user_id: str,
        platform: str,
        token: str,
        app_version: str,
        locale: str,
        *,
        limit: int,
    ) -> DeviceRegistration:
        key = token_key(platform, token)
        for _ in range(REGISTER_ATTEMPTS):
            owner = await self._owner(key)
            now = self._now_ms()
            if owner is not None and owner[0] == user_id:
                device = await self._refresh(user_id, owner[1], key, app_version, locale, now)
                if device is not None:
                    return DeviceRegistration(
                        device, False, await self._trim(user_id, device, limit)
                    )
            device = Device(
                self._ids.new(now), user_id, platform, token, app_version, locale, now, now
            )
            owner_put: dict[str, Any] = {
                "TableName": self._devices_table,
                "Item": {
                    **self._owner_key(key),
                    "owner": s(user_id),
                    "device_id": s(device.id),
                },
            }
            if owner is None:
                owner_put["ConditionExpression"] = "attribute_not_exists(pk)"
            else:
                owner_put["ConditionExpression"] = "#d = :old"
                owner_put["ExpressionAttributeNames"] = {"#d": "device_id"}
                owner_put["ExpressionAttributeValues"] = {":old": s(owner[1])}
            items: list[Item] = [
                {"Put": owner_put},
                {
                    "Put": {
                        "TableName": self._devices_table,
                        "Item": {
                            **self._device_key(user_id, device.id),
                            "platform": s(platform),
                            "push_token": s(token),
                            "token_key": s(key),
                            "app_version": s(app_version),
                            "locale": s(locale),
                            "created_at": n(now),
                            "seen_at": n(now),
                        },
                    }
                },
            ]
            if owner is not None:
                items.append(
                    {
                        "Delete": {
                            "TableName": self._devices_table,
                            "Key": self._device_key(*owner),
                        }
                    }
                )
            if await self._transact(items, "register_device") is None:
                return DeviceRegistration(device, True, await self._trim(user_id, device, limit))
        raise Unavailable("DynamoDB register_device: the token kept changing hands")

    async def _query_devices(self, user_id: str) -> list[Device]:
        items = await self._query_all(
            {
                "TableName": self._devices_table,
                "KeyConditionExpression": "pk = :pk",
                "ExpressionAttributeValues": {":pk": s(keys.devices_pk(user_id))},
            },
            limit=None,
            cached=False,
        )
        return [_device(user_id, item) for item in items]

    async def _trim(self, user_id: str, keep: Device, limit: int) -> tuple[str, ...]:
        others = [d for d in await self._query_devices(user_id) if d.id != keep.id]
        others.sort(key=lambda d: (d.seen_at, d.id), reverse=True)
        stale = others[max(0, limit - 1) :]
        for device in stale:
            await self._drop(device)
        return tuple(device.id for device in stale)

    async def _drop(self, device: Device) -> bool:
        # A failed condition: the token has another owner now, and only the device goes.
        with contextlib.suppress(ClientError):
            await self._call(
                "delete_item",
                {
                    "TableName": self._devices_table,
                    "Key": self._owner_key(token_key(device.platform, device.token)),
                    "ConditionExpression": "#d = :id",
                    "ExpressionAttributeNames": {"#d": "device_id"},
                    "ExpressionAttributeValues": {":id": s(device.id)},
                },
                expected=CONDITION_FAILED_EXC,
            )
        try:
            await self._call(
                "delete_item",
                {
                    "TableName": self._devices_table,
                    "Key": self._device_key(device.user_id, device.id),
                    "ConditionExpression": "attribute_exists(pk)",
                },
                expected=CONDITION_FAILED_EXC,
            )
        except ClientError:
            return False
        return True

    async def list_devices(self, user_id: str) -> list[Device]:
        devices = await self._query_devices(user_id)
        devices.sort(key=lambda d: (d.created_at, d.id))
        return devices

    async def delete_device(self, user_id: str, device_id: str) -> bool:
        response = await self._call(
            "get_item",
            {
                "TableName": self._devices_table,
                "Key": self._device_key(user_id, device_id),
                "ConsistentRead": True,
            },
        )
        item = response.get("Item")
        if item is None:
            return False
        return await self._drop(_device(user_id, item))

    async def set_device_endpoint(self, user_id: str, device_id: str, endpoint: str) -> bool:
        try:
            await self._call(
                "update_item",
                {
                    "TableName": self._devices_table,
                    "Key": self._device_key(user_id, device_id),
                    "UpdateExpression": "SET #e = :e",
                    "ConditionExpression": "attribute_exists(pk)",
                    "ExpressionAttributeNames": {"#e": "endpoint"},
                    "ExpressionAttributeValues": {":e": s(endpoint)},
                },
                expected=CONDITION_FAILED_EXC,
            )
        except ClientError:
            return False
        return True
