// The scenekit page: renders list, one render's graph with live node status, log, videos, and a spec box that
// validates as you type. Plain JavaScript against the API; no build step, nothing fetched from elsewhere.
"use strict";

const $ = (id) => document.getElementById(id);
const STARTER = `scenekit: 1
name: demo
defaults: {model: preview, size: 384x256, fps: 24}
clips:
  - id: arrival
    prompt: "A lighthouse on a cliff, waves below"
    duration: 2s
  - id: beam
    prompt: "The beam sweeps over a stormy sea at night"
    duration: 2s
    transition: {type: crossfade, duration: 0.5s}
output: {file: renders/demo.mp4, preset: ultrafast}
`;
const TERMINAL = ["render_done", "render_failed", "render_cancelled"];
let token = localStorage.getItem("scenekit_token") || "";
let selected = null;   // the render shown: {id, record, nodes}
let source = null;     // its EventSource
let validating = null; // the pending validation timer

function useToken(value) {
  token = value;
  localStorage.setItem("scenekit_token", value);
  // what the browser fetches by itself (the <video> element, EventSource) carries the token as a cookie
  document.cookie = `scenekit_token=${encodeURIComponent(value)}; path=/; SameSite=Strict`;
}

async function api(method, path, body) {
  const headers = token ? {Authorization: `Bearer ${token}`} : {};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {method, headers, body: body === undefined ? undefined : JSON.stringify(body)});
  if (response.status === 401) {
    $("token-form").hidden = false;
    throw new Error("the API token is needed");
  }
  const data = await response.json().catch(() => ({}));
  return {status: response.status, data};
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "class") node.className = value; else if (name.startsWith("on")) node[name] = value;
    else node.setAttribute(name, value);
  }
  for (const child of children) node.append(child);
  return node;
}

// ---- the renders list

async function loadRenders() {
  let answer;
  try { answer = await api("GET", "/renders"); } catch { return; }
  const list = $("renders");
  list.replaceChildren(...answer.data.map((r) => el("li",
    {class: selected && selected.id === r.id ? "selected" : "", title: `${r.id} (${r.source})`, onclick: () => select(r.id)},
    el("span", {class: "name"}, r.spec_file.replace(/^\.scenekit-spec-/, "text ")),
    el("span", {class: `badge ${r.state}`}, r.state))));
  if (!selected && answer.data.length) select(answer.data[0].id);
}

// ---- one render

async function select(id) {
  if (source) source.close();
  const {data} = await api("GET", `/renders/${id}`);
  selected = {id, record: data, nodes: data.nodes && Object.keys(data.nodes).length ? data.nodes : planNodes(data.plan)};
  $("render-title").textContent = `${data.spec_file}  ·  ${id}`;
  $("log").textContent = "";
  showRecord();
  if (!$("spec").value.trim()) {
    const spec = await api("GET", `/renders/${id}/spec`);
    if (spec.status === 200) { $("spec").value = spec.data.text; specChanged(); }
  }
  source = new EventSource(`/renders/${id}/events`);
  for (const type of ["queued", "render_started", "planned", "node_started", "node_step", "node_done", "log", ...TERMINAL]) {
    source.addEventListener(type, (message) => onEvent(id, type, JSON.parse(message.data)));
  }
  loadRenders();
}

function planNodes(plan) {
  const nodes = {};
  for (const n of plan || []) nodes[n.id] = {...n, status: n.status === "run" ? "queued" : "cached", step: null, seconds: null};
  return nodes;
}

function onEvent(id, type, data) {
  if (!selected || selected.id !== id) return;
  const nodes = selected.nodes;
  if (type === "planned") selected.nodes = planNodes(data.nodes);
  else if (type === "node_started" && nodes[data.node]) nodes[data.node].status = "running";
  else if (type === "node_step" && nodes[data.node]) nodes[data.node].step = [data.done, data.total];
  else if (type === "node_done" && nodes[data.node]) Object.assign(nodes[data.node], {status: "done", seconds: data.seconds});
  logLine(type, data);
  if (TERMINAL.includes(type)) {
    source.close();
    api("GET", `/renders/${id}`).then(({data: record}) => {
      if (!selected || selected.id !== id) return;
      selected.record = record;
      selected.nodes = record.nodes;
      showRecord();
      loadRenders();
    });
  } else {
    selected.record.state = type === "queued" ? "queued" : "running";
    showRecord();
  }
}

function logLine(type, data) {
  const time = new Date(data.time * 1000).toLocaleTimeString();
  let text = type.replace("_", " ");
  if (data.node) text += ` ${data.node}`;
  if (type === "planned") text += `: ${data.nodes.length} nodes, ${data.nodes.filter((n) => n.status === "run").length} to run`;
  if (type === "node_started") text += ` (${data.position}/${data.total})`;
  if (type === "node_step") text += ` step ${data.done}/${data.total}`;
  if (type === "node_done") text += ` in ${data.seconds.toFixed(2)} s`;
  if (type === "log") text = `${data.level}: ${data.message}`;
  if (type === "render_done") text += ` in ${data.seconds} s`;
  for (const error of data.errors || []) text += `\n  ${error.node ? error.node + ": " : ""}${error.message}`;
  const log = $("log");
  log.textContent += `${time}  ${text}\n`;
  log.scrollTop = log.scrollHeight;
}

function showRecord() {
  const {record, nodes} = selected;
  const errors = (record.errors || []).map((e) => e.message).join("; ");
  $("render-state").replaceChildren(el("span", {class: `badge ${record.state}`}, record.state),
    ` ${Object.keys(nodes).length} nodes` + (errors ? ` · ${errors}` : ""));
  drawGraph(nodes);
  drawTable(nodes);
  showVideos(record, nodes);
}

function drawTable(nodes) {
  $("nodes").tBodies[0].replaceChildren(...Object.values(nodes).map((n) => el("tr", {},
    el("td", {}, n.id),
    el("td", {}, el("span", {class: `badge ${n.status}`}, n.status)),
    el("td", {}, n.status === "running" && n.step ? stepBar(n.step) : ""),
    el("td", {}, n.seconds != null ? n.seconds.toFixed(2) : ""),
    el("td", {}, n.reason || ""))));
}

function stepBar([done, total]) {
  const bar = el("span", {class: "step"}, el("span", {style: `width: ${(100 * done) / Math.max(1, total)}%`}));
  return el("span", {}, bar, ` ${done}/${total}`);
}

// The DAG: each node in the column of its longest path from a source, edges as curves.
function drawGraph(nodes) {
  const svg = $("dag");
  const NS = "http://www.w3.org/2000/svg";
  const W = 150, H = 30, GX = 40, GY = 12;
  const depth = {};
  const depthOf = (id, seen = new Set()) => {
    if (depth[id] !== undefined) return depth[id];
    if (seen.has(id) || !nodes[id]) return 0;
    seen.add(id);
    const inputs = (nodes[id].inputs || []).filter((i) => nodes[i]);
    depth[id] = inputs.length ? 1 + Math.max(...inputs.map((i) => depthOf(i, seen))) : 0;
    return depth[id];
  };
  // a clip's nodes share a row (in clip order); nodes of no clip (the stitch) sit in the middle
  const clips = [...new Set(Object.values(nodes).map((n) => n.clip).filter((c) => c))];
  const taken = new Set(), place = {};
  let columns = 1, rowCount = Math.max(1, clips.length);
  for (const id of Object.keys(nodes)) {
    const d = depthOf(id);
    const clip = clips.indexOf(nodes[id].clip);
    let row = clip >= 0 ? clip : Math.floor((clips.length - 1) / 2);
    while (taken.has(`${d},${row}`)) row = row + 1;
    taken.add(`${d},${row}`);
    columns = Math.max(columns, d + 1);
    rowCount = Math.max(rowCount, row + 1);
    place[id] = {x: 8 + d * (W + GX), y: 8 + row * (H + GY)};
  }
  const width = 16 + columns * (W + GX);
  const height = 16 + rowCount * (H + GY);
  svg.setAttribute("width", width);
  svg.setAttribute("height", height);
  const shapes = [];
  const make = (tag, attrs) => { const s = document.createElementNS(NS, tag); for (const k in attrs) s.setAttribute(k, attrs[k]); return s; };
  for (const [id, n] of Object.entries(nodes)) {
    for (const input of n.inputs || []) {
      if (!place[input]) continue;
      const a = place[input], b = place[id];
      const x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x, y2 = b.y + H / 2;
      shapes.push(make("path", {class: "edge", d: `M${x1},${y1} C${x1 + GX / 2},${y1} ${x2 - GX / 2},${y2} ${x2},${y2}`}));
    }
  }
  for (const [id, n] of Object.entries(nodes)) {
    const {x, y} = place[id];
    const group = make("g", {});
    const title = make("title", {});
    title.textContent = `${id} (${n.op}): ${n.status}${n.reason ? " · " + n.reason : ""}`;
    group.append(title, make("rect", {x, y, width: W, height: H, rx: 4, class: n.status, style: `fill: var(--${n.status})`}));
    if (n.status === "running" && n.step) {
      group.append(make("rect", {class: "bar", x, y: y + H - 4, height: 4, width: (W * n.step[0]) / Math.max(1, n.step[1])}));
    }
    const label = make("text", {x: x + 6, y: y + 19});
    label.textContent = id.length > 22 ? id.slice(0, 21) + "…" : id;
    group.append(label);
    shapes.push(group);
  }
  svg.replaceChildren(...shapes);
}

function showVideos(record, nodes) {
  const video = $("video");
  const whole = `/renders/${record.id}/video`;
  if (record.state === "done") {
    video.hidden = false;
    if (!video.src.endsWith(whole)) video.src = whole;
  } else {
    video.hidden = true;
    video.removeAttribute("src");
  }
  const segments = Object.values(nodes).filter((n) => n.id.endsWith("/segment") && ["done", "cached"].includes(n.status));
  $("segments").replaceChildren(...(record.state === "done" ? [
    el("button", {type: "button", onclick: () => { video.src = whole; video.play(); }}, "whole video"),
    ...segments.map((n) => el("button", {type: "button", onclick: () => {
      video.src = `/renders/${record.id}/segments/${encodeURIComponent(n.clip)}`; video.play();
    }}, `clip ${n.clip}`))] : []));
}

// ---- the spec box

function specBody() {
  const body = {spec: $("spec").value};
  if ($("opt-model").value.trim()) body.model = $("opt-model").value.trim();
  if ($("opt-size").value.trim()) body.size = $("opt-size").value.trim();
  return body;
}

function specChanged() {
  drawGutter([]);
  clearTimeout(validating);
  validating = setTimeout(validate, 300);
}

async function validate() {
  const text = $("spec").value;
  if (!text.trim()) return showErrors([], "");
  let answer;
  try { answer = await api("POST", "/validate", specBody()); } catch (error) { return showErrors([], error.message); }
  if (text !== $("spec").value) return; // typed on since; a newer check is on its way
  const errors = answer.data.errors || [];
  showErrors(errors, answer.status === 200 && answer.data.valid ? "valid" : "");
}

function showErrors(errors, status) {
  const box = $("spec-status");
  box.textContent = status || (errors.length ? `${errors.length} problem${errors.length > 1 ? "s" : ""}` : "");
  box.className = errors.length ? "bad" : status === "valid" ? "ok" : "";
  $("errors").replaceChildren(...errors.map((e) => el("li", {onclick: () => goToLine(e.line)},
    el("span", {class: "where"}, `${e.file && e.file !== "<spec>" ? e.file + ":" : ""}${e.line ? `line ${e.line}:${e.column} ` : ""}`),
    `${e.field ? e.field + ": " : ""}${e.message}`,
    e.hint ? el("span", {class: "hint"}, `hint: ${e.hint}`) : "")));
  drawGutter(errors.filter((e) => e.line && (!e.file || e.file === "<spec>")));
}

function drawGutter(errors) {
  const count = $("spec").value.split("\n").length;
  const byLine = {};
  for (const e of errors) (byLine[e.line] = byLine[e.line] || []).push(`${e.field ? e.field + ": " : ""}${e.message}`);
  const lines = [];
  for (let i = 1; i <= count; i++) {
    lines.push(el("div", byLine[i] ? {class: "error", title: byLine[i].join("\n")} : {}, byLine[i] ? `● ${i}` : String(i)));
  }
  $("gutter").replaceChildren(...lines);
  $("gutter").scrollTop = $("spec").scrollTop;
}

function goToLine(line) {
  if (!line) return;
  const area = $("spec");
  const lines = area.value.split("\n");
  const start = lines.slice(0, line - 1).reduce((sum, l) => sum + l.length + 1, 0);
  area.focus();
  area.setSelectionRange(start, start + (lines[line - 1] || "").length);
  area.scrollTop = (line - 3) * 18;
}

async function renderSpec() {
  let answer;
  try { answer = await api("POST", "/renders", specBody()); } catch (error) { return showErrors([], error.message); }
  if (answer.status === 201) {
    showErrors([], "queued");
    select(answer.data.id);
  } else {
    showErrors(answer.data.errors || [{message: answer.data.detail || `error ${answer.status}`}], "");
  }
}

// ---- start

function start() {
  const fromLink = new URLSearchParams(location.hash.slice(1)).get("token");
  if (fromLink) { useToken(fromLink); history.replaceState(null, "", location.pathname); }
  else if (token) useToken(token);
  $("token-form").onsubmit = (event) => {
    event.preventDefault();
    useToken($("token").value.trim());
    $("token-form").hidden = true;
    loadRenders();
  };
  $("spec").value = STARTER;
  $("spec").addEventListener("input", specChanged);
  $("spec").addEventListener("scroll", () => { $("gutter").scrollTop = $("spec").scrollTop; });
  for (const id of ["opt-model", "opt-size"]) $(id).addEventListener("input", specChanged);
  $("render-button").onclick = renderSpec;
  specChanged();
  loadRenders();
  setInterval(loadRenders, 3000);
}

start();
