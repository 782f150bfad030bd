// Browser test of the query page: Playwright (playwright-core) driving Debian's Chromium,
// headless, against a real `eventide serve` that server/tests/ui.rs started and seeded.
//
// Environment: EVENTIDE_URL, EVENTIDE_QUERY_KEY, EVENTIDE_INGEST_KEY, EVENTIDE_ADMIN_KEY,
// EVENTIDE_DATASET (seeded
// with `service.name`, `duration_ms`, `http.status_code`, `build_id`: every tenth event slow and
// from build-2), EVENTIDE_WIDE_DATASET (100,000 distinct `user_id`), EVENTIDE_SCREENSHOTS.
// The script seeds a failing deploy itself (dataset `deploys`) and sends the live tail's events.
// Exits non-zero with the failed check on stderr.
import { chromium } from 'playwright-core';
import assert from 'node:assert/strict';
import path from 'node:path';

const url = process.env.EVENTIDE_URL;
const queryKey = process.env.EVENTIDE_QUERY_KEY;
const ingestKey = process.env.EVENTIDE_INGEST_KEY;
const dataset = process.env.EVENTIDE_DATASET;
const shots = process.env.EVENTIDE_SCREENSHOTS;
// The server's clock (--clock-start), which is not the wall clock: now, in seconds.
const clockAtStart = Number(process.env.EVENTIDE_CLOCK_NOW_MS);
const scriptStart = Date.now();
const serverNow = () => Math.floor((clockAtStart + (Date.now() - scriptStart)) / 1000);

async function api(p, body, key = queryKey) {
  const r = await fetch(url + p, {
    method: 'POST',
    headers: { 'X-Honeycomb-Team': key, 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  });
  const j = await r.json();
  assert.equal(r.status, 200, `${p}: ${JSON.stringify(j)}`);
  return j;
}

async function get(p) {
  const r = await fetch(url + p, { headers: { 'X-Honeycomb-Team': queryKey } });
  const j = await r.json();
  assert.equal(r.status, 200, `${p}: ${JSON.stringify(j)}`);
  return j;
}

async function put(p, body, key) {
  const r = await fetch(url + p, {
    method: 'PUT',
    headers: { 'X-Honeycomb-Team': key, 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  });
  const j = await r.json();
  assert.equal(r.status, 200, `${p}: ${JSON.stringify(j)}`);
  return j;
}

/** Waits until `dataset` holds `n` queryable events. */
async function waitCount(ds, n) {
  for (let i = 0; ; i++) {
    const r = await api('/api/v1/sql', { sql: `SELECT count(*) FROM "${ds}"` });
    if (Number(r.rows[0][0]) >= n) return;
    assert.ok(i < 300, `${ds} holds ${n} events (has ${r.rows[0][0]})`);
    await new Promise((res) => setTimeout(res, 100));
  }
}

/**
 * A deploy of checkout that failed, all in the past so it is decided at once: 10 minutes of
 * v42 at 20 events/s with 5 % errors (status 500), then 2 minutes of v43 with 15 % errors, all
 * of them in region eu-west-1. Returns the marker.
 */
async function seedFailingDeploy(ds) {
  await put(`/api/v1/conventions/${ds}`, { deploy_check: { baseline_seconds: 600, observe_seconds: 120, min_events: 200 } }, process.env.EVENTIDE_ADMIN_KEY);
  const deployAt = serverNow() - 150;
  const regions = ['eu-west-1', 'us-east-1', 'ap-south-1'];
  const items = [];
  for (let n = 0; n < 20 * 720; n++) {
    const t = deployAt - 600 + n / 20;
    const after = t >= deployAt;
    const region = regions[n % 3];
    // v42: every 20th event of each region fails (5 %); v43: 9 of 20 in eu-west-1 (45 %, 15 %
    // overall), none elsewhere.
    const j = Math.floor(n / 3);
    const failing = after ? region === 'eu-west-1' && j % 20 < 9 : j % 20 === 0;
    items.push({ time: t, data: {
      'service.name': 'checkout', 'service.version': after ? 'v43' : 'v42', region,
      'http.status_code': failing ? 500 : 200,
      // Latencies spread out (20..420 ms), the same before and after, unrelated to the errors.
      duration_ms: 20 + ((n * 7919) % 1000) ** 2 / 2500 + 0.5,
    } });
  }
  for (let i = 0; i < items.length; i += 5000) await api(`/1/batch/${ds}`, items.slice(i, i + 5000), ingestKey);
  await waitCount(ds, items.length);
  return api(`/1/markers/${ds}`, { type: 'deploy', service: 'checkout', version: 'v43', message: 'checkout v43: new payment client', start_time: deployAt }, ingestKey);
}

/** How the page prints a number (cellText in core.js). */
const shown = (v) => (Number.isInteger(v) ? String(v) : String(Math.round(v * 1e6) / 1e6));

async function tableRows(page, testid) {
  return page.$$eval(`[data-testid="${testid}"] tbody tr`, (trs) => trs.map((tr) => [...tr.children].map((td) => td.textContent)));
}

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
});
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(String(e)));

  // The key is asked for once and kept.
  await page.goto(url + '/');
  await page.getByTestId('key-input').fill(queryKey);
  await page.getByTestId('key-input').press('Enter');
  await page.waitForFunction((ds) => [...document.querySelectorAll('[data-testid="dataset-select"] option')].some((o) => o.value === ds), dataset);
  await page.getByTestId('dataset-select').selectOption(dataset);

  // COUNT + P99(duration_ms) by service.name, built with the controls.
  await page.click('#add-calc');
  const ops = page.getByTestId('calc-op');
  await ops.nth(0).selectOption('COUNT');
  await ops.nth(1).selectOption('P99');
  await page.getByTestId('calc-column').nth(1).fill('duration_ms');
  await page.getByTestId('group-input').fill('service.name');
  await page.getByTestId('run-query').click();
  await page.waitForSelector('[data-testid="results-table"] tbody tr');

  // The table shows what the API answers for the same question.
  const spec = {
    calculations: [{ op: 'COUNT' }, { op: 'P99', column: 'duration_ms' }],
    breakdowns: ['service.name'], time_range: 7200, limit: 100,
  };
  const want = (await api(`/api/v1/query/${dataset}`, spec)).results
    .map((r) => [r['service.name'], shown(r.COUNT), shown(r['P99(duration_ms)'])]);
  assert.ok(want.length >= 3, 'seeded services');
  const got = await tableRows(page, 'results-table');
  assert.deepEqual(got, want, 'results table = API results');

  // One chart per calculation, one line per service, drawn from the API's series.
  const charts = page.getByTestId('chart');
  assert.equal(await charts.count(), 2);
  assert.equal(await charts.nth(0).getAttribute('data-calc'), 'COUNT');
  assert.equal(await charts.nth(1).getAttribute('data-calc'), 'P99(duration_ms)');
  const legend = await charts.nth(0).locator('.u-legend .u-series th').allTextContents();
  for (const [svc] of want) assert.ok(legend.some((l) => l.includes(svc)), `legend has ${svc}: ${legend}`);
  const drawn = await page.evaluate(() => document.querySelectorAll('[data-testid="chart"] canvas').length);
  assert.equal(drawn, 2);
  // The lines are the API's series: per chart, per service, the value at each bucket time.
  const series = (await api(`/api/v1/query/${dataset}`, { ...spec, granularity: 120 })).series;
  const plotted = await page.evaluate(() => window.eventideCharts);
  for (const c of plotted) {
    c.labels.forEach((svc, i) => {
      const want = new Map(series.filter((r) => r['service.name'] === svc).map((r) => [Date.parse(r.time) / 1000, r[c.calc]]));
      const got = new Map(c.data[0].map((t, j) => [t, c.data[i + 1][j]]).filter(([, v]) => v !== null));
      assert.deepEqual(got, want, `${c.calc} line of ${svc}`);
    });
  }
  await page.screenshot({ path: path.join(shots, 'query.png'), fullPage: true });

  // The URL holds the query: a reload gives the same query and the same table.
  const hash = new URL(page.url()).hash;
  assert.ok(hash.length > 10, 'query in the URL');
  await page.reload();
  await page.waitForSelector('[data-testid="results-table"] tbody tr');
  assert.deepEqual(await tableRows(page, 'results-table'), want, 'same results after reload');
  assert.equal(await page.getByTestId('group-input').inputValue(), 'service.name');
  assert.equal(await page.getByTestId('calc-op').nth(1).inputValue(), 'P99');
  assert.equal(await page.getByTestId('calc-column').nth(1).inputValue(), 'duration_ms');

  // A deploy marker created through the API appears on the charts, its message on hover.
  const now = serverNow();
  await api(`/1/markers/${dataset}`, { message: 'deploy checkout v42', type: 'deploy', start_time: now - 1800 }, ingestKey);
  await page.getByTestId('run-query').click();
  await page.waitForSelector('[data-testid="marker"]');
  const titles = await page.getByTestId('marker').evaluateAll((ms) => ms.map((m) => m.title));
  assert.ok(titles.length >= 2 && titles.every((t) => t === 'deploy: deploy checkout v42'), `markers: ${titles}`);
  await page.screenshot({ path: path.join(shots, 'markers.png'), fullPage: true });

  // A bad filter value: the server's error, shown next to the filters.
  await page.click('#add-filter');
  await page.getByTestId('filter-column').fill('http.status_code');
  await page.getByTestId('filter-op').selectOption('>=');
  await page.getByTestId('filter-value').fill('abc');
  await page.getByTestId('run-query').click();
  const err = page.locator('[data-testid="error"][data-for="where"]');
  await err.waitFor({ state: 'visible' });
  const message = await err.textContent();
  assert.match(message, /filter value "abc" does not fit column "http.status_code" of type int64/);
  await page.screenshot({ path: path.join(shots, 'error.png'), fullPage: true });

  // The SQL tab.
  await page.click('#tab-sql');
  await page.getByTestId('sql-input').fill(`SELECT "service.name" AS service, count(*) AS n FROM "${dataset}" GROUP BY 1 ORDER BY 1`);
  await page.getByTestId('sql-run').click();
  await page.waitForSelector('[data-testid="sql-results"] tbody tr');
  const sqlRows = await tableRows(page, 'sql-results');
  const sqlWant = (await api('/api/v1/sql', { sql: `SELECT "service.name" AS service, count(*) AS n FROM "${dataset}" GROUP BY 1 ORDER BY 1` })).rows.map((r) => r.map(String));
  assert.deepEqual(sqlRows, sqlWant);
  await page.screenshot({ path: path.join(shots, 'sql.png'), fullPage: true });

  // HEATMAP(duration_ms), then a drag over its slow region: BubbleUp names the build that
  // was seeded to be slow.
  await page.click('#tab-query');
  await page.locator('#filters .filter button').click();
  await page.locator('#calcs .calc button').nth(1).click();
  await page.getByTestId('calc-op').nth(0).selectOption('HEATMAP');
  await page.getByTestId('calc-column').nth(0).fill('duration_ms');
  await page.getByTestId('group-input').fill('');
  await page.getByTestId('run-query').click();
  const heatmap = page.getByTestId('heatmap');
  await heatmap.waitFor();
  const painted = await heatmap.evaluate((c) => {
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 0; i < d.length; i += 4) if (d[i] !== d[i + 1] || d[i + 1] !== d[i + 2]) n++;
    return n;
  });
  assert.ok(painted > 500, `heatmap cells drawn (${painted} coloured pixels)`);
  await page.screenshot({ path: path.join(shots, 'heatmap.png'), fullPage: true });
  const box = await heatmap.boundingBox();
  // The top fifth of the value axis holds only the slow events (800+ ms of 20..~860).
  await page.mouse.move(box.x + 60, box.y + 5);
  await page.mouse.down();
  await page.mouse.move(box.x + box.width / 2, box.y + 30, { steps: 4 });
  await page.mouse.move(box.x + box.width - 10, box.y + box.height * 0.2, { steps: 4 });
  await page.mouse.up();
  await page.waitForSelector('[data-testid="bubbleup-column"]');
  const first = await page.getByTestId('bubbleup-column').first().getAttribute('data-column');
  assert.equal(first, 'build_id', 'BubbleUp puts the seeded column first');
  await page.screenshot({ path: path.join(shots, 'bubbleup.png'), fullPage: true });

  // Dragging over a time range of a chart asks BubbleUp about that stretch of time.
  await page.getByTestId('dataset-select').selectOption(dataset);
  await page.getByTestId('calc-op').nth(0).selectOption('COUNT');
  await page.getByTestId('calc-column').nth(0).fill('');
  await page.getByTestId('run-query').click();
  const chart = page.getByTestId('chart').first().locator('.u-over');
  await chart.waitFor();
  const cb = await chart.boundingBox();
  await page.mouse.move(cb.x + cb.width * 0.5, cb.y + cb.height / 2);
  await page.mouse.down();
  await page.mouse.move(cb.x + cb.width * 0.99, cb.y + cb.height / 2, { steps: 5 });
  await page.mouse.up();
  await page.waitForFunction(() => /selected events vs/.test(document.querySelector('#bubbleup')?.textContent || ''));

  // The raw events behind a results row, paged.
  await page.locator('[data-testid="results-table"] tbody tr').first().click();
  await page.waitForSelector('[data-testid="events-table"] tbody tr');
  assert.equal(await page.locator('[data-testid="events-table"] tbody tr').count(), 50);
  await page.getByRole('button', { name: 'older →' }).click();
  await page.waitForFunction(() => document.querySelector('#events span')?.textContent === 'page 2');
  assert.equal(await page.locator('[data-testid="events-table"] tbody tr').count(), 50);

  // A 100,000-group breakdown: the table lists the first 1,000 groups and summarizes the rest,
  // and the page keeps answering.
  await page.getByTestId('dataset-select').selectOption(process.env.EVENTIDE_WIDE_DATASET);
  await page.getByTestId('calc-op').nth(0).selectOption('COUNT');
  await page.getByTestId('calc-column').nth(0).fill('');
  await page.getByTestId('group-input').fill('user_id');
  await page.fill('#limit', '100000');
  const t0 = Date.now();
  await page.getByTestId('run-query').click();
  await page.getByTestId('rest-summary').waitFor({ timeout: 60_000 });
  const rendered = Date.now() - t0;
  assert.equal(await page.locator('[data-testid="results-table"] tbody tr').count(), 1000);
  assert.match(await page.getByTestId('rest-summary').textContent(), /99000 more groups not listed · COUNT of the rest 99000/);
  assert.equal(await page.getByTestId('chart').first().locator('.u-legend .u-series').count(), 11, 'time + top 10 lines');
  const t1 = Date.now();
  await page.click('#tab-sql');
  await page.getByTestId('sql-input').waitFor({ state: 'visible' });
  console.log(`100,000 groups: rendered in ${rendered} ms, next click answered in ${Date.now() - t1} ms`);
  await page.click('#tab-query');
  await page.screenshot({ path: path.join(shots, 'wide.png') });

  // The deploys page: a checked deploy with its verdict, and the evidence behind it.
  const deployAt = serverNow() - 1200;
  const deploy = await api(`/1/markers/${dataset}`, { message: 'checkout v43', type: 'deploy', service: 'checkout', version: 'v43', start_time: deployAt }, ingestKey);
  await page.click('#tab-deploys');
  await page.waitForFunction((id) => [...document.querySelectorAll('[data-testid="deploys-table"] tbody tr')]
    .some((tr) => tr.lastElementChild.textContent === id && tr.children[4].textContent !== 'pending'), deploy.id, { timeout: 30_000 });
  const deployRows = await tableRows(page, 'deploys-table');
  const row = deployRows.find((r) => r[7] === deploy.id);
  assert.deepEqual(row.slice(1, 4), ['checkout', 'v43', dataset]);
  const verdict = await get(`/api/v1/deploys/${deploy.id}/verdict`);
  assert.equal(row[4], verdict.verdict, 'the page shows the verdict the API gives');
  await page.locator('[data-testid="deploys-table"] tbody tr', { hasText: deploy.id }).click();
  const evidence = JSON.parse(await page.getByTestId('deploy-evidence').textContent());
  assert.equal(evidence.service, 'checkout');
  assert.ok(evidence.before.events > 0, 'evidence counts the events before the deploy');

  // A failing deploy drawn: the summary and sentences, a chart per metric with its lines, the
  // BubbleUp bars naming the region, the checks.
  const failing = await seedFailingDeploy('deploys');
  await page.click('#deploys-refresh');
  await page.waitForFunction((id) => [...document.querySelectorAll('[data-testid="deploys-table"] tbody tr')]
    .some((tr) => tr.lastElementChild.textContent === id && tr.children[4].textContent === 'fail'), failing.id, { timeout: 30_000 });
  await page.locator('[data-testid="deploys-table"] tbody tr', { hasText: failing.id }).click();
  await page.waitForSelector('[data-testid="deploy-chart-error_rate"] canvas');
  await page.waitForSelector('[data-testid="deploy-chart-latency_p95"] canvas');
  const failed = await get(`/api/v1/deploys/${failing.id}/verdict`);
  assert.equal(failed.verdict, 'fail');
  const summary = await page.getByTestId('deploy-summary').textContent();
  assert.equal(summary, failed.summary, 'the summary the API gives');
  assert.match(summary, /checkout/);
  assert.match(summary, /v43/);
  const sentences = await page.locator('[data-testid="deploy-regressions"] li').allTextContents();
  assert.deepEqual(sentences, failed.evidence.regressions);
  assert.ok(sentences.some((r) => /error rate/.test(r)), `regressions: ${sentences}`);
  const region = page.locator('[data-testid="deploy-dimensions"] [data-testid="deploy-dimension"][data-column="region"]');
  assert.equal(await region.count(), 1, 'a BubbleUp card for region');
  assert.equal(await region.locator('.bubble-row .label').first().textContent(), 'eu-west-1', 'eu-west-1 first: the failing region');
  assert.ok(await region.locator('.bar.sel').count() > 0 && await region.locator('.bar.base').count() > 0, 'two bars per value');
  const deployLegend = await page.locator('[data-testid="deploy-chart-error_rate"] .u-legend .u-series th').allTextContents();
  assert.ok(deployLegend.some((l) => l.includes('before')), `legend has before: ${deployLegend}`);
  assert.ok(deployLegend.some((l) => l.includes('after')), `legend has after: ${deployLegend}`);
  // The lines are the API's series; the guides are its deploy time, threshold and detection.
  const deploySeries = await get(`/api/v1/deploys/${failing.id}/series`);
  const drawnDeploy = await page.evaluate(() => window.eventideDeployCharts);
  const ds0 = deploySeries.datasets[0];
  assert.deepEqual(drawnDeploy.map((c) => c.metric), ds0.metrics.map((m) => m.metric));
  for (const c of drawnDeploy) {
    const m = ds0.metrics.find((x) => x.metric === c.metric);
    for (const [i, side] of ['before', 'after'].entries()) {
      assert.ok(c.labels[i].startsWith(side), `${c.metric} line ${i} is ${side}: ${c.labels}`);
      const got = c.data[0].map((t, j) => [t, c.data[i + 1][j]]).filter(([, v]) => v !== null);
      assert.deepEqual(got, m.series[side].filter(([, v]) => v !== null), `${c.metric} ${side} line`);
    }
    assert.equal(c.threshold, m.comparison.threshold, `${c.metric} threshold`);
    assert.deepEqual(c.lines.slice(0, 2), [['deploy', ds0.deploy_time], ['detected', ds0.failed_at]]);
  }
  assert.equal(await page.locator('[data-testid="deploy-checks"] tbody tr').count(), failed.evidence.checks.length);
  assert.equal(JSON.parse(await page.getByTestId('deploy-evidence').textContent()).summary, failed.evidence.summary);
  await page.screenshot({ path: path.join(shots, 'deploys.png'), fullPage: true });
  await page.locator('#deploy-detail').screenshot({ path: path.join(shots, 'deploy-chart.png') });

  // The triggers page: a trigger of the dataset with its recent evaluations.
  const trigger = await api(`/1/triggers/${dataset}`, {
    name: 'any traffic', query: { calculations: [{ op: 'COUNT' }], time_range: 7200 },
    threshold: { op: '>', value: 0 }, frequency: 1,
  }, process.env.EVENTIDE_ADMIN_KEY);
  for (let i = 0; ; i++) {
    const e = await get(`/1/triggers/${dataset}/${trigger.id}/evaluations`);
    if (e.evaluations.length > 0) break;
    assert.ok(i < 100, 'the trigger is evaluated');
    await new Promise((r) => setTimeout(r, 100));
  }
  await page.getByTestId('dataset-select').selectOption(dataset);
  await page.click('#tab-triggers');
  await page.waitForSelector('[data-testid="triggers-table"] tbody tr');
  const trig = (await tableRows(page, 'triggers-table')).find((r) => r[7] === trigger.id);
  assert.deepEqual(trig.slice(0, 5), ['any traffic', 'COUNT', '> 0', '1', 'triggered']);
  await page.locator('[data-testid="triggers-table"] tbody tr', { hasText: trigger.id }).click();
  await page.waitForSelector('[data-testid="evaluations-table"] tbody tr');
  const evals = await tableRows(page, 'evaluations-table');
  assert.equal(evals[evals.length - 1][3], 'triggered', 'the first evaluation fired');
  await page.screenshot({ path: path.join(shots, 'triggers.png'), fullPage: true });

  // The live tail: new events of the dataset matching its WHERE, newest first.
  await page.getByTestId('dataset-select').selectOption(dataset);
  await page.click('#tab-tail');
  await page.getByTestId('tail-add-filter').click();
  await page.getByTestId('tail-filter-column').fill('http.status_code');
  await page.getByTestId('tail-filter-op').selectOption('>=');
  await page.getByTestId('tail-filter-value').fill('500');
  await page.getByTestId('tail-start').click();
  await page.waitForSelector('[data-testid="tail-status"][data-state="connected"]', { timeout: 15_000 });
  const tailMark = `tail-${process.pid}-${Date.now()}`;
  // Waits (checking at each animation frame) until the tail table has `n` rows holding `mark`;
  // gives the page's clock at that moment (the same machine's clock as the script's).
  const waitTailed = (mark, n) => page.waitForFunction(([m, want]) => {
    const rows = [...document.querySelectorAll('[data-testid="tail-table"] tbody tr')]
      .filter((tr) => [...tr.children].some((td) => td.textContent === m));
    return rows.length >= want ? Date.now() : false;
  }, [mark, n], { timeout: 15_000, polling: 'raf' });
  const batch = Array.from({ length: 20 }, (_, i) => ({ time: serverNow(), data: {
    tail_marker: tailMark, n: i, 'http.status_code': i % 2 ? 200 : 500, 'service.name': 'tail-test' } }));
  await api(`/1/batch/${dataset}`, batch, ingestKey);
  const ack = Date.now();
  const seen = await waitTailed(tailMark, 10);
  console.log(`tail: ack to visible ${(await seen.jsonValue()) - ack} ms`);
  // One more matching event after them: once it is shown, the 200s of the first batch would
  // have been too.
  await api(`/1/batch/${dataset}`, [{ time: serverNow(), data: { tail_marker: `${tailMark}-end`, 'http.status_code': 503 } }], ingestKey);
  await waitTailed(`${tailMark}-end`, 1);
  const tailRows = await tableRows(page, 'tail-table');
  const tailHead = await page.$$eval('[data-testid="tail-table"] thead th', (ths) => ths.map((th) => th.textContent));
  assert.equal(tailHead[0], 'timestamp', 'the timestamp first');
  const col = (name) => tailHead.indexOf(name);
  const ours = tailRows.filter((r) => r[col('tail_marker')] === tailMark);
  assert.equal(ours.length, 10, 'the 10 matching events');
  assert.ok(ours.every((r) => r[col('http.status_code')] === '500'), 'only status >= 500');
  assert.equal(tailRows[0][col('tail_marker')], `${tailMark}-end`, 'the newest first');
  assert.match(await page.getByTestId('tail-status').textContent(), /connected to .* 11 events received/);
  await page.screenshot({ path: path.join(shots, 'tail.png'), fullPage: true });
  // The tail is in the URL: a reload starts it again with its WHERE.
  assert.ok(new URL(page.url()).hash.startsWith('#tail='), 'tail in the URL');
  await page.reload();
  await page.waitForSelector('[data-testid="tail-status"][data-state="connected"]', { timeout: 15_000 });
  assert.equal(await page.getByTestId('tail-filter-value').inputValue(), '500');
  await page.getByTestId('tail-stop').click();
  await page.waitForSelector('[data-testid="tail-status"][data-state="stopped"]');

  assert.deepEqual(pageErrors, [], 'no script errors in the page');
  console.log('ui browser test: ok');
} finally {
  await browser.close();
}
