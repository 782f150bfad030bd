// Shared by the UI's pages: the API client and its key, DOM helpers, the sortable table,
// WHERE rows, error boxes and BubbleUp cards. Every answer comes from the HTTP API
// (docs/API.md); the pages only build requests and draw replies.

export const $ = (id) => document.getElementById(id);
export const FILTER_OPS = ['=', '!=', '>', '>=', '<', '<=', 'starts-with', 'does-not-start-with',
  'contains', 'does-not-contain', 'exists', 'does-not-exist', 'in', 'not-in'];
export const KEY_STORE = 'eventide.key';
export const COLORS = ['#3056d3', '#d97706', '#059669', '#dc2626', '#7c3aed', '#0891b2', '#db2777',
  '#65a30d', '#9333ea', '#475569'];

/**
 * The session: the API key (kept in localStorage), the server's clock minus this browser's in
 * seconds (learned from each query reply's `window`: a relative range ends at the server's now,
 * which differs from the browser's when either clock is off or the server runs with
 * --clock-start), and what to do when the key is refused (set by the page).
 */
export const session = {
  key: localStorage.getItem(KEY_STORE) || '',
  clockOffset: 0,
  onUnauthorized: () => {},
};
export const serverNow = () => Date.now() / 1000 + session.clockOffset;

export class ApiError extends Error {
  constructor(message, status) { super(message); this.status = status; }
}

/** A JSON request to the API; `signal` (an AbortSignal) cancels it. */
export async function api(path, body, signal) {
  const r = await fetch(path, {
    method: body === undefined ? 'GET' : 'POST',
    headers: { 'X-Honeycomb-Team': session.key, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal,
  });
  let reply = null;
  try { reply = await r.json(); } catch { reply = null; }
  if (r.status === 401) session.onUnauthorized();
  if (!r.ok) throw new ApiError((reply && reply.error) || `HTTP ${r.status}`, r.status);
  return reply;
}

export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') e.className = v; else if (k in e && k !== 'list') e[k] = v; else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}

export function select(options, value, attrs = {}) {
  const s = el('select', attrs);
  for (const o of options) s.append(el('option', { value: o, textContent: o }));
  if (value !== undefined) s.value = value;
  return s;
}

export function removable(row) {
  row.append(el('button', { type: 'button', textContent: '×', title: 'remove', onclick: () => row.remove() }));
  return row;
}

/** A WHERE row; `testid` prefixes its controls' test ids (the live tail has its own). */
export function filterRow(f = { op: '=' }, testid = 'filter') {
  const v = f.value === undefined ? '' : (Array.isArray(f.value) ? f.value.join(', ') : String(f.value));
  return removable(el('div', { class: 'row filter' },
    el('input', { list: 'columns', placeholder: 'column', value: f.column || '', 'data-testid': `${testid}-column` }),
    select(FILTER_OPS, f.op, { 'data-testid': `${testid}-op` }),
    el('input', { placeholder: 'value', value: v, 'data-testid': `${testid}-value` })));
}

/** The query-spec filters of the WHERE rows in `box`. */
export function readFilters(box) {
  return [...box.querySelectorAll('.filter')].map((r) => {
    const [col, op, val] = r.querySelectorAll('input, select');
    const f = { column: col.value.trim(), op: op.value };
    const v = parseValue(op.value, val.value);
    if (v !== undefined) f.value = v;
    return f;
  }).filter((f) => f.column);
}

/** A filter value as typed: numbers, booleans and lists become JSON values. */
export function parseValue(op, text) {
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

// ---------- errors ----------

export function clearErrors() {
  for (const e of document.querySelectorAll('.error')) { e.hidden = true; e.textContent = ''; }
}

/** Shows a server error next to the part of the query it is about. */
export function showError(message, s, where) {
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

export function cellText(v) {
  if (v === null || v === undefined) return '';
  if (typeof v === 'object') {
    if (v.buckets) return `${v.buckets.length} buckets, ${v.min}–${v.max}`;
    return JSON.stringify(v);
  }
  if (typeof v === 'number' && !Number.isInteger(v)) return String(Math.round(v * 1e6) / 1e6);
  return String(v);
}

/** A sortable table (click a header); `onRow(row)` on a click of a row. */
export function table(columns, rows, testid, onRow) {
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

/** One BubbleUp column: its top values, each with two bars (blue: the selection's share, grey: the rest's). */
export function bubbleCard(c, testid) {
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

export const when = (s) => (s === null || s === undefined ? '' : new Date(s * 1000).toISOString().replace('.000Z', 'Z'));
