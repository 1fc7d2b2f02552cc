"""Baseline for loadtest/bench: python-socketio 5 (aiohttp mode, AsyncRedisManager, uvloop).

Same semantics as the gateway for what the benchmark uses:
- connect: the Socket.IO CONNECT packet carries ``{"token": <JWT>}``, checked like the gateway
  checks it (HS256, ``iss``/``aud`` = "moosic"); a bad token is refused;
- ``join`` (ack): enter a room;
- ``publish`` (ack): append the message to an in-memory per-room list (its "store"), then
  broadcast ``msg`` to the whole room (sender included) through the Redis manager; the ack
  carries the offset and message id once the message is stored.

Environment: BENCH_HOST, BENCH_PORT, BENCH_REDIS_URL, BENCH_JWT_SECRET.
"""

import os
import time
import uuid
from typing import Any

import jwt
import socketio
import uvloop
from aiohttp import web


def make_app(secret: str, redis_url: str) -> web.Application:
    """The aiohttp app with the Socket.IO server and a readiness probe attached."""
    store: dict[str, list[dict[str, Any]]] = {}
    sio = socketio.AsyncServer(
        async_mode="aiohttp",
        client_manager=socketio.AsyncRedisManager(redis_url),
        transports=["websocket"],
        cors_allowed_origins=None,
    )

    async def connect(sid: str, environ: dict[str, Any], auth: dict[str, Any] | None) -> None:
        """Accept a socket only with a valid token, and remember its user."""
        token = (auth or {}).get("token", "")
        try:
            claims = jwt.decode(
                token, secret, algorithms=["HS256"], audience="moosic", issuer="moosic"
            )
        except jwt.PyJWTError as exc:
            raise socketio.exceptions.ConnectionRefusedError("bad_token") from exc
        await sio.save_session(sid, {"user": claims["sub"]})

    async def join(sid: str, room: str) -> dict[str, Any]:
        """Subscribe the socket to a room."""
        await sio.enter_room(sid, room)
        return {"ok": True}

    async def publish(sid: str, msg: dict[str, Any]) -> dict[str, Any]:
        """Store a message in its room's list, then broadcast it to the room."""
        session = await sio.get_session(sid)
        room = msg["channel"]
        history = store.setdefault(room, [])
        event = {
            "channel": room,
            "offset": len(history) + 1,
            "message_id": uuid.uuid4().hex,
            "from": session["user"],
            "ts": int(time.time() * 1000),
            "data": msg["data"],
        }
        history.append(event)
        await sio.emit("msg", event, room=room)
        return {"offset": event["offset"], "message_id": event["message_id"]}

    async def healthz(_request: web.Request) -> web.Response:
        """Readiness probe for the harness."""
        return web.Response(text="ok")

    for name, handler in (("connect", connect), ("join", join), ("publish", publish)):
        sio.on(name, handler)
    app = web.Application()
    sio.attach(app)
    app.router.add_get("/healthz", healthz)
    return app


def main() -> None:
    """Serve until terminated."""
    web.run_app(
        make_app(os.environ["BENCH_JWT_SECRET"], os.environ["BENCH_REDIS_URL"]),
        host=os.environ.get("BENCH_HOST", "127.0.0.1"),
        port=int(os.environ["BENCH_PORT"]),
        print=None,
        access_log=None,
        loop=uvloop.new_event_loop(),
    )


if __name__ == "__main__":
    main()
