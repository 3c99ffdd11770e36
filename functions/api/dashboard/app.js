// The engagement dashboard: plain ES2020 modules, no build step, no framework. Everything it
// shows comes from the public read API (`v1/…`, relative URLs, so it works behind a stage
// prefix) with the caller's bearer token. Charts are inline SVG drawn here. No inline script or
// style in the page (the server's CSP is `default-src 'self'`): styling is in app.css.

const LEVELS = ['observing', 'following', 'endorsing', 'contributing', 'owning', 'leading'];
const TITLES = {
  observing: 'Observing',
  following: 'Following',
  endorsing: 'Endorsing',
  contributing: 'Contributing',
  owning: 'Owning',
  leading: 'Leading',
};
const TOKEN_KEY = 'pyramid.token';
const DAY_MS = 86400000;
const PERIODS = [7, 30, 90, 365];
const SVG_NS = 'http://www.w3.org/2000/svg';

// ---------------------------------------------------------------------------------------------
// DOM helpers: every piece of data goes in as text, never as markup.

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

function setAttrs(el, attrs) {
  if (!attrs) return;
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2), value);
    } else if (key === 'text') {
      el.textContent = String(value);
    } else {
      el.setAttribute(key, value === true ? '' : String(value));
    }
  }
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

const $ = (selector, root = document) => root.querySelector(selector);

/**
 * A table that may be wider than a phone scrolls in its own box. Its caption is shown above
 * the box (a caption inside would scroll out of sight) and kept, hidden, for screen readers.
 */
function scrolling(table) {
  const caption = $('caption', table);
  let heading = null;
  if (caption && !caption.classList.contains('visually-hidden')) {
    heading = h('p', { class: 'table-title', 'aria-hidden': 'true' }, caption.textContent);
    caption.classList.add('visually-hidden');
  }
  return h('div', { class: 'table-block' }, heading, h('div', { class: 'table-scroll' }, table));
}

// ---------------------------------------------------------------------------------------------
// Formatting: dates for people (en-GB, UTC), numbers with separators, words from identifiers.

const DATE_FORMAT = new Intl.DateTimeFormat('en-GB', { day: 'numeric', month: 'long', year: 'numeric', timeZone: 'UTC' });
const SHORT_DATE = new Intl.DateTimeFormat('en-GB', { day: 'numeric', month: 'short', timeZone: 'UTC' });
const MONTH_YEAR = new Intl.DateTimeFormat('en-GB', { month: 'short', year: 'numeric', timeZone: 'UTC' });
const MONTH = new Intl.DateTimeFormat('en-GB', { month: 'short', timeZone: 'UTC' });
const NUMBER = new Intl.NumberFormat('en-GB');

function toDate(value) {
  if (value === null || value === undefined) return null;
  const d = value instanceof Date ? value : new Date(value);
  return Number.isNaN(d.getTime()) ? null : d;
}

function fmtDate(value, fallback = '—') {
  const d = toDate(value);
  return d ? DATE_FORMAT.format(d) : fallback;
}

function fmtInt(n) {
  return typeof n === 'number' ? NUMBER.format(n) : '—';
}

function fmtNum(n, digits = 1) {
  return typeof n === 'number' && Number.isFinite(n) ? n.toFixed(digits) : '—';
}

// Missing evidence rounded up to the tenth shown: a bar not yet reached never reads "0.0".
function fmtMissing(n) {
  if (typeof n !== 'number' || !Number.isFinite(n)) return '—';
  return Math.max(0.1, Math.ceil(n * 10 - 1e-6) / 10).toFixed(1);
}

function fmtPct(part, whole) {
  if (!whole) return '—';
  const pct = (100 * part) / whole;
  return `${pct.toFixed(pct >= 10 || pct === 0 ? 0 : 1)}%`;
}

function words(identifier) {
  return String(identifier).replace(/_/g, ' ');
}

function title(level) {
  return TITLES[level] || words(level);
}

/** `YYYY-MM-DD` of a date, in UTC. */
function isoDay(date) {
  return date.toISOString().slice(0, 10);
}

function todayUtc() {
  return isoDay(new Date());
}

function validDay(text) {
  return typeof text === 'string' && /^\d{4}-\d{2}-\d{2}$/.test(text) && toDate(`${text}T00:00:00Z`) !== null;
}

/** The end of a UTC day, as the API's `at=` expects it. */
function endOfDay(day) {
  return `${day}T23:59:59Z`;
}

function rfc3339(date) {
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

function visuallyHidden(text) {
  return h('span', { class: 'visually-hidden' }, text);
}

// ---------------------------------------------------------------------------------------------
// The token: taken from `#token=…` once (then removed from the URL), kept in session storage.

let memoryToken = null;

function storedToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY) || memoryToken;
  } catch {
    return memoryToken;
  }
}

function storeToken(token) {
  memoryToken = token;
  try {
    sessionStorage.setItem(TOKEN_KEY, token);
  } catch {
    // Storage refused (private mode): the token lives until the tab reloads.
  }
}

function forgetToken() {
  memoryToken = null;
  try {
    sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    // nothing stored
  }
}

function takeTokenFromHash() {
  const hash = location.hash;
  if (!hash.startsWith('#token=') && !hash.includes('&token=')) return;
  const params = new URLSearchParams(hash.slice(1));
  const token = (params.get('token') || '').trim();
  if (token) storeToken(token);
  history.replaceState(null, '', `${location.pathname}${location.search}#/`);
}

// ---------------------------------------------------------------------------------------------
// The API: relative URLs, bearer token, RFC 9457 problems.

class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail ? `${problem.title}: ${problem.detail}` : problem.title);
    this.status = status;
    this.problem = problem;
  }
}

class SignInNeeded extends Error {}

let pending = 0;

function loading(delta) {
  pending += delta;
  const status = $('#status');
  if (pending > 0) {
    status.textContent = 'Loading…';
    document.body.dataset.loading = 'true';
  } else {
    pending = 0;
    status.textContent = '';
    delete document.body.dataset.loading;
  }
}

async function api(path, params) {
  const token = storedToken();
  if (!token) {
    showSignIn();
    throw new SignInNeeded('no token');
  }
  const query = params ? new URLSearchParams(Object.entries(params).filter(([, v]) => v !== undefined && v !== null)) : null;
  const url = query && query.toString() ? `${path}?${query}` : path;
  loading(1);
  try {
    let response;
    try {
      response = await fetch(url, {
        headers: { Authorization: `Bearer ${token}`, Accept: 'application/json, application/problem+json' },
        cache: 'no-store',
        credentials: 'omit',
      });
    } catch (error) {
      throw new ApiError(0, { title: 'The API could not be reached', detail: String(error.message || error) });
    }
    const text = await response.text();
    let body = null;
    try {
      body = text ? JSON.parse(text) : null;
    } catch {
      body = null;
    }
    if (response.status === 401) {
      forgetToken();
      const problem = body && body.title ? body : { title: 'Unauthorized', detail: 'the token was not accepted' };
      showSignIn(`${problem.title}: ${problem.detail || 'the token was not accepted'}`);
      throw new SignInNeeded('unauthorized');
    }
    if (!response.ok) {
      const problem = body && typeof body.title === 'string' ? body : { title: `HTTP ${response.status}`, detail: response.statusText || text.slice(0, 200) };
      throw new ApiError(response.status, problem);
    }
    if (body === null) throw new ApiError(response.status, { title: 'Unexpected answer', detail: `${path} did not answer JSON` });
    return body;
  } finally {
    loading(-1);
  }
}

/** A problem shown in place: title, detail and the fields at fault. */
function problemView(error, what) {
  if (error instanceof SignInNeeded) return null;
  const problem = error instanceof ApiError ? error.problem : { title: 'Something went wrong', detail: String(error && error.message ? error.message : error) };
  return h(
    'div',
    { class: 'problem', role: 'alert' },
    h('p', null, h('strong', null, what ? `${what}: ${problem.title}` : problem.title), problem.detail ? ` — ${problem.detail}` : ''),
    Array.isArray(problem.errors) && problem.errors.length
      ? h('ul', null, problem.errors.map((e) => h('li', null, h('code', null, e.path), ': ', e.reason)))
      : null,
  );
}

function showError(error, what) {
  const box = $('#error');
  const view = problemView(error, what);
  if (!view) return;
  clear(box).append(...view.childNodes);
  box.hidden = false;
}

function clearError() {
  const box = $('#error');
  clear(box);
  box.hidden = true;
}

// ---------------------------------------------------------------------------------------------
// Sign-in form.

function showSignIn(message) {
  const panel = $('#token-panel');
  const wasHidden = panel.hidden;
  panel.hidden = false;
  $('#main').hidden = true;
  $('#time-travel').hidden = true;
  $('#sign-out').hidden = true;
  if (message) showError(new ApiError(401, { title: 'Sign in needed', detail: message }));
  if (wasHidden) $('#token-input').focus();
}

function hideSignIn() {
  $('#token-panel').hidden = true;
  $('#main').hidden = false;
  $('#sign-out').hidden = false;
}

// ---------------------------------------------------------------------------------------------
// Routing: `#/` (overview, `?at=YYYY-MM-DD` for time travel), `#/customers/<id>`.

function parseRoute() {
  const hash = location.hash || '#/';
  if (!hash.startsWith('#/')) return null; // an in-page anchor, not a route
  const [path, query = ''] = hash.slice(1).split('?');
  const params = new URLSearchParams(query);
  const customer = path.match(/^\/customers\/([^/]+)\/?$/);
  if (customer) return { name: 'customer', id: decodeURIComponent(customer[1]), params };
  if (path === '/' || path === '') return { name: 'overview', params };
  return { name: 'not-found', path };
}

function overviewHref(day) {
  return day && day !== todayUtc() ? `#/?at=${day}` : '#/';
}

function customerHref(id) {
  return `#/customers/${encodeURIComponent(id)}`;
}

/** Redraw functions of the charts on the page, by container, called again when the width changes. */
let redraws = new Map();
/** Increases with each page render: answers for an older page are dropped. */
let generation = 0;
let current = null;

function render() {
  const route = parseRoute();
  if (!route) return;
  if (!storedToken()) {
    showSignIn();
    return;
  }
  hideSignIn();
  clearError();
  if (route.name === 'overview') {
    renderOverview(route.params);
  } else if (route.name === 'customer') {
    renderCustomer(route.id);
  } else {
    startPage('not-found');
    const main = $('#main');
    main.append(
      h('h1', null, 'Page not found'),
      h('p', null, 'There is nothing at ', h('code', null, route.path), '. ', h('a', { href: '#/' }, 'Back to the overview'), '.'),
    );
  }
}

function startPage(name) {
  generation += 1;
  redraws = new Map();
  current = { name, generation };
  const main = clear($('#main'));
  main.dataset.page = name;
  delete main.dataset.state;
  $('#time-travel').hidden = name !== 'overview';
  return generation;
}

let resizeTimer = null;
let lastWidth = 0;
window.addEventListener('resize', () => {
  clearTimeout(resizeTimer);
  resizeTimer = setTimeout(() => {
    if (window.innerWidth === lastWidth) return;
    lastWidth = window.innerWidth;
    for (const [container, redraw] of redraws) {
      if (container.isConnected) redraw();
      else redraws.delete(container);
    }
  }, 150);
});

/** Draws a chart into `container` now and again whenever the page's width changes. */
function chart(container, draw) {
  const redraw = () => {
    const width = Math.max(260, Math.floor(container.getBoundingClientRect().width || container.clientWidth || 600));
    clear(container).append(draw(width));
  };
  redraws.set(container, redraw);
  redraw();
}

// ---------------------------------------------------------------------------------------------
// Overview.

let overview = null;

function renderOverview(params) {
  const requested = params.get('at');
  const today = todayUtc();
  const day = validDay(requested) && requested < today ? requested : null;
  const input = $('#as-of');
  input.max = today;
  input.value = day || today;

  if (!current || current.name !== 'overview' || !overview) {
    const gen = startPage('overview');
    overview = buildOverview(gen);
    loadLists(overview);
    loadNudgeOutcomes(overview);
    loadRules(overview);
  }
  overview.day = day;
  const when = day ? fmtDate(`${day}T12:00:00Z`) : 'today';
  for (const el of overview.main.querySelectorAll('[data-as-of-label]')) el.textContent = when;
  loadPyramid(overview);
  loadWeekly(overview);
  loadTransitions(overview);
}

function section(id, heading, ...content) {
  const headingId = `${id}-heading`;
  return h('section', { id, class: 'panel', 'aria-labelledby': headingId }, h('h2', { id: headingId }, heading), ...content);
}

function buildOverview(gen) {
  const main = $('#main');
  const asOf = () => h('span', { 'data-as-of-label': '' }, 'today');

  const pyramidBody = h('div', { class: 'pyramid-body' });
  const weeklyBody = h('div', { class: 'weekly-body' });
  const period = h(
    'select',
    { id: 'period', name: 'period' },
    PERIODS.map((days) => h('option', { value: String(days), selected: days === 30 }, `${days} days`)),
  );
  const transitionsBody = h('div', { class: 'transitions-body' });
  const moversBody = h('div', { class: 'list-body' });
  const atRiskBody = h('div', { class: 'list-body' });
  const leadersBody = h('div', { class: 'list-body' });
  const nudgesBody = h('div', { class: 'nudges-body' });
  const rulesBody = h('div', { class: 'rules-body' });

  main.append(
    h('h1', { class: 'visually-hidden' }, 'Engagement dashboard'),
    section(
      'pyramid',
      h('span', null, 'The pyramid, as of ', asOf()),
      h('p', { class: 'lede' }, 'Where customers stand, drawn to scale, with who rose to or dropped from each level in the 7 and 30 days before.'),
      pyramidBody,
    ),
    section(
      'flow',
      'Flow between levels',
      h(
        'div',
        { class: 'subpanel', id: 'weekly' },
        h('h3', null, 'Customers per level, week by week (the year up to ', asOf(), ')'),
        weeklyBody,
      ),
      h(
        'div',
        { class: 'subpanel', id: 'transitions' },
        h('h3', null, 'Level changes up to ', asOf()),
        h('form', { class: 'inline-form', onsubmit: (e) => e.preventDefault() }, h('label', { for: 'period' }, 'Period'), period),
        transitionsBody,
      ),
    ),
    section(
      'lists',
      'Customers to look at now',
      h(
        'div',
        { class: 'lists' },
        h('div', { class: 'subpanel', id: 'movers-up' }, h('h3', null, 'Moved up in the last 30 days'), moversBody),
        h('div', { class: 'subpanel', id: 'at-risk' }, h('h3', null, 'At risk of dropping'), atRiskBody),
        h('div', { class: 'subpanel', id: 'new-leaders' }, h('h3', null, 'Newest leaders'), leadersBody),
      ),
    ),
    section('nudges', 'Nudges', nudgesBody),
    section('rules', 'What the levels mean', rulesBody),
  );
  const state = {
    gen,
    main,
    day: null,
    pyramidSection: $('#pyramid', main),
    pyramidBody,
    weeklyBody,
    transitionsBody,
    period,
    moversBody,
    atRiskBody,
    leadersBody,
    nudgesBody,
    rulesBody,
    seq: {},
  };
  period.addEventListener('change', () => loadTransitions(state));
  return state;
}

/** Runs a section's load; only the latest load of each section on the current page may draw. */
async function load(state, key, body, fetcher, draw) {
  state.seq[key] = (state.seq[key] || 0) + 1;
  const mine = state.seq[key];
  const live = () => state.gen === generation && state.seq[key] === mine;
  body.setAttribute('aria-busy', 'true');
  body.dataset.state = 'loading';
  if (!body.firstChild) body.append(h('p', { class: 'loading' }, 'Loading…'));
  try {
    const data = await fetcher();
    if (!live()) return;
    clear(body);
    draw(data);
    body.dataset.state = 'ready';
  } catch (error) {
    if (!live()) return;
    clear(body);
    const view = problemView(error, 'Could not load this part');
    if (view) body.append(view);
    body.dataset.state = 'error';
  } finally {
    if (live()) body.removeAttribute('aria-busy');
  }
}

function loadPyramid(state) {
  const day = state.day;
  const section = state.pyramidSection;
  section.dataset.state = 'loading';
  return load(
    state,
    'pyramid',
    state.pyramidBody,
    () => api('v1/pyramid', day ? { at: endOfDay(day) } : null),
    (pyramid) => {
      drawPyramidSection(state.pyramidBody, pyramid);
      section.dataset.at = day || 'now';
      section.dataset.state = 'ready';
    },
  );
}

function drawPyramidSection(body, pyramid) {
  const levels = LEVELS.map((level) => pyramid.levels.find((l) => l.level === level) || { level, title: title(level), customers: 0 });
  const total = typeof pyramid.total === 'number' ? pyramid.total : levels.reduce((sum, l) => sum + l.customers, 0);
  const movers = pyramid.movers || {};
  const figure = h('figure', { class: 'pyramid-figure' });
  const drawing = h('div', { class: 'chart pyramid-chart' });
  figure.append(
    drawing,
    h('figcaption', null, `${fmtInt(total)} customers. Each bar's width is to scale with its level's count (the widest is the largest level).`),
  );

  const rows = [...levels].reverse().map((l) => {
    const up7 = movers.last_7_days?.up?.[l.level] ?? 0;
    const down7 = movers.last_7_days?.down?.[l.level] ?? 0;
    const up30 = movers.last_30_days?.up?.[l.level] ?? 0;
    const down30 = movers.last_30_days?.down?.[l.level] ?? 0;
    return h(
      'tr',
      { 'data-level': l.level },
      h('th', { scope: 'row' }, h('span', { class: `swatch lvl-${l.level}`, 'aria-hidden': 'true' }), l.title || title(l.level)),
      h('td', { class: 'num', 'data-testid': 'count' }, String(l.customers)),
      h('td', { class: 'num share', 'data-testid': 'share' }, fmtPct(l.customers, total)),
      h('td', { class: 'movers' }, moverCell(up7, down7)),
      h('td', { class: 'movers' }, moverCell(up30, down30)),
    );
  });
  const table = h(
    'table',
    { class: 'data pyramid-table' },
    h('caption', null, 'Customers per level as of ', fmtDate(pyramid.as_of), ', with movement'),
    h(
      'thead',
      null,
      h(
        'tr',
        null,
        h('th', { scope: 'col' }, 'Level'),
        h('th', { scope: 'col', class: 'num' }, 'Customers'),
        h('th', { scope: 'col', class: 'num share' }, 'Share'),
        h('th', { scope: 'col' }, 'Last 7 days'),
        h('th', { scope: 'col' }, 'Last 30 days'),
      ),
    ),
    h('tbody', null, rows),
    h('tfoot', null, h('tr', null, h('th', { scope: 'row' }, 'All levels'), h('td', { class: 'num', 'data-testid': 'total' }, String(total)), h('td', { class: 'num share' }, total ? '100%' : '—'), h('td'), h('td'))),
  );
  body.append(h('div', { class: 'pyramid-layout' }, figure, scrolling(table)));
  chart(drawing, (width) => pyramidSvg(levels, total, width));
}

function moverCell(up, down) {
  return [
    h('span', { class: up ? 'up' : 'up zero' }, h('span', { 'aria-hidden': 'true' }, '▲ '), fmtInt(up), visuallyHidden(' rose to it,')),
    ' ',
    h('span', { class: down ? 'down' : 'down zero' }, h('span', { 'aria-hidden': 'true' }, '▼ '), fmtInt(down), visuallyHidden(' dropped from it')),
  ];
}

function pyramidSvg(levels, total, width) {
  const narrow = width < 520;
  const labelW = narrow ? 92 : 118;
  const valueW = narrow ? 84 : 118;
  const rowH = narrow ? 30 : 36;
  const gap = 6;
  const area = Math.max(40, width - labelW - valueW);
  const centre = labelW + area / 2;
  const max = Math.max(1, ...levels.map((l) => l.customers));
  const top = [...levels].reverse();
  const height = top.length * (rowH + gap);
  const label = `Pyramid: ${top.map((l) => `${l.title || title(l.level)} ${l.customers}`).join(', ')}`;
  const svgEl = s('svg', { viewBox: `0 0 ${width} ${height}`, width, height, role: 'img', 'aria-label': label, class: 'pyramid-svg' });
  top.forEach((l, i) => {
    const y = i * (rowH + gap);
    const w = l.customers > 0 ? Math.max(2, (l.customers / max) * area) : 0;
    svgEl.append(
      s('text', { x: 0, y: y + rowH / 2, 'dominant-baseline': 'middle', class: 'svg-label' }, l.title || title(l.level)),
      s('line', { x1: centre, x2: centre, y1: y, y2: y + rowH, class: 'axis-faint' }),
      s(
        'rect',
        { x: centre - w / 2, y, width: w, height: rowH, rx: 3, class: `lvl-${l.level}` },
        s('title', null, `${l.title || title(l.level)}: ${l.customers} (${fmtPct(l.customers, total)})`),
      ),
      s('text', { x: width - valueW + 10, y: y + rowH / 2, 'dominant-baseline': 'middle', class: 'svg-value' }, `${fmtInt(l.customers)} · ${fmtPct(l.customers, total)}`),
    );
  });
  return svgEl;
}

function loadWeekly(state) {
  const day = state.day;
  return load(
    state,
    'weekly',
    state.weeklyBody,
    () => api('v1/pyramid/weekly', day ? { weeks: 52, at: endOfDay(day) } : { weeks: 52 }),
    (weekly) => drawWeekly(state.weeklyBody, weekly),
  );
}

function drawWeekly(body, weekly) {
  const weeks = Array.isArray(weekly.weeks) ? weekly.weeks : [];
  if (!weeks.length) {
    body.append(h('p', null, 'No weeks to show yet.'));
    return;
  }
  const drawing = h('div', { class: 'chart weekly-chart' });
  const legend = h(
    'ul',
    { class: 'legend', 'aria-label': 'Levels, from the top of the chart' },
    [...LEVELS].reverse().map((level) => h('li', null, h('span', { class: `swatch lvl-${level}`, 'aria-hidden': 'true' }), title(level))),
  );
  const table = h(
    'table',
    { class: 'data compact' },
    h('caption', null, 'Customers per level at the end of each week'),
    h('thead', null, h('tr', null, h('th', { scope: 'col' }, 'Week ending'), LEVELS.map((l) => h('th', { scope: 'col', class: 'num' }, title(l))), h('th', { scope: 'col', class: 'num' }, 'Total'))),
    h(
      'tbody',
      null,
      [...weeks].reverse().map((w) => {
        const counts = LEVELS.map((l) => w.levels?.[l] ?? 0);
        return h(
          'tr',
          null,
          h('th', { scope: 'row' }, fmtDate(w.ends_at)),
          counts.map((n) => h('td', { class: 'num' }, fmtInt(n))),
          h('td', { class: 'num' }, fmtInt(counts.reduce((a, b) => a + b, 0))),
        );
      }),
    ),
  );
  body.append(
    h('figure', { class: 'weekly-figure' }, drawing, h('figcaption', null, `Stacked: each band is a level; the top edge is the total. ${weeks.length} weeks ending ${fmtDate(weeks[weeks.length - 1].ends_at)}.`)),
    legend,
    h('details', null, h('summary', null, 'The weekly counts as a table'), scrolling(table)),
  );
  chart(drawing, (width) => weeklySvg(weeks, width));
}

function niceStep(max, ticks) {
  const raw = max / ticks;
  const power = 10 ** Math.floor(Math.log10(raw || 1));
  const fraction = raw / power;
  const nice = fraction <= 1 ? 1 : fraction <= 2 ? 2 : fraction <= 5 ? 5 : 10;
  return Math.max(1, nice * power);
}

function weeklySvg(weeks, width) {
  const narrow = width < 520;
  const height = narrow ? 220 : 280;
  const m = { left: 46, right: 10, top: 10, bottom: 26 };
  const plotW = width - m.left - m.right;
  const plotH = height - m.top - m.bottom;
  const totals = weeks.map((w) => LEVELS.reduce((sum, l) => sum + (w.levels?.[l] ?? 0), 0));
  const step = niceStep(Math.max(1, ...totals), narrow ? 3 : 4);
  const yMax = Math.max(step, Math.ceil(Math.max(1, ...totals) / step) * step);
  const x = (i) => m.left + (weeks.length === 1 ? plotW / 2 : (i / (weeks.length - 1)) * plotW);
  const y = (v) => m.top + plotH - (v / yMax) * plotH;
  const svgEl = s('svg', {
    viewBox: `0 0 ${width} ${height}`,
    width,
    height,
    role: 'img',
    'aria-label': `Stacked area chart of customers per level over ${weeks.length} weeks; the table below has the numbers.`,
    class: 'weekly-svg',
  });
  for (let v = 0; v <= yMax; v += step) {
    svgEl.append(
      s('line', { x1: m.left, x2: width - m.right, y1: y(v), y2: y(v), class: v === 0 ? 'axis' : 'grid' }),
      s('text', { x: m.left - 6, y: y(v), 'text-anchor': 'end', 'dominant-baseline': 'middle', class: 'svg-tick' }, fmtInt(v)),
    );
  }
  const lower = weeks.map(() => 0);
  for (const level of LEVELS) {
    const upper = weeks.map((w, i) => lower[i] + (w.levels?.[level] ?? 0));
    const points = upper.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`);
    const back = lower.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).reverse();
    const d = weeks.length === 1 ? `M${x(0) - 4},${y(upper[0])}H${x(0) + 4}V${y(lower[0])}H${x(0) - 4}Z` : `M${points.join('L')}L${back.join('L')}Z`;
    svgEl.append(s('path', { d, class: `area lvl-${level}` }, s('title', null, title(level))));
    upper.forEach((v, i) => {
      lower[i] = v;
    });
  }
  // Month labels, thinned so they do not collide.
  const minGap = narrow ? 52 : 64;
  let lastX = -Infinity;
  let lastMonth = null;
  weeks.forEach((w, i) => {
    const d = toDate(w.ends_at);
    if (!d) return;
    const month = `${d.getUTCFullYear()}-${d.getUTCMonth()}`;
    if (month === lastMonth) return;
    lastMonth = month;
    const px = x(i);
    if (px - lastX < minGap || px > width - m.right - 16) return;
    lastX = px;
    svgEl.append(
      s('line', { x1: px, x2: px, y1: m.top + plotH, y2: m.top + plotH + 4, class: 'axis' }),
      s('text', { x: px, y: height - 6, 'text-anchor': 'middle', class: 'svg-tick' }, d.getUTCMonth() === 0 || i === 0 ? MONTH_YEAR.format(d) : MONTH.format(d)),
    );
  });
  return svgEl;
}

function loadTransitions(state) {
  const days = Number(state.period.value) || 30;
  const to = state.day ? new Date(endOfDay(state.day)) : new Date();
  const from = new Date(to.getTime() - days * DAY_MS);
  return load(
    state,
    'transitions',
    state.transitionsBody,
    () => api('v1/transitions', { from: rfc3339(from), to: rfc3339(to) }),
    (flow) => drawTransitions(state.transitionsBody, flow, days),
  );
}

function drawTransitions(body, flow, days) {
  const moves = {};
  let up = 0;
  let down = 0;
  for (const move of flow.moves || []) {
    moves[`${move.from}>${move.to}`] = (moves[`${move.from}>${move.to}`] || 0) + move.customers;
    if (LEVELS.indexOf(move.to) > LEVELS.indexOf(move.from)) up += move.customers;
    else down += move.customers;
  }
  const left = flow.left || {};
  const leftTotal = LEVELS.reduce((sum, l) => sum + (left[l] || 0), 0);
  const cell = (n, cls) => h('td', { class: `num ${cls || ''} ${n ? '' : 'zero'}`.trim() }, n ? fmtInt(n) : [h('span', { 'aria-hidden': 'true' }, '·'), visuallyHidden('none')]);
  const rows = LEVELS.map((fromLevel) =>
    h(
      'tr',
      { 'data-from': fromLevel },
      h('th', { scope: 'row' }, title(fromLevel)),
      h('td', { class: 'num start' }, fmtInt(flow.start?.[fromLevel] ?? 0)),
      LEVELS.map((toLevel) => {
        if (toLevel === fromLevel) return h('td', { class: 'num diagonal' }, h('span', { 'aria-hidden': 'true' }, '—'), visuallyHidden('same level'));
        const n = moves[`${fromLevel}>${toLevel}`] || 0;
        return cell(n, LEVELS.indexOf(toLevel) > LEVELS.indexOf(fromLevel) ? 'rise' : 'fall');
      }),
      cell(left[fromLevel] || 0, 'left'),
      h('td', { class: 'num end' }, fmtInt(flow.end?.[fromLevel] ?? 0)),
    ),
  );
  const table = h(
    'table',
    { class: 'data transitions-table' },
    h('caption', null, `Level changes from ${fmtDate(flow.from)} to ${fmtDate(flow.to)} (${days} days): rows are the level moved from, columns the level moved to`),
    h(
      'thead',
      null,
      h(
        'tr',
        null,
        h('th', { scope: 'col' }, 'From ', h('span', { 'aria-hidden': 'true' }, '↓'), ' / to ', h('span', { 'aria-hidden': 'true' }, '→')),
        h('th', { scope: 'col', class: 'num' }, 'At start'),
        LEVELS.map((l) => h('th', { scope: 'col', class: 'num' }, title(l))),
        h('th', { scope: 'col', class: 'num' }, 'Left'),
        h('th', { scope: 'col', class: 'num' }, 'At end'),
      ),
    ),
    h('tbody', null, rows),
  );
  body.append(
    h(
      'p',
      { class: 'flow-summary' },
      h('strong', null, fmtInt(flow.joined ?? 0)),
      ' joined (new customers start at Observing) · ',
      h('strong', null, fmtInt(up)),
      ' level rises · ',
      h('strong', null, fmtInt(down)),
      ' drops · ',
      h('strong', null, fmtInt(leftTotal)),
      ' left (erased or merged into another customer).',
    ),
    scrolling(table),
  );
}

const byTime = (field, direction) => (a, b) => direction * ((toDate(a[field])?.getTime() ?? 0) - (toDate(b[field])?.getTime() ?? 0));
const byLevelThenNewest = (a, b) => LEVELS.indexOf(b.level) - LEVELS.indexOf(a.level) || byTime('since', -1)(a, b);

function loadLists(state) {
  const since = new Date(Date.now() - 30 * DAY_MS);
  load(state, 'movers', state.moversBody, () => api('v1/customers', { direction: 'up', since: rfc3339(since), limit: 10 }), (listing) =>
    state.moversBody.append(
      customerTable([...listing.customers].sort(byLevelThenNewest), 'Customers whose latest level change in the last 30 days was a rise, highest level first', 'No one moved up in the last 30 days.', 'Since', (c) => fmtDate(c.since)),
    ),
  );
  load(state, 'at-risk', state.atRiskBody, () => api('v1/customers', { at_risk: 'true', limit: 20 }), (listing) =>
    state.atRiskBody.append(
      customerTable([...listing.customers].sort(byTime('drops_at', 1)), 'Customers who drop a level soon unless they do something, soonest first, with the date they drop', 'No customer is at risk now.', 'Drops on', (c) => fmtDate(c.drops_at)),
    ),
  );
  load(state, 'leaders', state.leadersBody, () => api('v1/customers', { level: 'leading', limit: 10 }), (listing) =>
    state.leadersBody.append(customerTable([...listing.customers].sort(byTime('since', -1)), 'The 10 customers who most recently reached Leading', 'No leaders yet.', 'Leading since', (c) => fmtDate(c.since))),
  );
}

function customerTable(customers, caption, empty, dateHeading, dateOf) {
  if (!customers || !customers.length) return h('p', { class: 'empty' }, empty);
  return h(
    'div',
    { class: 'table-scroll' },
    h(
      'table',
      { class: 'data customer-list' },
      h('caption', { class: 'visually-hidden' }, caption),
      h('thead', null, h('tr', null, h('th', { scope: 'col' }, 'Customer and level'), h('th', { scope: 'col' }, dateHeading))),
      h(
        'tbody',
        null,
        customers.map((c) =>
          h(
            'tr',
            { 'data-customer-id': c.id },
            h(
              'th',
              { scope: 'row' },
              h('a', { href: customerHref(c.id) }, c.name || c.id),
              h('span', { class: 'level-note' }, h('span', { class: `swatch lvl-${c.level}`, 'aria-hidden': 'true' }), visuallyHidden(', '), title(c.level)),
            ),
            h('td', { class: 'date' }, dateOf(c)),
          ),
        ),
      ),
    ),
  );
}

function loadNudgeOutcomes(state) {
  load(state, 'nudges', state.nudgesBody, () => api('v1/nudges/outcomes'), (outcomes) => drawNudgeOutcomes(state.nudgesBody, outcomes));
}

function rate(part, whole) {
  return whole ? part / whole : null;
}

function rateText(part, whole) {
  if (!whole) return '—';
  return `${fmtInt(part)} of ${fmtInt(whole)} (${fmtPct(part, whole)})`;
}

function drawNudgeOutcomes(body, outcomes) {
  const steps = outcomes.steps || [];
  const days = outcomes.attribution_days ?? 30;
  if (!steps.length) {
    body.append(h('p', { class: 'empty' }, 'No nudge has been decided yet.'));
    return;
  }
  const rows = steps.map((step) => {
    const suppressed = Object.entries(step.suppressed || {}).filter(([, n]) => n > 0);
    const suppressedTotal = suppressed.reduce((sum, [, n]) => sum + n, 0);
    const sentRate = rate(step.sent_moved_up, step.sent);
    const heldRate = rate(step.held_out_moved_up, step.held_out);
    const uplift = sentRate === null || heldRate === null ? null : (sentRate - heldRate) * 100;
    return h(
      'tr',
      { 'data-playbook': step.playbook, 'data-step': step.step },
      h('th', { scope: 'row' }, words(step.playbook), h('span', { class: 'muted' }, ` · step ${step.step}`), h('br'), h('span', { class: 'action' }, words(step.action))),
      h('td', { class: 'num' }, fmtInt(step.sent)),
      h('td', { class: 'num' }, fmtInt(step.held_out)),
      h(
        'td',
        null,
        suppressedTotal
          ? [h('strong', null, fmtInt(suppressedTotal)), h('ul', { class: 'reasons' }, suppressed.map(([reason, n]) => h('li', null, `${fmtInt(n)} ${words(reason)}`)))]
          : '0',
      ),
      h('td', { class: 'num' }, rateText(step.sent_moved_up, step.sent)),
      h('td', { class: 'num' }, rateText(step.held_out_moved_up, step.held_out)),
      h('td', { class: `num ${uplift === null ? '' : uplift > 0 ? 'up' : uplift < 0 ? 'down' : ''}` }, uplift === null ? '—' : `${uplift > 0 ? '+' : ''}${uplift.toFixed(1)} pts`),
    );
  });
  body.append(
    h('p', { class: 'lede' }, `Per playbook step: nudges sent, held out (the control group) and suppressed, and how many of each group rose a level within ${days} days. Uplift is the sent group's rise rate minus the holdout's.`),
    scrolling(
      h(
        'table',
        { class: 'data nudges-table wide' },
        h('caption', null, `Nudge outcomes per playbook step (rises within ${days} days)`),
        h(
          'thead',
          null,
          h(
            'tr',
            null,
            h('th', { scope: 'col' }, 'Playbook step'),
            h('th', { scope: 'col', class: 'num' }, 'Sent'),
            h('th', { scope: 'col', class: 'num' }, 'Held out'),
            h('th', { scope: 'col' }, 'Suppressed (why)'),
            h('th', { scope: 'col', class: 'num' }, 'Rose after sent'),
            h('th', { scope: 'col', class: 'num' }, 'Rose in holdout'),
            h('th', { scope: 'col', class: 'num' }, 'Uplift'),
          ),
        ),
        h('tbody', null, rows),
      ),
    ),
  );
}

// ---------------------------------------------------------------------------------------------
// What the levels mean: the rules in force (`v1/rules`), per level from the top.

function loadRules(state) {
  load(state, 'rules', state.rulesBody, () => api('v1/rules'), (rules) => drawRules(state.rulesBody, rules));
}

/** A rule's number as written in a rules file: no padding, thousands separated. */
function fmtAmount(n) {
  return typeof n === 'number' && Number.isFinite(n) ? NUMBER.format(n) : '—';
}

function fmtDays(n) {
  return typeof n === 'number' ? `${fmtAmount(n)} ${n === 1 ? 'day' : 'days'}` : '—';
}

function drawRules(body, rules) {
  const levels = rules.levels || {};
  const kinds = Object.entries(rules.kinds || {});
  const hysteresis = typeof rules.hysteresis === 'number' ? rules.hysteresis : null;
  const rows = [...LEVELS].reverse().map((level) => {
    const rule = levels[level] || {};
    const atLevel = kinds.filter(([, kind]) => kind.level === level);
    // Heaviest first: what moves a customer most is read first.
    const counting = atLevel.filter(([, kind]) => kind.weight > 0).sort(([a, x], [b, y]) => y.weight - x.weight || a.localeCompare(b));
    const weightless = atLevel.filter(([, kind]) => !(kind.weight > 0)).map(([name]) => name);
    const kept = hysteresis !== null && typeof rule.threshold === 'number' ? hysteresis * rule.threshold : null;
    return h(
      'tr',
      { 'data-level': level },
      h('th', { scope: 'row' }, h('span', { class: `swatch lvl-${level}`, 'aria-hidden': 'true' }), title(level)),
      h('td', { class: 'num', 'data-testid': 'threshold' }, fmtAmount(rule.threshold)),
      h('td', { class: 'num', 'data-testid': 'kept-above' }, fmtAmount(kept)),
      h('td', { class: 'num', 'data-testid': 'half-life' }, fmtDays(rule.half_life_days)),
      h(
        'td',
        { class: 'kinds-cell', 'data-testid': 'kinds' },
        counting.length
          ? h(
              'ul',
              { class: 'kinds' },
              counting.map(([name, kind]) =>
                h(
                  'li',
                  { 'data-kind': name },
                  h('code', null, name),
                  ' ',
                  h('span', { class: 'weight', 'data-testid': 'weight' }, fmtAmount(kind.weight)),
                  kind.max_weight ? h('span', { class: 'muted' }, ` (a client may send up to ${fmtAmount(kind.max_weight)})`) : null,
                ),
              ),
            )
          : h('span', { class: 'empty' }, 'No kind of this level carries weight.'),
        weightless.length ? h('p', { class: 'note' }, 'Recorded, weighing nothing: ', weightless.map((name, i) => [i ? ', ' : '', h('code', null, name)])) : null,
      ),
    );
  });
  const keptShare = hysteresis === null ? 'a share' : `${fmtAmount(Math.round(hysteresis * 1000) / 10)}%`;
  const unknown =
    rules.unknown_kinds === 'reject' ? 'Interactions of kinds not listed here are refused.' : 'Interactions of kinds not listed here count as observing, with weight 1.';
  body.append(
    h(
      'p',
      { class: 'lede' },
      `The rules in force. A customer's evidence for a level adds up the weights of their interactions of kinds at that level or above (each kind also counts for every level below its own), every weight halving with each half-life that passes. A customer reaches a level when its evidence reaches the threshold and keeps it until the evidence falls below ${keptShare} of it. Following and above also need consent on a channel. ${unknown}`,
    ),
    scrolling(
      h(
        'table',
        { class: 'data rules-table wide' },
        h('caption', null, 'Each level: what reaches it, what keeps it, how fast its evidence fades, and the kinds that count (with their weights)'),
        h(
          'thead',
          null,
          h(
            'tr',
            null,
            h('th', { scope: 'col' }, 'Level'),
            h('th', { scope: 'col', class: 'num' }, 'Reached at'),
            h('th', { scope: 'col', class: 'num' }, 'Kept above'),
            h('th', { scope: 'col', class: 'num' }, 'Half-life'),
            h('th', { scope: 'col' }, 'Kinds that count, with their weights'),
          ),
        ),
        h('tbody', null, rows),
      ),
    ),
  );
}

// ---------------------------------------------------------------------------------------------
// Customer page.

async function renderCustomer(id) {
  const gen = startPage('customer');
  overview = null;
  const main = $('#main');
  main.append(h('p', { class: 'breadcrumb' }, h('a', { href: '#/' }, h('span', { 'aria-hidden': 'true' }, '← '), 'Overview')), h('h1', { id: 'customer-heading' }, 'Customer'));
  main.dataset.state = 'loading';
  const now = rfc3339(new Date());
  try {
    // The decision now, with its recorded level timeline; an older server without one is
    // asked to replay the history up to now instead.
    const customer = await api(`v1/customers/${encodeURIComponent(id)}`);
    const history = Array.isArray(customer.timeline)
      ? customer
      : await api(`v1/customers/${encodeURIComponent(id)}`, { at: now }).catch((error) => {
          if (error instanceof SignInNeeded) throw error;
          return { error };
        });
    if (gen !== generation) return;
    drawCustomer(main, customer, history);
    main.dataset.state = 'ready';
    document.title = `${customer.name || customer.id} · Engagement Pyramid`;
  } catch (error) {
    if (gen !== generation) return;
    main.dataset.state = 'error';
    const view = problemView(error, 'Could not load this customer');
    if (view) main.append(view);
  }
}

function drawCustomer(main, c, history) {
  $('#customer-heading', main).textContent = c.name || c.id;
  const risk = c.at_risk
    ? h('strong', { class: 'badge risk' }, 'At risk')
    : c.at_risk_at
      ? `Not yet; at risk from ${fmtDate(c.at_risk_at)}`
      : 'No';
  const consentGranted = Object.values(c.consent || {}).some((r) => r.granted);
  main.append(
    h('p', { class: 'muted id' }, 'Customer id ', h('code', null, c.id), c.merged_ids?.length ? ` · merged from ${c.merged_ids.join(', ')}` : ''),
    h('p', { class: 'summary', 'data-testid': 'summary' }, c.summary),
    h(
      'dl',
      { class: 'facts' },
      fact('Level', h('span', { class: 'nowrap' }, h('span', { class: `swatch lvl-${c.level}`, 'aria-hidden': 'true' }), h('span', { 'data-testid': 'level' }, title(c.level)))),
      fact('Since', fmtDate(c.since)),
      fact('Drops', c.drops_at ? [h('span', { 'data-testid': 'drops-at' }, fmtDate(c.drops_at)), c.drops_to ? ` to ${title(c.drops_to)}` : ''] : h('span', { 'data-testid': 'drops-at' }, 'No drop foreseen')),
      fact('At risk', risk),
      fact('Consent', consentGranted ? 'Given on at least one channel' : 'None'),
      fact('As of', fmtDate(c.as_of)),
    ),
  );
  main.append(
    explanationPanel(c),
    evidencePanel(c),
    timelinePanel(c, history),
    h('div', { class: 'customer-grid' }, identitiesPanel(c), consentPanel(c)),
    nudgesPanel(c, history),
    interactionsPanel(c),
  );
}

function fact(term, value) {
  return h('div', null, h('dt', null, term), h('dd', null, value));
}

function evidencePanel(c) {
  const rungs = c.explanation?.rungs || [];
  const currentRung = LEVELS.indexOf(c.level);
  const rows = rungs.map((r) => {
    const rung = LEVELS.indexOf(r.level);
    let status;
    if (r.threshold <= 0) status = 'The floor';
    else if (r.evidence >= r.threshold) status = 'Above the bar to rise';
    else if (rung <= currentRung && r.evidence >= r.hold_threshold) status = 'Kept: above the bar to stay';
    else status = `${fmtMissing(r.threshold - r.evidence)} short of the bar`;
    const bar = h('div', { class: 'rung-bar' });
    bar.append(rungSvg(r));
    return h(
      'tr',
      { 'data-rung': r.level, class: rung === currentRung ? 'current' : null },
      h(
        'th',
        { scope: 'row' },
        title(r.level),
        rung === currentRung ? visuallyHidden(' (current level)') : null,
        h('span', { class: 'level-note' }, visuallyHidden(': '), status),
      ),
      h('td', { class: 'bar-cell' }, bar),
      h('td', { class: 'num' }, fmtNum(r.evidence)),
      h('td', { class: 'num' }, r.threshold > 0 ? fmtNum(r.threshold) : '—'),
      h('td', { class: 'num' }, r.threshold > 0 ? fmtNum(r.hold_threshold) : '—'),
    );
  });
  return h(
    'section',
    { class: 'panel', id: 'evidence', 'aria-labelledby': 'evidence-heading' },
    h('h2', { id: 'evidence-heading' }, 'Evidence per rung'),
    h(
      'p',
      { class: 'lede' },
      'Each bar is the evidence for a level against its bars: the solid mark is the bar to rise to that level (drawn at the middle), the dashed one the bar to stay there.',
    ),
    h(
      'div',
      { class: 'table-scroll' },
      h(
        'table',
        { class: 'data evidence-table' },
        h('caption', { class: 'visually-hidden' }, 'Evidence per rung against the thresholds to rise and to stay'),
        h(
          'thead',
          null,
          h(
            'tr',
            null,
            h('th', { scope: 'col' }, 'Level and standing'),
            h('th', { scope: 'col' }, h('span', { class: 'visually-hidden' }, 'Bar')),
            h('th', { scope: 'col', class: 'num' }, 'Evidence'),
            h('th', { scope: 'col', class: 'num' }, 'To rise'),
            h('th', { scope: 'col', class: 'num' }, 'To stay'),
          ),
        ),
        h('tbody', null, [...rows].reverse()),
      ),
    ),
  );
}

function rungSvg(r) {
  const W = 200;
  const H = 18;
  const svgEl = s('svg', { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: 'none', 'aria-hidden': 'true', focusable: 'false', class: 'rung-svg' });
  svgEl.append(s('rect', { x: 0, y: 0, width: W, height: H, class: 'track' }));
  if (r.threshold <= 0) {
    svgEl.append(s('rect', { x: 0, y: 3, width: W, height: H - 6, class: 'fill floor' }));
    return svgEl;
  }
  // The bar to rise sits at the middle: up to twice the threshold is shown.
  const scale = W / (2 * r.threshold);
  const width = Math.min(W, Math.max(0, r.evidence * scale));
  const met = r.evidence >= r.threshold ? 'met' : r.evidence >= r.hold_threshold ? 'held' : 'short';
  svgEl.append(s('rect', { x: 0, y: 3, width, height: H - 6, class: `fill ${met}` }));
  const hold = Math.min(W, r.hold_threshold * scale);
  svgEl.append(
    s('line', { x1: hold, x2: hold, y1: 0, y2: H, class: 'mark hold', 'vector-effect': 'non-scaling-stroke' }),
    s('line', { x1: W / 2, x2: W / 2, y1: 0, y2: H, class: 'mark threshold', 'vector-effect': 'non-scaling-stroke' }),
  );
  return svgEl;
}

function explanationPanel(c) {
  const e = c.explanation || {};
  const items = [];
  const kinds = e.top_kinds || [];
  if (kinds.length) {
    items.push(
      h(
        'li',
        null,
        `What keeps them at ${title(c.level)}: `,
        kinds.map((k, i) => [i ? (i === kinds.length - 1 ? ' and ' : ', ') : '', `${k.count} × ${words(k.kind)} (${title(k.level)}, ${fmtNum(k.evidence)} evidence now)`]),
        '.',
      ),
    );
  } else {
    items.push(h('li', null, 'No interaction above Observing counts for them now.'));
  }
  if (c.drops_at) {
    items.push(h('li', null, `Evidence fades: with nothing new they drop to ${title(c.drops_to || 'observing')} on ${fmtDate(c.drops_at)}`, c.at_risk ? ', so they are at risk now.' : c.at_risk_at ? ` (at risk from ${fmtDate(c.at_risk_at)}).` : '.'));
  } else if (c.level !== 'observing') {
    items.push(h('li', null, 'No drop is foreseen.'));
  }
  const next = e.next_step;
  if (next) {
    const parts = [];
    if (next.missing_evidence > 0) parts.push(`${fmtMissing(next.missing_evidence)} more ${title(next.level)} evidence`);
    if (next.suggested_kind) parts.push(`for example ${next.suggested_count} × ${words(next.suggested_kind)}`);
    if (next.needs_consent) parts.push('consent on a channel');
    items.push(h('li', null, `To rise to ${title(next.level)}: ${parts.join(', ') || 'nothing more'}.`));
  } else if (c.level === 'leading') {
    items.push(h('li', null, 'They are at the top of the pyramid.'));
  }
  items.push(h('li', null, e.has_consent ? 'They have given consent on at least one channel.' : 'They have not given consent on any channel: they cannot be Following or higher.'));
  return h(
    'section',
    { class: 'panel', id: 'explanation', 'aria-labelledby': 'explanation-heading' },
    h('h2', { id: 'explanation-heading' }, 'Why, in plain words'),
    h('ul', { class: 'plain-list' }, items),
  );
}

function timelinePanel(c, history) {
  const panel = h('section', { class: 'panel', id: 'timeline', 'aria-labelledby': 'timeline-heading' }, h('h2', { id: 'timeline-heading' }, 'Level timeline'));
  if (!history || history.error || !Array.isArray(history.timeline)) {
    const view = history && history.error ? problemView(history.error, 'Could not replay the history') : h('p', null, 'No timeline available.');
    if (view) panel.append(view);
    return panel;
  }
  const changes = history.timeline;
  if (!changes.length) {
    panel.append(h('p', null, `No change of level yet: ${title(c.level)} since ${fmtDate(c.since)}.`));
    return panel;
  }
  const drawing = h('div', { class: 'chart timeline-chart' });
  panel.append(
    h('figure', null, drawing, h('figcaption', null, `${changes.length} changes of level, from ${fmtDate(changes[0].at)} to ${fmtDate(history.as_of)}.`)),
    h(
      'ol',
      { class: 'timeline-list' },
      changes.map((change) => {
        const rose = LEVELS.indexOf(change.to) > LEVELS.indexOf(change.from);
        return h(
          'li',
          null,
          h('time', { datetime: change.at }, fmtDate(change.at)),
          ': ',
          h('span', { class: rose ? 'up' : 'down' }, rose ? 'rose' : 'dropped'),
          ` from ${title(change.from)} to ${title(change.to)}`,
        );
      }),
    ),
  );
  // Drawn once attached, so the container has a width.
  queueMicrotask(() => chart(drawing, (width) => timelineSvg(changes, history.as_of, width)));
  return panel;
}

function timelineSvg(changes, asOf, width) {
  const narrow = width < 520;
  const m = { left: narrow ? 84 : 100, right: 12, top: 8, bottom: 24 };
  const rowH = narrow ? 20 : 24;
  const height = m.top + m.bottom + rowH * (LEVELS.length - 1);
  const first = toDate(changes[0].at).getTime();
  const end = Math.max(first + DAY_MS, toDate(asOf)?.getTime() ?? Date.now());
  // A little of the level before the first change shows.
  const start = first - Math.max(DAY_MS, (end - first) * 0.04);
  const plotW = width - m.left - m.right;
  const x = (t) => m.left + ((t - start) / (end - start)) * plotW;
  const y = (level) => m.top + rowH * (LEVELS.length - 1 - LEVELS.indexOf(level));
  const svgEl = s('svg', { viewBox: `0 0 ${width} ${height}`, width, height, role: 'img', 'aria-label': 'Step chart of the level over time; the list below has the changes.', class: 'timeline-svg' });
  for (const level of LEVELS) {
    svgEl.append(
      s('line', { x1: m.left, x2: width - m.right, y1: y(level), y2: y(level), class: 'grid' }),
      s('text', { x: m.left - 8, y: y(level), 'text-anchor': 'end', 'dominant-baseline': 'middle', class: 'svg-tick' }, title(level)),
    );
  }
  let d = `M${x(start).toFixed(1)},${y(changes[0].from)}`;
  for (const change of changes) {
    const t = x(toDate(change.at).getTime()).toFixed(1);
    d += `H${t}V${y(change.to)}`;
  }
  d += `H${x(end).toFixed(1)}`;
  svgEl.append(s('path', { d, class: 'step-line' }));
  for (const change of changes) {
    svgEl.append(s('circle', { cx: x(toDate(change.at).getTime()), cy: y(change.to), r: 3.5, class: `dot lvl-${change.to}` }, s('title', null, `${fmtDate(change.at)}: ${title(change.from)} → ${title(change.to)}`)));
  }
  svgEl.append(
    s('text', { x: m.left, y: height - 6, class: 'svg-tick' }, SHORT_DATE.format(new Date(start)) + ` ${new Date(start).getUTCFullYear()}`),
    s('text', { x: width - m.right, y: height - 6, 'text-anchor': 'end', class: 'svg-tick' }, SHORT_DATE.format(new Date(end)) + ` ${new Date(end).getUTCFullYear()}`),
  );
  return svgEl;
}

function simpleTable(caption, headings, rows, empty, extraClass) {
  if (!rows.length) return h('p', { class: 'empty' }, empty);
  return h(
    'div',
    { class: 'table-scroll' },
    h(
      'table',
      { class: extraClass ? `data ${extraClass}` : 'data' },
      h('caption', { class: 'visually-hidden' }, caption),
      h('thead', null, h('tr', null, headings.map((heading) => h('th', { scope: 'col' }, heading)))),
      h('tbody', null, rows),
    ),
  );
}

function identitiesPanel(c) {
  const rows = (c.identities || []).map((i) => h('tr', null, h('th', { scope: 'row' }, words(i.channel)), h('td', { class: 'handle' }, i.handle)));
  return h(
    'section',
    { class: 'panel', id: 'identities', 'aria-labelledby': 'identities-heading' },
    h('h2', { id: 'identities-heading' }, 'Identities'),
    simpleTable('The customer\u2019s identities per channel', ['Channel', 'Handle'], rows, 'No identity known.'),
  );
}

function consentPanel(c) {
  const rows = Object.entries(c.consent || {}).map(([channel, record]) =>
    h(
      'tr',
      null,
      h('th', { scope: 'row' }, words(channel)),
      h('td', null, h('span', { class: record.granted ? 'badge ok' : 'badge no' }, record.granted ? 'Given' : 'Withdrawn')),
      h('td', { class: 'date' }, fmtDate(record.at)),
    ),
  );
  return h(
    'section',
    { class: 'panel', id: 'consent', 'aria-labelledby': 'consent-heading' },
    h('h2', { id: 'consent-heading' }, 'Consent'),
    simpleTable('Consent per channel: the latest decision and when it was made', ['Channel', 'Consent', 'Since'], rows, 'No consent decision recorded.'),
  );
}

function triggerText(trigger) {
  if (!trigger) return '—';
  if (typeof trigger === 'string') return words(trigger);
  if (trigger.level_reached) return `reached ${title(trigger.level_reached)}`;
  if (trigger.at_risk) return `at risk at ${title(trigger.at_risk)}`;
  if (trigger.interaction) return `did ${words(trigger.interaction)}`;
  return Object.entries(trigger)
    .map(([k, v]) => `${words(k)} ${words(v)}`)
    .join(', ');
}

const OUTCOMES = { sent: 'Sent', held_out: 'Held out (control)', suppressed: 'Suppressed' };

function nudgesPanel(c, history) {
  const timeline = history && Array.isArray(history.timeline) ? history.timeline : null;
  const now = toDate(c.as_of)?.getTime() ?? Date.now();
  const after = (n) => {
    if (!timeline) return '—';
    const at = toDate(n.decided_at).getTime();
    const rise = timeline.find((ch) => {
      const t = toDate(ch.at).getTime();
      return t >= at && t <= at + 30 * DAY_MS && LEVELS.indexOf(ch.to) > LEVELS.indexOf(ch.from);
    });
    if (rise) return `Rose to ${title(rise.to)} on ${fmtDate(rise.at)}`;
    return now - at < 30 * DAY_MS ? 'No rise yet' : 'No rise within 30 days';
  };
  const rows = (c.nudges || []).map((n) =>
    h(
      'tr',
      { 'data-outcome': n.outcome },
      h('td', { class: 'date' }, fmtDate(n.decided_at)),
      h('th', { scope: 'row' }, words(n.playbook), h('span', { class: 'muted' }, ` · step ${n.step}`), h('br'), h('span', { class: 'action' }, words(n.action))),
      h('td', null, words(n.channel)),
      h('td', null, h('span', { class: `badge outcome-${n.outcome}` }, OUTCOMES[n.outcome] || words(n.outcome)), n.reason ? h('div', { class: 'reason' }, words(n.reason)) : null),
      h('td', null, triggerText(n.trigger)),
      h('td', null, after(n)),
    ),
  );
  return h(
    'section',
    { class: 'panel', id: 'customer-nudges', 'aria-labelledby': 'customer-nudges-heading' },
    h('h2', { id: 'customer-nudges-heading' }, 'Nudges'),
    simpleTable('Nudges decided for this customer, newest first, and what followed', ['Decided', 'Playbook step', 'Channel', 'Outcome', 'Trigger', 'Afterwards'], rows, 'No nudge decided for this customer.', 'wide'),
  );
}

function interactionRow(i) {
  return h('tr', null, h('td', { class: 'date' }, fmtDate(i.occurred_at)), h('th', { scope: 'row' }, words(i.kind)), h('td', null, words(i.customer?.channel ?? '—')), h('td', null, i.source));
}

function interactionsPanel(c) {
  const items = c.interactions?.items || [];
  const panel = h('section', { class: 'panel', id: 'interactions', 'aria-labelledby': 'interactions-heading' }, h('h2', { id: 'interactions-heading' }, 'Latest interactions'));
  const table = simpleTable('The latest interactions, newest first', ['When', 'Kind', 'Channel', 'Source'], items.map(interactionRow), 'No interaction recorded.');
  panel.append(table);
  let cursor = c.interactions?.cursor;
  if (cursor && items.length) {
    const tbody = $('tbody', table);
    const more = h('button', { type: 'button', class: 'secondary' }, 'Show older interactions');
    more.addEventListener('click', async () => {
      more.disabled = true;
      try {
        const page = await api(`v1/customers/${encodeURIComponent(c.id)}`, { cursor });
        tbody.append(...(page.interactions?.items || []).map(interactionRow));
        cursor = page.interactions?.cursor;
        if (!cursor) more.remove();
      } catch (error) {
        const view = problemView(error, 'Could not load older interactions');
        if (view) panel.append(view);
      } finally {
        more.disabled = false;
      }
    });
    panel.append(more);
  }
  return panel;
}

// ---------------------------------------------------------------------------------------------
// Start.

function start() {
  takeTokenFromHash();
  lastWidth = window.innerWidth;

  $('#token-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const input = $('#token-input');
    const token = input.value.trim();
    if (!token) {
      input.focus();
      return;
    }
    storeToken(token);
    input.value = '';
    clearError();
    current = null;
    overview = null;
    if (!location.hash.startsWith('#/')) history.replaceState(null, '', `${location.pathname}${location.search}#/`);
    render();
    $('#main').focus();
  });

  $('#sign-out').addEventListener('click', () => {
    forgetToken();
    current = null;
    overview = null;
    clear($('#main'));
    showSignIn();
  });

  const asOf = $('#as-of');
  const travel = () => {
    const value = asOf.value;
    if (value && !validDay(value)) return;
    const day = value && value < todayUtc() ? value : null;
    const target = overviewHref(day);
    if (location.hash !== target) location.hash = target;
  };
  asOf.addEventListener('change', travel);
  // Enter in the date field: the same, without leaving the page.
  $('#time-travel').addEventListener('submit', (event) => {
    event.preventDefault();
    travel();
  });
  $('#as-of-today').addEventListener('click', () => {
    asOf.value = todayUtc();
    if (location.hash !== '#/') location.hash = '#/';
  });

  // The skip link targets <main>; it is not a route.
  $('.skip-link').addEventListener('click', (event) => {
    event.preventDefault();
    $('#main').focus();
  });

  window.addEventListener('hashchange', () => {
    if (location.hash.startsWith('#token=')) takeTokenFromHash();
    const route = parseRoute();
    if (!route) return;
    const wasCustomer = current && current.name === 'customer';
    render();
    if (wasCustomer || route.name === 'customer') {
      window.scrollTo(0, 0);
      $('#main').focus({ preventScroll: true });
    }
  });

  render();
}

start();
