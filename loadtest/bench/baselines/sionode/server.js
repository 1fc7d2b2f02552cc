// Baseline for loadtest/bench: Node socket.io 4 + @socket.io/redis-adapter (node-redis 4).
//
// Same semantics as the gateway for what the benchmark uses:
// - connect: the Socket.IO CONNECT packet carries {token: <JWT>}, checked like the gateway
//   checks it (HS256, iss/aud = "moosic"); a bad token is refused;
// - "join" (ack): enter a room;
// - "publish" (ack): append the message to an in-memory per-room array (its "store"), then
//   broadcast "msg" to the whole room (sender included) through the Redis adapter; the ack
//   carries the offset and message id once the message is stored.
//
// Environment: BENCH_HOST, BENCH_PORT, BENCH_REDIS_URL, BENCH_JWT_SECRET.
"use strict";

const http = require("node:http");
const crypto = require("node:crypto");
const { Server } = require("socket.io");
const { createAdapter } = require("@socket.io/redis-adapter");
const { createClient } = require("redis");
const jwt = require("jsonwebtoken");

// A KeyObject made once: with a plain string secret jsonwebtoken 9 spends ~320 µs per verify
// here (~6.6 µs with the KeyObject), which would make the baseline look far slower than it is.
const SECRET = crypto.createSecretKey(Buffer.from(process.env.BENCH_JWT_SECRET, "utf8"));
const store = new Map();

const httpServer = http.createServer((req, res) => {
  if (req.url === "/healthz") {
    res.writeHead(200, { "content-type": "text/plain" });
    res.end("ok");
  }
});

const io = new Server(httpServer, { transports: ["websocket"], serveClient: false });

io.use((socket, next) => {
  try {
    const claims = jwt.verify(String(socket.handshake.auth.token || ""), SECRET, {
      algorithms: ["HS256"],
      audience: "moosic",
      issuer: "moosic",
    });
    socket.data.user = claims.sub;
    next();
  } catch {
    next(new Error("bad_token"));
  }
});

io.on("connection", (socket) => {
  socket.on("join", (room, ack) => {
    socket.join(room);
    ack({ ok: true });
  });
  socket.on("publish", (msg, ack) => {
    const room = msg.channel;
    let history = store.get(room);
    if (history === undefined) {
      history = [];
      store.set(room, history);
    }
    const event = {
      channel: room,
      offset: history.length + 1,
      message_id: crypto.randomUUID(),
      from: socket.data.user,
      ts: Date.now(),
      data: msg.data,
    };
    history.push(event);
    io.to(room).emit("msg", event);
    ack({ offset: event.offset, message_id: event.message_id });
  });
});

async function main() {
  const pubClient = createClient({ url: process.env.BENCH_REDIS_URL });
  const subClient = pubClient.duplicate();
  await Promise.all([pubClient.connect(), subClient.connect()]);
  io.adapter(createAdapter(pubClient, subClient));
  httpServer.listen(Number(process.env.BENCH_PORT), process.env.BENCH_HOST || "127.0.0.1");
  const stop = () => {
    io.close();
    Promise.allSettled([pubClient.quit(), subClient.quit()]).then(() => process.exit(0));
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
