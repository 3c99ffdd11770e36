// The dashboard in a real browser (Debian's Chromium through playwright-core) against the real
// `pyramid demo` binary: what the page shows must be what the public read API answers.
//
// Run with `bash tests/browser/run` from the repository root (it installs what is missing).
// PYRAMID_BIN overrides the binary (default target/debug/pyramid, relative to the repo root);
// CHROMIUM overrides the browser (default /usr/bin/chromium). Screenshots go to
// target/browser-artifacts/.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..', '..');
const bin = path.resolve(root, process.env.PYRAMID_BIN || 'target/debug/pyramid');
const browserPath = process.env.CHROMIUM || '/usr/bin/chromium';
const artifacts = path.join(root, 'target', 'browser-artifacts');
// The demo plays its community's history week by week; 400 customers include some at risk.
const CUSTOMERS = 400;
const DAY_MS = 86_400_000;
const LEVELS = ['observing', 'following', 'endorsing', 'contributing', 'owning', 'leading'];
const MONTHS = ['January', 'February', 'March', 'April', 'May', 'June', 'July', 'August', 'September', 'October', 'November', 'December'];

/** "9 January 2027": the page's en-GB, UTC date, written out here without Intl. */
function humanDate(iso) {
  const d = new Date(iso);
  return `${d.getUTCDate()} ${MONTHS[d.getUTCMonth()]} ${d.getUTCFullYear()}`;
}

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

let server = null;
// Whatever happens, the server does not outlive the test process.
process.on('exit', () => {
  if (server && server.exitCode === null && server.signalCode === null) server.kill('SIGKILL');
});
let serverExit = null;
let dataDir = null;
let base = null;
let token = null;
let browser = null;
let page = null;
const pageProblems = [];

/** Starts `pyramid demo` and resolves once it prints its `listening on` line. */
async function startServer() {
  if (!fs.existsSync(bin)) {
    throw new Error(`the pyramid binary is missing at ${bin}: build it first (cargo build -p pyramid), or point PYRAMID_BIN at it`);
  }
  dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pyramid-dashboard-'));
  const port = await freePort();
  const args = ['demo', '--customers', String(CUSTOMERS), '--data', dataDir, '--addr', `127.0.0.1:${port}`];
  server = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, PYRAMID_DATA: dataDir } });
  serverExit = new Promise((resolve) => server.once('exit', (code, signal) => resolve({ code, signal })));
  let stderr = '';
  server.stderr.on('data', (chunk) => {
    stderr = (stderr + chunk).slice(-4000);
  });
  const lines = readline.createInterface({ input: server.stdout });
  const url = await new Promise((resolve, reject) => {
    lines.on('line', (line) => {
      const match = line.match(/listening on (http:\/\/\S+)/);
      if (match) resolve(match[1]);
    });
    serverExit.then(({ code, signal }) => reject(new Error(`pyramid demo exited (${code ?? signal}) before listening:\n${stderr}`)));
    server.once('error', reject);
  });
  base = url.replace(/\/$/, '');
  token = fs.readFileSync(path.join(dataDir, 'token'), 'utf8').trim();
  assert.ok(token.length > 0, 'the token file is empty');
}

async function stopServer() {
  if (server && server.exitCode === null && server.signalCode === null) {
    server.kill('SIGTERM');
    const timer = setTimeout(() => server.kill('SIGKILL'), 5000);
    await serverExit;
    clearTimeout(timer);
  }
  if (dataDir) fs.rmSync(dataDir, { recursive: true, force: true });
}

async function api(pathAndQuery) {
  const response = await fetch(`${base}${pathAndQuery}`, { headers: { Authorization: `Bearer ${token}` } });
  const body = await response.json();
  assert.equal(response.status, 200, `${pathAndQuery} answered ${response.status}: ${JSON.stringify(body)}`);
  return body;
}

/** The counts the page shows, per level, as numbers. */
function shownCounts() {
  return page.$$eval('#pyramid tr[data-level]', (rows) =>
    Object.fromEntries(rows.map((row) => [row.dataset.level, Number(row.querySelector('[data-testid=count]').textContent.replace(/[^\d]/g, ''))])),
  );
}

function apiCounts(pyramid) {
  return Object.fromEntries(pyramid.levels.map((l) => [l.level, l.customers]));
}

/** Every part of the page has loaded (or shown its problem). */
async function settled() {
  await page.waitForFunction(() => document.querySelectorAll('#main [data-state=loading]').length === 0 && !document.body.hasAttribute('data-loading'));
}

async function screenshot(name) {
  await settled();
  await page.screenshot({ path: path.join(artifacts, `${name}.png`), fullPage: true });
}

async function horizontalOverflow() {
  return page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
}

before(
  async () => {
    fs.mkdirSync(artifacts, { recursive: true });
    const started = Date.now();
    await startServer();
    console.log(`# pyramid demo (${CUSTOMERS} customers) listening after ${((Date.now() - started) / 1000).toFixed(1)} s`);
    browser = await chromium.launch({
      executablePath: browserPath,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, locale: 'en-GB', timezoneId: 'UTC' });
    page = await context.newPage();
    page.setDefaultTimeout(15_000);
    page.on('pageerror', (error) => pageProblems.push(`page error: ${error.message}`));
    page.on('console', (message) => {
      // A CSP violation (an inline script or style) is reported on the console.
      if (message.type() === 'error' && /Content Security Policy|Refused to/i.test(message.text())) pageProblems.push(`console: ${message.text()}`);
    });
  },
  { timeout: 120_000 },
);

after(async () => {
  await browser?.close().catch(() => {});
  await stopServer();
});

test('the overview shows the counts per level that GET /v1/pyramid answers', async () => {
  await page.goto(`${base}/#token=${token}`);
  await page.waitForSelector('#pyramid[data-state=ready][data-at=now]');
  assert.ok(!page.url().includes(token), `the token stays in the URL: ${page.url()}`);
  const shown = await shownCounts();
  const pyramid = await api('/v1/pyramid');
  assert.deepEqual(shown, apiCounts(pyramid));
  assert.equal(Number(await page.textContent('#pyramid [data-testid=total]')), pyramid.total);
  // The other parts of the overview loaded too (no problem shown in their place).
  for (const part of ['#weekly', '#transitions', '#movers-up', '#at-risk', '#new-leaders', '#nudges', '#rules']) {
    await page.waitForSelector(`${part} [data-state=ready]`);
  }
  assert.equal(await page.locator('#main .problem').count(), 0, 'a part of the overview shows a problem');
  await screenshot('overview');
});

/** A number as the page writes it (`1,000`, `0.5`). */
function shownNumber(text) {
  return Number(text.replace(/[^\d.]/g, ''));
}

test('"What the levels mean" shows each level\'s threshold, half-life and weighted kinds from GET /v1/rules', async () => {
  await page.waitForSelector('#rules [data-state=ready]');
  const rules = await api('/v1/rules');
  for (const level of LEVELS) {
    const row = page.locator(`#rules tr[data-level=${level}]`);
    assert.equal(shownNumber(await row.locator('[data-testid=threshold]').textContent()), rules.levels[level].threshold, `${level}'s threshold`);
    assert.equal(shownNumber(await row.locator('[data-testid=half-life]').textContent()), rules.levels[level].half_life_days, `${level}'s half-life`);
    const weighted = Object.entries(rules.kinds).filter(([, kind]) => kind.level === level && kind.weight > 0);
    assert.deepEqual(
      (await row.locator('li[data-kind]').evaluateAll((items) => items.map((li) => li.dataset.kind))).sort(),
      weighted.map(([name]) => name).sort(),
      `the kinds that count at ${level}`,
    );
  }
  // A kind the shipped rules weigh, with its weight, on its own level's row.
  const testimonial = page.locator('#rules tr[data-level=endorsing] li[data-kind=testimonial_given]');
  assert.equal(await testimonial.locator('code').textContent(), 'testimonial_given');
  assert.equal(shownNumber(await testimonial.locator('[data-testid=weight]').textContent()), rules.kinds.testimonial_given.weight);
  assert.equal(rules.kinds.testimonial_given.weight, 4, 'the shipped weight of a testimonial');
});

test('an at-risk customer opens on a page with the drop date and the explanation', async () => {
  const atRisk = await api('/v1/customers?at_risk=true&limit=20');
  assert.ok(atRisk.customers.length > 0, `the demo community of ${CUSTOMERS} customers has no customer at risk: the test needs one`);
  const link = page.locator('#at-risk a[href^="#/customers/"]').first();
  const href = await link.getAttribute('href');
  const id = decodeURIComponent(href.slice('#/customers/'.length));
  assert.ok(
    atRisk.customers.some((c) => c.id === id),
    `${id} is listed as at risk by the page but not by the API`,
  );
  await link.click();
  await page.waitForSelector('#main[data-page=customer][data-state=ready]');
  const customer = await api(`/v1/customers/${encodeURIComponent(id)}`);
  assert.ok(customer.drops_at, `${id} has no drop date`);
  assert.equal((await page.textContent('[data-testid=drops-at]')).trim(), humanDate(customer.drops_at));
  assert.equal((await page.textContent('[data-testid=summary]')).trim(), customer.summary);
  assert.equal((await page.textContent('#main h1')).trim(), customer.name ?? customer.id);
  assert.equal(await page.locator('#evidence tr[data-rung]').count(), customer.explanation.rungs.length);
  assert.ok((await page.textContent('#explanation')).includes(humanDate(customer.drops_at)));
  await page.waitForSelector('#timeline svg');
  await screenshot('customer');
});

test('the date picker re-renders the pyramid as of a year ago', async () => {
  await page.goBack();
  await page.waitForSelector('#pyramid[data-state=ready][data-at=now]');
  const now = await shownCounts();
  const day = new Date(Date.now() - 365 * DAY_MS).toISOString().slice(0, 10);
  await page.fill('#as-of', day);
  await page.waitForSelector(`#pyramid[data-state=ready][data-at="${day}"]`);
  const then = await shownCounts();
  const pyramid = await api(`/v1/pyramid?at=${day}T23:59:59Z`);
  assert.deepEqual(then, apiCounts(pyramid));
  assert.notDeepEqual(then, now, 'the counts a year ago are those of today');
  assert.ok(page.url().includes(`at=${day}`), `the time-travelled URL is ${page.url()}`);
  await page.waitForSelector('#weekly [data-state=ready]');
  await page.waitForSelector('#transitions [data-state=ready]');
  await screenshot('overview-a-year-ago');
});

test('a keyboard user reaches the labelled date picker with Tab', async () => {
  // A new load: the token now comes from session storage.
  await page.goto(`${base}/`);
  await page.waitForSelector('#pyramid[data-state=ready]');
  assert.equal(await page.getByLabel('Pyramid as of').getAttribute('id'), 'as-of');
  let reached = false;
  for (let i = 0; i < 8 && !reached; i += 1) {
    await page.keyboard.press('Tab');
    reached = await page.evaluate(() => document.activeElement?.id === 'as-of');
  }
  assert.ok(reached, 'eight presses of Tab do not reach #as-of');
});

test('nothing scrolls sideways on a 390 px wide phone', async () => {
  await page.setViewportSize({ width: 390, height: 844 });
  await page.evaluate(() => {
    location.hash = '#/';
  });
  await page.waitForSelector('#pyramid[data-state=ready]');
  await page.waitForSelector('#weekly svg');
  assert.equal(await horizontalOverflow(), 0, 'the overview is wider than the phone');
  await screenshot('phone');
  const href = await page.locator('#at-risk a[href^="#/customers/"]').first().getAttribute('href');
  await page.evaluate((target) => {
    location.hash = target;
  }, href);
  await page.waitForSelector('#main[data-page=customer][data-state=ready]');
  await page.waitForSelector('#timeline svg');
  assert.equal(await horizontalOverflow(), 0, 'the customer page is wider than the phone');
  await screenshot('phone-customer');
});

test('without a token, or with a wrong one, the page asks for it', async () => {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const fresh = await context.newPage();
  try {
    await fresh.goto(`${base}/`);
    const input = fresh.getByLabel('API token', { exact: true });
    await input.waitFor();
    await input.fill('not-the-token');
    await fresh.getByRole('button', { name: 'Use this token' }).click();
    await fresh.waitForSelector('#error:not([hidden])');
    assert.match(await fresh.textContent('#error'), /Unauthorized/);
    await input.fill(token);
    await fresh.getByRole('button', { name: 'Use this token' }).click();
    await fresh.waitForSelector('#pyramid[data-state=ready][data-at=now]');
    assert.equal(await fresh.isVisible('#token-panel'), false);
  } finally {
    await context.close();
  }
});

test('the page breaks no content security rule and throws no error', () => {
  assert.deepEqual(pageProblems, []);
});
