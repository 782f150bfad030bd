// The triggers page: the selected dataset's triggers and a trigger's recent evaluations.
import { $, api, el, table, clearErrors, showError, when } from '/ui/core.js';

/** The selected dataset's triggers; a click lists its recent evaluations. */
export async function loadTriggers() {
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
