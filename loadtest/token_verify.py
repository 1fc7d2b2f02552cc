"""CPU per access-token check: the gateway's HS256 path against PyJWT's, in one run (issue 19).

    PYTHONPATH=. .venv/bin/python -m loadtest.token_verify [--tokens 20000]

Both check the same tokens with the same rules (the key from ``kid``, the pinned algorithm, the
signature, exp/iat/iss/aud, the subject); PyJWT's figure is what ``TokenService.verify`` cost
before it checked HS256 itself. Runs alternate three times; the median of each is printed.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jwt

from gateway.auth.tokens import LEEWAY_SECONDS, TokenService


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--tokens", type=int, default=20_000)
    args = parser.parse_args()
    secret = "s" * 64
    service = TokenService(secret, issuer="moosic", audience="moosic", ttl=900)
    tokens = [service.issue_access_token(f"01JE{n:022d}", f"session-{n}")[0] for n in range(1000)]

    def ours() -> None:
        for n in range(args.tokens):
            service.verify(tokens[n % len(tokens)])

    def pyjwt() -> None:
        for n in range(args.tokens):
            token = tokens[n % len(tokens)]
            jwt.get_unverified_header(token)
            jwt.decode(
                token,
                secret,
                algorithms=["HS256"],
                audience="moosic",
                issuer="moosic",
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iat", "sub", "iss", "aud"]},
            )

    timings: dict[str, list[float]] = {"gateway HS256 path": [], "PyJWT (before)": []}
    for _ in range(3):
        for name, run in (("gateway HS256 path", ours), ("PyJWT (before)", pyjwt)):
            began = time.process_time()
            run()
            timings[name].append((time.process_time() - began) / args.tokens * 1e6)
    medians = {name: statistics.median(values) for name, values in timings.items()}
    for name, value in medians.items():
        print(f"{name:20} {value:6.1f} µs CPU per token")
    ratio = medians["PyJWT (before)"] / medians["gateway HS256 path"]
    print(f"PyJWT / gateway: {ratio:.2f}x")


if __name__ == "__main__":
    main()
