// A query's reply drawn: charts with deploy markers (drag for BubbleUp, click a point for its
// events), heatmaps, the results table and the raw events behind a row.
import uPlot from '/ui/vendor/uPlot.esm.js';
import { $, COLORS, api, el, table, cellText, showError, bubbleCard, serverNow } from '/ui/core.js';
import { toSpec } from '/ui/builder.js';

/** Groups drawn per chart; the rest are summarized. */
const TOP_N = 10;
/** Result rows put in the table at once; the rest are summarized in one row. */
const TABLE_ROWS = 1000;
/** Raw events per page. */
const EVENTS_PAGE = 50;

let charts = [];

function groupKey(row, breakdowns) {
  return breakdowns.length ? breakdowns.map((b) => cellText(row[b])).join(', ') : 'all';
}

export function drawCharts(s, reply) {
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

export function drawResults(s, reply) {
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
