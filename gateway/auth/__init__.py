"""Who the caller is: access tokens, an identity provider's keys, and ended sessions.

Map of the package:
- ``tokens``: JWT access tokens (pinned algorithm per key id, rotation, claims).
- ``jwks``: RS256 keys of an external identity provider, refreshed in the background.
- ``revocation``: logged-out sessions, shared by every node.
- ``api_keys``: the server API's keys (constant-time match, fingerprints for the audit log).
"""
