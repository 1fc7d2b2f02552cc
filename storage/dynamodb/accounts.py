"""Accounts, refresh tokens and one-time tokens on DynamoDB (the ``accounts`` and
``refresh_tokens`` tables; each user's session index in the ``follows`` table).

An account is two items holding the whole record, by id and by name (the name item's condition
makes names unique); a change (address, password) updates both in one transaction. A verified
address has a claim item naming its account, so it belongs to one account. A refresh token is
claimed by one conditional write whose random marker tells a retry of the same call from a
second use; a reused token revokes its family. Every refresh token also raises its family's
entry in the user's session index (``s#{user}``), which :meth:`list_sessions` queries.
"""

from __future__ import annotations

import contextlib
import dataclasses
import uuid
from typing import Any

from botocore.exceptions import ClientError

from storage.base import OneTimeState, OneTimeUse, RefreshState, RefreshUse, User
from storage.dynamodb import keys
from storage.dynamodb.base import CONDITION_FAILED, CONDITION_FAILED_EXC, DynamoDBBase
from storage.dynamodb.keys import Item, boolean, get_n, get_s, n, opt_s, s
from storage.errors import Conflict, Unavailable

EMAIL_ATTEMPTS = 3
"""Tries of an address change that meets a concurrent change of the same account."""


class DynamoDBAccounts(DynamoDBBase):
    """:class:`storage.base.AccountStore`, :class:`storage.base.RefreshTokenStore` and
    :class:`storage.base.OneTimeTokenStore` on DynamoDB."""

    # -- accounts --------------------------------------------------------------------------

    async def create_user(self, username: str, password_hash: str) -> User:
        user = User(self._ids.new(self._now_ms()), username, password_hash, int(self._clock()))
        table = self._tables[keys.ACCOUNTS]
        record = {
            "id": s(user.id),
            "username": s(username),
            "password_hash": s(password_hash),
            "created_at": n(user.created_at),
        }
        # Both items hold the whole record (a change updates both at once), so a lookup by
        # either key is one read. The name item's condition makes the name unique.
        reasons = await self._transact(
            [
                {
                    "Put": {
                        "TableName": table,
                        "Item": {"pk": s(keys.username_pk(username)), **record},
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                },
                {
                    "Put": {
                        "TableName": table,
                        "Item": {"pk": s(keys.user_pk(user.id)), **record},
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                },
            ],
            "create_user",
        )
        if reasons is not None:
            raise Conflict(f"username {username!r} is taken")
        return user

    async def get_user(self, user_id: str) -> User | None:
        return await self._user(keys.user_pk(user_id))

    async def get_user_by_username(self, username: str) -> User | None:
        return await self._user(keys.username_pk(username))

    async def _user(self, pk: str) -> User | None:
        response = await self._call(
            "get_item",
            {
                "TableName": self._tables[keys.ACCOUNTS],
                "Key": {"pk": s(pk)},
                "ConsistentRead": True,
            },
        )
        item = response.get("Item")
        if item is None:
            return None
        return User(
            get_s(item, "id"),
            get_s(item, "username"),
            get_s(item, "password_hash"),
            get_n(item, "created_at"),
            opt_s(item, "email"),
            bool(item.get("email_verified", {}).get("BOOL", False)),
        )

    def _update_both(
        self, user: User, update: str, condition: str, values: dict[str, Any]
    ) -> list[Item]:
        """The same update of the account's two items (by id and by name), as transaction items."""
        return [
            {
                "Update": {
                    "TableName": self._tables[keys.ACCOUNTS],
                    "Key": {"pk": s(pk)},
                    "UpdateExpression": update,
                    "ConditionExpression": condition,
                    "ExpressionAttributeValues": values,
                }
            }
            for pk in (keys.user_pk(user.id), keys.username_pk(user.username))
        ]

    async def get_user_by_email(self, email: str) -> User | None:
        response = await self._call(
            "get_item",
            {
                "TableName": self._tables[keys.ACCOUNTS],
                "Key": {"pk": s(keys.email_pk(email))},
                "ConsistentRead": True,
            },
        )
        claim = response.get("Item")
        # Without a claim the user read still runs (for the key ``u#``, which never exists):
        # a password-reset request costs the same two reads whether or not the address is known.
        user = await self.get_user(get_s(claim, "user_id") if claim else "")
        if user is None or user.email != email or not user.email_verified:
            return None
        return user

    async def set_email(self, user_id: str, email: str) -> User | None:
        table = self._tables[keys.ACCOUNTS]
        for _attempt in range(EMAIL_ATTEMPTS):
            user = await self.get_user(user_id)
            if user is None or user.email == email:
                return user
            values: dict[str, Any] = {":new": s(email), ":false": boolean(False)}
            if user.email is None:
                condition = "attribute_exists(pk) AND attribute_not_exists(email)"
            else:
                condition = "attribute_exists(pk) AND email = :old"
                values[":old"] = s(user.email)
            items = self._update_both(
                user, "SET email = :new, email_verified = :false", condition, values
            )
            items.append(
                {
                    "ConditionCheck": {
                        "TableName": table,
                        "Key": {"pk": s(keys.email_pk(email))},
                        "ConditionExpression": "attribute_not_exists(pk) OR user_id = :me",
                        "ExpressionAttributeValues": {":me": s(user_id)},
                    }
                }
            )
            if user.email is not None and user.email_verified:
                items.append(
                    {
                        "Delete": {
                            "TableName": table,
                            "Key": {"pk": s(keys.email_pk(user.email))},
                            "ConditionExpression": "user_id = :me",
                            "ExpressionAttributeValues": {":me": s(user_id)},
                        }
                    }
                )
            reasons = await self._transact(items, "set an email address")
            if reasons is None:
                return dataclasses.replace(user, email=email, email_verified=False)
            if reasons[2].get("Code") == CONDITION_FAILED:
                raise Conflict("another account has verified this address")
            # The account changed under us (another address set at the same time): read again.
        raise Unavailable("DynamoDB set an email address: the account kept changing")

    async def verify_email(self, user_id: str, email: str) -> User | None:
        user = await self.get_user(user_id)
        if user is None or user.email != email:
            return None
        if user.email_verified:
            return user
        items = self._update_both(
            user,
            "SET email_verified = :true",
            "attribute_exists(pk) AND email = :email",
            {":true": boolean(True), ":email": s(email)},
        )
        items.append(
            {
                "Put": {
                    "TableName": self._tables[keys.ACCOUNTS],
                    "Item": {"pk": s(keys.email_pk(email)), "user_id": s(user_id)},
                    "ConditionExpression": "attribute_not_exists(pk) OR user_id = :me",
                    "ExpressionAttributeValues": {":me": s(user_id)},
                }
            }
        )
        reasons = await self._transact(items, "verify an email address")
        if reasons is None:
            return dataclasses.replace(user, email_verified=True)
        if reasons[2].get("Code") == CONDITION_FAILED:
            raise Conflict("another account has verified this address")
        return None  # the account's address changed since

    async def set_password(self, user_id: str, password_hash: str) -> bool:
        user = await self.get_user(user_id)
        if user is None:
            return False
        items = self._update_both(
            user, "SET password_hash = :hash", "attribute_exists(pk)", {":hash": s(password_hash)}
        )
        return await self._transact(items, "set a password") is None

    # -- refresh tokens --------------------------------------------------------------------

    async def add_refresh_token(
        self, token_hash: str, user_id: str, family_id: str, expires_at: int
    ) -> None:
        # The session index first: an entry without its token (this call failing after it) is
        # harmless, a token missing from the index would survive "end every session".
        purge_at = expires_at + self._config.refresh_token_grace
        # A condition failure: the entry already says a later expiry.
        with contextlib.suppress(ClientError):
            await self._call(
                "update_item",
                {
                    "TableName": self._tables[keys.FOLLOWS],
                    "Key": {"pk": s(keys.sessions_pk(user_id)), "sk": s(family_id)},
                    "UpdateExpression": "SET expires_at = :expires, #purge = :purge",
                    "ConditionExpression": (
                        "attribute_not_exists(expires_at) OR expires_at < :expires"
                    ),
                    "ExpressionAttributeNames": {"#purge": keys.PURGE_ATTRIBUTE},
                    "ExpressionAttributeValues": {":expires": n(expires_at), ":purge": n(purge_at)},
                },
                expected=CONDITION_FAILED_EXC,
            )
        await self._put_token(
            {
                "pk": s(keys.token_pk(token_hash)),
                "user_id": s(user_id),
                "family_id": s(family_id),
                "expires_at": n(expires_at),
                "used": boolean(False),
                keys.PURGE_ATTRIBUTE: n(expires_at + self._config.refresh_token_grace),
            },
            "the refresh token already exists",
        )

    async def use_refresh_token(self, token_hash: str, now: int) -> RefreshUse:
        # One transaction claims the token only while its family is not revoked, so a claim
        # never loses to a concurrent reuse that revoked the family after it (as SQLite's one
        # transaction decides). Its marker tells a retry of this very call (whose first attempt
        # was applied but not answered) from a real second use.
        token_key = {"pk": s(keys.token_pk(token_hash))}
        found = await self._call(
            "get_item",
            {
                "TableName": self._tables[keys.REFRESH_TOKENS],
                "Key": token_key,
                "ConsistentRead": True,
            },
        )
        token: Item | None = found.get("Item")
        if token is None:
            return RefreshUse(RefreshState.UNKNOWN)
        user_id, family_id = get_s(token, "user_id"), get_s(token, "family_id")
        marker = uuid.uuid4().hex
        reasons = await self._transact(
            [
                {
                    "Update": {
                        "TableName": self._tables[keys.REFRESH_TOKENS],
                        "Key": token_key,
                        "UpdateExpression": "SET used = :true, used_by = :marker",
                        "ConditionExpression": (
                            "attribute_exists(pk) AND used = :false AND expires_at > :now"
                        ),
                        "ExpressionAttributeValues": {
                            ":true": boolean(True),
                            ":false": boolean(False),
                            ":marker": s(marker),
                            ":now": n(now),
                        },
                        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                    }
                },
                {
                    "ConditionCheck": {
                        "TableName": self._tables[keys.REFRESH_TOKENS],
                        "Key": {"pk": s(keys.family_pk(family_id))},
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                },
            ],
            "use a refresh token",
        )
        if reasons is None:
            return RefreshUse(RefreshState.OK, user_id, family_id)
        claim, family = (reason.get("Code") == CONDITION_FAILED for reason in reasons)
        item: Item = reasons[0].get("Item") or {}
        if claim and opt_s(item, "used_by") == marker:
            return RefreshUse(RefreshState.OK, user_id, family_id)  # this call's own attempt
        if claim and not item:
            return RefreshUse(RefreshState.UNKNOWN)
        if family or item.get("used", {}).get("BOOL"):
            await self.revoke_family(family_id, now=now)
            return RefreshUse(RefreshState.REUSED, user_id, family_id)
        return RefreshUse(RefreshState.EXPIRED, user_id, family_id)

    async def revoke_family(self, family_id: str, *, now: int | None = None) -> None:
        revoked_at = int(self._clock()) if now is None else now
        await self._call(
            "update_item",
            {
                "TableName": self._tables[keys.REFRESH_TOKENS],
                "Key": {"pk": s(keys.family_pk(family_id))},
                # The first revocation's time stays, like SQLite's INSERT OR IGNORE.
                "UpdateExpression": (
                    "SET revoked_at = if_not_exists(revoked_at, :now), #purge = :purge"
                ),
                "ExpressionAttributeNames": {"#purge": keys.PURGE_ATTRIBUTE},
                "ExpressionAttributeValues": {
                    ":now": n(revoked_at),
                    ":purge": n(revoked_at + self._config.revoked_family_ttl),
                },
            },
        )

    async def list_sessions(
        self, user_id: str, *, since: int, limit: int, after: str | None = None
    ) -> list[str]:
        condition = "pk = :pk"
        values: dict[str, Any] = {":pk": s(keys.sessions_pk(user_id)), ":since": n(since)}
        if after is not None:
            condition += " AND sk > :after"
            values[":after"] = s(after)
        items = await self._query_all(
            {
                "TableName": self._tables[keys.FOLLOWS],
                "KeyConditionExpression": condition,
                "FilterExpression": "expires_at > :since",
                "ExpressionAttributeValues": values,
                "ProjectionExpression": "sk",
            },
            limit=limit,
            cached=False,
        )
        return [get_s(item, "sk") for item in items[:limit]]

    async def _put_token(self, item: Item, taken: str) -> None:
        """Write a new token item once: a random marker tells this call's own attempt, applied
        and retried after its answer was lost, from an item that was there (``Conflict``)."""
        marker = uuid.uuid4().hex
        try:
            await self._call(
                "put_item",
                {
                    "TableName": self._tables[keys.REFRESH_TOKENS],
                    "Item": {**item, "put_by": s(marker)},
                    "ConditionExpression": "attribute_not_exists(pk)",
                    "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                },
                expected=CONDITION_FAILED_EXC,
            )
        except ClientError as exc:
            existing = exc.response.get("Item") or {}
            if opt_s(existing, "put_by") != marker:  # not this call's own attempt, retried
                raise Conflict(taken) from exc

    # -- one-time tokens -------------------------------------------------------------------

    async def add_one_time_token(
        self, token_hash: str, purpose: str, user_id: str, subject: str, expires_at: int
    ) -> None:
        await self._put_token(
            {
                "pk": s(keys.one_time_pk(token_hash)),
                "purpose": s(purpose),
                "user_id": s(user_id),
                "subject": s(subject),
                "expires_at": n(expires_at),
                "used": boolean(False),
                keys.PURGE_ATTRIBUTE: n(expires_at + self._config.refresh_token_grace),
            },
            "the token already exists",
        )

    async def use_one_time_token(self, token_hash: str, purpose: str, now: int) -> OneTimeUse:
        marker = uuid.uuid4().hex
        try:
            response = await self._call(
                "update_item",
                {
                    "TableName": self._tables[keys.REFRESH_TOKENS],
                    "Key": {"pk": s(keys.one_time_pk(token_hash))},
                    "UpdateExpression": "SET used = :true, used_by = :marker",
                    "ConditionExpression": (
                        "attribute_exists(pk) AND purpose = :purpose AND used = :false"
                        " AND expires_at > :now"
                    ),
                    "ExpressionAttributeValues": {
                        ":true": boolean(True),
                        ":false": boolean(False),
                        ":marker": s(marker),
                        ":purpose": s(purpose),
                        ":now": n(now),
                    },
                    "ReturnValues": "ALL_NEW",
                    "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                },
                expected=CONDITION_FAILED_EXC,
            )
        except ClientError as exc:
            item: Item = exc.response.get("Item") or {}
            if not item or opt_s(item, "purpose") != purpose:
                return OneTimeUse(OneTimeState.UNKNOWN)
            user_id, subject = get_s(item, "user_id"), get_s(item, "subject")
            if opt_s(item, "used_by") == marker:  # this call's own attempt, retried
                return OneTimeUse(OneTimeState.OK, user_id, subject)
            if item.get("used", {}).get("BOOL"):
                return OneTimeUse(OneTimeState.USED, user_id, subject)
            return OneTimeUse(OneTimeState.EXPIRED, user_id, subject)
        new: Item = response["Attributes"]
        return OneTimeUse(OneTimeState.OK, get_s(new, "user_id"), get_s(new, "subject"))
