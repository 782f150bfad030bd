// The deploys page: deploy markers with their verdicts, and a verdict drawn as charts (before,
// after and the old version beside it, with the threshold and the detection), BubbleUp bars and
// the checks table; pending verdicts are waited for with `?wait=`.
import uPlot from '/ui/vendor/uPlot.esm.js';
import { $, api, el, table, clearErrors, showError, bubbleCard, when } from '/ui/core.js';

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

export function stopDeployWatches() {
  listWatch?.abort(); listWatch = null;
  detailWatch?.abort(); detailWatch = null;
}

const verdictUrl = (id, wait) => `/api/v1/deploys/${encodeURIComponent(id)}/verdict${wait ? `?wait=${VERDICT_WAIT}` : ''}`;

/** Deploy markers with their verdicts; a click shows the charts and the evidence. */
export async function loadDeploys() {
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
export async function showDeploy(id) {
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

/** Back on the page: a shown deploy still being checked is waited for again. */
export function reshowPending() {
  if (shownDeploy && shownDeploy.verdict === 'pending') showDeploy(shownDeploy.id);
}
