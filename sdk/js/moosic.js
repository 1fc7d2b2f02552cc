// Moosic JavaScript SDK: a dependency-free ES module client of the Moosic Gateway protocol
// (docs/protocol.md). Served by the gateway at /sdk/moosic.js; see docs/web.md.
//
//   import { MoosicClient } from "/sdk/moosic.js";
//   const client = new MoosicClient({ token, refreshToken, onTokens: save });
//   client.on("event", (e) => show(e.detail));
//   await client.connect();
//   await client.subscribe("room:lobby");
//   await client.request("publish", { channel: "room:lobby", data: { text: "hi" } });
//
// What it does for the app: request/reply pairing with ids and timeouts; subscriptions kept
// across reconnects (resubscribed with `since` = the last offset seen; `recovered: false` is
// a "resync" event: reload history); reconnects with jittered exponential backoff that follow
// the close codes (4000 waits retry_ms, 4001 reconnects, 4500 refreshes the token first, 4501
// stops); the access token refreshed before it expires and handed to the socket with `auth`;
// REST and the long poll when no WebSocket can be opened; every push as a typed DOM event.

export const VERSION = "0.1.0";

/** Push ops the server sends; each is dispatched as an event of the same name. */
export const PUSH_OPS = Object.freeze([
  "event", "presence", "join", "leave", "typing", "read", "unsubscribed",
  "counts", "comment", "comment_deleted", "feed",
]);

/** Client states, in the "state" event's detail.state. */
export const STATES = Object.freeze({
  IDLE: "idle", CONNECTING: "connecting", OPEN: "open", RECONNECTING: "reconnecting",
  FALLBACK: "fallback", OFFLINE: "offline", STOPPED: "stopped",
});

/** An error answer of the gateway (or of the SDK: code "timeout", "disconnected"). */
export class MoosicError extends Error {
  constructor(code, message, { retryable = false, retryAfter = null, status = null } = {}) {
    super(message || code);
    this.name = "MoosicError";
    this.code = code;
    this.retryable = retryable;
    this.retryAfter = retryAfter;
    this.status = status;
  }
}

/**
 * The delay before reconnect attempt `attempt` (0-based): "equal jitter" exponential backoff.
 * cap = min(maxMs, baseMs * 2^attempt); the delay is uniform in [cap / 2, cap), so clients
 * that lost the same node spread out and never retry faster than half the cap.
 */
export function backoffDelay(attempt, { baseMs = 500, maxMs = 30000, random = Math.random } = {}) {
  const n = Math.max(0, Math.min(Math.floor(attempt), 30));
  const cap = Math.min(maxMs, baseMs * 2 ** n);
  return cap / 2 + random() * (cap / 2);
}

/** The `exp` claim of a JWT in milliseconds, or null if it cannot be read. */
export function tokenExpiry(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const claims = JSON.parse(atob(part + "=".repeat((4 - (part.length % 4)) % 4)));
    return typeof claims.exp === "number" ? claims.exp * 1000 : null;
  } catch {
    return null;
  }
}

const enc = encodeURIComponent;
const chan = (channel) => channel.split("/").map(enc).join("/").replace(/%3A/gi, ":");

/** Ops that have a REST form (docs/protocol.md, REST): op -> (params) => [method, path, body]. */
export const REST_OPS = {
  publish: (p) => ["POST", `/v1/channels/${chan(p.channel)}/messages`, { data: p.data, client_msg_id: p.client_msg_id }],
  history: (p) => ["GET", `/v1/channels/${chan(p.channel)}/messages${query({ limit: p.limit, before: p.before })}`],
  read: (p) => ["POST", `/v1/channels/${chan(p.channel)}/read`, { offset: p.offset }],
  conversations: (p) => ["GET", `/v1/conversations${query({ limit: p.limit, before: p.before })}`],
  create_group: (p) => ["POST", "/v1/groups", { name: p.name, members: p.members }],
  get_group: (p) => ["GET", `/v1/groups/${enc(p.group_id)}`],
  add_member: (p) => ["POST", `/v1/groups/${enc(p.group_id)}/members`, { user_id: p.user_id }],
  remove_member: (p) => ["DELETE", `/v1/groups/${enc(p.group_id)}/members/${enc(p.user_id)}`],
  create_video: (p) => ["POST", "/v1/videos", { title: p.title }],
  get_video: (p) => ["GET", `/v1/videos/${enc(p.video_id)}`],
  like: (p) => ["PUT", `/v1/videos/${enc(p.video_id)}/like`],
  unlike: (p) => ["DELETE", `/v1/videos/${enc(p.video_id)}/like`],
  like_status: (p) => ["GET", `/v1/videos/${enc(p.video_id)}/like`],
  comment: (p) => ["POST", `/v1/videos/${enc(p.video_id)}/comments`, { text: p.text, client_msg_id: p.client_msg_id }],
  comments: (p) => ["GET", `/v1/videos/${enc(p.video_id)}/comments${query({ limit: p.limit, before: p.before })}`],
  delete_comment: (p) => ["DELETE", `/v1/videos/${enc(p.video_id)}/comments/${enc(p.comment_id)}`],
  share: (p) => ["POST", `/v1/videos/${enc(p.video_id)}/shares`, { channel: p.channel, text: p.text, client_msg_id: p.client_msg_id }],
  reshare: (p) => ["POST", `/v1/videos/${enc(p.video_id)}/reshares`],
  follow: (p) => ["PUT", `/v1/users/${enc(p.user_id)}/follow`],
  unfollow: (p) => ["DELETE", `/v1/users/${enc(p.user_id)}/follow`],
  followers: (p) => ["GET", `/v1/users/${enc(p.user_id)}/followers${query({ limit: p.limit, after: p.after })}`],
  following: (p) => ["GET", `/v1/users/${enc(p.user_id)}/following${query({ limit: p.limit, after: p.after })}`],
  follow_counts: (p) => ["GET", `/v1/users/${enc(p.user_id)}/follow-counts`],
  block: (p) => ["PUT", `/v1/users/${enc(p.user_id)}/block`],
  unblock: (p) => ["DELETE", `/v1/users/${enc(p.user_id)}/block`],
  feed: (p) => ["GET", `/v1/feed${query({ limit: p.limit, before: p.before })}`],
};

function query(params) {
  const parts = Object.entries(params)
    .filter(([, v]) => v !== undefined && v !== null)
    .map(([k, v]) => `${enc(k)}=${enc(String(v))}`);
  return parts.length ? `?${parts.join("&")}` : "";
}

function parseRetryMs(reason) {
  try {
    const value = JSON.parse(reason).retry_ms;
    return Number.isFinite(value) && value >= 0 ? value : null;
  } catch {
    return null;
  }
}

/** Account calls that need no connection: register, login, refresh, logout. */
export async function authRequest(path, body, { baseUrl = globalThis.location?.origin ?? "", fetchImpl = globalThis.fetch.bind(globalThis), token = null } = {}) {
  const headers = { "content-type": "application/json" };
  if (token) headers.authorization = `Bearer ${token}`;
  const response = await fetchImpl(baseUrl + path, { method: "POST", headers, body: JSON.stringify(body ?? {}) });
  const payload = await response.json().catch(() => ({}));
  if (!response.ok) {
    throw new MoosicError(payload.code || "http_error", payload.message || `HTTP ${response.status}`, {
      retryable: Boolean(payload.retryable), retryAfter: payload.retry_after ?? null, status: response.status,
    });
  }
  return payload;
}

export const register = (username, password, opts) => authRequest("/v1/auth/register", { username, password }, opts);
export const login = (username, password, opts) => authRequest("/v1/auth/login", { username, password }, opts);

/**
 * One user's connection to the gateway. Events (listen with `on(type, fn)` or
 * addEventListener; the payload is `e.detail`):
 * - every push op in PUSH_OPS, with the push frame;
 * - "state" {state, previous}; "open" {transport}; "close" {code, reason, willRetry, delayMs};
 * - "subscribed" {channel, result, since}: a (re)subscription was answered;
 * - "resync" {channel, reason, result}: a resubscription could not replay what was missed:
 *   reload the channel's history;
 * - "tokens" {access_token, refresh_token, ...}: the token pair changed (store it);
 * - "authenticated" {user_id, expires_at}: the open socket moved onto the fresh token (`auth`);
 * - "session_ended" {code, reason}: 4501, or the refresh token was refused: sign in again.
 */
export class MoosicClient extends EventTarget {
  constructor(options = {}) {
    super();
    const o = options;
    this.baseUrl = (o.baseUrl ?? globalThis.location?.origin ?? "").replace(/\/$/, "");
    this.wsUrl = o.wsUrl ?? `${this.baseUrl.replace(/^http/, "ws")}/ws`;
    this.token = o.token ?? null;
    this.refreshToken = o.refreshToken ?? null;
    this.refreshFn = o.refresh ?? null; // async () => {access_token, refresh_token?}
    this.requestTimeoutMs = o.requestTimeoutMs ?? 15000;
    this.backoff = { baseMs: o.backoffBaseMs ?? 500, maxMs: o.backoffMaxMs ?? 30000, random: o.random ?? Math.random };
    this.refreshMarginMs = o.refreshMarginMs ?? 60000;
    this.fallbackAfter = o.fallbackAfter ?? 2; // failed opens (never opened) before REST
    this.longPollSeconds = o.longPollSeconds ?? 25;
    this.pingIntervalMs = o.pingIntervalMs ?? 25000;
    this.WebSocketImpl = o.WebSocketImpl ?? globalThis.WebSocket;
    this.fetchImpl = o.fetchImpl ?? globalThis.fetch?.bind(globalThis);
    this.timers = o.timers ?? { setTimeout: (f, ms) => globalThis.setTimeout(f, ms), clearTimeout: (t) => globalThis.clearTimeout(t) };
    this.watchNetwork = o.watchNetwork ?? typeof globalThis.addEventListener === "function";

    this.state = STATES.IDLE;
    this.transport = null; // "ws" | "rest"
    this.ws = null;
    this.nextId = 1;
    this.pending = new Map(); // id -> {resolve, reject, timer, op}
    this.subscriptions = new Map(); // channel -> {channel, offset, epoch, active}
    this.watched = new Set();
    this.attempt = 0;
    this.failedOpens = 0;
    this.retryTimer = null;
    this.refreshTimer = null;
    this.pingTimer = null;
    this.polls = new Map(); // channel -> AbortController
    this.wanted = false; // the app asked to be connected
    this.refreshing = null;
    this._onOffline = () => this._networkDown();
    this._onOnline = () => this._networkUp();
  }

  on(type, listener) {
    this.addEventListener(type, listener);
    return () => this.removeEventListener(type, listener);
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  _setState(state) {
    if (state === this.state) return;
    const previous = this.state;
    this.state = state;
    this._emit("state", { state, previous });
  }

  /** Open the connection; resolves once a WebSocket is open or the REST fallback took over. */
  connect() {
    this.wanted = true;
    if (this.watchNetwork) {
      globalThis.addEventListener("offline", this._onOffline);
      globalThis.addEventListener("online", this._onOnline);
    }
    const ready = new Promise((resolve, reject) => {
      const offOpen = this.on("open", () => { offOpen(); offStop(); resolve(this.transport); });
      const offStop = this.on("state", (e) => {
        if (e.detail.state === STATES.STOPPED) { offOpen(); offStop(); reject(new MoosicError("stopped", "the client stopped")); }
      });
    });
    if (globalThis.navigator?.onLine === false && this.watchNetwork) this._setState(STATES.OFFLINE);
    else this._open();
    return ready;
  }

  /** Close for good (subscriptions are forgotten with the client). */
  close() {
    this.wanted = false;
    this._teardown(1000, "client closed");
    this._setState(STATES.STOPPED);
  }

  /** Close the socket but keep every subscription and its offset: connect() resumes them. */
  disconnect() {
    this.wanted = false;
    this._teardown(1000, "client paused");
    this._setState(STATES.IDLE);
  }

  _teardown(code, reason) {
    this.timers.clearTimeout(this.retryTimer);
    this.timers.clearTimeout(this.refreshTimer);
    this.timers.clearTimeout(this.pingTimer);
    this.retryTimer = this.refreshTimer = this.pingTimer = null;
    if (this.watchNetwork) {
      globalThis.removeEventListener("offline", this._onOffline);
      globalThis.removeEventListener("online", this._onOnline);
    }
    this._stopPolls();
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try { ws.close(code, reason); } catch { /* already closed */ }
    }
    this._failPending("disconnected", "the connection closed before the answer");
    for (const sub of this.subscriptions.values()) sub.active = false;
    this.transport = null;
  }

  _failPending(code, message) {
    for (const [id, entry] of this.pending) {
      this.timers.clearTimeout(entry.timer);
      entry.reject(new MoosicError(code, message, { retryable: true }));
      this.pending.delete(id);
    }
  }

  async _open() {
    if (!this.wanted) return;
    if (this.state !== STATES.FALLBACK) {
      this._setState([STATES.IDLE, STATES.STOPPED, STATES.CONNECTING].includes(this.state) ? STATES.CONNECTING : STATES.RECONNECTING);
    }
    try {
      await this._ensureFreshToken();
    } catch (error) {
      if (error instanceof MoosicError && error.code === "invalid_refresh_token") return this._sessionEnded(4501, error.message);
      return this._scheduleReconnect(null);
    }
    if (!this.wanted) return;
    let ws;
    try {
      ws = new this.WebSocketImpl(`${this.wsUrl}?token=${enc(this.token)}`);
    } catch {
      return this._openFailed();
    }
    this.ws = ws;
    let opened = false;
    ws.onopen = () => {
      opened = true;
      this._socketOpened();
    };
    ws.onmessage = (message) => this._frame(message.data);
    ws.onerror = () => {};
    ws.onclose = (event) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.timers.clearTimeout(this.pingTimer);
      this._failPending("disconnected", "the connection closed before the answer");
      for (const sub of this.subscriptions.values()) sub.active = false;
      if (!opened) return this._openFailed();
      this._closed(event.code, event.reason || "");
    };
  }

  _socketOpened() {
    const wasFallback = this.transport === "rest";
    this._stopPolls();
    this.transport = "ws";
    this.attempt = 0;
    this.failedOpens = 0;
    this._setState(STATES.OPEN);
    this._scheduleRefresh();
    this._schedulePing();
    this._emit("open", { transport: "ws", fromFallback: wasFallback });
    this._resubscribeAll();
  }

  _openFailed() {
    this.failedOpens += 1;
    if (this.failedOpens >= this.fallbackAfter && this.transport !== "rest" && this.wanted) {
      this._startFallback();
    }
    this._scheduleReconnect(null);
  }

  _closed(code, reason) {
    if (code === 4501) return this._sessionEnded(code, reason);
    if (code === 4500) {
      // The token expired: refresh first, then reconnect at once.
      this._emit("close", { code, reason, willRetry: true, delayMs: 0 });
      this._refreshNow().then(() => this._reconnectAfter(0), () => this._scheduleReconnect(null));
      return;
    }
    if (code === 4000) {
      const delay = parseRetryMs(reason) ?? backoffDelay(this.attempt, this.backoff);
      this._emit("close", { code, reason, willRetry: true, delayMs: delay });
      return this._reconnectAfter(delay);
    }
    if (code === 4502) {
      // Flooding: the app sent too much; wait the longest backoff before coming back.
      const delay = backoffDelay(30, this.backoff);
      this._emit("close", { code, reason, willRetry: true, delayMs: delay });
      return this._reconnectAfter(delay);
    }
    if (code >= 4500 && code <= 4999) {
      this._emit("close", { code, reason, willRetry: false, delayMs: null });
      this.wanted = false;
      this._teardown(1000, "stopped");
      return this._setState(STATES.STOPPED);
    }
    // 1006 (network), 1001, 1011, 4001 (slow consumer: recovery with since catches up) …
    this._scheduleReconnect({ code, reason });
  }

  _scheduleReconnect(closeInfo) {
    if (!this.wanted) return;
    const delay = backoffDelay(this.attempt, this.backoff);
    this.attempt += 1;
    if (closeInfo) this._emit("close", { ...closeInfo, willRetry: true, delayMs: delay });
    this._reconnectAfter(delay);
  }

  _reconnectAfter(delayMs) {
    if (!this.wanted) return;
    if (this.state !== STATES.FALLBACK) this._setState(STATES.RECONNECTING);
    this.timers.clearTimeout(this.retryTimer);
    this.retryTimer = this.timers.setTimeout(() => {
      this.retryTimer = null;
      this._open();
    }, delayMs);
  }

  _sessionEnded(code, reason) {
    this.wanted = false;
    this._teardown(1000, "session ended");
    this._emit("session_ended", { code, reason });
    this._setState(STATES.STOPPED);
  }

  _networkDown() {
    if (!this.wanted) return;
    // The browser says it is offline: do not wait for a dead socket to time out.
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try { ws.close(1000, "offline"); } catch { /* gone */ }
    }
    this.timers.clearTimeout(this.retryTimer);
    this.timers.clearTimeout(this.pingTimer);
    this._stopPolls();
    this._failPending("disconnected", "the network went away");
    for (const sub of this.subscriptions.values()) sub.active = false;
    this.transport = null;
    this._setState(STATES.OFFLINE);
  }

  _networkUp() {
    if (!this.wanted || this.state !== STATES.OFFLINE) return;
    this.attempt = 0;
    this.failedOpens = 0;
    this._reconnectAfter(backoffDelay(0, this.backoff));
  }

  _schedulePing() {
    if (!this.pingIntervalMs) return;
    this.timers.clearTimeout(this.pingTimer);
    this.pingTimer = this.timers.setTimeout(async () => {
      const ws = this.ws;
      try {
        await this.request("ping", {}, { timeoutMs: Math.min(this.requestTimeoutMs, this.pingIntervalMs) });
        this._schedulePing();
      } catch {
        if (ws && this.ws === ws) ws.close(4000, "no answer to ping"); // onclose reconnects
      }
    }, this.pingIntervalMs);
  }

  // ---- tokens -------------------------------------------------------------------------------

  async _ensureFreshToken() {
    const expiry = this.token ? tokenExpiry(this.token) : null;
    if (expiry !== null && expiry - Date.now() < 5000 && (this.refreshToken || this.refreshFn)) {
      await this._refreshNow();
    }
  }

  _scheduleRefresh() {
    this.timers.clearTimeout(this.refreshTimer);
    const expiry = this.token ? tokenExpiry(this.token) : null;
    if (expiry === null || !(this.refreshToken || this.refreshFn)) return;
    const delay = Math.max(0, expiry - Date.now() - this.refreshMarginMs);
    this.refreshTimer = this.timers.setTimeout(async () => {
      this.refreshTimer = null;
      try {
        await this._refreshNow();
        if (this.transport === "ws") this._emit("authenticated", await this.request("auth", { token: this.token }));
      } catch (error) {
        if (error instanceof MoosicError && ["invalid_refresh_token", "session_revoked"].includes(error.code)) {
          return this._sessionEnded(4501, error.message);
        }
      }
      if (this.wanted) this._scheduleRefresh();
    }, delay);
  }

  /** Get a fresh access token now (one refresh at a time). */
  _refreshNow() {
    if (this.refreshing) return this.refreshing;
    this.refreshing = (async () => {
      let tokens;
      if (this.refreshFn) tokens = await this.refreshFn();
      else if (this.refreshToken) {
        tokens = await authRequest("/v1/auth/refresh", { refresh_token: this.refreshToken }, { baseUrl: this.baseUrl, fetchImpl: this.fetchImpl });
      } else throw new MoosicError("unauthorized", "no refresh token");
      this.token = tokens.access_token;
      if (tokens.refresh_token) this.refreshToken = tokens.refresh_token;
      this._emit("tokens", tokens);
      return tokens;
    })().finally(() => { this.refreshing = null; });
    return this.refreshing;
  }

  // ---- frames -------------------------------------------------------------------------------

  _frame(text) {
    let frame;
    try { frame = JSON.parse(text); } catch { return; }
    if (frame.op === "reply" || (frame.op === "error" && frame.id !== undefined && frame.id !== null)) {
      const entry = this.pending.get(frame.id);
      if (!entry) return; // timed out already
      this.pending.delete(frame.id);
      this.timers.clearTimeout(entry.timer);
      if (frame.op === "reply") entry.resolve(frame.result);
      else entry.reject(new MoosicError(frame.code, frame.message, { retryable: frame.retryable, retryAfter: frame.retry_after ?? null }));
      return;
    }
    this._push(frame);
  }

  _push(frame) {
    if (frame.op === "event" && frame.offset > 0) {
      const sub = this.subscriptions.get(frame.channel);
      if (sub) {
        if (frame.offset <= sub.offset) return; // seen already (a replay racing a poll)
        sub.offset = frame.offset;
      }
    }
    if (frame.op === "unsubscribed") this.subscriptions.delete(frame.channel);
    if (PUSH_OPS.includes(frame.op)) this._emit(frame.op, frame);
  }

  // ---- requests -----------------------------------------------------------------------------

  /** Send an op and wait for its answer (rejects with MoosicError; "timeout" after timeoutMs). */
  request(op, params = {}, { timeoutMs = this.requestTimeoutMs } = {}) {
    if (this.transport === "ws" && this.ws && this.ws.readyState === 1) return this._wsRequest(op, params, timeoutMs);
    if (this.transport === "rest" && REST_OPS[op]) return this._restRequest(op, params, timeoutMs);
    if (this.transport === "rest" && op === "ping") return Promise.resolve({ ts: Date.now() });
    return Promise.reject(new MoosicError("disconnected", this.transport === "rest" ? `${op} needs a WebSocket` : "not connected", { retryable: true }));
  }

  _wsRequest(op, params, timeoutMs) {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = this.timers.setTimeout(() => {
        this.pending.delete(id);
        reject(new MoosicError("timeout", `no answer to ${op} within ${timeoutMs} ms`, { retryable: true }));
      }, timeoutMs);
      this.pending.set(id, { resolve, reject, timer, op });
      this.ws.send(JSON.stringify({ ...params, op, id }));
    });
  }

  /** A REST call with the access token (also usable while a WebSocket is open). */
  async rest(method, path, body, { timeoutMs = this.requestTimeoutMs, signal = null } = {}) {
    const controller = new AbortController();
    const timer = this.timers.setTimeout(() => controller.abort(), timeoutMs);
    if (signal) signal.addEventListener("abort", () => controller.abort());
    const headers = { authorization: `Bearer ${this.token}` };
    if (body !== undefined) headers["content-type"] = "application/json";
    try {
      let response;
      try {
        response = await this.fetchImpl(this.baseUrl + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal: controller.signal });
      } catch (error) {
        if (signal?.aborted) throw new MoosicError("aborted", "aborted");
        throw new MoosicError(controller.signal.aborted ? "timeout" : "disconnected", String(error), { retryable: true });
      }
      const payload = response.status === 204 ? {} : await response.json().catch(() => ({}));
      if (response.status === 401 && payload.code === "token_expired" && (this.refreshToken || this.refreshFn)) {
        await this._refreshNow();
        return this.rest(method, path, body, { timeoutMs, signal });
      }
      if (!response.ok) {
        throw new MoosicError(payload.code || "http_error", payload.message, { retryable: Boolean(payload.retryable), retryAfter: payload.retry_after ?? null, status: response.status });
      }
      return payload;
    } finally {
      this.timers.clearTimeout(timer);
    }
  }

  _restRequest(op, params, timeoutMs) {
    const [method, path, body] = REST_OPS[op](params);
    const clean = body === undefined ? undefined : Object.fromEntries(Object.entries(body).filter(([, v]) => v !== undefined));
    return this.rest(method, path, clean, { timeoutMs });
  }

  // ---- subscriptions ------------------------------------------------------------------------

  /**
   * Subscribe to a channel and keep it subscribed across reconnects. Pushes arrive as events;
   * `since` ({offset, epoch}) asks for what came after a known position.
   */
  async subscribe(channel, { since = null } = {}) {
    let sub = this.subscriptions.get(channel);
    if (!sub) {
      sub = { channel, offset: since?.offset ?? 0, epoch: since?.epoch ?? null, active: false, known: Boolean(since) };
      this.subscriptions.set(channel, sub);
    }
    if (this.transport === "ws") return this._subscribeWs(sub);
    if (this.transport === "rest") return this._startPoll(sub);
    return { channel, pending: true };
  }

  async unsubscribe(channel) {
    this.subscriptions.delete(channel);
    this.polls.get(channel)?.abort();
    this.polls.delete(channel);
    if (this.transport === "ws") return this.request("unsubscribe", { channel });
    return { channel, unsubscribed: true };
  }

  /** The last offset and epoch seen on a subscribed channel. */
  position(channel) {
    const sub = this.subscriptions.get(channel);
    return sub ? { offset: sub.offset, epoch: sub.epoch } : null;
  }

  async _subscribeWs(sub) {
    const params = { channel: sub.channel };
    const since = sub.known ? { offset: sub.offset, epoch: sub.epoch ?? "" } : null;
    if (since) params.since = since;
    let result;
    try {
      result = await this.request("subscribe", params);
    } catch (error) {
      if (error.code === "forbidden" || error.code === "invalid_channel") this.subscriptions.delete(sub.channel);
      throw error;
    }
    if (this.subscriptions.get(sub.channel) !== sub) return result;
    sub.active = true;
    if (!sub.known || result.recovered === false) sub.offset = result.offset;
    sub.epoch = result.epoch;
    sub.known = true;
    this._emit("subscribed", { channel: sub.channel, result, since });
    if (result.recovered === false) this._emit("resync", { channel: sub.channel, reason: result.reason, result });
    return result;
  }

  _resubscribeAll() {
    for (const sub of this.subscriptions.values()) {
      this._subscribeWs(sub).catch(() => {});
    }
    if (this.watched.size) this.request("watch_presence", { users: [...this.watched] }).catch(() => {});
  }

  /** watch_presence, remembered and sent again after a reconnect. */
  async watchPresence(users) {
    for (const user of users) this.watched.add(user);
    if (this.transport !== "ws") return { users: {} };
    return this.request("watch_presence", { users });
  }

  // ---- REST fallback ------------------------------------------------------------------------

  _startFallback() {
    this.transport = "rest";
    this._setState(STATES.FALLBACK);
    this._emit("open", { transport: "rest" });
    this._scheduleRefresh();
    for (const sub of this.subscriptions.values()) this._startPoll(sub);
  }

  _stopPolls() {
    for (const controller of this.polls.values()) controller.abort();
    this.polls.clear();
  }

  /** One long-poll loop per channel while the REST fallback is in use. */
  async _startPoll(sub) {
    if (this.polls.has(sub.channel)) return { channel: sub.channel, offset: sub.offset };
    const controller = new AbortController();
    this.polls.set(sub.channel, controller);
    let failures = 0;
    const loop = async () => {
      while (!controller.signal.aborted && this.subscriptions.get(sub.channel) === sub) {
        // The first call of a new subscription only reads the position (timeout 0).
        const params = sub.known ? `since=${sub.offset}&timeout=${this.longPollSeconds}` : "timeout=0";
        try {
          const page = await this.rest("GET", `/v1/channels/${chan(sub.channel)}/events?${params}`, undefined, {
            timeoutMs: (this.longPollSeconds + 10) * 1000, signal: controller.signal,
          });
          failures = 0;
          if (!sub.known) {
            sub.known = true;
            sub.offset = page.next_since;
            sub.epoch = page.epoch;
            sub.active = true;
            this._emit("subscribed", { channel: sub.channel, result: { channel: sub.channel, offset: sub.offset, epoch: sub.epoch }, since: null });
          } else if (sub.epoch && page.epoch && page.epoch !== sub.epoch) {
            sub.epoch = page.epoch;
            this._emit("resync", { channel: sub.channel, reason: "epoch_changed", result: page });
          }
          for (const event of page.events) this._push(event);
          sub.offset = Math.max(sub.offset, page.next_since);
        } catch (error) {
          if (controller.signal.aborted) return;
          if (error.code === "forbidden" || error.code === "invalid_channel") { this.subscriptions.delete(sub.channel); return; }
          if (["unauthorized", "session_revoked", "invalid_refresh_token"].includes(error.code)) return this._sessionEnded(4501, error.message);
          await new Promise((r) => this.timers.setTimeout(r, backoffDelay(failures++, this.backoff)));
        }
      }
    };
    loop();
    return { channel: sub.channel, offset: sub.offset, pending: !sub.known };
  }
}
