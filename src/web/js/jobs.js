// The jobs list with live status: each unfinished job follows /v1/jobs/{id}/events
// and reconnects with Last-Event-ID when the connection drops (e.g. a server restart).

import * as api from './api.js';
import { readEvents } from './sse.js';
import { $, el, when, notify } from './dom.js';
import { state, emit } from './state.js';

const cards = new Map();
const streams = new Map();

const TITLES = { IMAGE_GEN: 'Images', ANALYSIS: 'Product analysis' };
const MODES = { single: 'Style replicate', batch: 'Style replicate (batch)', refinement: 'Refinement' };

/** A job's title: its kind and mode. */
export function jobTitle(job) {
  if (job.type === 'STYLE_REPLICATE') return MODES[job.payload?.mode || 'single'] || 'Style replicate';
  return TITLES[job.type] || job.type;
}

/** processing | success | partial | failed. */
export function outcome(job) {
  if (job.status === 'success' && job.error_code === 'BATCH_PARTIAL_FAILED') return 'partial';
  return job.status;
}

const LABELS = { processing: 'Running', success: 'Done', partial: 'Partly done', failed: 'Failed' };

/** Loads the latest jobs and follows the unfinished ones. */
export async function loadJobs() {
  let page;
  try {
    page = await api.get('/v1/jobs?limit=30');
  } catch (err) {
    notify(err.message, 'error');
    return;
  }
  for (const job of page.jobs.slice().reverse()) {
    update(job);
    if (job.status === 'processing') follow(job.id);
  }
  emit('jobs');
}

/** Starts showing and following a new job. */
export function track(id) {
  follow(id);
}

/** Stops every stream and forgets the jobs (sign-out). */
export function stopAll() {
  for (const controller of streams.values()) controller.abort();
  streams.clear();
  cards.clear();
  state.jobs.clear();
  $('jobs').replaceChildren();
}

async function follow(id) {
  if (streams.has(id)) return;
  const controller = new AbortController();
  streams.set(id, controller);
  let lastId = null;
  let delay = 500;
  let finished = false;
  while (!finished && !controller.signal.aborted) {
    try {
      const headers = lastId ? { 'last-event-id': lastId } : {};
      const res = await api.send(`/v1/jobs/${encodeURIComponent(id)}/events`, {
        headers, signal: controller.signal,
      });
      setReconnecting(id, false);
      delay = 500;
      await readEvents(res, (event) => {
        if (event.event !== 'job') return true;
        if (event.id) lastId = event.id;
        const job = JSON.parse(event.data);
        update(job);
        finished = job.status !== 'processing';
        return !finished;
      });
    } catch (err) {
      if (controller.signal.aborted) break;
      if (err.status && err.status !== 0 && err.status < 500 && err.status !== 429) {
        notify(err.message, 'error');
        break;
      }
    }
    if (!finished && !controller.signal.aborted) {
      setReconnecting(id, true);
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(delay * 2, 5000);
    }
  }
  if (streams.get(id) === controller) streams.delete(id);
}

function setReconnecting(id, on) {
  const card = cards.get(id);
  if (card) card.querySelector('.reconnect').hidden = !on;
}

function update(job) {
  const before = state.jobs.get(job.id);
  if (before && before.version > job.version) return;
  state.jobs.set(job.id, job);
  render(job);
  emit('job', job);
  if (job.status !== 'processing' && (!before || before.status === 'processing')) {
    emit('job-done', job);
  }
}

function unitErrors(job) {
  const units = job.result_data?.units;
  if (!Array.isArray(units)) return [];
  return units
    .filter((u) => u.status === 'failed' && u.error)
    .map((u) => `Image ${Number(u.unit) + 1}: ${u.error.message || u.error.code}`);
}

function render(job) {
  let card = cards.get(job.id);
  if (!card) {
    card = el('li', { class: 'job', 'data-job-id': job.id });
    cards.set(job.id, card);
    $('jobs').prepend(card);
  }
  const state = outcome(job);
  card.dataset.status = state;
  const u = job.units || {};
  const done = (u.succeeded || 0) + (u.failed || 0) + (u.cancelled || 0);
  const text = job.payload?.prompt || job.payload?.userPrompt || job.payload?.requirements || '';
  const parts = [
    el('div', { class: 'job-head' },
      el('strong', { text: jobTitle(job) }),
      el('span', { class: `badge ${state}`, text: LABELS[state] || job.status }),
      el('span', { class: 'muted small', text: when(job.created_at) })),
  ];
  if (text) parts.push(el('p', { class: 'prompt', text }));
  if (u.total) {
    parts.push(el('progress', { max: u.total, value: done, 'aria-label': 'Progress' }));
    parts.push(el('p', { class: 'small units',
      text: `${u.succeeded || 0} of ${u.total} done` +
        (u.failed ? ` · ${u.failed} failed` : '') +
        (u.running ? ` · ${u.running} running` : '') +
        (u.queued ? ` · ${u.queued} queued` : '') +
        (job.status !== 'processing' ? ` · ${job.cost_amount || 0} credits charged` : '') }));
  }
  if (state === 'failed') {
    parts.push(el('p', { class: 'error', text: `${job.error_message || 'The job failed.'} (${job.error_code || 'error'})` }));
  }
  if (state === 'partial') {
    parts.push(el('p', { class: 'warn', text: 'Some images failed; the rest are in the gallery and only they were charged.' }));
  }
  const errors = unitErrors(job);
  if (errors.length && state !== 'failed') {
    parts.push(el('ul', { class: 'unit-errors' }, errors.map((e) => el('li', { text: e }))));
  }
  parts.push(el('p', { class: 'reconnect muted small', hidden: true, text: 'Connection lost — reconnecting…' }));
  if (job.status === 'processing') {
    const cancel = el('button', { type: 'button', class: 'secondary small', text: 'Cancel' });
    cancel.addEventListener('click', () => cancelJob(job.id, cancel));
    parts.push(cancel);
  }
  card.replaceChildren(...parts);
}

async function cancelJob(id, button) {
  button.disabled = true;
  button.textContent = 'Cancelling…';
  try {
    await api.post(`/v1/jobs/${encodeURIComponent(id)}/cancel`, {});
  } catch (err) {
    notify(err.message, 'error');
    button.disabled = false;
    button.textContent = 'Cancel';
  }
}
