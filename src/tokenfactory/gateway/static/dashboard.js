// The factory's dashboard: polls /v1/factory/dashboard with the admin key and draws it.
// Plain DOM and inline SVG, no library and nothing loaded from elsewhere. Every number
// shown also sits in a data-value attribute, exactly as the gateway sent it.
"use strict";

const KEY = "tokenfactory.adminKey";
const TIERS = ["realtime", "standard", "flex", "batch"];
const COLORS = { realtime: "#d9480f", standard: "#1c7ed6", flex: "#2f9e44", batch: "#7048e8" };
const MONEY_COLORS = { revenue: "#2f9e44", cost: "#e03131", profit: "#1c7ed6" };
const SVG = "http://www.w3.org/2000/svg";
// Large numbers in short form (12.5M), so labels and cards keep their width.
const COMPACT = new Intl.NumberFormat("en-US", { notation: "compact", maximumSignificantDigits: 3 });
const params = new URLSearchParams(location.search);
const EVERY_MS = 1000 * (Number(params.get("every")) || 2);
let timer = null;

// -- small helpers ----------------------------------------------------------------------

function el(tag, attrs, ...children) {
  const node = tag.startsWith("svg:")
    ? document.createElementNS(SVG, tag.slice(4))
    : document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value !== null && value !== undefined) node.setAttribute(name, String(value));
  }
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// A decimal dollar string to integer micro-dollars, exactly (BigInt, no float on the way).
function micros(usd) {
  const negative = usd.startsWith("-");
  const [whole, fraction = ""] = usd.replace("-", "").split(".");
  const value = BigInt(whole + (fraction + "000000").slice(0, 6));
  return negative ? -value : value;
}

function money(usd) {
  if (usd === null || usd === undefined) return "n/a";
  const n = Number(usd);
  const digits = Math.abs(n) >= 100 ? 2 : Math.abs(n) >= 1 ? 4 : 6;
  return (n < 0 ? "-$" : "$") + Math.abs(n).toFixed(digits);
}

function percent(fraction) {
  if (fraction === null || fraction === undefined) return "n/a";
  const p = 100 * Number(fraction);
  return (Math.abs(p) >= 10000 ? COMPACT.format(p) : p.toFixed(1)) + "%";
}

function ms(seconds) {
  if (seconds === null || seconds === undefined) return "n/a";
  const m = 1000 * seconds;
  return m.toFixed(m < 10 ? 2 : 0) + " ms";
}

// An axis label: four significant digits, or the short form from 10,000 up.
function tick(v, unit) {
  const text = Math.abs(v) >= 10000 ? COMPACT.format(v) : Number(v.toPrecision(4)).toString();
  return unit === "$" ? (v < 0 ? "-$" + text.slice(1) : "$" + text) : text + unit;
}

// Seconds as "42 s", "3 min 5 s" or "2 h 10 min".
function duration(seconds) {
  const s = Math.floor(Number(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

function count(n) {
  return Number(n).toLocaleString("en-US");
}

// Show `text` in the element and keep the gateway's exact value beside it.
function show(id, value, text) {
  const node = document.getElementById(id);
  node.dataset.value = value === null || value === undefined ? "" : String(value);
  node.textContent = text;
}

function fill(tableId, rows) {
  const body = document.querySelector(`#${tableId} tbody`);
  body.replaceChildren(...rows);
}

// -- charts -----------------------------------------------------------------------------

// A line chart of `series` ({name, color, dashed, values, sum}) over `starts` (ISO times).
// null values break the line. Each path carries its name, point count and exact sum.
function lineChart(svgId, legendId, starts, series, format) {
  const svg = document.getElementById(svgId);
  const [W, H, left, right, top, bottom] = [640, 220, 72, 12, 10, 26];
  const values = series.flatMap((s) => s.values).filter((v) => v !== null);
  let lo = Math.min(0, ...values);
  let hi = Math.max(0, ...values);
  if (hi === lo) hi = lo + 1;
  const x = (i) => left + (starts.length > 1 ? (i * (W - left - right)) / (starts.length - 1) : 0);
  const y = (v) => top + ((hi - v) * (H - top - bottom)) / (hi - lo);
  const parts = [];
  for (let k = 0; k <= 4; k++) {
    const v = lo + ((hi - lo) * k) / 4;
    parts.push(el("svg:line", { x1: left, x2: W - right, y1: y(v), y2: y(v), class: "grid" }));
    parts.push(el("svg:text", { x: left - 6, y: y(v) + 4, class: "tick", "text-anchor": "end" }, format(v)));
  }
  parts.push(el("svg:line", { x1: left, x2: W - right, y1: y(0), y2: y(0), class: "axis" }));
  const clock = (iso) => new Date(iso).toLocaleTimeString("en-GB", { hour12: false });
  if (starts.length) {
    parts.push(el("svg:text", { x: left, y: H - 6, class: "tick" }, clock(starts[0])));
    parts.push(el("svg:text", { x: W - right, y: H - 6, class: "tick", "text-anchor": "end" }, clock(starts[starts.length - 1])));
  }
  for (const s of series) {
    let d = "";
    let pen = "M";
    const dots = [];
    s.values.forEach((v, i) => {
      if (v === null) {
        pen = "M";
        return;
      }
      d += `${pen}${x(i).toFixed(1)},${y(v).toFixed(1)} `;
      pen = "L";
      // A point with no neighbour draws no line: mark it with a dot.
      const alone = (s.values[i - 1] ?? null) === null && (s.values[i + 1] ?? null) === null;
      if (alone) dots.push(el("svg:circle", { cx: x(i), cy: y(v), r: 3, fill: s.color }));
    });
    parts.push(
      el("svg:path", {
        d: d.trim() || `M${left},${y(0)}`,
        class: "series" + (s.dashed ? " dashed" : ""),
        stroke: s.color,
        "data-series": s.name,
        "data-points": s.values.length,
        "data-sum": s.sum,
      }),
      ...dots,
    );
  }
  svg.replaceChildren(...parts);
  svg.dataset.series = String(series.length);
  const legend = document.getElementById(legendId);
  legend.replaceChildren(
    ...series.map((s) => {
      const swatch = el("i", { class: s.dashed ? "dashed" : "" });
      swatch.style.borderColor = s.color;
      return el("span", { class: "key" }, swatch, s.name);
    }),
  );
}

function tokenSeries(data) {
  const buckets = data.series.buckets;
  const tiers = TIERS.filter((t) => t in data.pnl.per_tier);
  const out = [];
  for (const tier of tiers) {
    for (const kind of ["output", "input"]) {
      const raw = buckets.map((b) => (b.tokens[tier] ? b.tokens[tier][kind] : 0));
      out.push({
        name: `${tier} ${kind}`,
        color: COLORS[tier],
        dashed: kind === "input",
        values: raw.map((n, i) => n / Number(buckets[i].seconds)),
        sum: raw.reduce((a, b) => a + b, 0),
      });
    }
  }
  return out;
}

function moneySeries(data) {
  const buckets = data.series.buckets;
  const pick = (name, of) => ({
    name,
    color: MONEY_COLORS[name],
    values: buckets.map((b) => Number(of(b))),
    sum: buckets.reduce((total, b) => total + micros(of(b)), 0n).toString(),
  });
  return [
    pick("revenue", (b) => b.revenue_usd),
    {
      ...pick("cost", (b) => b.cost_usd),
      values: buckets.map((b) => Number(b.cost_usd) + Number(b.idle_cost_usd)),
      sum: buckets.reduce((t, b) => t + micros(b.cost_usd) + micros(b.idle_cost_usd), 0n).toString(),
    },
    pick("profit", (b) => b.profit_usd),
  ];
}

function marginSeries(data) {
  const values = data.series.buckets.map((b) =>
    Number(b.revenue_usd) > 0 ? Number(b.profit_usd) / Number(b.revenue_usd) : null,
  );
  return [{ name: "margin", color: "#495057", values, sum: null }];
}

// -- sections ---------------------------------------------------------------------------

function renderKpis(data) {
  const p = data.pnl;
  show("revenue", p.revenue_usd, money(p.revenue_usd));
  show("cost", p.cost_usd, money(p.cost_usd));
  show("idle-cost", p.idle_cost_usd, money(p.idle_cost_usd));
  show("profit", p.profit_usd, money(p.profit_usd));
  show("margin", p.margin, percent(p.margin));
  show("cost-per-million", p.cost_per_million_tokens, money(p.cost_per_million_tokens));
  const tpj = p.tokens_per_joule;
  show("tokens-per-joule", tpj, tpj === null ? "n/a" : Number(tpj).toPrecision(3));
  show("tokens-input", p.tokens.input, count(p.tokens.input));
  show("tokens-output", p.tokens.output, count(p.tokens.output));
  const last = data.series.buckets[data.series.buckets.length - 1];
  const lastOut = Object.values(last.tokens).reduce((a, t) => a + t.output, 0);
  const rate = lastOut / Number(last.seconds);
  show("output-rate", rate, rate.toFixed(1));
  show("requests", p.requests.total, count(p.requests.total));
}

function renderFloor(floor) {
  fill(
    "queue",
    Object.entries(floor.queued_by_tier).map(([tier, n]) =>
      el("tr", { "data-tier": tier, "data-queued": n }, el("td", {}, tier), el("td", {}, n)),
    ),
  );
  fill(
    "replicas",
    floor.replicas.map((r) => {
      const bar = el("progress", { max: r.max_concurrency, value: r.running });
      return el(
        "tr",
        { "data-replica": r.name, "data-running": r.running, "data-healthy": r.healthy },
        el("td", {}, r.name),
        el("td", { class: r.healthy ? "ok" : "bad" }, r.healthy ? "healthy" : "down"),
        el("td", {}, bar, ` ${r.running} / ${r.max_concurrency}`),
        el("td", {}, r.engine_waiting === null ? "n/a" : r.engine_waiting),
      );
    }),
  );
  show("preemptions", floor.preemptions, count(floor.preemptions));
}

function against(p50, p99, objective) {
  const text = `${ms(p50)} / ${ms(p99)}` + (objective === null ? "" : ` (${ms(objective)})`);
  const missed = objective !== null && p99 !== null && p99 > objective;
  return el("td", { class: missed ? "bad" : "" }, text);
}

function renderService(service) {
  fill(
    "service",
    Object.entries(service).map(([tier, s]) =>
      el(
        "tr",
        { "data-tier": tier, "data-requests": s.requests, "data-attainment": s.attainment ?? "" },
        el("td", {}, tier),
        el("td", {}, s.requests),
        against(s.ttft_p50_s, s.ttft_p99_s, s.ttft_objective_s),
        against(s.tpot_p50_s, s.tpot_p99_s, s.tpot_objective_s),
        el("td", {}, s.met === null ? "best effort" : percent(s.attainment)),
      ),
    ),
  );
}

function renderTiers(perTier) {
  fill(
    "tiers",
    TIERS.filter((t) => t in perTier).map((tier) => {
      const s = perTier[tier];
      return el(
        "tr",
        {
          "data-tier": tier,
          "data-input": s.tokens.input,
          "data-output": s.tokens.output,
          "data-revenue": s.revenue_usd,
        },
        el("td", {}, tier),
        el("td", {}, count(s.requests)),
        el("td", {}, count(s.tokens.input)),
        el("td", {}, count(s.tokens.output)),
        el("td", {}, money(s.revenue_usd)),
        el("td", {}, money(s.cost_usd)),
        el("td", {}, money(s.profit_usd)),
      );
    }),
  );
}

function renderTenants(tenants) {
  fill(
    "tenants",
    tenants.map((t) =>
      el(
        "tr",
        { "data-tenant": t.tenant, "data-revenue": t.revenue_usd },
        el("td", {}, t.tenant),
        el("td", {}, count(t.requests)),
        el("td", {}, count(t.tokens.output)),
        el("td", {}, money(t.revenue_usd)),
        el("td", {}, money(t.profit_usd)),
      ),
    ),
  );
}

// Every tenant's batches, open or in the window: counts as OpenAI's request_counts.
function renderBatches(batches) {
  document.getElementById("no-batches").hidden = batches.length > 0;
  fill(
    "batches",
    batches.map((b) => {
      const c = b.request_counts;
      return el(
        "tr",
        {
          "data-batch": b.id,
          "data-tenant": b.tenant,
          "data-status": b.status,
          "data-total": c.total,
          "data-completed": c.completed,
          "data-failed": c.failed,
        },
        el("td", {}, b.tenant),
        // Ids are long: the tail tells them apart, the tooltip has the whole id.
        el("td", { title: b.id }, `…${b.id.slice(-8)}`),
        el("td", {}, b.status),
        el(
          "td",
          {},
          el("progress", { max: 1, value: b.progress ?? 0 }),
          ` ${count(c.completed)} ok, ${count(c.failed)} failed / ${count(c.total)}`,
        ),
        // ISO 8601 in UTC from the gateway: month, day and minute are the UTC ones.
        el("td", { title: b.expires_at }, b.expires_at.slice(5, 16).replace("T", " ")),
      );
    }),
  );
}

function render(data) {
  const info = document.getElementById("window-info");
  info.dataset.since = data.since;
  info.dataset.until = data.until;
  // A window reaching back before the gateway started is cut there: say so.
  const cut = data.since === data.started_at;
  info.dataset.cut = cut;
  const from = cut ? `gateway start ${data.since.slice(0, 19)}` : data.since.slice(0, 19);
  const asked = cut ? ` (up ${duration(data.pnl.window.seconds)} of the ${data.window} asked)` : "";
  info.textContent = `${from} to ${data.until.slice(0, 19)} UTC${asked}, ${data.series.buckets.length} buckets of ${tick(Number(data.series.step_s), " s")}`;
  renderKpis(data);
  const starts = data.series.buckets.map((b) => b.start);
  lineChart("chart-tokens", "legend-tokens", starts, tokenSeries(data), (v) => tick(v, ""));
  lineChart("chart-money", "legend-money", starts, moneySeries(data), (v) => tick(v, "$"));
  lineChart("chart-margin", "legend-margin", starts, marginSeries(data), (v) => tick(100 * v, "%"));
  renderFloor(data.floor);
  renderService(data.service);
  renderTiers(data.pnl.per_tier);
  renderTenants(data.top_tenants);
  renderBatches(data.batches);
}

// -- polling and the key ----------------------------------------------------------------

// Each (re)start of polling is a new chain; a chain whose answer arrives after a newer
// chain started drops it, so one poll loop runs at a time.
let chain = 0;

function say(message) {
  document.getElementById("error").textContent = message || "";
}

function lock(message) {
  chain += 1;
  clearTimeout(timer);
  document.body.dataset.state = "locked";
  document.getElementById("board").hidden = true;
  document.getElementById("login").hidden = false;
  document.getElementById("forget").hidden = true;
  say(message);
}

function restart() {
  chain += 1;
  clearTimeout(timer);
  poll(chain);
}

async function poll(id) {
  const key = localStorage.getItem(KEY);
  if (!key) return lock();
  const window_ = document.getElementById("window").value;
  let response;
  let body;
  try {
    response = await fetch(`/v1/factory/dashboard?window=${encodeURIComponent(window_)}`, {
      headers: { Authorization: `Bearer ${key}` },
      cache: "no-store",
    });
    body = await response.json();
  } catch (e) {
    if (id !== chain) return;
    say(`gateway unreachable: ${e}`);
    timer = setTimeout(() => poll(id), EVERY_MS);
    return;
  }
  if (id !== chain) return;
  if (response.status === 401 || response.status === 403) {
    localStorage.removeItem(KEY);
    return lock(body.error ? body.error.message : `HTTP ${response.status}`);
  }
  if (!response.ok) {
    say(body.error ? body.error.message : `HTTP ${response.status}`);
  } else {
    render(body);
    say("");
    document.getElementById("login").hidden = true;
    document.getElementById("board").hidden = false;
    document.getElementById("forget").hidden = false;
    document.body.dataset.state = "live";
    document.body.dataset.updated = body.until;
  }
  timer = setTimeout(() => poll(id), EVERY_MS);
}

document.getElementById("login").addEventListener("submit", (event) => {
  event.preventDefault();
  localStorage.setItem(KEY, document.getElementById("key").value.trim());
  document.getElementById("key").value = "";
  restart();
});
document.getElementById("forget").addEventListener("click", () => {
  localStorage.removeItem(KEY);
  lock();
});
document.getElementById("window").addEventListener("change", restart);
restart();
