// Eventide's query page: a query builder over the query spec (docs/API.md, POST /api/v1/query/{dataset}), charts with
// deploy markers, a sortable results table, a SQL tab, the deploys page (verdicts drawn as
// charts) and a live tail of new events. Every answer comes from the HTTP API; this file only
// builds requests and draws replies.
import uPlot from '/ui/vendor/uPlot.esm.js';

const $ = (id) => document.getElementById(id);
const OPS = ['COUNT', 'SUM', 'AVG', 'MIN', 'MAX', 'COUNT_DISTINCT', 'P001', 'P01', 'P05', 'P10',
  'P25', 'P50', 'P75', 'P90', 'P95', 'P99', 'P999', 'HEATMAP', 'CONCURRENCY', 'RATE_SUM',
  'RATE_AVG', 'RATE_MAX'];
const FILTER_OPS = ['=', '!=', '>', '>=', '<', '<=', 'starts-with', 'does-not-start-with',
  'contains', 'does-not-contain', 'exists', 'does-not-exist', 'in', 'not-in'];
const HAVING_OPS = ['>', '>=', '<', '<=', '=', '!='];
/** Groups drawn per chart; the rest are summarized. */
const TOP_N = 10;
/** Result rows put in the table at once; the rest are summarized in one row. */
const TABLE_ROWS = 1000;
/** Raw events per page. */
const EVENTS_PAGE = 50;
const KEY_STORE = 'eventide.key';
/** The page's views, each with a tab (`tab-X`) and a main element (`X-view`). */
const VIEWS = ['query', 'sql', 'deploys', 'tail', 'triggers'];
const COLORS = ['#3056d3', '#d97706', '#059669', '#dc2626', '#7c3aed', '#0891b2', '#db2777',
  '#65a30d', '#9333ea', '#475569'];

let key = localStorage.getItem(KEY_STORE) || '';
let charts = [];

// The server's clock minus this browser's, in seconds, learned from each query reply's
// `window` (a relative range ends at the server's now): charts and raw-event lists use the
// server's time, which differs from the browser's when either clock is off (or the server
// runs with --clock-start).
let clockOffset = 0;
const serverNow = () => Date.now() / 1000 + clockOffset;

class ApiError extends Error {
  constructor(message, status) { super(message); this.status = status; }
}

/** A JSON request to the API; `signal` (an AbortSignal) cancels it. */
async function api(path, body, signal) {
  const r = await fetch(path, {
    method: body === undefined ? 'GET' : 'POST',
    headers: { 'X-Honeycomb-Team': key, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal,
  });
  let reply = null;
  try { reply = await r.json(); } catch { reply = null; }
  if (r.status === 401) askKey();
  if (!r.ok) throw new ApiError((reply && reply.error) || `HTTP ${r.status}`, r.status);
  return reply;
}

// ---------- rows of the builder ----------

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') e.className = v; else if (k in e && k !== 'list') e[k] = v; else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}

function select(options, value, attrs = {}) {
  const s = el('select', attrs);
  for (const o of options) s.append(el('option', { value: o, textContent: o }));
  if (value !== undefined) s.value = value;
  return s;
}

function removable(row) {
  row.append(el('button', { type: 'button', textContent: '×', title: 'remove', onclick: () => row.remove() }));
  return row;
}

function calcRow(c = { op: 'COUNT' }) {
  return removable(el('div', { class: 'row calc' },
    select(OPS, c.op, { 'data-testid': 'calc-op' }),
    el('input', { list: 'columns', placeholder: 'column', value: c.column || '', 'data-testid': 'calc-column' })));
}

/** A WHERE row; `testid` prefixes its controls' test ids (the live tail has its own). */
function filterRow(f = { op: '=' }, testid = 'filter') {
  const v = f.value === undefined ? '' : (Array.isArray(f.value) ? f.value.join(', ') : String(f.value));
  return removable(el('div', { class: 'row filter' },
    el('input', { list: 'columns', placeholder: 'column', value: f.column || '', 'data-testid': `${testid}-column` }),
    select(FILTER_OPS, f.op, { 'data-testid': `${testid}-op` }),
    el('input', { placeholder: 'value', value: v, 'data-testid': `${testid}-value` })));
}

/** The query-spec filters of the WHERE rows in `box`. */
function readFilters(box) {
  return [...box.querySelectorAll('.filter')].map((r) => {
    const [col, op, val] = r.querySelectorAll('input, select');
    const f = { column: col.value.trim(), op: op.value };
    const v = parseValue(op.value, val.value);
    if (v !== undefined) f.value = v;
    return f;
  }).filter((f) => f.column);
}

function orderRow(o = {}) {
  const what = o.op ? (o.op.toUpperCase() === 'COUNT' ? 'COUNT' : `${o.op}(${o.column || ''})`) : (o.column || '');
  return removable(el('div', { class: 'row order' },
    el('input', { placeholder: 'COUNT, P99(duration_ms) or a group-by column', value: what }),
    select(['descending', 'ascending'], o.order || 'descending')));
}

function havingRow(h = { calculate_op: 'COUNT', op: '>' }) {
  return removable(el('div', { class: 'row having' },
    select(OPS.filter((o) => !['HEATMAP', 'CONCURRENCY'].includes(o) && !o.startsWith('RATE')), h.calculate_op),
    el('input', { list: 'columns', placeholder: 'column', value: h.column || '' }),
    select(HAVING_OPS, h.op),
    el('input', { type: 'number', step: 'any', value: h.value ?? '' })));
}

/** A filter value as typed: numbers, booleans and lists become JSON values. */
function parseValue(op, text) {
  const one = (t) => {
    t = t.trim();
    if (t === 'true' || t === 'false') return t === 'true';
    if (t !== '' && !Number.isNaN(Number(t))) return Number(t);
    return t;
  };
  if (op === 'exists' || op === 'does-not-exist') return undefined;
  if (op === 'in' || op === 'not-in') return text.split(',').filter((t) => t.trim() !== '').map(one);
  if (['starts-with', 'does-not-start-with', 'contains', 'does-not-contain'].includes(op)) return text;
  return one(text);
}

// ---------- state: form <-> query spec <-> URL ----------

function readForm() {
  const calcs = [...document.querySelectorAll('#calcs .calc')].map((r) => {
    const [op, col] = r.querySelectorAll('select, input');
    return col.value.trim() ? { op: op.value, column: col.value.trim() } : { op: op.value };
  });
  const filters = readFilters($('filters'));
  const orders = [...document.querySelectorAll('#orders .order')].map((r) => {
    const [what, dir] = r.querySelectorAll('input, select');
    const m = what.value.trim().match(/^([A-Za-z_0-9]+)(?:\((.*)\))?$/);
    if (m && OPS.includes(m[1].toUpperCase()) && (m[2] !== undefined || m[1].toUpperCase() === 'COUNT')) {
      return m[2] ? { op: m[1].toUpperCase(), column: m[2], order: dir.value } : { op: m[1].toUpperCase(), order: dir.value };
    }
    return { column: what.value.trim(), order: dir.value };
  }).filter((o) => o.op || o.column);
  const havings = [...document.querySelectorAll('#havings .having')].map((r) => {
    const [op, col, cmp, val] = r.querySelectorAll('select, input');
    const h = { calculate_op: op.value, op: cmp.value, value: Number(val.value) };
    if (col.value.trim()) h.column = col.value.trim();
    return h;
  }).filter((h) => !Number.isNaN(h.value));
  const time = $('range').value === 'custom'
    ? { start: $('start').value, end: $('end').value }
    : { range: Number($('range').value) };
  return {
    dataset: $('dataset').value,
    calculations: calcs.length ? calcs : [{ op: 'COUNT' }],
    filters,
    filter_combination: $('combination').value,
    breakdowns: $('breakdowns').value.split(',').map((s) => s.trim()).filter(Boolean),
    orders,
    havings,
    limit: Number($('limit').value) || 100,
    time,
  };
}

function fillForm(s) {
  if (s.dataset) $('dataset').value = s.dataset;
  $('calcs').replaceChildren(...(s.calculations || [{ op: 'COUNT' }]).map(calcRow));
  $('filters').replaceChildren(...(s.filters || []).map(filterRow));
  $('combination').value = s.filter_combination || 'AND';
  $('breakdowns').value = (s.breakdowns || []).join(', ');
  $('orders').replaceChildren(...(s.orders || []).map(orderRow));
  $('havings').replaceChildren(...(s.havings || []).map(havingRow));
  $('limit').value = s.limit || 100;
  const t = s.time || { range: 7200 };
  if (t.start) {
    $('range').value = 'custom';
    $('start').value = t.start;
    $('end').value = t.end;
  } else {
    $('range').value = String(t.range || 7200);
  }
  $('absolute').hidden = $('range').value !== 'custom';
}

/** A bucket width giving about 60 points over `seconds`, rounded to a familiar step. */
function granularity(seconds) {
  const steps = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400];
  const want = seconds / 60;
  return steps.find((s) => s >= want) || 86400;
}

function toSpec(s) {
  const spec = {
    calculations: s.calculations, filters: s.filters, filter_combination: s.filter_combination,
    breakdowns: s.breakdowns, orders: s.orders, havings: s.havings, limit: s.limit,
  };
  let seconds;
  if (s.time.start) {
    spec.start_time = Date.parse(s.time.start + 'Z') / 1000;
    spec.end_time = Date.parse(s.time.end + 'Z') / 1000;
    seconds = spec.end_time - spec.start_time;
  } else {
    spec.time_range = s.time.range;
    seconds = s.time.range;
  }
  spec.granularity = granularity(Math.max(seconds, 1));
  return spec;
}

// The URL's hash holds the query (`#{…}`) or, on the live tail, the tail (`#tail={…}`); the
// query's is put back when leaving the tail.
let queryHash = '';

function saveUrl(s) {
  queryHash = '#' + encodeURIComponent(JSON.stringify(s));
  history.replaceState(null, '', queryHash);
}

function stateFromUrl() {
  if (location.hash.length < 2) return null;
  try { return JSON.parse(decodeURIComponent(location.hash.slice(1))); } catch { return null; }
}

// ---------- errors ----------

function clearErrors() {
  for (const e of document.querySelectorAll('.error')) { e.hidden = true; e.textContent = ''; }
}

/** Shows a server error next to the part of the query it is about. */
function showError(message, s, where) {
  let part = where || 'general';
  if (!where && s) {
    const col = (message.match(/column "([^"]+)"/) || [])[1];
    if (/filter/i.test(message) || (col && s.filters.some((f) => f.column === col))) part = 'where';
    else if (/calculation|HEATMAP|CONCURRENCY|RATE_|numeric column/.test(message)) part = 'visualize';
    else if (/order|having|limit/i.test(message)) part = 'order';
    else if (/breakdown/.test(message) || (col && s.breakdowns.includes(col))) part = 'group';
    else if (/time|granularity/i.test(message)) part = 'time';
    else if (col && s.calculations.some((c) => c.column === col)) part = 'visualize';
  }
  const box = document.querySelector(`.error[data-for="${part}"]`);
  box.textContent = message;
  box.hidden = false;
}

// ---------- results ----------

function cellText(v) {
  if (v === null || v === undefined) return '';
  if (typeof v === 'object') {
    if (v.buckets) return `${v.buckets.length} buckets, ${v.min}–${v.max}`;
    return JSON.stringify(v);
  }
  if (typeof v === 'number' && !Number.isInteger(v)) return String(Math.round(v * 1e6) / 1e6);
  return String(v);
}

/** A sortable table (click a header); `onRow(row)` on a click of a row. */
function table(columns, rows, testid, onRow) {
  const t = el('table', { 'data-testid': testid });
  const head = el('tr');
  const body = el('tbody');
  let sortCol = -1; let asc = true;
  const draw = () => {
    const sorted = sortCol < 0 ? rows : [...rows].sort((a, b) => {
      const x = a[sortCol]; const y = b[sortCol];
      const c = (typeof x === 'number' && typeof y === 'number') ? x - y : String(x ?? '').localeCompare(String(y ?? ''));
      return asc ? c : -c;
    });
    body.replaceChildren(...sorted.map((r) => {
      const tr = el('tr', onRow ? { class: 'clickable' } : {}, ...r.map((v) => el('td', { textContent: cellText(v) })));
      if (onRow) tr.onclick = () => onRow(r);
      return tr;
    }));
    [...head.children].forEach((th, i) => { th.className = i === sortCol ? (asc ? 'sorted-asc' : 'sorted-desc') : ''; });
  };
  columns.forEach((c, i) => {
    head.append(el('th', {
      textContent: c,
      onclick: () => { if (sortCol === i) asc = !asc; else { sortCol = i; asc = true; } draw(); },
    }));
  });
  t.append(el('thead', {}, head), body);
  draw();
  return t;
}

function groupKey(row, breakdowns) {
  return breakdowns.length ? breakdowns.map((b) => cellText(row[b])).join(', ') : 'all';
}

function drawCharts(s, reply) {
  for (const c of charts) c.destroy();
  charts = [];
  // What each chart draws, for browser tests: {calc, labels, data}.
  window.eventideCharts = [];
  const box = $('charts');
  box.replaceChildren();
  const series = reply.series || [];
  const groups = reply.results.slice(0, TOP_N).map((r) => groupKey(r, s.breakdowns));
  const times = [...new Set(series.map((r) => Date.parse(r.time) / 1000))].sort((a, b) => a - b);
  const index = new Map(times.map((t, i) => [t, i]));
  const names = [...new Set(s.calculations.map((c) => (c.op === 'COUNT' ? 'COUNT' : c.op === 'CONCURRENCY' ? 'CONCURRENCY' : `${c.op}(${c.column || ''})`)))];
  for (const name of names) {
    if (name.startsWith('HEATMAP')) {
      drawHeatmap(s, reply, name, times, box);
      continue;
    }
    const data = [times];
    for (const g of groups) {
      const ys = new Array(times.length).fill(null);
      for (const r of series) {
        if (groupKey(r, s.breakdowns) === g && r[name] !== undefined && r[name] !== null) ys[index.get(Date.parse(r.time) / 1000)] = r[name];
      }
      data.push(ys);
    }
    const wrap = el('div', { class: 'chart', 'data-testid': 'chart', 'data-calc': name });
    wrap.append(el('h3', { textContent: name }));
    if (reply.results.length > TOP_N) {
      wrap.append(el('div', { class: 'summary', textContent: `top ${TOP_N} of ${reply.results.length} groups drawn; the table lists them all` }));
    }
    box.append(wrap);
    const markers = reply.markers || [];
    const g = toSpec(s).granularity;
    const u = new uPlot({
      width: Math.max(wrap.clientWidth - 16, 300),
      height: 220,
      // Dragging selects a time range for BubbleUp instead of zooming.
      cursor: { drag: { x: true, y: false, setScale: false } },
      series: [{}, ...groups.map((g, i) => ({ label: g, stroke: COLORS[i % COLORS.length], spanGaps: false, points: { show: times.length < 3 } }))],
      axes: [{}, { size: 60 }],
      hooks: {
        draw: [(u) => {
          for (const m of wrap.querySelectorAll('.marker')) m.remove();
          for (const m of markers) {
            const x = u.valToPos(m.start_time, 'x');
            if (x < 0 || x > u.bbox.width / devicePixelRatio) continue;
            // The plot area's place inside the chart box.
            const over = u.over.getBoundingClientRect();
            const box = wrap.getBoundingClientRect();
            const div = el('div', {
              class: 'marker', 'data-testid': 'marker',
              title: `${m.type ? m.type + ': ' : ''}${m.message}`,
            });
            div.style.left = `${over.left - box.left + x}px`;
            div.style.top = `${over.top - box.top}px`;
            div.style.height = `${over.height}px`;
            wrap.append(div);
          }
        }],
      },
      scales: { x: { time: true, range: () => xRange(s, times) } },
    }, data, wrap);
    charts.push(u);
    window.eventideCharts.push({ calc: name, labels: groups, data });
    u.over.addEventListener('mouseup', () => {
      const { left, width } = u.select;
      if (width > 3) {
        const t0 = Math.floor(u.posToVal(left, 'x'));
        const t1 = Math.ceil(u.posToVal(left + width, 'x'));
        bubbleUp(s, { start_time: t0, end_time: t1 });
        return;
      }
      // A click on a point: the events of the nearest line in that time bucket.
      const idx = u.cursor.idx;
      if (idx === null || idx === undefined) return;
      let best = -1; let dist = Infinity;
      for (let i = 1; i < u.series.length; i++) {
        const v = u.data[i][idx];
        if (v === null || v === undefined) continue;
        const d = Math.abs(u.valToPos(v, 'y') - u.cursor.top);
        if (d < dist) { dist = d; best = i - 1; }
      }
      if (best < 0) return;
      const row = reply.results.find((r) => groupKey(r, s.breakdowns) === groups[best]);
      const group = s.breakdowns.map((b) => [b, row ? row[b] : null]);
      showEvents(s, group, 0, [times[idx], times[idx] + g]);
    });
  }
}

/** Heat colour of a count against the largest (log scale). */
function heat(count, max) {
  if (!count) return null;
  const f = Math.log1p(count) / Math.log1p(max);
  const l = Math.round(92 - f * 62);
  return `hsl(${Math.round(220 - f * 200)}, 85%, ${l}%)`;
}

/**
 * HEATMAP(column): time across, value buckets up, colour by count (every group summed). Drag a
 * rectangle to ask BubbleUp what is different about the events inside it.
 */
function drawHeatmap(s, reply, name, times, box) {
  const column = name.slice('HEATMAP('.length, -1);
  const cells = new Map();
  let lo = Infinity; let hi = -Infinity; let width = 1; let max = 0;
  for (const r of reply.series || []) {
    const h = r[name];
    if (!h || !h.buckets) continue;
    lo = Math.min(lo, h.min); hi = Math.max(hi, h.max); width = h.bucket_width;
    const t = Date.parse(r.time) / 1000;
    for (const b of h.buckets) {
      const k = `${t}|${Math.round((b.lower - h.min) / h.bucket_width)}`;
      const c = (cells.get(k) || 0) + b.count;
      cells.set(k, c);
      max = Math.max(max, c);
    }
  }
  const wrap = el('div', { class: 'chart heatmap-wrap', 'data-calc': name });
  wrap.append(el('h3', { textContent: `${name} · drag over the heatmap to compare the events inside with the rest (BubbleUp)` }));
  const W = Math.max(box.clientWidth - 40, 300); const H = 240; const pad = { l: 56, b: 24, t: 4, r: 8 };
  const canvas = el('canvas', { width: W, height: H, 'data-testid': 'heatmap' });
  const selBox = el('div', { class: 'selection', hidden: true });
  const area = el('div', { class: 'heatmap-area' }, canvas, selBox);
  wrap.append(area);
  box.append(wrap);
  if (!times.length || !Number.isFinite(lo)) {
    wrap.append(el('div', { class: 'summary', textContent: 'no values in this time range' }));
    return;
  }
  const g = (toSpec(s).granularity);
  const t0 = times[0]; const t1 = times[times.length - 1] + g;
  const nb = Math.max(1, Math.round((hi - lo) / width));
  const px = (t) => pad.l + (t - t0) / (t1 - t0) * (W - pad.l - pad.r);
  const py = (v) => H - pad.b - (v - lo) / (hi - lo || 1) * (H - pad.b - pad.t);
  const ctx = canvas.getContext('2d');
  ctx.fillStyle = '#fff'; ctx.fillRect(0, 0, W, H);
  for (const [k, c] of cells) {
    const [t, i] = k.split('|').map(Number);
    ctx.fillStyle = heat(c, max);
    const x0 = px(t); const x1 = px(t + g);
    const y1 = py(lo + i * width); const y0 = py(lo + Math.min(i + 1, nb) * width);
    ctx.fillRect(x0, y0, Math.max(x1 - x0, 1), Math.max(y1 - y0, 1));
  }
  ctx.fillStyle = '#667085'; ctx.font = '11px system-ui';
  for (let i = 0; i <= 4; i++) {
    const v = lo + (hi - lo) * i / 4;
    ctx.fillText(String(Math.round(v * 100) / 100), 2, py(v) + 4);
  }
  ctx.fillText(new Date(t0 * 1000).toISOString().slice(11, 19), pad.l, H - 6);
  ctx.fillText(new Date(t1 * 1000).toISOString().slice(11, 19) + ' UTC', W - 110, H - 6);
  for (const m of reply.markers || []) {
    if (m.start_time < t0 || m.start_time > t1) continue;
    ctx.strokeStyle = '#d97706'; ctx.setLineDash([4, 3]);
    ctx.beginPath(); ctx.moveTo(px(m.start_time), pad.t); ctx.lineTo(px(m.start_time), H - pad.b); ctx.stroke();
  }
  // Drag to select: pixels back to time and value.
  const tAt = (x) => t0 + (x - pad.l) / (W - pad.l - pad.r) * (t1 - t0);
  const vAt = (y) => lo + (H - pad.b - y) / (H - pad.b - pad.t) * (hi - lo);
  let from = null;
  const at = (e) => { const r = canvas.getBoundingClientRect(); return [e.clientX - r.left, e.clientY - r.top]; };
  canvas.onmousedown = (e) => { from = at(e); selBox.hidden = true; };
  canvas.onmousemove = (e) => {
    if (!from) return;
    const [x, y] = at(e);
    Object.assign(selBox.style, {
      left: `${Math.min(from[0], x)}px`, top: `${Math.min(from[1], y)}px`,
      width: `${Math.abs(x - from[0])}px`, height: `${Math.abs(y - from[1])}px`,
    });
    selBox.hidden = false;
  };
  canvas.onmouseup = (e) => {
    if (!from) return;
    const [x, y] = at(e);
    const [xa, xb] = [Math.min(from[0], x), Math.max(from[0], x)];
    const [ya, yb] = [Math.min(from[1], y), Math.max(from[1], y)];
    from = null;
    if (xb - xa < 3 || yb - ya < 3) { selBox.hidden = true; return; }
    bubbleUp(s, {
      start_time: Math.floor(tAt(xa)), end_time: Math.ceil(tAt(xb)),
      filters: [{ column, op: '>=', value: vAt(yb) }, { column, op: '<', value: vAt(ya) }],
    });
  };
}

/** One BubbleUp column: its top values, each with two bars (blue: the selection's share, grey: the rest's). */
function bubbleCard(c, testid) {
  const card = el('div', { class: 'bubble', 'data-testid': testid, 'data-column': c.column });
  card.append(el('h4', { textContent: `${c.column} · ${Math.round(c.score * 100)} % different` }));
  const bar = (share, cls) => {
    const b = el('span', { class: `bar ${cls}`, title: `${Math.round(share * 1000) / 10} %` });
    b.style.width = `${Math.max(share * 100, 0.5)}%`;
    return b;
  };
  for (const v of c.values.slice(0, 6)) {
    const raw = v.value === null ? '(absent)' : String(v.value);
    // A numeric column's bucket ("[24.4588350355, 36.416434…)"): its bounds to 4 digits.
    const label = /^\[.*\)$/.test(raw) ? raw.replace(/-?\d+\.\d{4,}/g, (n) => String(+Number(n).toPrecision(4))) : raw;
    const counts = v.selection_count === undefined ? '' : ` · ${v.selection_count} vs ${v.baseline_count} events`;
    card.append(el('div', { class: 'bubble-row', title: raw + counts },
      el('span', { class: 'label', textContent: label }),
      el('span', { class: 'bars' }, bar(v.selection, 'sel'), bar(v.baseline, 'base'))));
  }
  return card;
}

/** BubbleUp: the columns whose values differ most between the selection and the rest. */
async function bubbleUp(s, selection) {
  const out = $('bubbleup');
  out.replaceChildren(el('div', { class: 'summary', textContent: 'comparing…' }));
  const spec = toSpec(s);
  const body = { filters: spec.filters, filter_combination: spec.filter_combination, selection };
  if (spec.time_range) body.time_range = spec.time_range; else { body.start_time = spec.start_time; body.end_time = spec.end_time; }
  try {
    const r = await api(`/api/v1/bubbleup/${encodeURIComponent(s.dataset)}`, body);
    const list = el('div', { class: 'bubbles', 'data-testid': 'bubbleup' });
    list.append(el('div', { class: 'summary', textContent: `${r.selection_count} selected events vs ${r.baseline_count} others · ${Math.round(r.elapsed_ms)} ms` }));
    for (const c of r.columns.slice(0, 12)) list.append(bubbleCard(c, 'bubbleup-column'));
    out.replaceChildren(list);
  } catch (e) {
    out.replaceChildren();
    showError(e.message, s, 'general');
  }
}

/** The chart's x range: the query's time range. */
function xRange(s, times) {
  if (s.time.start) return [Date.parse(s.time.start + 'Z') / 1000, Date.parse(s.time.end + 'Z') / 1000];
  const now = serverNow();
  const lo = Math.min(now - s.time.range, times[0] ?? now);
  return [lo, now];
}

function drawResults(s, reply) {
  const names = Object.keys(reply.results[0] || {}).filter((k) => !s.breakdowns.includes(k));
  const columns = [...s.breakdowns, ...names];
  const all = reply.results.map((r) => columns.map((c) => r[c]));
  // Very wide breakdowns: the first rows go in the table, the rest in one summary row.
  const rows = all.slice(0, TABLE_ROWS);
  const rest = all.length - rows.length;
  const box = $('results');
  box.replaceChildren(
    el('div', { class: 'summary', textContent: `${reply.results.length} rows · ${(reply.markers || []).length} markers · click a row for its events` }),
    table(columns, rows, 'results-table', (row) => showEvents(s, s.breakdowns.map((b, i) => [b, row[i]]), 0)));
  if (rest > 0) {
    const sums = names.map((n) => {
      const i = columns.indexOf(n);
      return n === 'COUNT' || n.startsWith('SUM(') ? ` · ${n} of the rest ${all.slice(TABLE_ROWS).reduce((a, r) => a + (Number(r[i]) || 0), 0)}` : '';
    }).join('');
    box.append(el('div', { class: 'summary', 'data-testid': 'rest-summary', textContent: `… and ${rest} more groups not listed${sums}` }));
  }
  box.append(el('section', { id: 'events' }));
}

/** The raw events behind a results row (its group, the query's filters and time), paged. */
async function showEvents(s, group, page, window) {
  const spec = toSpec(s);
  const q = (n) => `"${n.replaceAll('"', '""')}"`;
  const lit = (v) => (typeof v === 'number' || typeof v === 'boolean' ? String(v) : `'${String(v).replaceAll("'", "''")}'`);
  const conds = group.map(([b, v]) => (v === null || v === undefined ? `${q(b)} IS NULL` : `${q(b)} = ${lit(v)}`));
  const now = serverNow();
  const start = window ? window[0] : (spec.start_time ?? now - spec.time_range);
  const end = window ? window[1] : (spec.end_time ?? now);
  conds.push(`"timestamp" >= to_timestamp_micros(${Math.floor(start * 1e6)})`, `"timestamp" < to_timestamp_micros(${Math.ceil(end * 1e6)})`);
  const sql = `SELECT * FROM ${q(s.dataset)} WHERE ${conds.join(' AND ')} ORDER BY "timestamp" DESC LIMIT ${EVENTS_PAGE} OFFSET ${page * EVENTS_PAGE}`;
  const box = $('events');
  try {
    const r = await api('/api/v1/sql', { sql });
    let label = group.length ? group.map(([b, v]) => `${b} = ${cellText(v)}`).join(', ') : 'all events';
    if (window) label += `, ${new Date(start * 1000).toISOString().slice(11, 19)}–${new Date(end * 1000).toISOString().slice(11, 19)} UTC`;
    const nav = el('div', { class: 'run' },
      el('strong', { textContent: `Events: ${label} (the query's filters are not applied)` }),
      el('button', { type: 'button', textContent: '← newer', disabled: page === 0, onclick: () => showEvents(s, group, page - 1, window) }),
      el('span', { textContent: `page ${page + 1}` }),
      el('button', { type: 'button', textContent: 'older →', disabled: r.rows.length < EVENTS_PAGE, onclick: () => showEvents(s, group, page + 1, window) }));
    box.replaceChildren(nav, table(r.columns.map((c) => c.name), r.rows, 'events-table'));
  } catch (e) {
    showError(e.message, s, 'general');
  }
}

// ---------- running ----------

async function run() {
  const s = readForm();
  saveUrl(s);
  clearErrors();
  if (!s.dataset) { showError('pick a dataset', s, 'general'); return; }
  $('status').textContent = 'running…';
  $('run').disabled = true;
  const t0 = performance.now();
  try {
    const sent = Date.now() / 1000;
    const reply = await api(`/api/v1/query/${encodeURIComponent(s.dataset)}`, toSpec(s));
    if (reply.window && !s.time.start) clockOffset = reply.window.end_time - sent;
    $('bubbleup').replaceChildren();
    drawCharts(s, reply);
    drawResults(s, reply);
    $('status').textContent = `${Math.round(performance.now() - t0)} ms (server ${Math.round(reply.elapsed_ms)} ms)`;
  } catch (e) {
    $('status').textContent = '';
    showError(e.message, s);
  } finally {
    $('run').disabled = false;
  }
}

async function runSql() {
  clearErrors();
  $('sql-status').textContent = 'running…';
  const t0 = performance.now();
  try {
    const r = await api('/api/v1/sql', { sql: $('sql').value });
    $('sql-results').replaceChildren(table(r.columns.map((c) => c.name), r.rows, 'sql-results'));
    $('sql-status').textContent = `${r.rows.length} rows, ${Math.round(performance.now() - t0)} ms`;
  } catch (e) {
    $('sql-status').textContent = '';
    showError(e.message, null, 'sql');
  }
}

async function loadColumns(dataset) {
  if (!dataset) return;
  try {
    const r = await api(`/api/v1/datasets/${encodeURIComponent(dataset)}/columns`);
    $('columns').replaceChildren(...r.columns.map((c) => el('option', { value: c.name, textContent: c.type })));
  } catch (e) {
    showError(e.message, null, 'general');
  }
}

async function loadDatasets() {
  const r = await api('/api/v1/sql', { sql: "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY table_name" });
  const sel = $('dataset');
  const current = sel.value;
  sel.replaceChildren(...r.rows.map(([n]) => el('option', { value: n, textContent: n })));
  if (current) sel.value = current;
}

function askKey() {
  stopTail();
  stopDeployWatches();
  $('key-panel').hidden = false;
  for (const v of VIEWS) $(`${v}-view`).hidden = true;
}

// ---------- deploys ----------

const when = (s) => (s === null || s === undefined ? '' : new Date(s * 1000).toISOString().replace('.000Z', 'Z'));

/**
 * `?wait=` of a pending verdict: the request is held until the verdict is final, at most this
 * long, and asked again while the deploy page shows it.
 */
const VERDICT_WAIT = '20s';
/** What each line of a deploy chart is, and its colour. */
const DEPLOY_SIDES = [['before', 'before the deploy', '#3056d3'], ['after', 'after', '#dc2626'],
  ['old_version', 'old version beside it', '#059669']];
const METRIC_NAMES = { error_rate: 'error rate', latency_p50: 'latency p50', latency_p95: 'latency p95', latency_p99: 'latency p99' };

// The long polls of the deploy page, cancelled on leaving it: the list's (the oldest pending
// verdict) and the shown deploy's.
let listWatch = null;
let detailWatch = null;
let deployCharts = [];
// The deploy shown: {id, verdict}.
let shownDeploy = null;

function stopDeployWatches() {
  listWatch?.abort(); listWatch = null;
  detailWatch?.abort(); detailWatch = null;
}

const verdictUrl = (id, wait) => `/api/v1/deploys/${encodeURIComponent(id)}/verdict${wait ? `?wait=${VERDICT_WAIT}` : ''}`;

/** Deploy markers with their verdicts; a click shows the charts and the evidence. */
async function loadDeploys() {
  clearErrors();
  if (!$('deploys-list').children.length) $('deploys-status').textContent = 'loading…';
  const service = $('deploys-service').value.trim();
  try {
    const r = await api(`/api/v1/deploys?limit=200${service ? `&service=${encodeURIComponent(service)}` : ''}`);
    const rows = r.deploys.map((d) => [when(d.marker.start_time), d.marker.service || '', d.marker.version || '',
      d.marker.dataset, d.checked ? d.verdict : 'not checked', (d.regressions || []).join('; '), d.marker.message || '', d.marker.id]);
    const t = table(['time', 'service', 'version', 'dataset', 'verdict', 'regressions', 'message', 'marker'],
      rows, 'deploys-table', (row) => showDeploy(row[7]));
    for (const tr of t.querySelectorAll('tbody tr')) {
      const cell = tr.children[4];
      if (cell) cell.className = `verdict ${cell.textContent}`;
    }
    $('deploys-list').replaceChildren(t);
    const pending = r.deploys.filter((d) => d.verdict === 'pending');
    $('deploys-status').textContent = `${r.deploys.length} deploys${pending.length ? `, ${pending.length} being checked` : ''}`;
    // A pending check gets its verdict within seconds or minutes: wait for the oldest one's
    // (the first to be decided, most likely), then list again.
    listWatch?.abort();
    listWatch = null;
    if (pending.length && !$('deploys-view').hidden) {
      const watch = listWatch = new AbortController();
      api(verdictUrl(pending[pending.length - 1].marker.id, true), undefined, watch.signal).then(
        () => { if (listWatch === watch) loadDeploys(); },
        (e) => { if (e.name !== 'AbortError') showError(e.message, null, 'deploys'); });
    }
  } catch (e) {
    $('deploys-status').textContent = '';
    showError(e.message, null, 'deploys');
  }
}

/** A deploy's verdict drawn: charts, BubbleUp bars and checks; while pending, asked again with `?wait=`. */
async function showDeploy(id) {
  detailWatch?.abort();
  const watch = detailWatch = new AbortController();
  $('deploy-detail').replaceChildren(el('div', { class: 'summary', textContent: `loading ${id}…` }));
  let waited = false;
  try {
    for (;;) {
      const v = await api(verdictUrl(id, waited), undefined, watch.signal);
      let series = null;
      try {
        series = await api(`/api/v1/deploys/${encodeURIComponent(id)}/series`, undefined, watch.signal);
      } catch (e) {
        if (e.name === 'AbortError') throw e;
        series = { error: e.message };
      }
      if (detailWatch !== watch) return;
      shownDeploy = { id, verdict: v.verdict };
      drawDeploy(v, series);
      if (v.verdict !== 'pending') break;
      waited = true;
    }
    // It was pending when clicked: the list shows its new verdict too.
    if (waited) loadDeploys();
  } catch (e) {
    if (e.name !== 'AbortError') showError(e.message, null, 'deploys');
  }
}

/** A metric's value as the checks compare it: a ratio as %, a latency in ms. */
function metricValue(metric, v) {
  if (v === null || v === undefined) return '–';
  if (metric === 'error_rate') return `${(v * 100).toFixed(v < 0.1 ? 2 : 1)} %`;
  return `${Math.round(v * 10) / 10} ms`;
}

function drawDeploy(v, series) {
  for (const c of deployCharts) c.destroy();
  deployCharts = [];
  // What each deploy chart draws, for browser tests.
  window.eventideDeployCharts = [];
  const m = v.marker || {};
  const ev = v.evidence || {};
  const parts = [el('h3', {},
    `${m.service || '(no service)'} ${m.version || ''} · ${m.dataset} · ${when(m.start_time)} · `,
    el('span', { class: `verdict ${v.verdict}`, 'data-testid': 'deploy-verdict', textContent: v.verdict }),
    v.verdict === 'pending' ? el('span', { class: 'summary', textContent: ' (waiting for the verdict…)' }) : '')];
  parts.push(el('p', { class: 'deploy-summary', 'data-testid': 'deploy-summary', textContent: v.summary || ev.summary || '' }));
  const regressions = ev.regressions || [];
  if (regressions.length) {
    parts.push(el('ul', { class: 'regressions', 'data-testid': 'deploy-regressions' },
      ...regressions.map((r) => el('li', { textContent: r }))));
  }
  // A marker on __all__ has one part of the evidence per dataset.
  const evidences = ev.datasets || [ev];
  const drawn = (series && series.datasets) || [];
  if (series && series.error) parts.push(el('div', { class: 'error', textContent: `charts: ${series.error}` }));
  const several = Math.max(evidences.length, drawn.length) > 1;
  const names = [...new Set([...evidences.map((e) => e.dataset), ...drawn.map((d) => d.dataset)].filter(Boolean))];
  const charts = [];
  for (const name of names.length ? names : [m.dataset]) {
    const e = evidences.find((x) => x.dataset === name) || (evidences.length === 1 && !several ? evidences[0] : {});
    const d = drawn.find((x) => x.dataset === name);
    const box = el('div', { class: 'deploy-dataset', 'data-dataset': name });
    if (several) box.append(el('h4', { textContent: name }));
    if (e.reason || (d && d.reason)) box.append(el('div', { class: 'summary', textContent: e.reason || d.reason }));
    if (e.recovery) box.append(el('div', { class: 'summary', textContent: recoveryText(e.recovery) }));
    const chartsBox = el('div', { class: 'deploy-charts' });
    box.append(chartsBox);
    // The detection in this dataset (a marker on __all__ fails where one of them does).
    const detected = e.detected_at !== undefined ? e.detected_at : d && d.failed_at;
    if (d) for (const metric of d.metrics || []) charts.push(deployChart(chartsBox, { ...d, failed_at: detected }, metric, m.version));
    if (e.dimensions && e.dimensions.length) {
      box.append(el('div', { class: 'bubbles', 'data-testid': 'deploy-dimensions' },
        el('div', { class: 'summary', textContent: 'What sets the failing events apart (blue: the failing events, grey: the others):' }),
        ...e.dimensions.slice(0, 8).map((c) => bubbleCard(c, 'deploy-dimension'))));
    }
    if (e.checks && e.checks.length) box.append(checksTable(e, m.start_time));
    if (e.before) box.append(el('div', { class: 'summary', textContent: windowsText(e) }));
    parts.push(box);
  }
  parts.push(el('details', { class: 'evidence' }, el('summary', { textContent: 'evidence (JSON)' }),
    el('pre', { 'data-testid': 'deploy-evidence', textContent: JSON.stringify(ev, null, 2) })));
  $('deploy-detail').replaceChildren(...parts);
  // Charts are drawn once all their boxes are in the page (their widths are known).
  for (const draw of charts) draw();
}

function recoveryText(r) {
  const fix = r.fix && r.fix.marker_id ? ` (marker ${r.fix.marker_id})` : '';
  return `recovered at ${when(r.recovered_at)}: ${r.seconds_after_fix ?? '?'} s after the fix${fix} at ${when(r.fix_time)}, ${r.seconds_after_failure ?? '?'} s after the failure`;
}

/** The numbers compared: before, after and the old version. */
function windowsText(e) {
  const one = (name, w) => (w ? `${name}: ${w.events} events, ${metricValue('error_rate', w.error_rate)} errors, p95 ${metricValue('latency_p95', w.p95)}` : '');
  const st = e.statistics;
  return [one('before', e.before), one(`after (${e.version || 'new version'})`, e.after), one('old version', e.old_version),
    st ? `${st.comparisons} comparisons, ${(st.false_positive_rate * 100).toFixed(1)} % false positives at most` : '']
    .filter(Boolean).join(' · ');
}

function checksTable(e, deployTime) {
  const rows = e.checks.map((c) => [METRIC_NAMES[c.metric] || c.metric, c.against === 'old_version' ? 'old version' : 'before',
    metricValue(c.metric, c.baseline), metricValue(c.metric, c.deployed), metricValue(c.metric, c.threshold),
    `${(c.log_lr ?? 0).toFixed(1)} / ${(c.log_lr_needed ?? 0).toFixed(1)}`, c.regressed ? 'yes' : 'no',
    c.detected_at ? `after ${c.detected_at - deployTime} s` : '']);
  const t = table(['metric', 'against', 'baseline', 'deployed', 'threshold', 'evidence (log LR / needed)', 'regressed', 'detected'],
    rows, 'deploy-checks');
  for (const tr of t.querySelectorAll('tbody tr')) if (tr.children[6].textContent === 'yes') tr.className = 'regressed';
  return t;
}

/**
 * One metric of a deploy over time: the service before the deploy, the new version after it and
 * the old version beside it, with the deploy, the threshold (dashed), the detection and the
 * recovery. Adds the chart's box to `box`; returns the function that draws it.
 */
function deployChart(box, d, metric, version) {
  const ratio = metric.unit === 'ratio';
  const sides = DEPLOY_SIDES.filter(([k]) => (metric.series[k] || []).length);
  const times = [...new Set(sides.flatMap(([k]) => metric.series[k].map((p) => p[0])))].sort((a, b) => a - b);
  const index = new Map(times.map((t, i) => [t, i]));
  const data = [times, ...sides.map(([k]) => {
    const ys = new Array(times.length).fill(null);
    for (const [t, v] of metric.series[k]) ys[index.get(t)] = v;
    return ys;
  })];
  const labels = sides.map(([k, label]) => (k === 'after' ? `after: ${version || 'new version'}` : label));
  const c = metric.comparison;
  const threshold = c && typeof c.threshold === 'number' ? c.threshold : null;
  const fmt = (v) => (v === null || v === undefined ? '–' : metricValue(ratio ? 'error_rate' : 'latency', v));
  const lines = [[d.deploy_time, 'deploy', '#d97706', []], [d.failed_at, 'detected', '#b42318', [4, 3]],
    [d.fix_time, 'fix', '#7c3aed', [4, 3]], [d.recovered_at, 'recovered', '#067647', [4, 3]]]
    .filter(([t]) => typeof t === 'number');
  const title = metric.metric === 'error_rate' ? 'error rate' : `${METRIC_NAMES[metric.metric] || metric.metric}${metric.column ? ` of ${metric.column}` : ''}`;
  const wrap = el('div', { class: 'chart', 'data-testid': `deploy-chart-${metric.metric}`, 'data-metric': metric.metric });
  wrap.append(el('h3', { textContent: c ? `${title} · threshold ${fmt(threshold)} (against ${c.against === 'old_version' ? 'the old version' : 'before'})${c.regressed ? ' · regressed' : ''}` : title }));
  box.append(wrap);
  if (!times.length) {
    wrap.append(el('div', { class: 'summary', textContent: 'no events in this time range' }));
    return () => {};
  }
  return () => {
    const u = new uPlot({
      width: Math.max(wrap.clientWidth - 16, 300),
      height: 220,
      series: [{}, ...sides.map(([, , color], i) => ({ label: labels[i], stroke: color, width: 2, spanGaps: false, value: (u, v) => fmt(v) }))],
      axes: [{}, { size: 70, values: (u, vals) => vals.map((v) => (ratio ? `${+(v * 100).toFixed(2)} %` : `${v} ms`)) }],
      scales: {
        x: { time: true, range: () => [d.start, d.end] },
        y: { range: (u, lo, hi) => [0, (Math.max(hi ?? 0, threshold ?? 0) * 1.15) || (ratio ? 0.01 : 1)] },
      },
      hooks: { draw: [(u) => drawGuides(u, lines, threshold, d.deploy_time, d.warmup_end)] },
    }, data, wrap);
    deployCharts.push(u);
    window.eventideDeployCharts.push({ dataset: d.dataset, metric: metric.metric, labels, data, threshold, lines: lines.map(([t, l]) => [l, t]) });
  };
}

/** The deploy chart's guides, on its canvas: the warm-up (shaded), the vertical lines, the threshold. */
function drawGuides(u, lines, threshold, deployTime, warmupEnd) {
  const { ctx } = u;
  const { left, top, width, height } = u.bbox;
  const px = devicePixelRatio;
  ctx.save();
  ctx.font = `${11 * px}px system-ui, sans-serif`;
  if (typeof warmupEnd === 'number' && warmupEnd > deployTime) {
    const x0 = u.valToPos(deployTime, 'x', true); const x1 = u.valToPos(warmupEnd, 'x', true);
    ctx.fillStyle = 'rgba(152, 162, 179, 0.18)';
    ctx.fillRect(x0, top, x1 - x0, height);
  }
  if (threshold !== null) {
    const y = u.valToPos(threshold, 'y', true);
    ctx.strokeStyle = '#b42318'; ctx.lineWidth = 1.5 * px; ctx.setLineDash([6 * px, 4 * px]);
    ctx.beginPath(); ctx.moveTo(left, y); ctx.lineTo(left + width, y); ctx.stroke();
    ctx.fillStyle = '#b42318'; ctx.textAlign = 'left';
    ctx.fillText('threshold', left + 4 * px, y - 4 * px);
  }
  lines.forEach(([t, label, color, dash], i) => {
    const x = u.valToPos(t, 'x', true);
    if (x < left || x > left + width) return;
    ctx.strokeStyle = color; ctx.lineWidth = 2 * px; ctx.setLineDash(dash.map((n) => n * px));
    ctx.beginPath(); ctx.moveTo(x, top); ctx.lineTo(x, top + height); ctx.stroke();
    // Labels one under the other, so close lines stay readable; right of the line unless at the edge.
    const right = x + ctx.measureText(label).width + 8 * px > left + width;
    ctx.fillStyle = color; ctx.textAlign = right ? 'right' : 'left';
    ctx.fillText(label, x + (right ? -4 : 4) * px, top + (12 + 13 * i) * px);
  });
  ctx.restore();
}

// ---------- triggers ----------

/** The selected dataset's triggers; a click lists its recent evaluations. */
async function loadTriggers() {
  clearErrors();
  const dataset = $('dataset').value;
  $('triggers-status').textContent = 'loading…';
  try {
    const list = await api(`/1/triggers/${encodeURIComponent(dataset)}`);
    const rows = list.map((t) => {
      const c = t.query.calculations[0];
      const last = t.last_evaluation || {};
      return [t.name, c.column ? `${c.op}(${c.column})` : c.op, `${t.threshold.op} ${t.threshold.value}`,
        t.frequency, t.triggered ? 'triggered' : 'ok', last.value ?? '', when(last.window_end), t.id];
    });
    $('triggers-list').replaceChildren(table(['name', 'calculation', 'threshold', 'every (s)', 'state',
      'last value', 'last window', 'id'], rows, 'triggers-table', (row) => showEvaluations(dataset, row[7])));
    $('triggers-status').textContent = `${list.length} triggers in ${dataset}`;
  } catch (e) {
    $('triggers-status').textContent = '';
    showError(e.message, null, 'triggers');
  }
}

async function showEvaluations(dataset, id) {
  try {
    const r = await api(`/1/triggers/${encodeURIComponent(dataset)}/${encodeURIComponent(id)}/evaluations?limit=50`);
    const rows = r.evaluations.map((e) => [when(e.window_end), e.value ?? '', e.state, e.notification || '',
      e.breached_groups.length, e.error || '']);
    $('trigger-detail').replaceChildren(el('h3', { textContent: `${r.trigger.name}: recent evaluations` }),
      table(['window end', 'value', 'state', 'notified', 'groups over', 'error'], rows, 'evaluations-table'));
  } catch (e) {
    showError(e.message, null, 'triggers');
  }
}

// ---------- live tail ----------

/** Rows the live tail keeps (the newest). */
const TAIL_ROWS = 500;

// The running tail: {ctrl, dataset, columns, rows, received, skipped, shown}, or null.
let tail = null;

function tailStatus(state, text) {
  const s = $('tail-status');
  s.dataset.state = state;
  s.textContent = text;
}

function tailCounts(t) {
  return `${t.received} events received${t.received > t.shown ? ` (${t.received - t.shown} not sent: over 1000 in one batch)` : ''}` +
    ` · ${t.skipped} batches skipped${t.skipped ? ' (the page fell behind)' : ''}`;
}

function stopTail() {
  if (!tail) return;
  const t = tail;
  tail = null;
  t.ctrl.abort();
  tailStatus('stopped', `stopped · ${tailCounts(t)}`);
  $('tail-start').disabled = false;
  $('tail-stop').disabled = true;
}

/**
 * Streams the dataset's new events that match the WHERE rows: `GET /api/v1/tail/{dataset}`,
 * server-sent events read from a fetch (EventSource cannot send the key header).
 */
async function startTail() {
  stopTail();
  clearErrors();
  const dataset = $('dataset').value;
  const filters = readFilters($('tail-filters'));
  const combination = $('tail-combination').value;
  if (!dataset) { showError('pick a dataset', null, 'tail'); return; }
  history.replaceState(null, '', '#tail=' + encodeURIComponent(JSON.stringify({ dataset, filters, filter_combination: combination })));
  const t = tail = { ctrl: new AbortController(), dataset, columns: ['timestamp'], rows: [], received: 0, shown: 0, skipped: 0 };
  $('tail-start').disabled = true;
  $('tail-stop').disabled = false;
  $('tail-results').replaceChildren();
  tailStatus('connecting', `connecting to ${dataset}…`);
  const q = new URLSearchParams({ filters: JSON.stringify(filters), filter_combination: combination });
  try {
    const r = await fetch(`/api/v1/tail/${encodeURIComponent(dataset)}?${q}`, { headers: { 'X-Honeycomb-Team': key }, signal: t.ctrl.signal });
    if (!r.ok) {
      let reply = null;
      try { reply = await r.json(); } catch { reply = null; }
      if (r.status === 401) askKey();
      throw new ApiError((reply && reply.error) || `HTTP ${r.status}`, r.status);
    }
    const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += value.replaceAll('\r\n', '\n');
      // An SSE message ends with a blank line; `event:` names it, `data:` lines carry it.
      for (let end = buf.indexOf('\n\n'); end >= 0; end = buf.indexOf('\n\n')) {
        const frame = buf.slice(0, end);
        buf = buf.slice(end + 2);
        let event = 'message'; const data = [];
        for (const line of frame.split('\n')) {
          if (line.startsWith('event:')) event = line.slice(6).trim();
          else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
        }
        if (data.length && tail === t) tailMessage(t, event, JSON.parse(data.join('\n')));
      }
    }
    if (tail === t) { stopTail(); tailStatus('stopped', `the server closed the stream · ${tailCounts(t)}`); }
  } catch (e) {
    if (e.name === 'AbortError' || tail !== t) return;
    stopTail();
    tailStatus('error', 'not connected');
    showError(e.message, null, 'tail');
  }
}

function tailMessage(t, event, body) {
  if (event === 'ready') {
    tailStatus('connected', `connected to ${t.dataset} · ${tailCounts(t)}`);
  } else if (event === 'events') {
    t.received += body.matched ?? body.events.length;
    t.shown += body.events.length;
    tailRows(t, body.events);
    tailStatus('connected', `connected to ${t.dataset} · ${tailCounts(t)}`);
  } else if (event === 'skipped') {
    t.skipped += body.batches || 0;
    tailStatus('connected', `connected to ${t.dataset} · ${tailCounts(t)}`);
  } else if (event === 'error') {
    showError(body.error || JSON.stringify(body), null, 'tail');
  }
}

/** New events on top (the newest first), highlighted briefly; the table keeps TAIL_ROWS. */
function tailRows(t, events) {
  const fresh = [...events].reverse();
  const before = t.columns.length;
  for (const e of fresh) {
    for (const k of Object.keys(e)) if (!t.columns.includes(k)) t.columns.push(k);
  }
  if (t.columns.length !== before) {
    // Columns in the order first seen, the timestamp first and `_` fields (_samplerate) last.
    const rest = t.columns.slice(1);
    t.columns = ['timestamp', ...rest.filter((c) => !c.startsWith('_')), ...rest.filter((c) => c.startsWith('_'))];
  }
  t.rows = [...fresh, ...t.rows].slice(0, TAIL_ROWS);
  const row = (e, isNew) => el('tr', isNew ? { class: 'fresh' } : {}, ...t.columns.map((c) => el('td', { textContent: cellText(e[c]) })));
  let body = $('tail-results').querySelector('tbody');
  if (!body || t.columns.length !== before) {
    body = el('tbody', {}, ...t.rows.map((e, i) => row(e, i < fresh.length)));
    $('tail-results').replaceChildren(el('table', { 'data-testid': 'tail-table', class: 'tail' },
      el('thead', {}, el('tr', {}, ...t.columns.map((c) => el('th', { textContent: c })))), body));
    return;
  }
  body.prepend(...fresh.slice(0, TAIL_ROWS).map((e) => row(e, true)));
  while (body.children.length > TAIL_ROWS) body.lastElementChild.remove();
}

/** The tail of a link (`#tail={…}`): its dataset and WHERE, started. */
function tailFromUrl() {
  if (!location.hash.startsWith('#tail=')) return null;
  try { return JSON.parse(decodeURIComponent(location.hash.slice('#tail='.length))); } catch { return null; }
}

async function start() {
  if (!key) { askKey(); return; }
  $('key-panel').hidden = true;
  showTab('query');
  try {
    await loadDatasets();
  } catch (e) {
    showError(e.message, null, 'general');
    return;
  }
  const tailed = tailFromUrl();
  if (tailed) {
    fillForm({ dataset: tailed.dataset || $('dataset').value });
    $('tail-filters').replaceChildren(...(tailed.filters || []).map((f) => filterRow(f, 'tail-filter')));
    $('tail-combination').value = tailed.filter_combination || 'AND';
    showTab('tail');
    await loadColumns($('dataset').value);
    startTail();
    return;
  }
  const s = stateFromUrl();
  if (s) { fillForm(s); queryHash = location.hash; } else fillForm({ dataset: $('dataset').value });
  await loadColumns($('dataset').value);
  if (s && s.dataset) await run();
}

function showTab(which) {
  const leavingTail = !$('tail-view').hidden && which !== 'tail';
  for (const v of VIEWS) {
    $(`${v}-view`).hidden = which !== v;
    $(`tab-${v}`).classList.toggle('active', which === v);
  }
  if (which !== 'deploys') stopDeployWatches();
  if (which !== 'tail') stopTail();
  if (leavingTail && location.hash.startsWith('#tail=')) history.replaceState(null, '', queryHash || location.pathname);
  if (which === 'deploys') {
    loadDeploys();
    // Back on the page: a shown deploy still being checked is waited for again.
    if (shownDeploy && shownDeploy.verdict === 'pending') showDeploy(shownDeploy.id);
  }
  if (which === 'triggers') loadTriggers();
}

/** A change of the tail's WHERE (or dataset) while it runs: start again with it. */
function retail() {
  if (tail) startTail();
}

$('key-form').onsubmit = (e) => {
  e.preventDefault();
  key = $('key').value.trim();
  localStorage.setItem(KEY_STORE, key);
  start();
};
$('forget-key').onclick = () => { localStorage.removeItem(KEY_STORE); key = ''; askKey(); };
$('builder').onsubmit = (e) => { e.preventDefault(); run(); };
$('add-calc').onclick = () => $('calcs').append(calcRow({ op: 'COUNT' }));
$('add-filter').onclick = () => $('filters').append(filterRow());
$('add-order').onclick = () => $('orders').append(orderRow());
$('add-having').onclick = () => $('havings').append(havingRow());
$('range').onchange = () => { $('absolute').hidden = $('range').value !== 'custom'; };
$('dataset').onchange = () => {
  loadColumns($('dataset').value);
  if (!$('triggers-view').hidden) loadTriggers();
  retail();
};
for (const v of VIEWS) $(`tab-${v}`).onclick = () => showTab(v);
$('deploys-refresh').onclick = loadDeploys;
$('deploys-service').onchange = loadDeploys;
$('triggers-refresh').onclick = loadTriggers;
$('tail-form').onsubmit = (e) => { e.preventDefault(); startTail(); };
$('tail-stop').onclick = stopTail;
$('tail-add-filter').onclick = () => $('tail-filters').append(filterRow({ op: '=' }, 'tail-filter'));
$('tail-filters').addEventListener('change', retail);
$('tail-filters').addEventListener('click', (e) => { if (e.target.tagName === 'BUTTON') retail(); });
$('tail-combination').onchange = retail;
addEventListener('pagehide', stopTail);
$('sql-run').onclick = runSql;
start();
