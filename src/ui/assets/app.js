// sgnode dashboard: vanilla JS over the client API of the peer that served it.
// The token never leaves this browser except as an Authorization header to this peer.
"use strict";

const TOKEN_KEY = "sgnode_token";
const STATES = ["queued", "assigned", "running", "succeeded", "failed", "cancelled", "timed_out", "lost"];
const PAGE = 25;
let timer = null;
let jobsView = { name: "", state: "", cursors: [] };

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v; else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children.flat()) node.append(c instanceof Node ? c : document.createTextNode(c == null ? "" : String(c)));
  return node;
}

function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }

// A token in the fragment (#token=...) is moved to sessionStorage and removed from the URL.
function takeTokenFromFragment() {
  const m = location.hash.match(/(?:^#|&)token=([^&]*)/);
  if (!m) return;
  sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(m[1]));
  const rest = location.hash.replace(/(^#|&)token=[^&]*/, "$1").replace(/^#&/, "#");
  history.replaceState(null, "", location.pathname + (rest === "#" ? "#/" : rest));
}

function showTokenState() {
  document.getElementById("token-state").textContent = token() ? "token set" : "no token";
}

function showError(message) {
  const f = document.getElementById("error");
  f.hidden = !message;
  f.textContent = message || "";
}

function authHeaders() { return token() ? { Authorization: "Bearer " + token() } : {}; }

async function api(path, options) {
  const r = await fetch("/api/v1/" + path, Object.assign({ headers: authHeaders() }, options));
  const type = r.headers.get("content-type") || "";
  const body = type.includes("json") ? await r.json() : await r.text();
  if (!r.ok) {
    const err = new Error(body && body.error ? body.error.message : "HTTP " + r.status);
    err.status = r.status;
    if (r.status === 401) err.message = "this cluster needs a token: enter one above (read role or better)";
    throw err;
  }
  return body;
}

function write(path) {
  return api(path, { method: "POST", headers: authHeaders() });
}

function stateCell(state) { return el("td", { class: "state-" + state }, state); }

function bar(used, total) {
  const pct = total ? Math.min(100, Math.round((100 * used) / total)) : 0;
  const fill = el("span");
  fill.style.width = pct + "%"; // CSSOM, allowed by the page's CSP (inline style attributes are not)
  return el("span", {}, el("span", { class: "bar" }, fill), ` ${used}/${total == null ? "-" : total}`);
}

async function renderCluster(main) {
  const [nodes, local] = await Promise.all([api("nodes"), api("local")]);
  const used = nodes.nodes.reduce((s, n) => s + n.slots_used, 0);
  const total = nodes.nodes.reduce((s, n) => s + (n.slots || 0), 0);
  main.append(el("section", { id: "cluster" },
    el("h2", {}, `cluster ${nodes.cluster}`),
    el("div", { class: "facts" },
      el("div", {}, "leader", el("b", { id: "leader" }, nodes.leader == null ? "none" : `peer ${nodes.leader}`)),
      el("div", {}, "term", el("b", {}, nodes.term)),
      el("div", {}, "queue depth", el("b", { id: "queue-depth" }, local.queued)),
      el("div", {}, "placement", el("b", {}, local.paused ? "paused" : "running")),
      el("div", {}, "slots used", el("b", {}, `${used}/${total}`)),
      el("div", {}, "served by", el("b", {}, `peer ${local.id}`))),
    el("table", {},
      el("tr", {}, ["peer", "url", "role", "voter", "applied", "slots", "memory MiB"].map((h) => el("th", {}, h))),
      nodes.nodes.map((n) => el("tr", {},
        el("td", {}, n.id), el("td", {}, n.url),
        el("td", {}, n.lost ? n.role + " (lost)" : n.role), el("td", {}, n.voter ? "yes" : "no"),
        el("td", {}, n.last_applied == null ? "-" : n.last_applied),
        el("td", {}, bar(n.slots_used, n.slots)), el("td", {}, bar(n.mem_used_mb, n.mem_mb)))))));
}

function jobsQuery() {
  const q = new URLSearchParams({ limit: String(PAGE) });
  if (jobsView.name) q.set("name", jobsView.name);
  if (jobsView.state) q.set("state", jobsView.state);
  const before = jobsView.cursors[jobsView.cursors.length - 1];
  if (before) q.set("before", before);
  return q.toString();
}

async function renderJobs(main) {
  const jobs = await api("jobs?" + jobsQuery());
  const name = el("input", { placeholder: "name", value: jobsView.name, "aria-label": "name filter" });
  const state = el("select", { "aria-label": "state filter" }, el("option", { value: "" }, "any state"),
    STATES.map((s) => { const o = el("option", { value: s }, s); if (s === jobsView.state) o.selected = true; return o; }));
  const filters = el("form", { class: "filters", onsubmit: (e) => {
    e.preventDefault(); jobsView = { name: name.value.trim(), state: state.value, cursors: [] }; route();
  } }, name, state, el("button", { type: "submit" }, "filter"),
    el("button", { type: "button", onclick: () => { jobsView.cursors = []; route(); } }, "newest"),
    el("button", { type: "button", onclick: () => { jobsView.cursors.pop(); route(); } }, "newer"),
    el("button", { type: "button", onclick: () => {
      if (jobs.length === PAGE) { jobsView.cursors.push(jobs[jobs.length - 1].id); route(); }
    } }, "older"));
  main.append(el("section", { id: "jobs" }, el("h2", {}, "jobs"), filters,
    el("table", {},
      el("tr", {}, ["id", "name", "state", "submitted", "finished", "attempts", "node"].map((h) => el("th", {}, h))),
      jobs.map((j) => el("tr", { class: "job" },
        el("td", {}, el("a", { href: "#/jobs/" + j.id }, j.id)), el("td", {}, j.name), stateCell(j.state),
        el("td", {}, j.submitted_at), el("td", {}, j.finished_at || "-"), el("td", {}, j.attempts.length),
        el("td", {}, j.attempts.length ? j.attempts[j.attempts.length - 1].node : "-")))),
    jobs.length ? "" : el("p", { class: "muted" }, "no jobs match")));
}

async function renderSchedules(main) {
  let schedules = [];
  try { schedules = await api("schedules"); } catch (e) { if (e.status !== 404) throw e; }
  const section = el("section", { id: "schedules" }, el("h2", {}, "schedules"));
  if (!Array.isArray(schedules) || schedules.length === 0) {
    section.append(el("p", { class: "muted" }, "no schedules"));
  } else {
    section.append(el("table", {},
      el("tr", {}, ["name", "cron", "zone", "paused", "next fire", "last tick", "last job", "fired", "skipped"].map((h) => el("th", {}, h))),
      schedules.map((s) => el("tr", {}, el("td", {}, s.name), el("td", {}, s.cron), el("td", {}, s.timezone),
        el("td", {}, s.paused ? "yes" : "no"), el("td", {}, s.next_fire || "-"), el("td", {}, s.last_tick || "-"),
        el("td", {}, s.last_job ? el("a", { href: "#/jobs/" + s.last_job }, s.last_job) : "-"),
        el("td", {}, s.fired), el("td", {}, s.skipped)))));
  }
  main.append(section);
}

async function renderJob(main, id) {
  const job = await api("jobs/" + encodeURIComponent(id));
  const running = !["succeeded", "failed", "cancelled", "timed_out", "lost"].includes(job.state);
  const log = el("pre", { class: "log", id: "log" }, "");
  const source = el("span", { class: "muted", id: "log-source" });
  const cancel = el("button", { onclick: async () => {
    try { await write("jobs/" + job.id + "/cancel"); route(); } catch (e) { showError("cancel: " + e.message); }
  } }, "cancel");
  main.append(el("section", { id: "job" },
    el("h2", {}, `job ${job.id}: ${job.name} `, el("span", { class: "state-" + job.state, id: "job-state" }, job.state)),
    el("table", {},
      [["command", job.command.join(" ")], ["dedup key", job.dedup_key], ["submitted", job.submitted_at],
        ["finished", job.finished_at || "-"], ["resources", `${job.slots} slot(s), ${job.mem_mb} MiB, priority ${job.priority}, retries ${job.retries}`],
        ["params", Object.entries(job.params).map(([k, v]) => k + "=" + v).join(" ") || "-"]]
        .map(([k, v]) => el("tr", {}, el("th", {}, k), el("td", {}, v)))),
    running ? cancel : ""),
    el("section", { id: "attempts" }, el("h2", {}, "attempts"),
      el("table", {},
        el("tr", {}, ["#", "node", "assigned", "started", "ended", "outcome", "exit", "duration", "reason"].map((h) => el("th", {}, h))),
        job.attempts.map((a) => el("tr", {}, el("td", {}, a.number), el("td", {}, a.node), el("td", {}, a.assigned_at),
          el("td", {}, a.started_at || "-"), el("td", {}, a.ended_at || "-"), el("td", {}, a.outcome || (a.started_at ? "running" : "assigned")),
          el("td", {}, a.exit_code == null ? "-" : a.exit_code), el("td", {}, a.duration_ms == null ? "-" : (a.duration_ms / 1000).toFixed(1) + "s"),
          el("td", {}, a.reason || ""))))),
    el("section", {}, el("h2", {}, "log ", source), log));
  if (job.attempts.length === 0) { log.textContent = "(not placed yet)"; return running; }
  try {
    const r = await fetch("/api/v1/jobs/" + encodeURIComponent(job.id) + "/logs", { headers: authHeaders() });
    const textBody = await r.text();
    if (r.ok) {
      log.textContent = textBody;
      const src = r.headers.get("x-sgnode-log-source");
      source.textContent = src === "tail" ? "(last 64 KiB kept in the job record: the worker does not answer)" : `(from ${src})`;
      log.scrollTop = log.scrollHeight;
    } else {
      log.textContent = "(" + (JSON.parse(textBody).error || {}).message + ")";
    }
  } catch (e) { log.textContent = "(log unavailable: " + e.message + ")"; }
  return running;
}

// Renders the page the fragment names; refreshes it while it can change.
async function route() {
  clearTimeout(timer);
  takeTokenFromFragment();
  showTokenState();
  const main = document.getElementById("main");
  const fresh = el("main", { id: "main" });
  const hash = location.hash.replace(/^#/, "") || "/";
  let again = true;
  try {
    const job = hash.match(/^\/jobs\/(\d+)/);
    if (job) again = await renderJob(fresh, job[1]);
    else if (hash.startsWith("/schedules")) await renderSchedules(fresh);
    else { await renderCluster(fresh); await renderJobs(fresh); await renderSchedules(fresh); }
    showError("");
  } catch (e) {
    showError(e.message);
  }
  main.replaceWith(fresh);
  if (again) timer = setTimeout(refresh, 2000);
}

// Periodic refresh, skipped while the user is typing in a filter.
function refresh() {
  const active = document.activeElement;
  if (active && document.getElementById("main").contains(active) && /INPUT|SELECT/.test(active.tagName)) {
    timer = setTimeout(refresh, 2000);
  } else {
    route();
  }
}

document.getElementById("login").addEventListener("submit", (e) => {
  e.preventDefault();
  const input = document.getElementById("token");
  if (input.value) sessionStorage.setItem(TOKEN_KEY, input.value); else sessionStorage.removeItem(TOKEN_KEY);
  input.value = "";
  showTokenState();
});
window.addEventListener("hashchange", route);
route();
