"""CloudFront signed URLs and signed cookies (RSA-SHA1, the scheme CloudFront verifies).

Two kinds of policy:

- **canned** — one exact URL and an expiry. Short (no policy travels, only ``Expires``), used for
  the one-file links: the master playlist and the thumbnail.
- **custom** — a resource pattern with a ``*`` and an expiry. HLS is many files (a master, three
  playlists, their segments); a canned policy cannot cover them, so the player's cookies (or a
  query string appended to each request) carry one custom policy for the video's folder
  ``https://{domain}/videos/{owner}/{id}/*``, with the same short expiry.

The private key comes from configuration (a PEM file); CloudFront holds the public key in a key
group, whose id is the ``Key-Pair-Id``.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from urllib.parse import quote

import orjson
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa


def cf_b64(data: bytes) -> str:
    """CloudFront's URL-safe base64: ``+`` → ``-``, ``=`` → ``_``, ``/`` → ``~``."""
    return base64.b64encode(data).decode("ascii").translate(str.maketrans("+=/", "-_~"))


def cf_unb64(text: str) -> bytes:
    return base64.b64decode(text.translate(str.maketrans("-_~", "+=/")))


def policy_json(resource: str, expires_at: int) -> bytes:
    """The policy statement CloudFront signs (no whitespace, as CloudFront rebuilds it)."""
    statement = {
        "Statement": [
            {"Resource": resource, "Condition": {"DateLessThan": {"AWS:EpochTime": expires_at}}}
        ]
    }
    return orjson.dumps(statement)


@dataclass(frozen=True, slots=True)
class SignedCookies:
    cookies: dict[str, str]
    query: str
    """The same policy as query parameters, for players that append it to every request."""


class CloudFrontSigner:
    def __init__(self, key_id: str, private_key_pem: bytes) -> None:
        key = serialization.load_pem_private_key(private_key_pem, password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise TypeError("the CloudFront signing key must be an RSA private key")
        self.key_id = key_id
        self._key = key

    def _sign(self, message: bytes) -> str:
        return cf_b64(self._key.sign(message, padding.PKCS1v15(), hashes.SHA1()))

    def signed_url(self, url: str, expires_at: int) -> str:
        """Sign one exact URL with a canned policy."""
        signature = self._sign(policy_json(url, expires_at))
        sep = "&" if "?" in url else "?"
        return (
            f"{url}{sep}Expires={expires_at}&Signature={signature}"
            f"&Key-Pair-Id={quote(self.key_id, safe='')}"
        )

    def signed_cookies(self, resource: str, expires_at: int) -> SignedCookies:
        """Sign a custom policy for ``resource`` (may end with ``*``) as cookies and a query."""
        policy = policy_json(resource, expires_at)
        encoded = cf_b64(policy)
        signature = self._sign(policy)
        cookies = {
            "CloudFront-Policy": encoded,
            "CloudFront-Signature": signature,
            "CloudFront-Key-Pair-Id": self.key_id,
        }
        query = f"Policy={encoded}&Signature={signature}&Key-Pair-Id={quote(self.key_id, safe='')}"
        return SignedCookies(cookies, query)
