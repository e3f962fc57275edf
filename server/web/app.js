// gridlens web app: the leadership dashboard (数据大屏), the grid worker's task list and the
// analyst's SQL console. Everything it shows comes from the server's own API, called with the
// session cookie (HttpOnly: this script never sees it) and, for changes, the session's CSRF
// token, held in memory only. The personal token is typed once into the sign-in form and sent
// in a POST body; it is never put in a URL or in browser storage.
'use strict';

const state = { me: null, csrf: null, charts: [], turn: 0 };

const RULES = {
  R01: '实住未登记', R02: '租客未登记', R03: '出租屋未登记', R04: '人走户在', R05: '死亡未注销',
  R06: '重复登记', R07: '证件号码异常', R08: '空置房有能耗', R09: '群租', R10: '核查超期',
  R11: '关爱走访超期', R12: '空挂户',
};
const LEVELS = { city: '市', district: '区', street: '街道', community: '社区', grid: '网格' };
const OUTCOMES = { fixed: '已整改', false_alarm: '误报', unreachable: '无法联系' };
const STAGES = { accept: '立案', dispatch: '派遣', handle: '处置', close: '结案' };

// ---- small helpers ------------------------------------------------------------------------

/** An element with attributes and children (strings become text, never HTML). */
function h(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k === 'class') e.className = v;
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c == null) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

const $ = (sel) => document.querySelector(sel);

class ApiError extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}

/** Calls the API with the session cookie; changes carry the CSRF token. */
async function api(path, opts = {}) {
  const headers = Object.assign({}, opts.headers || {});
  const method = opts.method || 'GET';
  if (method !== 'GET' && state.csrf) headers['X-CSRF-Token'] = state.csrf;
  let body = opts.body;
  if (opts.json !== undefined) {
    headers['Content-Type'] = 'application/json';
    body = JSON.stringify(opts.json);
  }
  const r = await fetch(path, { method, headers, body, credentials: 'same-origin', cache: 'no-store' });
  if (!r.ok) {
    let code = 'error', message = r.status + ' ' + r.statusText;
    try { const j = await r.json(); code = j.error.code; message = j.error.message; } catch (_) { /* not JSON */ }
    if (r.status === 401 && path !== '/v1/session') { signedOut(message); }
    throw new ApiError(r.status, code, message);
  }
  if (opts.raw) return r;
  if (r.status === 204) return null;
  return r.json();
}

const query = (o) => new URLSearchParams(Object.entries(o).filter(([, v]) => v != null && v !== '')).toString();

function pct(v) { return v == null ? '—' : (v * 100).toFixed(1) + '%'; }
function num(v, d = 0) { return v == null ? '—' : Number(v).toLocaleString('zh-CN', { minimumFractionDigits: d, maximumFractionDigits: d }); }
function grade(g) { return g ? h('span', { class: 'grade grade-' + g }, g) : '—'; }
function clearCharts() { for (const c of state.charts) c.dispose(); state.charts = []; }
function chart(el) { const c = echarts.init(el, 'dark', { renderer: 'canvas' }); state.charts.push(c); return c; }

function show(view) {
  $('#signin').hidden = view !== 'signin';
  $('#view').hidden = view === 'signin';
}

function fail(e) {
  clearCharts();
  const v = $('#view');
  v.replaceChildren(h('div', { class: 'panel' },
    h('h1', {}, e.status === 403 ? '无权查看' : '出错了'),
    h('p', { id: 'error', class: 'error', 'data-status': e.status, 'data-code': e.code || '' }, e.message)));
  show('view');
}

// ---- signing in and out ------------------------------------------------------------------

function signedOut(message) {
  state.me = null; state.csrf = null;
  clearCharts();
  $('#nav').hidden = true; $('#who').hidden = true;
  $('#signin-error').textContent = message || '';
  show('signin');
}

function signedIn(me) {
  state.me = me;
  if (me.csrf) state.csrf = me.csrf;
  $('#who-name').textContent = `${me.name} · ${me.role} · ${me.scope === 'city' ? '全市' : me.scope}`;
  $('#who').hidden = false;
  const nav = $('#nav');
  nav.hidden = false;
  for (const a of nav.querySelectorAll('a')) a.hidden = !a.dataset.for.split(' ').includes(me.role);
}

$('#signin-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const input = $('#token');
  const token = input.value;
  input.value = '';
  try {
    const me = await api('/v1/session', { method: 'POST', json: { token } });
    signedIn(me);
    if (!location.hash || location.hash === '#/') location.hash = home();
    else route();
  } catch (e) {
    $('#signin-error').textContent = e.status === 401 ? '令牌无效或已吊销。' : e.message;
  }
});

$('#logout').addEventListener('click', async () => {
  try { await api('/v1/session', { method: 'DELETE' }); } catch (_) { /* signed out anyway */ }
  location.hash = '';
  signedOut('已退出。');
});

function home() {
  return state.me.role === 'worker' ? '#/tasks' : '#/dash';
}

// ---- routing -----------------------------------------------------------------------------

async function route() {
  if (!state.me) return;
  // Only the latest navigation draws: a slower one started before it gives way.
  const turn = ++state.turn;
  const [path, qs] = (location.hash.slice(1) || home().slice(1)).split('?');
  const params = new URLSearchParams(qs || '');
  const parts = path.split('/').filter(Boolean);
  for (const a of $('#nav').querySelectorAll('a')) a.classList.toggle('on', a.getAttribute('href') === '#/' + parts[0]);
  try {
    if (parts[0] === 'dash') await dashboard(parts[1] || (state.me.scope === 'city' ? 'city' : state.me.scope), params.get('as_of') || '', turn);
    else if (parts[0] === 'tasks') await tasks(params.get('worker_id') || '', turn);
    else if (parts[0] === 'sql') sqlConsole();
    else location.hash = home();
  } catch (e) {
    if (state.me && turn === state.turn) fail(e);
  }
}
window.addEventListener('hashchange', route);

// ---- the leadership dashboard ------------------------------------------------------------

const CARDS = [
  ['acceptance_rate', '立案率', 'inc', pct],
  ['closure_rate', '结案率', 'inc', pct],
  ['on_time_closure_rate', '按期结案率', 'inc', pct],
  ['on_time_handling_rate', '按期处置率', 'inc', pct],
  ['rework_rate', '返工率', 'inc', pct],
  ['score', '综合得分', 'inc', (v) => num(v, 1)],
  ['grade', '等级', 'inc', grade],
  ['overdue_open', '超期未结', 'inc', (v) => num(v)],
  ['residents', '实有人口', 'grid', (v) => num(v)],
  ['anomalies', '异常数', 'grid', (v) => num(v)],
  ['anomalies_per_1000', '每千人异常', 'grid', (v) => num(v, 2)],
  ['grid_score', '网格综合得分', 'grid', (v) => num(v, 1)],
];

async function dashboard(code, asOf, turn) {
  const started = performance.now();
  const c = code === 'city' ? '' : code;
  const d = await api('/v1/dashboard?' + query({ code: c, as_of: asOf }));
  const at = asOf || d.as_of;
  const child = d.child_level;
  const [inc, self, kids, kidsInc, months] = await Promise.all([
    api('/v1/kpis/incidents?' + query({ code: c, as_of: at })),
    api('/v1/kpis/grids?' + query({ level: d.level, code: c, as_of: at })),
    child ? api('/v1/kpis/grids?' + query({ level: child, code: c, as_of: at })) : null,
    child ? api('/v1/kpis/incidents?' + query({ group_by: child, code: c, as_of: at })) : null,
    api('/v1/kpis/incidents?' + query({ group_by: 'month', code: c, as_of: at })),
  ]);
  if (turn !== state.turn) return;
  clearCharts();
  const incRow = inc.rows[0] || {};
  const selfRow = self.rows.find((r) => r.code === (c || r.code)) || self.rows[0] || {};

  const crumbs = h('div', { class: 'crumbs', id: 'crumbs' });
  d.path.forEach((p, i) => {
    if (i) crumbs.append(h('span', { class: 'sep' }, '›'));
    const label = p.name || (LEVELS[p.level] + ' ' + p.code);
    crumbs.append(p.code === d.code ? h('span', {}, label) :
      h('a', { 'data-code': p.code, href: dashHref(p.code, asOf) }, label));
  });
  const picker = h('input', { type: 'date', id: 'as-of', value: at.slice(0, 10) });
  picker.addEventListener('change', () => { location.hash = dashHref(d.code, picker.value); });

  const cards = h('div', { class: 'cards', id: 'cards' }, CARDS.map(([k, label, src, fmt]) => {
    const v = (src === 'inc' ? incRow : selfRow)[k];
    return h('div', { class: 'card', 'data-kpi': k, 'data-value': v == null ? '' : String(v) },
      h('div', { class: 'k' }, label), h('div', { class: 'v' }, fmt(v)));
  }));

  const ranking = child ? rankingTable(child, kids.rows, kidsInc.rows, d.names, asOf) : h('p', { class: 'muted' }, '这是最细一级（网格）。');
  const mapEl = h('div', { class: 'chart', id: 'map' });
  const metric = h('select', { id: 'map-metric' }, h('option', { value: 'score' }, '按综合得分'), h('option', { value: 'rate' }, '按每千人异常'));
  const trendEl = h('div', { class: 'chart', id: 'trend' });
  const rulesEl = h('div', { class: 'chart', id: 'rules' });
  const overdue = overdueTable(d.overdue);

  $('#view').replaceChildren(
    h('div', { class: 'bar' }, h('div', { class: 'title', id: 'title' }, d.name || d.code), crumbs,
      h('label', {}, '截至 ', picker)),
    cards,
    h('div', { class: 'grid2' },
      h('div', { class: 'panel' }, h('h2', {}, child ? `下级排名（${LEVELS[child]}）` : '排名'), h('div', { class: 'scroll' }, ranking)),
      h('div', { class: 'panel' }, h('div', { class: 'bar' }, h('h2', {}, '网格分布'), metric), mapEl)),
    h('div', { class: 'grid2' },
      h('div', { class: 'panel' }, h('h2', {}, '月度事件指标'), trendEl),
      h('div', { class: 'panel' }, h('h2', {}, '异常（按规则）'), rulesEl)),
    h('div', { class: 'panel' }, h('h2', {}, `超期案件（共 ${d.overdue.total} 件）`), h('div', { class: 'scroll' }, overdue)),
  );
  show('view');

  drawMap(chart(mapEl), d, 'score');
  metric.addEventListener('change', () => drawMap(state.charts[0], d, metric.value));
  drawTrend(chart(trendEl), months.rows);
  drawRules(chart(rulesEl), d.anomalies_by_rule);
  document.body.dataset.drawn = String(Math.round(performance.now() - started));
}

function dashHref(code, asOf) {
  return '#/dash/' + encodeURIComponent(code) + (asOf ? '?as_of=' + encodeURIComponent(asOf) : '');
}

function rankingTable(child, grids, incidents, names, asOf) {
  const col = child + '_code';
  const inc = new Map(incidents.map((r) => [r[col], r]));
  const rows = grids.map((g) => ({ g, i: inc.get(g.code) || {} }));
  rows.sort((a, b) => (b.i.score ?? -1) - (a.i.score ?? -1) || b.g.grid_score - a.g.grid_score || a.g.code.localeCompare(b.g.code));
  return h('table', { id: 'ranking' },
    h('thead', {}, h('tr', {}, ['#', '名称', '编码', '综合得分', '等级', '结案率', '网格综合得分', '实有人口', '每千人异常'].map((t) => h('th', {}, t)))),
    h('tbody', {}, rows.map(({ g, i }, n) => h('tr', {
      class: 'drill', 'data-code': g.code, onclick: () => { location.hash = dashHref(g.code, asOf); },
    },
    h('td', { class: 'num' }, n + 1), h('td', {}, names[g.code] || ''), h('td', {}, g.code),
    h('td', { class: 'num', 'data-kpi': 'score', 'data-value': i.score ?? '' }, num(i.score, 1)),
    h('td', { 'data-kpi': 'grade' }, grade(i.grade)),
    h('td', { class: 'num' }, pct(i.closure_rate)),
    h('td', { class: 'num', 'data-kpi': 'grid_score', 'data-value': g.grid_score ?? '' }, num(g.grid_score, 1)),
    h('td', { class: 'num', 'data-kpi': 'residents', 'data-value': g.residents }, num(g.residents)),
    h('td', { class: 'num' }, num(g.anomalies_per_1000, 2))))));
}

function overdueTable(o) {
  if (!o.cases.length) return h('p', { class: 'muted' }, '没有超期案件。');
  return h('table', { id: 'overdue' },
    h('thead', {}, h('tr', {}, ['事件编号', '网格', '环节', '时限'].map((t) => h('th', {}, t)))),
    h('tbody', {}, o.cases.map((c) => h('tr', {},
      h('td', {}, c.incident_id), h('td', {}, c.grid_code), h('td', {}, STAGES[c.stage] || c.stage),
      h('td', {}, (c.deadline || '').replace('T', ' ').slice(0, 16))))));
}

function drawMap(c, d, metric) {
  const m = d.map;
  const data = m.grid_code.map((g, i) => [m.lon[i], m.lat[i], m.grid_score[i], m.anomalies_per_1000[i], g, m.name[i] || '']);
  const dim = metric === 'score' ? 2 : 3;
  const values = data.map((r) => r[dim]).filter((v) => v != null);
  const max = metric === 'score' ? 100 : Math.max(1, ...values);
  c.setOption({
    animation: false,
    backgroundColor: 'transparent',
    grid: { left: 50, right: 20, top: 10, bottom: 40 },
    tooltip: { formatter: (p) => `${p.value[5] || p.value[4]}<br>综合得分 ${num(p.value[2], 1)}<br>每千人异常 ${num(p.value[3], 2)}` },
    xAxis: { type: 'value', scale: true, name: '经度', axisLabel: { formatter: (v) => v.toFixed(2) }, splitLine: { show: false } },
    yAxis: { type: 'value', scale: true, name: '纬度', axisLabel: { formatter: (v) => v.toFixed(2) }, splitLine: { show: false } },
    visualMap: { dimension: dim, min: 0, max, calculable: true, orient: 'horizontal', left: 'center', bottom: 0,
      inRange: { color: metric === 'score' ? ['#e5484d', '#f0c419', '#2fb36b'] : ['#2fb36b', '#f0c419', '#e5484d'] } },
    series: [{ type: 'scatter', symbolSize: data.length > 2000 ? 4 : 9, data, large: data.length > 2000 }],
  }, true);
  c.off('click');
  c.on('click', (p) => { location.hash = dashHref(p.value[4], ''); });
}

function drawTrend(c, rows) {
  const months = rows.map((r) => r.month);
  const line = (k, name) => ({ name, type: 'line', data: rows.map((r) => (r[k] == null ? null : +(r[k] * 100).toFixed(1))) });
  c.setOption({
    animation: false, backgroundColor: 'transparent',
    legend: { top: 0 }, grid: { left: 45, right: 15, top: 35, bottom: 30 }, tooltip: { trigger: 'axis' },
    xAxis: { type: 'category', data: months }, yAxis: { type: 'value', max: 100, axisLabel: { formatter: '{value}%' } },
    series: [line('acceptance_rate', '立案率'), line('closure_rate', '结案率'), line('on_time_closure_rate', '按期结案率'), line('on_time_handling_rate', '按期处置率')],
  });
}

function drawRules(c, rules) {
  c.setOption({
    animation: false, backgroundColor: 'transparent',
    grid: { left: 110, right: 20, top: 10, bottom: 25 }, tooltip: {},
    xAxis: { type: 'value' },
    yAxis: { type: 'category', inverse: true, data: rules.map((r) => `${r.rule} ${RULES[r.rule] || ''}`) },
    series: [{ type: 'bar', data: rules.map((r) => r.count), label: { show: true, position: 'right' } }],
  });
}

// ---- the grid worker's task list ---------------------------------------------------------

async function tasks(workerId, turn) {
  clearCharts();
  const me = state.me;
  const view = $('#view');
  if (me.role !== 'worker' && !workerId) {
    const input = h('input', { id: 'worker-id', placeholder: '网格员编号 worker_id' });
    view.replaceChildren(h('div', { class: 'panel' }, h('h1', {}, '任务清单'), h('p', {}, '查看哪位网格员的任务？'),
      h('form', { onsubmit: (e) => { e.preventDefault(); location.hash = '#/tasks?worker_id=' + encodeURIComponent(input.value.trim()); } },
        input, ' ', h('button', { type: 'submit' }, '查看'))));
    show('view');
    return;
  }
  const list = await api('/v1/tasks?' + query({ status: 'open', worker_id: me.role === 'worker' ? '' : workerId }));
  if (turn !== state.turn) return;
  const items = list.tasks.map(taskCard);
  view.replaceChildren(
    h('div', { class: 'bar' }, h('div', { class: 'title' }, '今日任务'), h('span', { class: 'muted', id: 'task-count' }, `${list.tasks.length} 项，按优先级排列`)),
    list.tasks.length ? h('div', { class: 'tasks', id: 'tasks' }, items) : h('p', { class: 'muted', id: 'tasks' }, '今天没有待办任务。'));
  show('view');
}

// Record corrections a worker can attach to a person's task closed as fixed (the closed loop):
// the server changes only the status of the record the task names.
const FIXES = { '': '不更正记录', moved_out: '更正记录：已迁出', deceased: '更正记录：已故' };

function taskCard(t) {
  const b = t.assignment === 'b_role';
  const outcome = h('select', { name: 'outcome' }, Object.entries(OUTCOMES).map(([k, v]) => h('option', { value: k }, v)));
  const fix = t.subject_kind === 'person'
    ? h('select', { name: 'correction' }, Object.entries(FIXES).map(([k, v]) => h('option', { value: k }, v)))
    : null;
  const note = h('textarea', { name: 'note', rows: 2, placeholder: '处理说明（可选）', maxlength: 2000 });
  const msg = h('p', { class: 'error', role: 'alert' });
  const card = h('article', { class: 'task', 'data-task': t.task_id },
    h('div', { class: 'head' },
      h('span', { class: 'tag p' + t.priority }, 'P' + t.priority),
      h('strong', {}, `${t.rule} ${RULES[t.rule] || t.rule_name}`),
      b ? h('span', { class: 'tag b', title: '代管相邻网格（B岗）' }, 'B岗') : null,
      h('span', { class: 'muted' }, t.grid_code)),
    h('div', {}, `${t.subject_kind}: ${t.subject_id}`),
    evidence(t.evidence),
    h('div', { class: 'muted' }, `首次发现 ${t.opened_at.slice(0, 10)} · 最近发现 ${t.last_found_at.slice(0, 10)}`),
    h('form', { class: 'close', onsubmit: async (e) => {
      e.preventDefault();
      try {
        const body = { outcome: outcome.value, note: note.value || null };
        if (fix && fix.value) {
          if (outcome.value !== 'fixed') throw new Error('更正记录须选择“已整改”');
          body.correction = { table: 'people', rows: [{ person_id: t.subject_id, status: fix.value }] };
        }
        await api(`/v1/tasks/${encodeURIComponent(t.task_id)}/close`, { method: 'POST', json: body });
        card.replaceChildren(h('p', { class: 'closed' }, `已关闭：${OUTCOMES[outcome.value]}`));
        card.dataset.closed = outcome.value;
      } catch (err) { msg.textContent = err.message; }
    } }, outcome, fix, note, h('button', { type: 'submit' }, '关闭任务'), msg));
  return card;
}

function evidence(ev) {
  if (!ev || typeof ev !== 'object') return null;
  return h('dl', { class: 'evidence' }, Object.entries(ev).map(([k, v]) => [h('dt', {}, k), h('dd', {}, typeof v === 'object' ? JSON.stringify(v) : String(v))]));
}

// ---- the analyst's SQL console -----------------------------------------------------------

function sqlConsole() {
  clearCharts();
  delete document.body.dataset.drawn;
  const text = h('textarea', { id: 'sql', spellcheck: 'false' }, 'SELECT grid_code, count(*) AS residents FROM people GROUP BY 1 ORDER BY 2 DESC LIMIT 20');
  const out = h('div', { id: 'sql-result', class: 'scroll' });
  const run = async () => {
    out.replaceChildren(h('p', { class: 'muted' }, '运行中…'));
    try {
      const r = await api('/v1/sql', { method: 'POST', json: { sql: text.value, format: 'json', limit: 1000 } });
      out.replaceChildren(h('p', { class: 'muted', id: 'sql-count' }, `${r.row_count} 行${r.truncated ? '（只显示前 1000 行）' : ''}`), resultTable(r));
    } catch (e) { out.replaceChildren(h('p', { class: 'error', id: 'sql-error' }, e.message)); }
  };
  const download = (format) => async () => {
    try {
      const r = await api('/v1/sql', { method: 'POST', json: { sql: text.value, format }, raw: true });
      const url = URL.createObjectURL(await r.blob());
      const a = h('a', { href: url, download: 'query.' + format });
      document.body.append(a); a.click(); a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
    } catch (e) { out.replaceChildren(h('p', { class: 'error' }, e.message)); }
  };
  $('#view').replaceChildren(h('div', { class: 'panel' },
    h('h1', {}, 'SQL 控制台'), text,
    h('div', { class: 'bar' }, h('button', { id: 'sql-run', onclick: run }, '运行'),
      h('button', { class: 'ghost', onclick: download('csv') }, '下载 CSV'),
      h('button', { class: 'ghost', onclick: download('parquet') }, '下载 Parquet'),
      h('button', { class: 'ghost', onclick: download('xlsx') }, '下载 Excel')),
    out));
  show('view');
}

function resultTable(r) {
  const cols = r.columns.map((c) => c.name);
  return h('table', { id: 'sql-table' },
    h('thead', {}, h('tr', {}, cols.map((c) => h('th', {}, c)))),
    h('tbody', {}, r.rows.map((row) => h('tr', {}, cols.map((c) => h('td', {}, row[c] == null ? '' : String(row[c])))))));
}

// ---- start -------------------------------------------------------------------------------

(async () => {
  try {
    signedIn(await api('/v1/session'));
    if (!location.hash) location.hash = home(); else route();
  } catch (_) {
    signedOut('');
  }
})();
