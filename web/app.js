// The Moosic web app: plain ES modules on the SDK, no build step. Hash routes:
// #/login  #/chats  #/c/{channel}  #/feed  #/v/{video_id}  #/upload  #/me
import { MoosicClient, MoosicError, login, register } from "/sdk/moosic.js";

const SESSION_KEY = "moosic.session";
const NAMES_KEY = "moosic.names";
const ROOMS_KEY = "moosic.rooms";
const view = document.getElementById("view");
const conn = document.getElementById("conn");
const tabs = document.getElementById("tabs");

let session = load(SESSION_KEY, null);
let client = null;
const names = new Map(Object.entries(load(NAMES_KEY, {})));
const conversations = new Map(); // channel -> {channel, peer, name, lastOffset, lastRead, unread}
const presence = new Map(); // user id -> {online, last_seen}
let leaveView = () => {};

// ---- small helpers ------------------------------------------------------------------------

function load(key, fallback) {
  try { return JSON.parse(localStorage.getItem(key)) ?? fallback; } catch { return fallback; }
}
function save(key, value) { localStorage.setItem(key, JSON.stringify(value)); }

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "testid") el.dataset.testid = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function nameOf(userId) {
  if (!userId) return "?";
  if (session && userId === session.user_id) return session.username;
  return names.get(userId) ?? `user ${userId.slice(-6)}`;
}
function learnName(userId, name) {
  if (!userId || !name || names.get(userId) === name) return;
  names.set(userId, name);
  save(NAMES_KEY, Object.fromEntries(names));
}

function dmChannel(a, b) { return a < b ? `dm:${a}:${b}` : `dm:${b}:${a}`; }
function peerOf(channel) {
  const [, a, b] = channel.split(":");
  return a === session.user_id ? b : a;
}
function titleOf(channel) {
  if (channel.startsWith("dm:")) return nameOf(peerOf(channel));
  if (channel.startsWith("room:")) return `#${channel.slice(5)}`;
  return conversations.get(channel)?.name ?? "Group";
}
function time(ts) { return new Date(ts).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }); }
function notice(text, kind = "info") {
  const el = h("p", { class: `notice ${kind}`, role: kind === "error" ? "alert" : "status", testid: "notice" }, text);
  view.prepend(el);
  setTimeout(() => el.remove(), 6000);
}
function problem(error) { notice(error instanceof MoosicError ? `${error.code}: ${error.message}` : String(error), "error"); }

// ---- session and connection ---------------------------------------------------------------

async function signIn(kind, username, password) {
  const tokens = await (kind === "register" ? register : login)(username, password);
  session = { user_id: tokens.user_id, username: tokens.username, access_token: tokens.access_token, refresh_token: tokens.refresh_token };
  save(SESSION_KEY, session);
  await start();
  if (location.hash === "#/chats") route();
  else location.hash = "#/chats";
}

function signOut(message) {
  if (client) client.close();
  const refresh = session?.refresh_token;
  client = null;
  session = null;
  localStorage.removeItem(SESSION_KEY);
  conversations.clear();
  if (refresh && !message) fetch("/v1/auth/logout", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ refresh_token: refresh }) }).catch(() => {});
  location.hash = "#/login";
  if (message) notice(message);
}

async function start() {
  client = new MoosicClient({ token: session.access_token, refreshToken: session.refresh_token });
  window.moosic = client; // for the console (and the browser tests)
  client.on("state", (e) => {
    conn.dataset.state = e.detail.state;
    conn.textContent = { open: "online", fallback: "online (polling)", offline: "offline", reconnecting: "reconnecting…", connecting: "connecting…", stopped: "signed out", idle: "offline" }[e.detail.state];
  });
  client.on("tokens", (e) => {
    session = { ...session, access_token: e.detail.access_token, refresh_token: e.detail.refresh_token ?? session.refresh_token };
    save(SESSION_KEY, session);
  });
  client.on("session_ended", () => signOut("Your session ended: sign in again."));
  client.on("event", (e) => onEvent(e.detail));
  client.on("read", (e) => onRead(e.detail));
  client.on("presence", (e) => {
    presence.set(e.detail.user, { online: e.detail.online, last_seen: e.detail.last_seen });
    document.dispatchEvent(new CustomEvent("moosic:presence", { detail: e.detail }));
    renderUnread();
  });
  tabs.hidden = false;
  try {
    await client.connect();
  } catch (error) {
    return problem(error);
  }
  client.subscribe(`user:${session.user_id}`).catch(problem);
  refreshConversations().catch(problem);
}

async function refreshConversations() {
  if (!client) return;
  const page = await client.request("conversations", { limit: 100 });
  const peers = [];
  for (const c of page.conversations) {
    const known = conversations.get(c.channel);
    conversations.set(c.channel, {
      channel: c.channel, peer: c.peer ?? null, name: c.name ?? null,
      lastOffset: Math.max(c.last_offset, known?.lastOffset ?? 0), lastRead: Math.max(c.last_read, known?.lastRead ?? 0),
      lastTs: c.last_ts,
    });
    if (c.peer) peers.push(c.peer);
    client.subscribe(c.channel).catch(() => {});
  }
  if (peers.length) {
    const status = await client.watchPresence(peers).catch(() => ({ users: {} }));
    for (const [user, s] of Object.entries(status.users ?? {})) presence.set(user, s);
  }
  renderUnread();
  document.dispatchEvent(new CustomEvent("moosic:conversations"));
}

function unreadOf(c) { return Math.max(0, c.lastOffset - c.lastRead); }

function renderUnread() {
  const total = [...conversations.values()].reduce((n, c) => n + unreadOf(c), 0);
  const badge = document.getElementById("unread-total");
  badge.hidden = total === 0;
  badge.textContent = String(total);
}

function onEvent(event) {
  if (event.data?.name) learnName(event.from, event.data.name);
  const c = conversations.get(event.channel);
  if (c) {
    c.lastOffset = Math.max(c.lastOffset, event.offset);
    c.lastTs = event.ts;
    if (event.from === session.user_id) c.lastRead = Math.max(c.lastRead, event.offset);
    renderUnread();
  } else if (event.channel.startsWith("dm:") || event.channel.startsWith("group:")) {
    refreshConversations().catch(() => {});
  }
  document.dispatchEvent(new CustomEvent("moosic:event", { detail: event }));
}

function onRead(receipt) {
  const c = conversations.get(receipt.channel);
  if (c && receipt.user === session.user_id) {
    c.lastRead = Math.max(c.lastRead, receipt.offset);
    renderUnread();
  }
  document.dispatchEvent(new CustomEvent("moosic:read", { detail: receipt }));
}

/** Listen to a document event for as long as the current view is shown. */
function during(type, listener) {
  document.addEventListener(type, listener);
  const previous = leaveView;
  leaveView = () => { document.removeEventListener(type, listener); previous(); };
}

// ---- views --------------------------------------------------------------------------------

function loginView() {
  tabs.hidden = true;
  const username = h("input", { name: "username", autocomplete: "username", required: true, minlength: 3, maxlength: 32, pattern: "[a-z0-9_.]+", placeholder: "username", testid: "username" });
  const password = h("input", { name: "password", type: "password", autocomplete: "current-password", required: true, minlength: 8, placeholder: "password (8+ characters)", testid: "password" });
  const go = (kind) => async (e) => {
    e.preventDefault();
    if (!username.reportValidity() || !password.reportValidity()) return;
    try { await signIn(kind, username.value.trim(), password.value); } catch (error) { problem(error); }
  };
  view.replaceChildren(h("section", { class: "card login" },
    h("h1", {}, "Welcome to Moosic"),
    h("p", { class: "muted" }, "Chat, watch and share short videos."),
    h("form", { onsubmit: go("login") }, username, password,
      h("div", { class: "row" },
        h("button", { type: "submit", testid: "sign-in" }, "Sign in"),
        h("button", { type: "button", class: "secondary", onclick: go("register"), testid: "sign-up" }, "Sign up")))));
}

function chatsView() {
  const list = h("ul", { class: "list", testid: "conversations" });
  const rooms = load(ROOMS_KEY, ["room:lobby"]);
  const render = () => {
    const items = [...conversations.values()].sort((a, b) => (b.lastTs ?? 0) - (a.lastTs ?? 0));
    list.replaceChildren(
      ...rooms.map((room) => h("li", {}, h("a", { href: `#/c/${room}`, testid: "conversation", "data-channel": room }, h("span", { class: "title" }, titleOf(room))))),
      ...items.map((c) => {
        const online = c.peer ? presence.get(c.peer)?.online : null;
        return h("li", {}, h("a", { href: `#/c/${c.channel}`, testid: "conversation", "data-channel": c.channel },
          c.peer ? h("span", { class: `dot ${online ? "on" : ""}`, title: online ? "online" : "offline", testid: "presence" }) : null,
          h("span", { class: "title" }, titleOf(c.channel)),
          unreadOf(c) ? h("span", { class: "badge", testid: "unread" }, unreadOf(c)) : null));
      }));
  };
  const who = h("input", { placeholder: "username", required: true, testid: "dm-username" });
  const room = h("input", { placeholder: "room name", required: true, pattern: "[A-Za-z0-9_.\\-]{1,64}", testid: "room-name" });
  view.replaceChildren(h("section", {},
    h("h2", {}, "Chats"),
    h("form", { class: "row", onsubmit: async (e) => {
      e.preventDefault();
      try {
        const user = await client.rest("GET", `/v1/users/by-username/${encodeURIComponent(who.value.trim().toLowerCase())}`);
        learnName(user.user_id, user.username);
        location.hash = `#/c/${dmChannel(session.user_id, user.user_id)}`;
      } catch (error) { problem(error); }
    } }, who, h("button", { testid: "open-dm" }, "Message")),
    h("form", { class: "row", onsubmit: (e) => {
      e.preventDefault();
      const channel = `room:${room.value.trim()}`;
      if (!rooms.includes(channel)) { rooms.push(channel); save(ROOMS_KEY, rooms); }
      location.hash = `#/c/${channel}`;
    } }, room, h("button", { class: "secondary" }, "Join room")),
    list));
  render();
  during("moosic:conversations", render);
  during("moosic:event", render);
  during("moosic:read", render);
  during("moosic:presence", render);
  refreshConversations().catch(() => {});
}

function chatView(channel) {
  const shown = new Map(); // message_id -> element
  const list = h("ol", { class: "messages", testid: "messages" });
  const typing = h("p", { class: "typing muted", testid: "typing" });
  const seen = h("p", { class: "seen muted", testid: "seen" });
  const status = h("span", { class: "muted", testid: "peer-status" });
  const peer = channel.startsWith("dm:") ? peerOf(channel) : null;
  const othersRead = new Map(); // user -> offset
  let lastOwnOffset = 0;
  let typingTimer = null;
  let lastTypingSent = 0;
  let readSent = 0;

  const showPresence = () => {
    if (!peer) return;
    const p = presence.get(peer);
    status.textContent = p?.online ? "online" : p?.last_seen ? `last seen ${time(p.last_seen)}` : "offline";
    status.dataset.online = p?.online ? "1" : "0";
  };
  const showSeen = () => {
    const read = Math.max(0, ...othersRead.values());
    seen.textContent = lastOwnOffset && read >= lastOwnOffset ? "Seen" : "";
  };
  const markRead = () => {
    const top = Math.max(0, ...[...shown.values()].map((el) => Number(el.dataset.offset)));
    if (top > readSent && document.visibilityState !== "hidden" && (channel.startsWith("dm:") || channel.startsWith("group:"))) {
      readSent = top;
      client.request("read", { channel, offset: top }).catch(() => { readSent = 0; });
    }
  };
  const add = (m) => {
    if (shown.has(m.message_id)) return;
    if (m.data?.name) learnName(m.from, m.data.name);
    const mine = m.from === session.user_id;
    if (mine) lastOwnOffset = Math.max(lastOwnOffset, m.offset);
    const el = h("li", { class: mine ? "mine" : "theirs", testid: "message", "data-offset": m.offset },
      mine ? null : h("span", { class: "from" }, nameOf(m.from)),
      m.data?.type === "video_share"
        ? h("a", { href: `#/v/${m.data.video.video_id}`, class: "share" }, `▶ ${m.data.video.title}`, m.data.text ? ` — ${m.data.text}` : "")
        : h("span", { class: "text", testid: "message-text" }, m.data?.text ?? JSON.stringify(m.data)),
      h("time", {}, time(m.ts)));
    shown.set(m.message_id, el);
    const after = [...list.children].find((li) => Number(li.dataset.offset) > m.offset);
    list.insertBefore(el, after ?? null);
    el.scrollIntoView({ block: "end" });
    showSeen();
  };
  const reload = async () => {
    const page = await client.request("history", { channel, limit: 50 });
    for (const m of page.messages.reverse()) add(m);
    markRead();
  };

  const input = h("input", { placeholder: "Message", autocomplete: "off", maxlength: 2000, testid: "composer" });
  input.addEventListener("input", () => {
    if (Date.now() - lastTypingSent > 2000 && !channel.startsWith("room:lobby-readonly")) {
      lastTypingSent = Date.now();
      client.request("typing", { channel }).catch(() => {});
    }
  });
  const form = h("form", { class: "composer", onsubmit: async (e) => {
    e.preventDefault();
    const text = input.value.trim();
    if (!text) return;
    input.value = "";
    const clientMsgId = `w-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
    for (let attempt = 0; ; attempt++) {
      try {
        await client.request("publish", { channel, data: { text, name: session.username }, client_msg_id: clientMsgId });
        return;
      } catch (error) {
        // Safe to retry: the same client_msg_id is stored once.
        if (!error.retryable || attempt >= 5) return problem(error);
        await new Promise((r) => setTimeout(r, 1000 * (attempt + 1)));
      }
    }
  } }, input, h("button", { testid: "send" }, "Send"));

  view.replaceChildren(h("section", { class: "chat" },
    h("header", { class: "chat-head" }, h("a", { href: "#/chats", class: "back" }, "‹"), h("h2", { testid: "chat-title" }, titleOf(channel)), status),
    list, typing, seen, form));
  showPresence();
  if (peer) client.watchPresence([peer]).then((r) => {
    for (const [user, s] of Object.entries(r.users ?? {})) presence.set(user, s);
    showPresence();
  }).catch(() => {});

  const onEvt = (e) => { if (e.detail.channel === channel) { add(e.detail); markRead(); } };
  const onTyping = (e) => {
    const t = e.detail;
    if (t.channel !== channel || t.user === session.user_id) return;
    typing.textContent = `${nameOf(t.user)} is typing…`;
    clearTimeout(typingTimer);
    typingTimer = setTimeout(() => { typing.textContent = ""; }, 5000);
  };
  const onResync = (e) => { if (e.detail.channel === channel) reload().catch(problem); };
  const onReadReceipt = (e) => {
    if (e.detail.channel !== channel || e.detail.user === session.user_id) return;
    othersRead.set(e.detail.user, e.detail.offset);
    showSeen();
  };
  const offs = [client.on("typing", onTyping), client.on("resync", onResync)];
  during("moosic:event", onEvt);
  during("moosic:read", onReadReceipt);
  during("moosic:presence", showPresence);
  during("visibilitychange", markRead);
  const previous = leaveView;
  leaveView = () => { offs.forEach((off) => off()); clearTimeout(typingTimer); previous(); };
  client.subscribe(channel).then(reload).catch(problem);
}

function videoCard(video, by) {
  return h("li", { class: "video-card", testid: "feed-item", "data-video": video.video_id },
    h("a", { href: `#/v/${video.video_id}` },
      h("span", { class: "title" }, video.title),
      h("span", { class: "muted" }, by && by !== video.owner ? `${nameOf(by)} re-shared · ${nameOf(video.owner)}` : nameOf(video.owner)),
      video.likes !== undefined ? h("span", { class: "muted" }, `♥ ${video.likes} · 💬 ${video.comments}`) : null));
}

function feedView() {
  const list = h("ul", { class: "list feed", testid: "feed" });
  const fresh = h("p", { class: "muted", testid: "feed-fresh" });
  const who = h("input", { placeholder: "username to follow", required: true, testid: "follow-username" });
  view.replaceChildren(h("section", {},
    h("h2", {}, "Home"),
    h("form", { class: "row", onsubmit: async (e) => {
      e.preventDefault();
      try {
        const user = await client.rest("GET", `/v1/users/by-username/${encodeURIComponent(who.value.trim().toLowerCase())}`);
        learnName(user.user_id, user.username);
        await client.request("follow", { user_id: user.user_id });
        notice(`Following ${user.username}`);
        who.value = "";
      } catch (error) { problem(error); }
    } }, who, h("button", { testid: "follow" }, "Follow")),
    fresh, list));
  const seen = new Set();
  client.request("feed", { limit: 20 }).then((page) => {
    if (!page.items.length) list.append(h("li", { class: "muted empty" }, "Nothing yet: follow someone, or upload a video."));
    for (const item of page.items) {
      if (seen.has(item.video.video_id)) continue;
      seen.add(item.video.video_id);
      list.append(videoCard(item.video, item.by));
    }
  }).catch(problem);
  const off = client.on("feed", (e) => {
    const push = e.detail;
    list.querySelector(".empty")?.remove();
    if (seen.has(push.video.video_id)) return;
    seen.add(push.video.video_id);
    list.prepend(videoCard(push.video, push.by));
    fresh.textContent = `New: ${push.video.title}`;
  });
  const previous = leaveView;
  leaveView = () => { off(); previous(); };
}

// Clickstream: what this page watched (docs/clickstream.md). Best effort: never in the way.
function track(events) {
  const now = Date.now();
  const id = () => `${now.toString(36)}-${Math.random().toString(36).slice(2, 10)}`;
  client?.request("track", { events: events.map((e) => ({ event_id: id(), client_ts: now, ...e })) }).catch(() => {});
}

function viewEnd(videoId, element) {
  let watched = 0;
  if (element) for (let i = 0; i < element.played.length; i++) watched += element.played.end(i) - element.played.start(i);
  const completed = Boolean(element && (element.ended || (element.duration && watched >= element.duration - 0.5)));
  return { type: "view_end", video_id: videoId, seconds_watched: Math.min(86400, Math.round(watched * 100) / 100), completed };
}

function videoView(videoId) {
  const channel = `video:${videoId}`;
  const counts = { likes: h("b", { testid: "likes" }, "0"), comments: h("b", { testid: "comments-count" }, "0"), shares: h("b", { testid: "shares" }, "0"), views: h("b", { testid: "views" }, "0"), viewers: h("b", { testid: "viewers" }, "0") };
  let viewing = null; // this page's view of a ready video: when it began, its <video> if any
  let version = -1;
  let liked = false;
  const likeButton = h("button", { testid: "like", "aria-pressed": "false" }, "♥ Like");
  const player = h("div", { class: "player", testid: "player" }, h("p", { class: "muted" }, "Loading…"));
  const title = h("h2", { testid: "video-title" }, "");
  const comments = h("ul", { class: "list comments", testid: "comments" });
  const shownComments = new Set();
  const setCounts = (c) => {
    if (c.version !== undefined && c.version < version) return;
    version = c.version ?? version;
    for (const k of ["likes", "comments", "shares", "views"]) if (c[k] !== undefined) counts[k].textContent = String(c[k]);
    if (c.viewers !== undefined) counts.viewers.textContent = String(c.viewers);
  };
  const addComment = (c, top) => {
    if (shownComments.has(c.comment_id)) return;
    shownComments.add(c.comment_id);
    const el = h("li", { testid: "comment", "data-id": c.comment_id }, h("b", {}, nameOf(c.author)), " ", c.text);
    if (top) comments.prepend(el); else comments.append(el);
  };
  const setLiked = (value) => {
    liked = value;
    likeButton.setAttribute("aria-pressed", String(value));
    likeButton.textContent = value ? "♥ Liked" : "♥ Like";
  };
  likeButton.addEventListener("click", async () => {
    try { const r = await client.request(liked ? "unlike" : "like", { video_id: videoId }); setLiked(r.liked); } catch (error) { problem(error); }
  });
  const shareTo = h("select", { testid: "share-to" });
  const shareButton = h("button", { class: "secondary", testid: "share" }, "Share");
  shareButton.addEventListener("click", async () => {
    if (!shareTo.value) return notice("Open a chat first: shares go to a DM or a group.");
    try {
      await client.request("share", { video_id: videoId, channel: shareTo.value, client_msg_id: `s-${Date.now().toString(36)}` });
      notice(`Shared with ${titleOf(shareTo.value)}`);
    } catch (error) { problem(error); }
  });
  for (const c of conversations.values()) shareTo.append(h("option", { value: c.channel }, titleOf(c.channel)));
  const commentInput = h("input", { placeholder: "Add a comment", maxlength: 2000, required: true, testid: "comment-input" });

  view.replaceChildren(h("section", { class: "video" },
    player, title,
    h("p", { class: "counts", testid: "counts" }, counts.likes, " likes · ", counts.comments, " comments · ", counts.shares, " shares · ", counts.views, " views · ", counts.viewers, " watching"),
    h("div", { class: "row" }, likeButton, shareTo, shareButton),
    h("form", { class: "row", onsubmit: async (e) => {
      e.preventDefault();
      const text = commentInput.value.trim();
      if (!text) return;
      try {
        const c = await client.request("comment", { video_id: videoId, text, client_msg_id: `c-${Date.now().toString(36)}` });
        addComment(c, true);
        commentInput.value = "";
      } catch (error) { problem(error); }
    } }, commentInput, h("button", { testid: "comment-send" }, "Post")),
    comments));

  let retry = null;
  const load = async () => {
    clearTimeout(retry);
    const video = await client.request("get_video", { video_id: videoId });
    title.textContent = video.title;
    setCounts(video);
    if (video.status !== "ready") {
      player.replaceChildren(h("p", { class: "muted", testid: "video-status" }, `This video is ${video.status}.`));
      // Nodes cache video records for a moment: look again until it is ready.
      if (["uploading", "processing", "moderating"].includes(video.status)) retry = setTimeout(() => load().catch(() => {}), 2000);
      return;
    }
    client.request("like_status", { video_id: videoId }).then((r) => setLiked(r.liked)).catch(() => {});
    if (!viewing) { viewing = { element: null }; track([{ type: "view_start", video_id: videoId, source: "other" }]); }
    const page = await client.request("comments", { video_id: videoId, limit: 20 });
    for (const c of page.comments) addComment(c, false);
    try {
      const links = await client.rest("GET", `/v1/videos/${encodeURIComponent(videoId)}/playback`);
      const video = h("video", { controls: true, playsinline: true, muted: true, autoplay: true, loop: true, preload: "auto", poster: links.thumbnail_url, src: links.master_url, testid: "video" });
      if (!video.canPlayType("application/vnd.apple.mpegurl")) {
        player.replaceChildren(h("p", { class: "muted" }, "This browser cannot play HLS natively."));
      } else { player.replaceChildren(video); if (viewing) viewing.element = video; }
    } catch (error) {
      player.replaceChildren(h("p", { class: "muted", testid: "video-status" }, error.code === "not_found" || error.code === "video_not_ready" ? "No media for this video." : String(error.message)));
    }
  };
  const offs = [
    client.on("counts", (e) => { if (e.detail.channel === channel) setCounts(e.detail); }),
    client.on("comment", (e) => { if (e.detail.channel === channel) addComment(e.detail, true); }),
    client.on("comment_deleted", (e) => { if (e.detail.channel === channel) comments.querySelector(`[data-id="${CSS.escape(e.detail.comment_id)}"]`)?.remove(); }),
    client.on("open", () => load().catch(() => {})), // a reconnect: reload totals and comments
  ];
  const previous = leaveView;
  leaveView = () => {
    offs.forEach((off) => off()); clearTimeout(retry);
    if (viewing) track([viewEnd(videoId, viewing.element)]);
    client?.unsubscribe(channel).catch(() => {}); previous();
  };
  client.subscribe(channel).catch(() => {});
  load().catch(problem);
}

function uploadView() {
  const title = h("input", { placeholder: "Title", required: true, maxlength: 200, testid: "upload-title" });
  const file = h("input", { type: "file", accept: "video/mp4,video/quicktime,video/webm,video/3gpp,video/x-matroska", required: true, testid: "upload-file" });
  const states = h("ol", { class: "states", testid: "upload-states" });
  const result = h("p", { testid: "upload-result" });
  let videoId = null;
  const showState = (state, extra = "") => {
    if ([...states.children].some((li) => li.dataset.state === state)) return;
    states.append(h("li", { "data-state": state, testid: "upload-state" }, state, extra));
    if (state === "ready") result.replaceChildren(h("a", { href: `#/v/${videoId}`, testid: "watch" }, "Watch it"));
    if (state === "failed" || state === "rejected") result.textContent = `The video was ${state}.`;
  };
  const off = client.on("event", (e) => {
    const d = e.detail.data;
    if (e.detail.channel === `user:${session.user_id}` && d?.type === "video_state" && d.video_id === videoId) showState(d.state, d.reason ? ` (${d.reason})` : "");
  });
  const previous = leaveView;
  leaveView = () => { off(); previous(); };
  view.replaceChildren(h("section", { class: "card" },
    h("h2", {}, "Upload a video"),
    h("form", { onsubmit: async (e) => {
      e.preventDefault();
      const f = file.files[0];
      if (!f || !title.reportValidity()) return;
      try {
        const created = await client.rest("POST", "/v1/media/uploads", { content_type: f.type || "video/mp4", size: f.size, title: title.value.trim() });
        videoId = created.video_id;
        showState(created.state);
        const form = new FormData();
        for (const [k, v] of Object.entries(created.upload.fields)) form.append(k, v);
        form.append(created.upload.file_field, f);
        const sent = await fetch(created.upload.url, { method: created.upload.method, body: form });
        if (!sent.ok) throw new MoosicError("upload_failed", `upload answered ${sent.status}`);
        showState("uploaded");
        // The pushes say what happens next; ask once too, in case they came before we listened.
        const video = await client.request("get_video", { video_id: videoId });
        if (video.status !== "uploading") showState(video.status);
      } catch (error) { problem(error); }
    } }, title, file, h("button", { testid: "upload-send" }, "Upload")),
    states, result));
}

function meView() {
  view.replaceChildren(h("section", { class: "card" },
    h("h2", {}, session.username),
    h("p", { class: "muted" }, `id ${session.user_id}`),
    h("p", { class: "muted", testid: "transport" }, `connection: ${client?.transport ?? "none"}`),
    h("button", { class: "secondary", testid: "sign-out", onclick: () => signOut(null) }, "Sign out")));
}

// ---- router -------------------------------------------------------------------------------

function route() {
  leaveView();
  leaveView = () => {};
  const [, page = "", ...rest] = location.hash.replace(/^#/, "").split("/");
  const arg = decodeURIComponent(rest.join("/"));
  if (!session || !client) return loginView();
  tabs.hidden = false;
  for (const a of tabs.querySelectorAll("a")) a.classList.toggle("active", a.dataset.tab === page || (page === "c" && a.dataset.tab === "chats"));
  if (page === "c" && arg) return chatView(arg);
  if (page === "v" && arg) return videoView(arg);
  if (page === "chats") return chatsView();
  if (page === "upload") return uploadView();
  if (page === "me") return meView();
  return feedView();
}

window.addEventListener("hashchange", route);
if (session) {
  start().then(route, (error) => { problem(error); route(); });
} else route();
