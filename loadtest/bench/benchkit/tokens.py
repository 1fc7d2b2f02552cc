"""Access tokens minted for load, exactly as the gateway issues them.

Registering thousands of users would spend the run on scrypt, so the harness signs its own
HS256 JWTs with the secret it gives every server (claims sub, iat, exp, iss, aud = "moosic").
The socket.io baselines check the same tokens the same way.
"""

import time

import jwt

TTL_S = 3600


def mint(secret: str, prefix: str, count: int) -> list[str]:
    """Tokens for users {prefix}00000, {prefix}00001, …"""
    now = int(time.time())
    return [
        jwt.encode(
            {
                "sub": f"{prefix}{i:05d}",
                "iat": now,
                "exp": now + TTL_S,
                "iss": "moosic",
                "aud": "moosic",
            },
            secret,
            algorithm="HS256",
        )
        for i in range(count)
    ]
