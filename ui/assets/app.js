// Eventide's query page: a query builder over the query spec (docs/API.md, POST /api/v1/query/{dataset}), charts with
// deploy markers, a sortable results table, a SQL tab, the deploys page (verdicts drawn as
// charts) and a live tail of new events. Every answer comes from the HTTP API; the pages only
// build requests and draw replies (core.js, builder.js, results.js, deploys.js, triggers.js,
// tail.js).
import { $, KEY_STORE, session, api, el, table, clearErrors, showError, filterRow } from '/ui/core.js';
import { readForm, fillForm, toSpec, calcRow, orderRow, havingRow } from '/ui/builder.js';
import { drawCharts, drawResults } from '/ui/results.js';
import { loadDeploys, stopDeployWatches, reshowPending } from '/ui/deploys.js';
import { loadTriggers } from '/ui/triggers.js';
import { startTail, stopTail, tailFromUrl, retail } from '/ui/tail.js';

/** The page's views, each with a tab (`tab-X`) and a main element (`X-view`). */
const VIEWS = ['query', 'sql', 'deploys', 'tail', 'triggers'];

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
    if (reply.window && !s.time.start) session.clockOffset = reply.window.end_time - sent;
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
session.onUnauthorized = askKey;

async function start() {
  if (!session.key) { askKey(); return; }
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
    reshowPending();
  }
  if (which === 'triggers') loadTriggers();
}

$('key-form').onsubmit = (e) => {
  e.preventDefault();
  session.key = $('key').value.trim();
  localStorage.setItem(KEY_STORE, session.key);
  start();
};
$('forget-key').onclick = () => { localStorage.removeItem(KEY_STORE); session.key = ''; askKey(); };
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
