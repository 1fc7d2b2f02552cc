"""Development commands for the DynamoDB backend.

    python -m storage.dynamodb create-tables [--endpoint URL] [--region NAME] [--prefix TEXT]

Each flag defaults to the gateway's variable (``MOOSIC_DYNAMODB_ENDPOINT``,
``MOOSIC_DYNAMODB_REGION``, ``MOOSIC_DYNAMODB_TABLE_PREFIX``), then to the backend's default.
Credentials come from the default AWS chain (``AWS_ACCESS_KEY_ID``...); DynamoDB Local
accepts any.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence

import aioboto3

from storage.dynamodb.config import DynamoDBConfig
from storage.dynamodb.schema import create_tables, table_definitions


def _parser() -> argparse.ArgumentParser:
    defaults = DynamoDBConfig()
    parser = argparse.ArgumentParser(prog="python -m storage.dynamodb")
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create-tables", help="create the tables that are missing")
    create.add_argument(
        "--endpoint",
        default=os.environ.get("MOOSIC_DYNAMODB_ENDPOINT") or None,
        help="DynamoDB endpoint URL, e.g. http://127.0.0.1:8000 for DynamoDB Local",
    )
    create.add_argument(
        "--region",
        default=os.environ.get("MOOSIC_DYNAMODB_REGION") or defaults.region,
        help="AWS region of the tables",
    )
    create.add_argument(
        "--prefix",
        default=os.environ.get("MOOSIC_DYNAMODB_TABLE_PREFIX", defaults.table_prefix),
        help="prepended to every table name",
    )
    return parser


async def _create(config: DynamoDBConfig) -> list[str]:
    session = aioboto3.Session()
    async with session.client(
        "dynamodb", region_name=config.region, endpoint_url=config.endpoint_url
    ) as client:
        return await create_tables(client, config.table_prefix)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = DynamoDBConfig(
            region=args.region, endpoint_url=args.endpoint, table_prefix=args.prefix
        )
    except ValueError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    created = set(asyncio.run(_create(config)))
    for definition in table_definitions(config.table_prefix):
        name = definition["TableName"]
        sys.stdout.write(f"{name}: {'created' if name in created else 'exists'}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
