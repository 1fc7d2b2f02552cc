// The SDK's tests, imported into the gateway's own page in Chromium (tests/web/test_sdk.py).
// Real-gateway tests sign up their own users; close-code tests use a scripted socket so the
// server's side of the close is exact. Nothing here measures elapsed time.
import { MoosicClient, MoosicError, backoffDelay, register } from "/sdk/moosic.js";

const base = location.origin;
const rand = () => Math.random().toString(36).slice(2, 10);
const PASSWORD = "correct horse battery";

function assert(condition, message) {
  if (!condition) throw new Error(`assertion failed: ${message}`);
}
function eq(actual, expected, message) {
  const a = JSON.stringify(actual), b = JSON.stringify(expected);
  if (a !== b) throw new Error(`${message}: got ${a}, expected ${b}`);
}
async function waitFor(check, what, timeoutMs = 30000) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
function nextEvent(client, type, filter = () => true, timeoutMs = 30000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { off(); reject(new Error(`timed out waiting for "${type}"`)); }, timeoutMs);
    const off = client.on(type, (e) => {
      if (filter(e.detail)) { off(); clearTimeout(timer); resolve(e.detail); }
    });
  });
}
async function user() {
  return register(`sdk_${rand()}`, PASSWORD, { baseUrl: base });
}
const clients = [];
function client(options) {
  const c = new MoosicClient({ baseUrl: base, pingIntervalMs: 0, ...options });
  clients.push(c);
  return c;
}
function received(c, channel) {
  const offsets = [];
  c.on("event", (e) => { if (e.detail.channel === channel) offsets.push(e.detail.offset); });
  return offsets;
}

/** A WebSocket stand-in whose "server" the test drives. */
class ScriptedSocket {
  static instances = [];
  static failOpen = false;
  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.sent = [];
    ScriptedSocket.instances.push(this);
    setTimeout(() => {
      if (ScriptedSocket.failOpen) { this.readyState = 3; this.onerror?.({}); this.onclose?.({ code: 1006, reason: "" }); return; }
      this.readyState = 1;
      this.onopen?.({});
    }, 0);
  }
  send(text) { this.sent.push(JSON.parse(text)); }
  close(code = 1000, reason = "") { this.readyState = 3; this.onclose?.({ code, reason }); }
  serverClose(code, reason = "") { this.readyState = 3; this.onclose?.({ code, reason }); }
  answer(id, result) { this.onmessage?.({ data: JSON.stringify({ op: "reply", id, result }) }); }
  static reset() { ScriptedSocket.instances = []; ScriptedSocket.failOpen = false; }
}

/** Timers that record each delay asked for and run the callback at once. */
function recordingTimers() {
  const delays = [];
  return {
    delays,
    setTimeout: (fn, ms) => { delays.push(ms); return setTimeout(fn, 0); },
    clearTimeout: (t) => clearTimeout(t),
  };
}

const tests = {
  async backoff_bounds() {
    for (const [baseMs, maxMs] of [[500, 30000], [100, 1000], [1000, 1000]]) {
      for (let attempt = 0; attempt < 40; attempt++) {
        const cap = Math.min(maxMs, baseMs * 2 ** Math.min(attempt, 30));
        for (let i = 0; i < 200; i++) {
          const d = backoffDelay(attempt, { baseMs, maxMs });
          assert(d >= cap / 2 && d <= cap, `attempt ${attempt}: ${d} outside [${cap / 2}, ${cap}]`);
        }
        eq(backoffDelay(attempt, { baseMs, maxMs, random: () => 0 }), cap / 2, "lowest");
        assert(backoffDelay(attempt, { baseMs, maxMs, random: () => 0.999999 }) < cap + 1e-6, "highest");
      }
    }
    const spread = new Set(Array.from({ length: 50 }, () => backoffDelay(3)));
    assert(spread.size > 40, "jittered delays differ");
    assert(backoffDelay(1000) <= 30000, "capped");
  },

  async request_timeout() {
    ScriptedSocket.reset();
    const c = client({ token: "t", WebSocketImpl: ScriptedSocket, watchNetwork: false });
    await c.connect();
    const socket = ScriptedSocket.instances[0];
    let error = null;
    try { await c.request("ping", {}, { timeoutMs: 50 }); } catch (e) { error = e; }
    assert(error instanceof MoosicError, "rejected with a MoosicError");
    eq(error.code, "timeout", "code");
    eq(error.retryable, true, "retryable");
    eq(c.pending.size, 0, "the pending request is forgotten");
    const late = socket.sent[0];
    socket.answer(late.id, { ts: 1 }); // a late answer is ignored
    const second = c.request("ping", {}, { timeoutMs: 10000 });
    const frame = socket.sent[1];
    assert(frame.id !== late.id, "a new id");
    eq(frame.op, "ping", "op sent");
    socket.answer(frame.id, { ts: 2 });
    eq(await second, { ts: 2 }, "answer paired by id");
  },

  async requests_against_the_gateway() {
    const u = await user();
    const c = client({ token: u.access_token });
    eq(await c.connect(), "ws", "transport");
    const results = await Promise.all([1, 2, 3].map((n) => c.request("publish", { channel: `room:r${rand()}`, data: { n } })));
    eq(results.map((r) => r.offset), [1, 1, 1], "each answer paired with its own request");
    let error = null;
    try { await c.request("history", { channel: "dm:b:a" }); } catch (e) { error = e; }
    eq(error?.code, "invalid_channel", "errors reject with the gateway's code");
  },

  async resubscribe_with_since() {
    const [a, b] = await Promise.all([user(), user()]);
    const reader = client({ token: a.access_token });
    const writer = client({ token: b.access_token });
    await Promise.all([reader.connect(), writer.connect()]);
    const room = `room:sdk-${rand()}`;
    const offsets = received(reader, room);
    const first = await reader.subscribe(room);
    eq(first.offset, 0, "empty room");
    for (const n of [1, 2, 3]) await writer.request("publish", { channel: room, data: { n } });
    await waitFor(() => offsets.length === 3, "three live events");
    reader.disconnect();
    for (const n of [4, 5, 6]) await writer.request("publish", { channel: room, data: { n } });
    const again = nextEvent(reader, "subscribed", (d) => d.channel === room);
    await reader.connect();
    const { since, result } = await again;
    eq(since.offset, 3, "resubscribed from the last offset seen");
    eq(since.epoch, first.epoch, "with the epoch it was given");
    eq(result.recovered, true, "recovered");
    eq(result.missed, 3, "missed");
    await waitFor(() => offsets.length >= 6, "the missed events");
    await writer.request("publish", { channel: room, data: { n: 7 } });
    await waitFor(() => offsets.length >= 7, "live again");
    eq(offsets, [1, 2, 3, 4, 5, 6, 7], "every event once, in order");
    eq(reader.position(room).offset, 7, "position");
  },

  async resync_when_not_recovered() {
    const a = await user();
    const c = client({ token: a.access_token });
    await c.connect();
    const room = `room:sdk-${rand()}`;
    await c.subscribe(room);
    await c.request("publish", { channel: room, data: { n: 1 } });
    await waitFor(() => c.position(room).offset === 1, "own event");
    c.disconnect();
    c.subscriptions.get(room).epoch = "not-the-epoch";
    const resync = nextEvent(c, "resync", (d) => d.channel === room);
    await c.connect();
    const detail = await resync;
    eq(detail.reason, "epoch_changed", "reason");
    eq(c.position(room).epoch !== "not-the-epoch", true, "the new epoch is kept");
  },

  async close_4000_waits_retry_ms() {
    ScriptedSocket.reset();
    const timers = recordingTimers();
    const c = client({ token: "t", WebSocketImpl: ScriptedSocket, timers, watchNetwork: false });
    await c.connect();
    const closed = nextEvent(c, "close");
    ScriptedSocket.instances[0].serverClose(4000, JSON.stringify({ retry_ms: 1234 }));
    const detail = await closed;
    eq([detail.code, detail.willRetry, detail.delayMs], [4000, true, 1234], "close event");
    assert(timers.delays.includes(1234), "waited retry_ms");
    await waitFor(() => ScriptedSocket.instances.length === 2 && c.state === "open", "reconnected");
  },

  async close_4001_reconnects_with_backoff() {
    ScriptedSocket.reset();
    const timers = recordingTimers();
    const c = client({ token: "t", WebSocketImpl: ScriptedSocket, timers, watchNetwork: false, backoffBaseMs: 400 });
    await c.connect();
    const closed = nextEvent(c, "close");
    ScriptedSocket.instances[0].serverClose(4001, "slow consumer");
    const detail = await closed;
    assert(detail.willRetry && detail.delayMs >= 200 && detail.delayMs <= 400, `first backoff ${detail.delayMs}`);
    await waitFor(() => ScriptedSocket.instances.length === 2 && c.state === "open", "reconnected");
  },

  async close_4500_refreshes_then_reconnects() {
    ScriptedSocket.reset();
    let refreshed = 0;
    const c = client({
      token: "old-token", WebSocketImpl: ScriptedSocket, watchNetwork: false,
      refresh: async () => { refreshed += 1; return { access_token: "new-token", refresh_token: "r2" }; },
    });
    await c.connect();
    assert(ScriptedSocket.instances[0].url.endsWith("token=old-token"), "opened with the old token");
    const tokens = nextEvent(c, "tokens");
    ScriptedSocket.instances[0].serverClose(4500, "token expired");
    eq((await tokens).access_token, "new-token", "tokens event");
    await waitFor(() => ScriptedSocket.instances.length === 2 && c.state === "open", "reconnected");
    eq(refreshed, 1, "refreshed once");
    assert(ScriptedSocket.instances[1].url.endsWith("token=new-token"), "reconnected with the new token");
  },

  async close_4501_stops() {
    const a = await user();
    const c = client({ token: a.access_token, refreshToken: a.refresh_token });
    await c.connect();
    const ended = nextEvent(c, "session_ended");
    const response = await fetch(`${base}/v1/auth/logout`, { method: "POST", headers: { authorization: `Bearer ${a.access_token}` } });
    eq(response.status, 200, "logout");
    eq((await ended).code, 4501, "close code");
    eq(c.state, "stopped", "stopped");
    eq(c.wanted, false, "no reconnect wanted");
    eq(c.retryTimer, null, "no reconnect scheduled");
  },

  async other_45xx_codes_stop() {
    ScriptedSocket.reset();
    const c = client({ token: "t", WebSocketImpl: ScriptedSocket, watchNetwork: false });
    await c.connect();
    const closed = nextEvent(c, "close");
    ScriptedSocket.instances[0].serverClose(4599, "fix something");
    eq((await closed).willRetry, false, "no retry");
    eq(c.state, "stopped", "stopped");
  },

  async refresh_before_expiry_with_auth_op() {
    const a = await user();
    const expiresIn = a.expires_in * 1000;
    // Refresh soon after the socket opens instead of a minute before expiry (over a second after
    // the sign-up, so the new token's iat, hence the token, differs).
    const c = client({ token: a.access_token, refreshToken: a.refresh_token, refreshMarginMs: expiresIn - 1500 });
    const tokens = nextEvent(c, "tokens");
    const authenticated = nextEvent(c, "authenticated");
    await c.connect();
    const fresh = await tokens;
    assert(fresh.access_token && fresh.access_token !== a.access_token, "a new access token");
    assert(fresh.refresh_token !== a.refresh_token, "a rotated refresh token");
    const auth = await authenticated;
    eq(auth.user_id, a.user_id, "the socket runs on the new token");
    eq(c.token, fresh.access_token, "the client uses it");
    eq(c.state, "open", "same socket");
    c.close();
  },

  async rest_fallback_with_long_poll() {
    const [a, b] = await Promise.all([user(), user()]);
    const room = `room:sdk-${rand()}`;
    const fallback = client({
      token: a.access_token, wsUrl: `${base.replace(/^http/, "ws")}/no-such-socket`, backoffBaseMs: 50, longPollSeconds: 5,
    });
    eq(await fallback.connect(), "rest", "fell back to REST");
    eq(fallback.state, "fallback", "state");
    const offsets = received(fallback, room);
    const subscribed = nextEvent(fallback, "subscribed", (d) => d.channel === room);
    await fallback.subscribe(room);
    eq((await subscribed).result.offset, 0, "position read");
    const writer = client({ token: b.access_token });
    await writer.connect();
    await writer.request("publish", { channel: room, data: { n: 1 } });
    await writer.request("publish", { channel: room, data: { n: 2 } });
    await waitFor(() => offsets.length >= 2, "events through the long poll");
    const own = await fallback.request("publish", { channel: room, data: { n: 3 } });
    eq(own.offset, 3, "publish over REST");
    const page = await fallback.request("history", { channel: room, limit: 10 });
    eq(page.messages.map((m) => m.offset), [3, 2, 1], "history over REST");
    await waitFor(() => offsets.length >= 3, "own event through the long poll");
    eq(offsets, [1, 2, 3], "once each, in order");
    let error = null;
    try { await fallback.request("typing", { channel: room }); } catch (e) { error = e; }
    eq(error?.code, "disconnected", "WebSocket-only ops refuse while polling");
  },

  async typed_push_events() {
    const [a, b] = await Promise.all([user(), user()]);
    const ca = client({ token: a.access_token });
    const cb = client({ token: b.access_token });
    await Promise.all([ca.connect(), cb.connect()]);
    const dm = a.user_id < b.user_id ? `dm:${a.user_id}:${b.user_id}` : `dm:${b.user_id}:${a.user_id}`;
    await Promise.all([ca.subscribe(dm), cb.subscribe(dm)]);
    const typing = nextEvent(ca, "typing");
    const read = nextEvent(ca, "read", (d) => d.user === b.user_id);
    await cb.request("typing", { channel: dm });
    eq((await typing).user, b.user_id, "typing push");
    const sent = await ca.request("publish", { channel: dm, data: { text: "hi" } });
    await cb.request("read", { channel: dm, offset: sent.offset });
    eq((await read).offset, sent.offset, "read push");
  },
};

window.sdkTests = {
  names: Object.keys(tests),
  async run(name) {
    try {
      await tests[name]();
      return "ok";
    } catch (error) {
      return String(error?.stack ?? error);
    } finally {
      while (clients.length) clients.pop().close();
    }
  },
};
