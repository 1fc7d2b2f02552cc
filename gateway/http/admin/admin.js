// The admin page of the server API: no build step, no external resources (CSP: 'self' only).
// The key lives in this page's memory only; every call sends it as a Bearer token.
"use strict";
(function () {
  const base = location.pathname.replace(/\/admin\/.*$/, "");
  const RATES = [
    "moosic_events_published_total",
    "moosic_deliveries_total",
    "moosic_ws_connections_opened_total",
    "moosic_ws_frames_received_total",
    "moosic_clickstream_events_accepted_total",
    "moosic_rate_limited_total",
    "moosic_internal_errors_total",
    "moosic_ws_connections",
    "moosic_channels",
  ];
  let key = "";
  let previous = null;
  let timer = null;

  const $ = (id) => document.getElementById(id);
  const status = (text) => { $("status").textContent = text; };

  async function call(method, path, body) {
    const init = { method, headers: { Authorization: "Bearer " + key } };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(base + path, init);
    if (!response.ok) {
      let code = String(response.status);
      try { code = (await response.json()).code || code; } catch (e) { /* not JSON */ }
      throw new Error(code);
    }
    const type = response.headers.get("Content-Type") || "";
    return type.startsWith("application/json") ? response.json() : response.text();
  }

  function cell(row, text, numeric) {
    const td = document.createElement("td");
    td.textContent = text === undefined || text === null ? "" : String(text);
    if (numeric) td.className = "num";
    row.appendChild(td);
    return td;
  }

  function button(td, label, action) {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = label;
    b.addEventListener("click", () => action().then(refresh, (e) => status(e.message)));
    td.appendChild(b);
  }

  function fill(id, rows, render) {
    const body = $(id).querySelector("tbody");
    body.replaceChildren();
    for (const item of rows) {
      const row = document.createElement("tr");
      render(row, item);
      body.appendChild(row);
    }
  }

  function parseMetrics(text) {
    const values = {};
    for (const line of text.split("\n")) {
      if (!line || line.startsWith("#")) continue;
      const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+([-+0-9.eE]+|NaN)/.exec(line);
      if (!match) continue;
      values[match[1]] = (values[match[1]] || 0) + Number(match[3]);
    }
    return values;
  }

  async function refresh() {
    const [nodes, conns, chans, held, metrics] = await Promise.all([
      call("GET", "/nodes"),
      call("GET", "/node/connections?limit=200"),
      call("GET", "/node/channels?limit=200"),
      call("GET", "/videos/held?limit=50"),
      call("GET", "/metrics"),
    ]);
    $("nodes-count").textContent = "(" + nodes.count + ")";
    fill("nodes", nodes.nodes, (row, n) => {
      cell(row, n.address || n.node);
      cell(row, n.alive ? "alive" : "no card");
      cell(row, n.connections ?? "", true);
      cell(row, n.channels ?? "", true);
    });
    $("connections-count").textContent = "(" + conns.count + ")";
    fill("connections", conns.connections, (row, c) => {
      cell(row, c.user_id);
      cell(row, c.subscriptions, true);
      cell(row, c.buffered_bytes, true);
      button(cell(row, ""), "disconnect", () =>
        call("POST", "/users/" + encodeURIComponent(c.user_id) + "/disconnect", {
          reason: "disconnected by an operator",
        }));
    });
    $("channels-count").textContent = "(" + chans.count + ")";
    fill("channels", chans.channels, (row, c) => {
      cell(row, c.channel);
      cell(row, c.subscribers, true);
    });
    fill("held", held.videos, (row, v) => {
      cell(row, v.video_id);
      cell(row, v.owner);
      cell(row, v.title);
      cell(row, new Date(v.held_at).toISOString());
      const td = cell(row, "");
      const decide = (decision) => () =>
        call("POST", "/videos/" + encodeURIComponent(v.video_id) + "/moderation", { decision });
      button(td, "approve", decide("approve"));
      button(td, "reject", decide("reject"));
    });
    const now = { at: Date.now(), values: parseMetrics(metrics) };
    fill("rates", RATES.filter((name) => name in now.values), (row, name) => {
      cell(row, name);
      cell(row, now.values[name], true);
      let rate = "";
      if (previous && name in previous.values && name.endsWith("_total")) {
        const seconds = (now.at - previous.at) / 1000;
        rate = ((now.values[name] - previous.values[name]) / seconds).toFixed(2);
      }
      cell(row, rate, true);
    });
    previous = now;
    status("");
  }

  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    key = $("key").value.trim();
    $("key").value = "";
    previous = null;
    refresh().then(() => {
      $("panels").hidden = false;
      if (timer === null) {
        timer = setInterval(() => refresh().catch((e) => status(e.message)), 5000);
      }
    }, (e) => status(e.message === "invalid_api_key" ? "wrong key" : e.message));
  });
})();
