// trio-books live page: plain JavaScript, no library, no build step.
// Polls /health and /venues for the table; follows one book over /ws (see serve/stream.py).
// Prices and quantities are shown as the exact strings the service sends; floats are
// used only to place points on the depth chart.
"use strict";

const token = new URLSearchParams(location.search).get("token");
const query = token ? "?token=" + encodeURIComponent(token) : "";
const LADDER_ROWS = 15;
const DEPTH = 50;
const $ = (id) => document.getElementById(id);

// --- exact decimal strings ----------------------------------------------------------
function splitDec(s) {
  const [i, f = ""] = s.split(".");
  return [i.replace(/^0+/, ""), f.replace(/0+$/, "")];
}
function normKey(s) {
  const [i, f] = splitDec(s);
  return f ? `${i || "0"}.${f}` : i || "0";
}
function cmpDec(a, b) {  // non-negative decimal strings, compared exactly
  const [ai, af] = splitDec(a);
  const [bi, bf] = splitDec(b);
  if (ai.length !== bi.length) return ai.length - bi.length;
  if (ai !== bi) return ai < bi ? -1 : 1;
  const n = Math.max(af.length, bf.length);
  const x = af.padEnd(n, "0"), y = bf.padEnd(n, "0");
  return x < y ? -1 : x > y ? 1 : 0;
}
const isZero = (s) => /^0*\.?0*$/.test(s);

// --- the table ----------------------------------------------------------------------
let selected = null;  // "venue/symbol"

function cell(tr, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  tr.appendChild(td);
  return td;
}
function badge(td, state) {
  td.textContent = "";
  const span = document.createElement("span");
  span.className = "badge state " + state;
  span.textContent = state;
  td.appendChild(span);
}
function resyncText(byReason) {
  const parts = Object.entries(byReason || {}).filter(([, n]) => n > 0);
  const total = parts.reduce((sum, [, n]) => sum + n, 0);
  return parts.length ? `${total} (${parts.map(([r, n]) => `${r} ${n}`).join(", ")})` : "0";
}

function renderTable(health, venues) {
  const body = document.createElement("tbody");
  for (const [venue, v] of Object.entries(venues.venues)) {
    const h = (health.venues || {})[venue] || {};
    const tr = document.createElement("tr");
    tr.className = "venue";
    tr.dataset.venue = venue;
    cell(tr, venue);
    badge(cell(tr, ""), v.state);
    const age = h.last_message_age_s;
    cell(tr, age === null || age === undefined ? "-" : `${age.toFixed(1)} s`, "num");
    cell(tr, String(h.reconnects ?? "-"), "num");
    cell(tr, String(h.resyncs ?? "-"), "num");
    cell(tr, h.last_error || "", "error");
    body.appendChild(tr);
    for (const [symbol, b] of Object.entries(v.books)) {
      const key = `${venue}/${symbol}`;
      const row = document.createElement("tr");
      row.className = "book" + (key === selected ? " selected" : "");
      row.dataset.book = key;
      row.dataset.state = b.state;
      cell(row, symbol);
      badge(cell(row, ""), b.state);
      cell(row, "");
      cell(row, "");
      cell(row, resyncText(b.resyncs), "num");
      cell(row, b.error || "", "error");
      row.addEventListener("click", () => follow(venue, symbol));
      body.appendChild(row);
    }
  }
  $("venues").replaceChild(body, $("venues").tBodies[0]);
}

async function getJSON(path) {
  const resp = await fetch(path + query, { cache: "no-store" });
  return resp.json();  // /health answers 503 with its JSON body while nothing is live
}

async function refresh() {
  try {
    const [health, venues] = await Promise.all([getJSON("/health"), getJSON("/venues")]);
    if (venues.error) throw new Error(venues.error);
    renderTable(health, venues);
    const status = $("status");
    status.textContent = health.status;
    status.className = "badge " + health.status;
    $("updated").textContent = "updated " + new Date().toLocaleTimeString();
  } catch (err) {
    $("status").textContent = "unreachable";
    $("status").className = "badge down";
    $("updated").textContent = String(err.message || err);
  }
}

// --- one book over /ws ----------------------------------------------------------------
let ws = null;
let following = null;  // {venue, symbol}
let bids = new Map(), asks = new Map();  // normKey(price) -> [price, qty]
let messages = 0;

function wsUrl() {
  return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws" + query;
}
function send(msg) {
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(msg));
}
function subscribe() {
  if (following) send({ op: "subscribe", venue: following.venue, symbol: following.symbol, depth: DEPTH, kind: "book" });
}

function connect() {
  ws = new WebSocket(wsUrl());
  ws.onopen = subscribe;
  ws.onmessage = (ev) => onMessage(JSON.parse(ev.data));
  ws.onclose = () => { ws = null; setTimeout(connect, 1000); };
}

function follow(venue, symbol) {
  if (following) send({ op: "unsubscribe", venue: following.venue, symbol: following.symbol });
  following = { venue, symbol };
  selected = `${venue}/${symbol}`;
  bids = new Map();
  asks = new Map();
  messages = 0;
  $("book-pane").hidden = false;
  $("book-title").textContent = selected;
  setBookState("syncing");
  for (const tr of document.querySelectorAll("tr.book")) tr.classList.toggle("selected", tr.dataset.book === selected);
  subscribe();
  draw();
}

function setBookState(state) {
  $("book-state").textContent = state;
  $("book-state").className = "badge " + state;
  $("book-pane").dataset.state = state;
}

function apply(side, levels) {
  for (const [price, qty] of levels) {
    if (isZero(qty)) side.delete(normKey(price));
    else side.set(normKey(price), [price, qty]);
  }
}

function onMessage(msg) {
  if (msg.type === "error") { $("updated").textContent = "stream: " + msg.error; return; }
  if (!following || msg.venue !== following.venue || msg.symbol !== following.symbol) return;
  messages += 1;
  if (msg.type === "status") {
    setBookState(msg.state);
    if (msg.state !== "live") { bids = new Map(); asks = new Map(); }
  } else if (msg.type === "snapshot") {
    bids = new Map(); asks = new Map();
    apply(bids, msg.bids);
    apply(asks, msg.asks);
    setBookState(msg.state);
  } else if (msg.type === "update") {
    apply(bids, msg.bids);
    apply(asks, msg.asks);
  }
  $("book-messages").textContent = String(messages);
  $("book-version").textContent = String(msg.version);
  $("book-pane").dataset.version = String(msg.version);
  draw();
}

function sorted(side, descending) {
  const levels = [...side.values()].sort((a, b) => cmpDec(a[0], b[0]));
  return descending ? levels.reverse() : levels;
}

function draw() {
  const b = sorted(bids, true), a = sorted(asks, false);
  const body = document.createElement("tbody");
  for (const [price, qty] of a.slice(0, LADDER_ROWS).reverse()) {
    const tr = document.createElement("tr");
    cell(tr, ""); cell(tr, price, "ask"); cell(tr, qty, "ask");
    body.appendChild(tr);
  }
  if (body.lastChild) body.lastChild.className = "spread";
  for (const [price, qty] of b.slice(0, LADDER_ROWS)) {
    const tr = document.createElement("tr");
    cell(tr, qty, "bid"); cell(tr, price, "bid"); cell(tr, "");
    body.appendChild(tr);
  }
  $("ladder").replaceChild(body, $("ladder").tBodies[0]);
  drawDepth($("depth"), b, a);
}

// cumulative quantity against price, bids to the left, asks to the right
function drawDepth(canvas, b, a) {
  const ctx = canvas.getContext("2d");
  const W = canvas.width, H = canvas.height, pad = 16;
  ctx.clearRect(0, 0, W, H);
  if (!b.length || !a.length) return;
  const cum = (levels) => { let s = 0; return levels.map(([p, q]) => [Number(p), (s += Number(q))]); };
  const cb = cum(b), ca = cum(a);
  const lo = cb[cb.length - 1][0], hi = ca[ca.length - 1][0];
  const top = Math.max(cb[cb.length - 1][1], ca[ca.length - 1][1]) || 1;
  const x = (p) => pad + ((p - lo) / ((hi - lo) || 1)) * (W - 2 * pad);
  const y = (v) => H - pad - (v / top) * (H - 2 * pad);
  const area = (points, color) => {
    ctx.beginPath();
    ctx.moveTo(x(points[0][0]), y(0));
    let prev = 0;
    for (const [p, v] of points) { ctx.lineTo(x(p), y(prev)); ctx.lineTo(x(p), y(v)); prev = v; }
    ctx.lineTo(x(points[points.length - 1][0]), y(0));
    ctx.closePath();
    ctx.fillStyle = color + "55"; ctx.fill();
    ctx.strokeStyle = color; ctx.stroke();
  };
  area(cb, "#15803d");
  area(ca, "#b91c1c");
  ctx.fillStyle = "#374151";
  ctx.font = "11px sans-serif";
  ctx.fillText(b[b.length - 1][0], 2, H - 3);
  const last = a[a.length - 1][0];
  ctx.fillText(last, W - 2 - ctx.measureText(last).width, H - 3);
  const mid = `${b[0][0]} | ${a[0][0]}`;
  ctx.fillText(mid, (W - ctx.measureText(mid).width) / 2, 11);
}

refresh();
setInterval(refresh, 1000);
connect();
