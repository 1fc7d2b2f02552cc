"""The DynamoDB backend of :class:`storage.base.Store`, on aioboto3, with optional DAX reads.

:class:`DynamoDBStore` is its aggregates (messages and channels, conversations, accounts and
refresh tokens, groups, videos and likes, follows and feeds, push devices, the push outbox and push preferences), each a class on
:class:`storage.dynamodb.base.DynamoDBBase`, which owns the client, the tables, retries and DAX.

``docs/storage.md`` has the table design, the cost of each operation and the consistency of
each read.
"""

from __future__ import annotations

from storage.dynamodb.accounts import DynamoDBAccounts
from storage.dynamodb.conversations import DynamoDBConversations
from storage.dynamodb.devices import DynamoDBDevices
from storage.dynamodb.follows import DynamoDBFollows
from storage.dynamodb.groups import DynamoDBGroups
from storage.dynamodb.messages import DynamoDBMessages
from storage.dynamodb.outbox import DynamoDBOutbox
from storage.dynamodb.preferences import DynamoDBPreferences
from storage.dynamodb.videos import DynamoDBVideos


class DynamoDBStore(
    DynamoDBMessages,
    DynamoDBConversations,
    DynamoDBAccounts,
    DynamoDBGroups,
    DynamoDBVideos,
    DynamoDBFollows,
    DynamoDBDevices,
    DynamoDBOutbox,
    DynamoDBPreferences,
):
    """:class:`storage.base.Store` on DynamoDB tables named ``{table_prefix}{table}``.

    ``session`` (an ``aioboto3.Session``) may be shared with other AWS clients of the process;
    building one loads botocore's service models, which takes tens of milliseconds.
    ``dax_client`` replaces the DAX client built from ``config.dax_endpoint``; tests pass a
    recording double here, since no DAX runs outside AWS. ``layout`` and ``clock`` (seconds
    since the epoch) exist for tests too: production keeps the defaults.
    """
