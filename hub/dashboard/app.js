// Outpost hub dashboard: one page that reads /api/ and redraws every two seconds.
// Every text from the hub goes into the page as text (textContent), never as markup.
"use strict";

const POLL_MS = 2000;
const PAGE = 100;
let session = null;
let timer = null;
let drawn = "";  // the route the view was built for

function el(tag, attrs, ...kids) {
  const ns = ["svg", "rect", "text", "path", "g", "title", "defs", "marker"].includes(tag)
    ? "http://www.w3.org/2000/svg" : null;
  const e = ns ? document.createElementNS(ns, tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const k of kids.flat()) {
    if (k === null || k === undefined || k === false) continue;
    e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  }
  return e;
}

// Replaces a node's children, skipping empty ones (the DOM would print "null").
function put(node, ...kids) {
  node.replaceChildren(...kids.flat().filter(k => k !== null && k !== undefined && k !== false));
}

function badge(state) { return el("span", { class: "badge s-" + String(state).replace(/[^a-z_]/g, "") }, state); }

function ago(iso) {
  if (!iso) return "never";
  const s = Math.round((Date.now() - Date.parse(iso)) / 1000);
  if (isNaN(s)) return iso;
  if (s < 0) return "just now";
  if (s < 90) return s + " s ago";
  if (s < 5400) return Math.round(s / 60) + " min ago";
  if (s < 172800) return Math.round(s / 3600) + " h ago";
  return Math.round(s / 86400) + " d ago";
}

function duration(a, b) {
  if (!a) return "";
  const ms = (b ? Date.parse(b) : Date.now()) - Date.parse(a);
  if (isNaN(ms) || ms < 0) return "";
  if (ms < 1000) return ms + " ms";
  if (ms < 120000) return (ms / 1000).toFixed(1) + " s";
  return Math.round(ms / 60000) + " min";
}

async function api(path, body) {
  const opts = { credentials: "same-origin", headers: {} };
  if (body !== undefined) {
    opts.method = "POST";
    opts.headers["Content-Type"] = "application/json";
    opts.headers["X-Outpost-CSRF"] = session ? session.csrf : "";
    opts.body = JSON.stringify(body);
  }
  const r = await fetch(path, opts);
  let j = null;
  try { j = await r.json(); } catch (e) { j = { ok: false, error: "the hub answered " + r.status }; }
  if (r.status === 401) { stop(); showLoggedOut(); throw new Error("logged out"); }
  return j;
}

function setStatus(text) { document.getElementById("status").textContent = text; }

function showLoggedOut() {
  document.getElementById("who").textContent = "";
  document.getElementById("logout").hidden = true;
  const v = document.getElementById("view");
  put(v, el("div", { class: "err" }, "This session has ended. Run ",
    el("code", {}, "outpostctl dashboard login"), " and open the link it prints."));
}

function stop() { if (timer) clearTimeout(timer); timer = null; }

function route() {
  const h = location.hash.replace(/^#/, "") || "/fleet";
  const [path, qs] = h.split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  return { name: parts[0] || "fleet", arg: parts[1] || "", q: new URLSearchParams(qs || "") };
}

function link(hash, text) { return el("a", { href: "#" + hash }, text); }

// ---------- fleet ----------

function buildFleet(v, r) {
  const q = el("input", { id: "fleet-q", placeholder: "name or label", value: r.q.get("q") || "" });
  const state = el("select", { id: "fleet-state" },
    ["", "online", "offline", "pending", "revoked"].map(s =>
      el("option", { value: s, selected: (r.q.get("state") || "") === s }, s || "any state")));
  const apply = () => {
    const p = new URLSearchParams();
    if (q.value) p.set("q", q.value);
    if (state.value) p.set("state", state.value);
    location.hash = "#/fleet" + (p.toString() ? "?" + p : "");
  };
  q.addEventListener("change", apply);
  state.addEventListener("change", apply);
  put(v,
    el("h1", {}, "Fleet"),
    el("div", { class: "chips", id: "fleet-totals" }),
    el("div", { class: "controls" }, q, state),
    el("table", { id: "fleet" },
      el("thead", {}, el("tr", {}, ["site", "state", "last seen", "events behind", "commands pending",
        "labels", "workflows"].map(h => el("th", {}, h)))),
      el("tbody", {})),
    el("div", { class: "pager", id: "fleet-pager" }));
}

async function drawFleet(v, r) {
  const page = Math.max(0, parseInt(r.q.get("page") || "0", 10) || 0);
  const p = new URLSearchParams({ offset: page * PAGE, limit: PAGE });
  if (r.q.get("q")) p.set("q", r.q.get("q"));
  if (r.q.get("state")) p.set("state", r.q.get("state"));
  const j = await api("/api/fleet?" + p);
  if (!j.ok) throw new Error(j.error);
  const t = j.totals;
  put(document.getElementById("fleet-totals"),
    ...["online", "offline", "pending", "revoked"].map(s =>
      el("span", { class: "chip", id: "total-" + s }, el("b", {}, t[s] || 0), s)),
    el("span", { class: "chip" }, el("b", {}, j.sites_total), "sites"));
  put(document.querySelector("#fleet tbody"), ...j.sites.map(s => el("tr", { "data-site": s.name },
    el("td", {}, link("/site/" + encodeURIComponent(s.name), s.name)),
    el("td", {}, badge(s.state)),
    el("td", { title: s.last_seen || "" }, ago(s.last_seen)),
    el("td", { class: "num" }, s.events_behind),
    el("td", { class: "num" }, s.commands_pending),
    el("td", {}, Object.entries(s.labels || {}).map(([k, val]) => el("span", { class: "label" }, k + "=" + val))),
    el("td", {}, (s.workflows || []).join(", "), s.refused_workflows ? el("span", { class: "muted" }, " (" + s.refused_workflows + " refused)") : null))));
  const pager = document.getElementById("fleet-pager");
  const nav = (n) => { const q = new URLSearchParams(r.q); q.set("page", n); return "/fleet?" + q; };
  put(pager,
    page > 0 ? link(nav(page - 1), "← previous") : el("span", { class: "muted" }, "← previous"),
    el("span", {}, j.matched ? `${page * PAGE + 1}-${page * PAGE + j.sites.length} of ${j.matched}` : "no sites match"),
    (page + 1) * PAGE < j.matched ? link(nav(page + 1), "next →") : el("span", { class: "muted" }, "next →"));
}

// ---------- site ----------

function runsTable(runs) {
  return el("table", { id: "runs" },
    el("thead", {}, el("tr", {}, ["run", "workflow", "state", "created", "took", "tasks"].map(h => el("th", {}, h)))),
    el("tbody", {}, runs.map(x => el("tr", { "data-run": x.id },
      el("td", {}, link("/run/" + encodeURIComponent(x.id), x.id)),
      el("td", {}, x.workflow),
      el("td", {}, badge(x.state)),
      el("td", { title: x.created || "" }, ago(x.created)),
      el("td", {}, x.finished ? duration(x.created, x.finished) : FINAL.includes(x.state) ? "" : "running " + duration(x.created, null)),
      el("td", { class: "num" }, `${x.tasks_succeeded}/${x.tasks_total}`)))));
}

async function drawSite(v, r) {
  const j = await api("/api/site?name=" + encodeURIComponent(r.arg) + "&limit=50");
  if (!j.ok) { put(v, el("h1", {}, "Site " + r.arg), el("div", { class: "err" }, j.error)); return; }
  const s = j.site;
  const health = s.health ? Object.entries(s.health.summary || {}) : [];
  const art = Array.isArray(s.artifacts) ? s.artifacts : [];
  put(v,
    el("h1", {}, "Site ", s.name, " ", badge(s.state === "enrolled" ? (s.online ? "online" : "offline") : s.state)),
    el("dl", { class: "kv card" },
      el("dt", {}, "last seen"), el("dd", { title: s.last_seen || "" }, ago(s.last_seen)),
      el("dt", {}, "labels"), el("dd", {}, Object.entries(s.labels || {}).map(([k, val]) => el("span", { class: "label" }, k + "=" + val))),
      el("dt", {}, "backlog"), el("dd", {}, `${s.events_behind} events not yet at the hub, ${s.commands_pending} commands not yet applied`),
      el("dt", {}, "workflows"), el("dd", {}, (s.workflows || []).join(", ") || "none"),
      el("dt", {}, "incarnation"), el("dd", {}, s.incarnation),
      el("dt", {}, "trust"), el("dd", {}, s.policy || "no fleet policy reported")),
    el("h2", {}, "Health", s.health ? el("span", { class: "muted" }, " (reported " + ago(s.health.at) + ")") : null),
    health.length ? el("dl", { class: "kv card", id: "health" }, health.flatMap(([k, val]) => [el("dt", {}, k), el("dd", {}, String(val))]))
      : el("p", { class: "muted" }, "No health summary yet (agents send one every 5 minutes)."),
    el("h2", {}, "Schedules"),
    (j.schedules || []).length ? el("table", { id: "schedules" },
      el("thead", {}, el("tr", {}, ["workflow", "cron", "zone", "next ticks"].map(h => el("th", {}, h)))),
      el("tbody", {}, j.schedules.map(x => el("tr", {},
        el("td", {}, x.workflow), el("td", {}, el("code", {}, x.cron)), el("td", {}, x.timezone),
        el("td", {}, x.error ? el("span", { class: "err" }, x.error) : (x.next || []).join(" · "))))))
      : el("p", { class: "muted" }, "No scheduled workflows placed here."),
    el("h2", {}, "Artifacts"),
    art.length ? el("table", { id: "artifacts" },
      el("thead", {}, el("tr", {}, ["artifact", "digest", "size", "state"].map(h => el("th", {}, h)))),
      el("tbody", {}, art.map(a => el("tr", {}, el("td", {}, a.name), el("td", {}, el("code", {}, String(a.digest || "").slice(0, 16))),
        el("td", { class: "num" }, a.size), el("td", {}, badge(a.state || ""))))))
      : el("p", { class: "muted" }, "No artifacts needed here."),
    el("h2", {}, "Runs (latest 50)"),
    runsTable(j.runs || []));
}

// ---------- run ----------

const FINAL = ["succeeded", "failed", "cancelled", "compensated", "compensation_failed"];

function graphSvg(run, graph) {
  const tasks = run.tasks || [];
  const byId = new Map(tasks.map(t => [t.id, t]));
  let nodes;
  if (graph && graph.tasks) {
    nodes = graph.tasks.map(d => {
      const inst = tasks.filter(t => t.id.startsWith(d.id + "["));
      let state = byId.has(d.id) ? byId.get(d.id).state : (inst.length ? null : "pending");
      if (state === null) {
        const st = inst.map(t => t.state);
        state = st.includes("failed") ? "failed" : st.some(s => s === "running") ? "running"
          : st.every(s => s === "succeeded") ? "succeeded" : st[0];
      }
      return { id: d.id, needs: d.needs || [], state, inst, approval: d.approval, comp: byId.get("compensate:" + d.id) };
    });
  } else {
    nodes = tasks.filter(t => !t.id.startsWith("compensate:") && !/\[\d+\]$/.test(t.id))
      .map(t => ({ id: t.id, needs: [], state: t.state, inst: [], comp: byId.get("compensate:" + t.id) }));
  }
  const depth = new Map();
  const ids = new Set(nodes.map(n => n.id));
  const d = (n, seen = 0) => {
    if (depth.has(n.id)) return depth.get(n.id);
    if (seen > nodes.length) return 0;
    const v = n.needs.filter(x => ids.has(x)).reduce((m, x) => Math.max(m, 1 + d(nodes.find(y => y.id === x), seen + 1)), 0);
    depth.set(n.id, v);
    return v;
  };
  nodes.forEach(n => d(n));
  const cols = new Map();
  nodes.forEach(n => { const c = depth.get(n.id); if (!cols.has(c)) cols.set(c, []); cols.get(c).push(n); });
  const W = 190, H = 46, GX = 60, GY = 18, compW = 150;
  const pos = new Map();
  let maxRow = 0;
  [...cols.keys()].sort((a, b) => a - b).forEach(c => cols.get(c).forEach((n, i) => {
    pos.set(n.id, { x: 20 + c * (W + GX + compW / 2), y: 20 + i * (H + GY + (n.comp ? H / 2 : 0)) });
    maxRow = Math.max(maxRow, i + 1);
  }));
  const width = 40 + cols.size * (W + GX + compW / 2) + compW;
  const height = 40 + maxRow * (H + GY + H / 2);
  const svg = el("svg", { class: "graph", id: "graph", width, height, viewBox: `0 0 ${width} ${height}` });
  for (const n of nodes) {
    const p = pos.get(n.id);
    for (const need of n.needs) {
      const q = pos.get(need);
      if (!q) continue;
      svg.append(el("path", { class: "edge", d: `M${q.x + W},${q.y + H / 2} C${q.x + W + GX / 2},${q.y + H / 2} ${p.x - GX / 2},${p.y + H / 2} ${p.x},${p.y + H / 2}` }));
    }
  }
  const colors = { succeeded: "#1f8a4c", failed: "#c62f2f", running: "#1f63c6", awaiting_approval: "#b7791f",
    cancelled: "#8a93a3", skipped: "#b6bcc7", upstream_failed: "#b6bcc7", pending: "#8a93a3" };
  const box = (id, label, sub, state, x, y, w) => el("g", { class: "node", "data-task": id, "data-state": state },
    el("title", {}, `${id}: ${state}`),
    el("rect", { x, y, width: w, height: H, rx: 6, fill: "#fff", stroke: colors[state] || "#8a93a3", "stroke-width": 2 }),
    el("rect", { x, y, width: 6, height: H, rx: 3, fill: colors[state] || "#8a93a3" }),
    el("text", { x: x + 14, y: y + 19, "font-weight": 600 }, label.length > 24 ? label.slice(0, 23) + "…" : label),
    el("text", { x: x + 14, y: y + 36, fill: "#6a7383" }, sub.length > 27 ? sub.slice(0, 26) + "…" : sub));
  for (const n of nodes) {
    const p = pos.get(n.id);
    const t = byId.get(n.id);
    let sub = n.state || "";
    if (n.inst.length) sub = `${n.inst.filter(t => t.state === "succeeded").length}/${n.inst.length} instances ${n.state}`;
    else if (t && t.attempts > 1) sub += ` · ${t.attempts} attempts`;
    if (n.approval) sub = "gate · " + sub.replace("awaiting_approval", "waiting");
    svg.append(box(n.id, n.id, sub, n.state, p.x, p.y, W));
    if (n.comp) {
      const cx = p.x + W / 2 + 10, cy = p.y + H + 6;
      svg.append(el("path", { class: "edge comp", d: `M${p.x + W / 2},${p.y + H} L${cx},${cy}` }));
      svg.append(box(n.comp.id, "↺ compensate", n.comp.state, n.comp.state, cx, cy, compW));
    }
  }
  return svg;
}

async function action(path, body, what) {
  const j = await api(path, body);
  const msg = document.getElementById("action-result");
  msg.className = j.ok ? "note" : "err";
  msg.textContent = j.ok ? `${what}: ${j.message || "done"}` : `${what} refused: ${j.error}`;
  tick(true);
}

async function showLogs(run, task) {
  const out = document.getElementById("logs");
  put(out, el("h2", {}, "Output of ", task), el("p", { class: "muted" }, "loading…"));
  const j = await api(`/api/logs?id=${encodeURIComponent(run)}&task=${encodeURIComponent(task)}`);
  put(out, el("h2", {}, "Output of ", task, j.truncated ? el("span", { class: "muted" }, ` (last 16 KiB; ${j.truncated} bytes before)`) : null),
    j.ok ? el("pre", { class: "out", id: "output" }, j.output || "(empty)") : el("div", { class: "err" }, j.error));
}

function buildRun(v) {
  put(v, el("div", { id: "run-head" }), el("div", { id: "action-result" }), el("div", { id: "run-graph" }),
    el("h2", {}, "Tasks"), el("div", { id: "run-tasks" }), el("div", { id: "logs" }));
}

async function drawRun(v, r) {
  const j = await api("/api/run?id=" + encodeURIComponent(r.arg));
  if (!j.ok) { put(v, el("h1", {}, "Run " + r.arg), el("div", { class: "err" }, j.error)); drawn = ""; return; }
  const run = j.run;
  const canAct = session && session.role !== "viewer";
  const signedOnly = j.site_policy && /applied/.test(j.site_policy);
  const head = document.getElementById("run-head");
  put(head,
    el("h1", {}, "Run ", run.id, " ", badge(run.state)),
    el("dl", { class: "kv card" },
      el("dt", {}, "workflow"), el("dd", {}, run.workflow, el("span", { class: "muted" }, " " + String(run.hash || "").slice(0, 12))),
      el("dt", {}, "site"), el("dd", {}, link("/site/" + encodeURIComponent(run.site), run.site)),
      el("dt", {}, "started by"), el("dd", {}, run.author || ""),
      el("dt", {}, "created"), el("dd", {}, run.created || ""),
      el("dt", {}, "finished"), el("dd", {}, run.finished ? `${run.finished} (took ${duration(run.created, run.finished)})` : "not yet"),
      el("dt", {}, "params"), el("dd", {}, Object.entries(run.params || {}).map(([k, val]) => el("span", { class: "label" }, k + "=" + val))),
      run.message ? [el("dt", {}, "message"), el("dd", {}, run.message)] : null),
    signedOnly ? el("div", { class: "note" }, "This site applies only commands an operator signed. The page cannot sign (your key stays with outpostctl): use ",
      el("code", {}, `outpostctl run cancel ${run.id}`), " or ", el("code", {}, `outpostctl run approve ${run.id} TASK`), ".") : null,
    canAct && !FINAL.includes(run.state) && !run.cancel_requested
      ? el("p", {}, el("button", { class: "act danger", id: "cancel", type: "button", onclick: () => {
        if (confirm(`Cancel run ${run.id} on ${run.site}?`)) action("/api/cancel", { id: run.id }, "cancel");
      } }, "Cancel run")) : (run.cancel_requested && !FINAL.includes(run.state) ? el("p", { class: "muted" }, "Cancel requested.") : null));
  put(document.getElementById("run-graph"),
    j.graph ? graphSvg(run, j.graph) : el("div", {}, el("p", { class: "muted" }, "The workflow changed since this run started; tasks are shown without their edges."), graphSvg(run, null)));
  put(document.getElementById("run-tasks"), el("table", { id: "tasks" },
    el("thead", {}, el("tr", {}, ["task", "state", "attempts", "exit", "started", "took", "message", ""].map(h => el("th", {}, h)))),
    el("tbody", {}, (run.tasks || []).map(t => el("tr", { "data-task": t.id },
      el("td", {}, t.id),
      el("td", {}, badge(t.state)),
      el("td", { class: "num" }, t.attempts),
      el("td", { class: "num" }, t.exit_code === null ? "" : t.exit_code, t.signal ? ` (signal ${t.signal})` : ""),
      el("td", {}, t.started || ""),
      el("td", {}, duration(t.started, t.finished)),
      el("td", {}, t.message || ""),
      el("td", {},
        t.attempts > 0 ? el("button", { class: "act", type: "button", onclick: () => showLogs(run.id, t.id) }, "output") : null,
        canAct && t.state === "awaiting_approval" ? [
          el("button", { class: "act ok", type: "button", "data-approve": t.id, onclick: () => {
            if (confirm(`Approve ${t.id} of run ${run.id}?`)) action("/api/approve", { id: run.id, task: t.id }, "approve " + t.id);
          } }, "Approve"),
          el("button", { class: "act danger", type: "button", "data-reject": t.id, onclick: () => {
            if (confirm(`Reject ${t.id} of run ${run.id}? The gate fails and so may the run.`)) action("/api/approve", { id: run.id, task: t.id, reject: true }, "reject " + t.id);
          } }, "Reject")] : null))))));
}

// ---------- audit ----------

async function drawAudit(v) {
  const j = await api("/api/audit?limit=200");
  if (!j.ok) throw new Error(j.error);
  const rows = (j.events || []).slice().reverse();
  put(v, el("h1", {}, "Audit log"), el("p", { class: "muted" }, "What operators and sites changed at the hub, newest first."),
    el("table", { id: "audit" },
      el("thead", {}, el("tr", {}, ["#", "time", "event", "by", "details"].map(h => el("th", {}, h)))),
      el("tbody", {}, rows.map(e => {
        const o = typeof e === "object" && e ? e : { event: String(e) };
        const rest = Object.fromEntries(Object.entries(o).filter(([k]) => !["seq", "time", "event", "author"].includes(k)));
        return el("tr", {}, el("td", { class: "num" }, o.seq ?? ""), el("td", {}, o.time ?? ""), el("td", {}, o.event ?? ""),
          el("td", {}, o.author ?? ""),
          el("td", {}, typeof o.run === "string" ? [link("/run/" + encodeURIComponent(o.run), o.run), " "] : null,
            el("code", {}, JSON.stringify(rest))));
      }))));
}

// ---------- loop ----------

async function tick(now) {
  stop();
  const r = route();
  const key = r.name + "/" + r.arg + "?" + r.q;
  const v = document.getElementById("view");
  document.querySelectorAll("header nav a").forEach(a => a.classList.toggle("active", a.id === "nav-" + r.name));
  try {
    if (r.name === "fleet") {
      if (drawn !== key) buildFleet(v, r);
      drawn = key;
      await drawFleet(v, r);
    } else if (r.name === "site") {
      drawn = key;
      await drawSite(v, r);
    } else if (r.name === "run") {
      if (drawn !== key) buildRun(v);
      drawn = key;
      await drawRun(v, r);
    } else if (r.name === "audit") {
      drawn = key;
      await drawAudit(v);
    } else {
      put(v, el("div", { class: "err" }, "No such page."));
    }
    setStatus("updated " + new Date().toLocaleTimeString());
  } catch (e) {
    if (e.message === "logged out") return;
    setStatus("could not update: " + e.message);
  }
  if (!now || !timer) timer = setTimeout(() => tick(false), POLL_MS);
}

async function start() {
  try {
    session = await api("/api/session");
  } catch (e) { return; }
  if (!session.ok) { showLoggedOut(); return; }
  document.getElementById("who").textContent = `${session.operator} (${session.role})`;
  document.getElementById("logout").addEventListener("click", async () => {
    await fetch("/logout?csrf=" + encodeURIComponent(session.csrf), { method: "POST", credentials: "same-origin" });
    stop();
    showLoggedOut();
  });
  window.addEventListener("hashchange", () => { drawn = ""; tick(false); });
  tick(false);
}

document.addEventListener("DOMContentLoaded", start);
