// MetaStore's dashboard: plain JavaScript over the member's own JSON APIs
// (/admin/members, /admin/status, /health, /v3/kv/range, /v3/watch,
// /v3/lease/*).  Served from the member at /ui; no build step.
"use strict";

const MEMBERS_EVERY_MS = 2000;
const LEASES_EVERY_MS = 5000;
const KEYS_LIMIT = 500;
const LEASES_SHOWN = 100;
const LIVE_ROWS_KEPT = 200;
const LIVE_RETRY_MS = 1000;
const VALUE_SHOWN_CHARS = 200;

// ---- bytes, base64 and text -------------------------------------------------

const encoder = new TextEncoder();
const strictDecoder = new TextDecoder("utf-8", { fatal: true });

function bytesToBase64(bytes) {
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary);
}

function base64ToBytes(text) {
  const binary = atob(text || "");
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

// The first key after every key that starts with `prefix` (etcd's range_end
// for a prefix); the empty prefix means every key, range_end "\0".
function prefixRangeEnd(prefix) {
  const end = Array.from(prefix);
  while (end.length && end[end.length - 1] === 0xff) end.pop();
  if (!end.length) return new Uint8Array([0]);
  end[end.length - 1] += 1;
  return new Uint8Array(end);
}

function prefixRange(text) {
  const prefix = encoder.encode(text);
  const key = prefix.length ? prefix : new Uint8Array([0]);
  return { key: bytesToBase64(key), range_end: bytesToBase64(prefixRangeEnd(prefix)) };
}

// A cell's text for base64 bytes: the UTF-8 text, or the base64 marked as such.
function showBytes(cell, b64, limit) {
  const bytes = base64ToBytes(b64);
  let text;
  try {
    text = strictDecoder.decode(bytes);
  } catch (e) {
    text = "base64:" + b64;
    cell.classList.add("binary");
  }
  if (limit && text.length > limit) text = text.slice(0, limit) + ` … (${bytes.length} bytes)`;
  cell.textContent = text;
  return cell;
}

// ---- DOM helpers --------------------------------------------------------------

const $ = (id) => document.getElementById(id);

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "—" : String(text);
  if (className) td.className = className;
  return td;
}

function row(cells, attributes) {
  const tr = document.createElement("tr");
  for (const c of cells) tr.appendChild(c);
  for (const [name, value] of Object.entries(attributes || {})) tr.setAttribute(name, value);
  return tr;
}

function showError(id, error) {
  const p = $(id);
  p.hidden = !error;
  p.textContent = error ? String(error) : "";
}

async function getJSON(path) {
  const response = await fetch(path, { cache: "no-store" });
  const body = await response.json();
  return { status: response.status, body };
}

async function postJSON(path, payload) {
  const response = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(payload),
  });
  const body = await response.json();
  if (!response.ok) throw new Error(body.message || body.error || `HTTP ${response.status}`);
  return body;
}

// ---- members ------------------------------------------------------------------

function memberRole(member) {
  if (member.is_leader) return "leader";
  if (member.is_learner) return "learner";
  return member.role || "unreachable";
}

function memberHealth(member) {
  if (member.healthy === null || member.healthy === undefined) return ["unreachable", "bad"];
  return member.healthy ? ["healthy", "good"] : ["unhealthy", "bad"];
}

async function refreshMembers() {
  try {
    const [members, status, health] = await Promise.all([
      getJSON("/admin/members"), getJSON("/admin/status"), getJSON("/health"),
    ]);
    const list = members.body.members || [];
    const leader = list.find((m) => m.is_leader);
    const leaderApplied = leader ? leader.applied_index : null;
    const tbody = $("members").tBodies[0];
    tbody.replaceChildren(...list.map((m) => {
      const role = memberRole(m);
      const [healthText, healthClass] = memberHealth(m);
      const lag = leaderApplied !== null && m.applied_index !== null && m.applied_index !== undefined
        ? Math.max(0, leaderApplied - m.applied_index) : null;
      return row([
        cell(m.id + (m.id === members.body.member_id ? " (this)" : "")),
        cell((m.client_urls || [])[0] || "unpublished"),
        cell(role, role === "leader" ? "role-leader" : ""),
        cell(healthText, healthClass),
        cell(m.term),
        cell(m.applied_index),
        cell(lag, lag ? "warn" : ""),
      ], { "data-member-id": m.id, "data-role": role });
    }));
    $("leader").textContent = members.body.leader ? `member ${members.body.leader}` : "none";
    $("self").textContent = String(members.body.member_id);
    $("revision").textContent = String(status.body.revision);
    $("health").textContent = health.body.health === "true" ? "healthy" : `unhealthy: ${health.body.reason}`;
    $("health").className = health.body.health === "true" ? "good" : "bad";
    $("updated").textContent = "updated " + new Date().toLocaleTimeString();
    showError("members-error", null);
  } catch (error) {
    showError("members-error", `cannot reach this member: ${error.message}`);
  }
}

// ---- key browser --------------------------------------------------------------

async function listKeys() {
  const prefix = $("keys-prefix").value;
  try {
    const answer = await postJSON("/v3/kv/range", { ...prefixRange(prefix), limit: KEYS_LIMIT });
    const kvs = answer.kvs || [];
    $("keys").tBodies[0].replaceChildren(...kvs.map((kv) => row([
      showBytes(cell("", "key"), kv.key),
      showBytes(cell("", "value"), kv.value, VALUE_SHOWN_CHARS),
      cell(kv.create_revision),
      cell(kv.mod_revision),
      cell(kv.version),
      cell(kv.lease && kv.lease !== "0" ? kv.lease : ""),
    ])));
    const count = Number(answer.count || 0);
    $("keys-count").textContent = `${count} key${count === 1 ? "" : "s"}` +
      (answer.more ? `, first ${kvs.length} shown` : "") + ` at revision ${answer.header.revision}`;
    showError("keys-error", null);
  } catch (error) {
    showError("keys-error", error.message);
  }
}

// ---- live view through watch ----------------------------------------------------

const live = { controller: null, nextRevision: null, prefix: "" };

function setLiveState(text, className) {
  $("live-state").textContent = text;
  $("live-state").className = "muted " + (className || "");
}

function addEvents(events) {
  const tbody = $("live").tBodies[0];
  for (const event of events) {
    const kv = event.kv || {};
    const type = event.type || "PUT";
    const tr = row([
      cell(new Date().toLocaleTimeString()),
      cell(kv.mod_revision),
      cell(type, type === "DELETE" ? "bad" : "good"),
      showBytes(cell("", "key"), kv.key),
      type === "DELETE" ? cell("") : showBytes(cell("", "value"), kv.value, VALUE_SHOWN_CHARS),
    ], { "class": "fresh", "data-event": type });
    tbody.insertBefore(tr, tbody.firstChild);
  }
  while (tbody.rows.length > LIVE_ROWS_KEPT) tbody.deleteRow(-1);
}

// One message of the stream: {"result": WatchResponse} (or {"error": ...}).
function onWatchMessage(message) {
  if (message.error) throw new Error(message.error.message || "watch failed");
  const result = message.result || {};
  if (result.created) setLiveState("watching", "good");
  const events = result.events || [];
  addEvents(events);
  for (const event of events) {
    live.nextRevision = Math.max(live.nextRevision || 0, Number(event.kv.mod_revision) + 1);
  }
  if (result.compact_revision) live.nextRevision = null;  // the history is gone: resume from now
  else if (result.header && result.header.revision && live.nextRevision === null) {
    live.nextRevision = Number(result.header.revision) + 1;
  }
}

async function watchOnce(signal) {
  const create = prefixRange(live.prefix);
  if (live.nextRevision !== null) create.start_revision = String(live.nextRevision);
  const response = await fetch("/v3/watch", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ create_request: create }),
    signal,
  });
  if (!response.ok || !response.body) throw new Error(`watch answered HTTP ${response.status}`);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffered += value;
    let newline;
    while ((newline = buffered.indexOf("\n")) >= 0) {
      const line = buffered.slice(0, newline).trim();
      buffered = buffered.slice(newline + 1);
      if (line) onWatchMessage(JSON.parse(line));
    }
  }
}

// Watch until the prefix changes; reconnect (resuming after the last
// revision seen) whenever the stream ends or fails.
async function watchLoop(controller) {
  while (!controller.signal.aborted) {
    try {
      setLiveState("connecting");
      await watchOnce(controller.signal);
      if (!controller.signal.aborted) setLiveState("stream ended, reconnecting", "warn");
    } catch (error) {
      if (controller.signal.aborted) return;
      setLiveState(`reconnecting (${error.message})`, "bad");
    }
    await new Promise((resolve) => setTimeout(resolve, LIVE_RETRY_MS));
  }
}

function startWatch() {
  if (live.controller) live.controller.abort();
  live.prefix = $("live-prefix").value;
  live.nextRevision = null;
  live.controller = new AbortController();
  watchLoop(live.controller);
}

// ---- leases -----------------------------------------------------------------

async function refreshLeases() {
  try {
    const answer = await postJSON("/v3/lease/leases", {});
    const ids = (answer.leases || []).map((l) => l.ID).slice(0, LEASES_SHOWN);
    const details = await Promise.all(ids.map((id) =>
      postJSON("/v3/lease/timetolive", { ID: id, keys: true }).catch(() => null)));
    $("leases").tBodies[0].replaceChildren(...ids.map((id, i) => {
      const lease = details[i] || {};
      const keys = (lease.keys || []).map((k) => showBytes(document.createElement("span"), k).textContent);
      return row([cell(id), cell(lease.TTL), cell(lease.grantedTTL), cell(keys.join(", "), "key")],
        { "data-lease-id": id });
    }));
    showError("leases-error", null);
  } catch (error) {
    showError("leases-error", error.message);
  }
}

// ---- start --------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  $("keys-form").addEventListener("submit", (e) => { e.preventDefault(); listKeys(); });
  $("live-form").addEventListener("submit", (e) => { e.preventDefault(); startWatch(); });
  $("live-clear").addEventListener("click", () => $("live").tBodies[0].replaceChildren());
  refreshMembers();
  listKeys();
  refreshLeases();
  startWatch();
  setInterval(refreshMembers, MEMBERS_EVERY_MS);
  setInterval(refreshLeases, LEASES_EVERY_MS);
});
