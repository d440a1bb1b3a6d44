// The admin console's entry module: operators only (others see the server's 403
// message); queue and alarm, users and credits, jobs and retries, the model catalog,
// recent webhook events.

import * as api from './api.js';
import * as session from './session.js';
import { $, el, notify } from './dom.js';
import { setupAuthForm, signOut } from './authui.js';
import { setupUsers, searchUsers } from './admin_users.js';
import { setupJobs, loadJobs } from './admin_jobs.js';
import { setupGrowth, loadGrowth } from './admin_growth.js';

const auth = setupAuthForm({ allowSignup: false });
setupUsers();
setupJobs();
setupGrowth();
$('sign-out').addEventListener('click', signOut);

let timer = null;
let userId = null;

function view(name) {
  for (const id of ['signed-out', 'forbidden', 'signed-in']) $(id).hidden = id !== name;
  $('account').hidden = name === 'signed-out';
}

function age(ms) {
  if (ms === null || ms === undefined) return 'none';
  if (ms < 1000) return `${ms} ms`;
  if (ms < 120000) return `${Math.round(ms / 1000)} s`;
  return `${Math.round(ms / 60000)} min`;
}

async function loadQueue() {
  try {
    const queue = await api.get('/v1/admin/queue');
    $('queue-depth').textContent = String(queue.depth);
    $('queue-running').textContent = String(queue.running);
    $('queue-oldest').textContent = age(queue.oldest_queued_age_ms);
    $('queue-streams').textContent = String(queue.prompt_streams ?? 0);
    const rows = Object.entries(queue.providers || {}).sort(([a], [b]) => a.localeCompare(b));
    $('providers').replaceChildren(...rows.map(([name, p]) => el('tr', {},
      el('td', { text: name }),
      el('td', { class: 'num', text: String(p.in_flight ?? 0) }),
      el('td', { class: 'num', text: String(p.concurrency ?? '–') }))));
  } catch (err) {
    if (err.status === 403) return forbidden(err);
    notify(err.message, 'error');
  }
  await loadAlarm();
}

/** /readyz answers 503 with the queue-stall alarm in the envelope. */
async function loadAlarm() {
  const alarm = $('alarm');
  try {
    await api.get('/readyz', { auth: false });
    alarm.hidden = true;
  } catch (err) {
    alarm.textContent = `Not ready: ${err.message}`;
    alarm.hidden = false;
  }
}

async function loadModels() {
  try {
    const config = await api.get('/functions/v1/get-public-config', { auth: false });
    $('models').replaceChildren(...config.models.map((m) => el('tr', {},
      el('td', { text: `${m.label} (${m.id})${m.admin_only ? ' · admin only' : ''}` }),
      el('td', { text: m.provider }),
      el('td', { text: m.available ? 'yes' : 'no: provider not configured' }),
      el('td', { text: Object.entries(m.costs || {}).map(([s, c]) => `${s}: ${c}`).join(', ') }))));
  } catch (err) {
    notify(err.message, 'error');
  }
}

async function loadEvents() {
  try {
    const { events } = await api.get('/v1/admin/webhook-events?limit=20');
    const rows = events.map((e) => el('tr', {},
      el('td', { text: new Date(e.received_at).toLocaleString() }),
      el('td', { text: e.type }),
      el('td', { text: e.result }),
      el('td', { text: e.note || '' })));
    if (rows.length === 0) {
      rows.push(el('tr', {}, el('td', { colSpan: 4, class: 'muted', text: 'No webhook events yet.' })));
    }
    $('webhook-events').replaceChildren(...rows);
  } catch (err) {
    notify(err.message, 'error');
  }
}

function forbidden(err) {
  clearInterval(timer);
  timer = null;
  $('forbidden-message').textContent = err.message;
  view('forbidden');
}

async function enter() {
  const claims = session.claims();
  if (claims?.sub === userId) return;
  userId = claims?.sub || null;
  $('account-email').textContent = claims?.email || '';
  notify('');
  try {
    await api.get('/v1/admin/queue');
  } catch (err) {
    if (err.status === 403) return forbidden(err);
  }
  view('signed-in');
  clearInterval(timer);
  timer = setInterval(loadQueue, 3000);
  await Promise.all([loadQueue(), loadModels(), searchUsers(), loadJobs(), loadEvents(), loadGrowth()]);
}

function leave(message) {
  userId = null;
  clearInterval(timer);
  timer = null;
  view('signed-out');
  auth.explain(message);
}

session.onChange((current, message) => (current ? enter() : leave(message)));
if (session.current()) {
  session.resume();
  enter();
} else {
  leave('');
}
