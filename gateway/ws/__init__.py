"""The WebSocket transport: from the HTTP upgrade to frames on one client's socket.

Map of the package:
- ``upgrade``: ``GET /ws``; origin, country, token and limits, then the handshake.
- ``frames``: the frame codec (server frames encoded once for every socket), close codes.
- ``connection``: one socket's read loop, frame budget, subscriptions and bounded outbound path.
- ``registry``: decode-and-validate of op frames in one pass, op lookup, the answer to each
  frame (its reply/error envelope comes from ``handlers.messages``).
"""
