// The query builder: its rows (VISUALIZE, ORDER BY, HAVING) and the form read as, and filled
// from, a query spec (docs/API.md, POST /api/v1/query/{dataset}).
import { $, el, select, removable, filterRow, readFilters } from '/ui/core.js';

export const OPS = ['COUNT', 'SUM', 'AVG', 'MIN', 'MAX', 'COUNT_DISTINCT', 'P001', 'P01', 'P05', 'P10',
  'P25', 'P50', 'P75', 'P90', 'P95', 'P99', 'P999', 'HEATMAP', 'CONCURRENCY', 'RATE_SUM',
  'RATE_AVG', 'RATE_MAX'];
const HAVING_OPS = ['>', '>=', '<', '<=', '=', '!='];

export function calcRow(c = { op: 'COUNT' }) {
  return removable(el('div', { class: 'row calc' },
    select(OPS, c.op, { 'data-testid': 'calc-op' }),
    el('input', { list: 'columns', placeholder: 'column', value: c.column || '', 'data-testid': 'calc-column' })));
}

export function orderRow(o = {}) {
  const what = o.op ? (o.op.toUpperCase() === 'COUNT' ? 'COUNT' : `${o.op}(${o.column || ''})`) : (o.column || '');
  return removable(el('div', { class: 'row order' },
    el('input', { placeholder: 'COUNT, P99(duration_ms) or a group-by column', value: what }),
    select(['descending', 'ascending'], o.order || 'descending')));
}

export function havingRow(h = { calculate_op: 'COUNT', op: '>' }) {
  return removable(el('div', { class: 'row having' },
    select(OPS.filter((o) => !['HEATMAP', 'CONCURRENCY'].includes(o) && !o.startsWith('RATE')), h.calculate_op),
    el('input', { list: 'columns', placeholder: 'column', value: h.column || '' }),
    select(HAVING_OPS, h.op),
    el('input', { type: 'number', step: 'any', value: h.value ?? '' })));
}

// ---------- state: form <-> query spec <-> URL ----------

export function readForm() {
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

export function fillForm(s) {
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

export function toSpec(s) {
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
