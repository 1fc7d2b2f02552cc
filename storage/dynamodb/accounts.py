"""Accounts and refresh tokens on DynamoDB (the ``accounts`` and ``refresh_tokens`` tables).

An account is two items holding the whole record, by id and by name (the name item's condition
makes names unique). A refresh token is claimed by one conditional write whose random marker
tells a retry of the same call from a second use; a reused token revokes its family.
Each user's families are also listed in one item of the refresh-token table (a string set that
expires with the user's last token), so that all of a user's sessions can be ended at once.
"""

from __future__ import annotations

import uuid

from botocore.exceptions import ClientError

from storage.base import RefreshState, RefreshUse, User
from storage.dynamodb import keys
from storage.dynamodb.base import CONDITION_FAILED, CONDITION_FAILED_EXC, DynamoDBBase
from storage.dynamodb.keys import Item, boolean, get_n, get_s, n, opt_s, s
from storage.errors import Conflict


class DynamoDBAccounts(DynamoDBBase):
    """:class:`storage.base.AccountStore` and :class:`storage.base.RefreshTokenStore` on
    DynamoDB."""

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
        # Both items hold the whole record (accounts never change), so a lookup by either key
        # is one read. The name item's condition makes the name unique.
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
        )

    # -- refresh tokens --------------------------------------------------------------------

    async def add_refresh_token(
        self, token_hash: str, user_id: str, family_id: str, expires_at: int
    ) -> None:
        marker = uuid.uuid4().hex
        try:
            await self._call(
                "put_item",
                {
                    "TableName": self._tables[keys.REFRESH_TOKENS],
                    "Item": {
                        "pk": s(keys.token_pk(token_hash)),
                        "user_id": s(user_id),
                        "family_id": s(family_id),
                        "expires_at": n(expires_at),
                        "used": boolean(False),
                        "put_by": s(marker),
                        keys.PURGE_ATTRIBUTE: n(expires_at + self._config.refresh_token_grace),
                    },
                    "ConditionExpression": "attribute_not_exists(pk)",
                    "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                },
                expected=CONDITION_FAILED_EXC,
            )
        except ClientError as exc:
            existing = exc.response.get("Item") or {}
            if opt_s(existing, "put_by") != marker:  # not this call's own attempt, retried
                raise Conflict("the refresh token already exists") from exc
        # The user's family list (a set: adding a family twice, or a retry, changes nothing);
        # it lives as long as the user's newest token.
        await self._call(
            "update_item",
            {
                "TableName": self._tables[keys.REFRESH_TOKENS],
                "Key": {"pk": s(keys.sessions_pk(user_id))},
                "UpdateExpression": "ADD families :family SET #purge = :purge",
                "ExpressionAttributeNames": {"#purge": keys.PURGE_ATTRIBUTE},
                "ExpressionAttributeValues": {
                    ":family": {"SS": [family_id]},
                    ":purge": n(expires_at + self._config.refresh_token_grace),
                },
            },
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

    async def end_user_sessions(self, user_id: str, now: int, *, limit: int) -> list[str]:
        # Every family listed (some may have expired already: revoking those is harmless);
        # each one ended leaves the list, so the next call goes on with the rest.
        table = self._tables[keys.REFRESH_TOKENS]
        key = {"pk": s(keys.sessions_pk(user_id))}
        found = await self._call(
            "get_item", {"TableName": table, "Key": key, "ConsistentRead": True}
        )
        listed = (found.get("Item") or {}).get("families", {}).get("SS", [])
        families = sorted(str(family) for family in listed)[:limit]
        for family in families:
            await self.revoke_family(family, now=now)
        if families:
            await self._call(
                "update_item",
                {
                    "TableName": table,
                    "Key": key,
                    "UpdateExpression": "DELETE families :ended",
                    "ExpressionAttributeValues": {":ended": {"SS": families}},
                },
            )
        return families
