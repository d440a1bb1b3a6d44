// Admin: everyone's jobs by status, with error codes and Retry for failed units.

import * as api from './api.js';
import { $, el, busy, showError, when, notify } from './dom.js';
import { jobTitle, outcome } from './jobs.js';

/** Wires the status filter and the refresh button. */
export function setupJobs() {
  $('job-status').addEventListener('change', loadJobs);
  $('jobs-refresh').addEventListener('click', () => busy($('jobs-refresh'), 'Refreshing…', loadJobs));
}

/** Loads the latest jobs with the chosen status. */
export async function loadJobs() {
  const error = $('jobs-error');
  showError(error, null);
  const status = $('job-status').value;
  try {
    const page = await api.get(`/v1/admin/jobs?limit=50${status ? `&status=${status}` : ''}`);
    $('admin-jobs').replaceChildren(...page.jobs.map(row));
  } catch (err) {
    showError(error, err);
  }
}

function row(job) {
  const u = job.units || {};
  const actions = el('td', {});
  if (job.status !== 'processing' && (u.failed || 0) > 0) {
    const retry = el('button', { type: 'button', class: 'secondary small', text: 'Retry' });
    retry.addEventListener('click', async () => {
      retry.disabled = true;
      retry.textContent = 'Retrying…';
      try {
        const ack = await api.post(`/v1/admin/jobs/${encodeURIComponent(job.id)}/retry`, {});
        notify(`Retry started as job ${ack.job_id}.`);
        await loadJobs();
      } catch (err) {
        notify(err.message, 'error');
        retry.disabled = false;
        retry.textContent = 'Retry';
      }
    });
    actions.append(retry);
  }
  return el('tr', { 'data-job-id': job.id, 'data-status': outcome(job) },
    el('td', { text: when(job.created_at) }),
    el('td', { text: `${jobTitle(job)}${job.model ? ` · ${job.model}` : ''}` }),
    el('td', { text: outcome(job) }),
    el('td', { class: 'num', text: `${u.succeeded || 0}/${u.total || 0}${u.failed ? ` (${u.failed} failed)` : ''}` }),
    el('td', { text: job.error_code ? `${job.error_code}: ${job.error_message || ''}` : '' }),
    el('td', { class: 'small', text: job.user_id || '' }),
    actions);
}
