"""The tables, as ``CreateTable`` requests: what ``create-tables`` makes and infra provisions.

All tables bill on demand (``PAY_PER_REQUEST``): chat traffic is spiky, and on-demand tables
absorb a burst to twice their previous peak without capacity planning. ``docs/storage.md``
explains each key.
"""

from __future__ import annotations

import asyncio
from typing import Any

from botocore.exceptions import ClientError

from storage.dynamodb import keys
from storage.dynamodb.retry import error_code


def table_name(prefix: str, table: str) -> str:
    return f"{prefix}{table}"


def _keyed(name: str, *, sort: bool) -> dict[str, Any]:
    schema = [{"AttributeName": "pk", "KeyType": "HASH"}]
    attributes = [{"AttributeName": "pk", "AttributeType": "S"}]
    if sort:
        schema.append({"AttributeName": "sk", "KeyType": "RANGE"})
        attributes.append({"AttributeName": "sk", "AttributeType": "S"})
    return {
        "TableName": name,
        "KeySchema": schema,
        "AttributeDefinitions": attributes,
        "BillingMode": "PAY_PER_REQUEST",
    }


def table_definitions(prefix: str) -> list[dict[str, Any]]:
    """Return one ``CreateTable`` request per table."""
    messages = _keyed(table_name(prefix, keys.MESSAGES), sort=True)
    channels = _keyed(table_name(prefix, keys.CHANNELS), sort=False)
    accounts = _keyed(table_name(prefix, keys.ACCOUNTS), sort=False)
    tokens = _keyed(table_name(prefix, keys.REFRESH_TOKENS), sort=False)
    groups = _keyed(table_name(prefix, keys.GROUPS), sort=True)
    groups["AttributeDefinitions"].append({"AttributeName": "joined", "AttributeType": "S"})
    # Members in join order, strongly consistent; sparse (only member items carry `joined`).
    # KEYS_ONLY: the member's id is in the table's sort key already.
    groups["LocalSecondaryIndexes"] = [
        {
            "IndexName": keys.GROUP_MEMBERS_BY_JOINED,
            "KeySchema": [
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "joined", "KeyType": "RANGE"},
            ],
            "Projection": {"ProjectionType": "KEYS_ONLY"},
        }
    ]
    videos = _keyed(table_name(prefix, keys.VIDEOS), sort=True)
    follows = _keyed(table_name(prefix, keys.FOLLOWS), sort=True)
    return [messages, channels, accounts, tokens, groups, videos, follows]


async def create_tables(client: Any, prefix: str, *, wait_seconds: float = 120.0) -> list[str]:
    """Create the missing tables, wait until all are ACTIVE, and turn TTL on; return the new ones.

    Safe to run again: existing tables are left as they are.
    """
    created: list[str] = []
    for definition in table_definitions(prefix):
        try:
            await client.create_table(**definition)
        except ClientError as exc:
            if error_code(exc) != "ResourceInUseException":
                raise
        else:
            created.append(definition["TableName"])
    async with asyncio.timeout(wait_seconds):
        for definition in table_definitions(prefix):
            while True:
                described = await client.describe_table(TableName=definition["TableName"])
                if described["Table"]["TableStatus"] == "ACTIVE":
                    break
                await asyncio.sleep(0.5)
    # Revoked token families and old feed items expire.
    for table in (keys.REFRESH_TOKENS, keys.FOLLOWS):
        name = table_name(prefix, table)
        ttl = await client.describe_time_to_live(TableName=name)
        if ttl["TimeToLiveDescription"]["TimeToLiveStatus"] == "DISABLED":
            await client.update_time_to_live(
                TableName=name,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": keys.PURGE_ATTRIBUTE},
            )
    return created
