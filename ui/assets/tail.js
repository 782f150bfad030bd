// The live tail: a dataset's new events as they become queryable (GET /api/v1/tail/{dataset},
// server-sent events), filtered by its own WHERE rows, newest first.
import { $, ApiError, session, el, cellText, clearErrors, showError, readFilters } from '/ui/core.js';

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

export function stopTail() {
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
export async function startTail() {
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
    const r = await fetch(`/api/v1/tail/${encodeURIComponent(dataset)}?${q}`, { headers: { 'X-Honeycomb-Team': session.key }, signal: t.ctrl.signal });
    if (!r.ok) {
      let reply = null;
      try { reply = await r.json(); } catch { reply = null; }
      if (r.status === 401) session.onUnauthorized();
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
export function tailFromUrl() {
  if (!location.hash.startsWith('#tail=')) return null;
  try { return JSON.parse(decodeURIComponent(location.hash.slice('#tail='.length))); } catch { return null; }
}

/** A change of the tail's WHERE (or dataset) while it runs: start again with it. */
export function retail() {
  if (tail) startTail();
}
