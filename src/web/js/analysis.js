// Product analysis, then prompt writing with the text shown as it streams.

import * as api from './api.js';
import { readEvents } from './sse.js';
import { $, el, showError } from './dom.js';
import { on } from './state.js';

const waiting = new Map();

/** Wires the "use as prompt" button and waits for analysis jobs to finish. */
export function setupAnalysis() {
  on('job-done', (job) => {
    const count = waiting.get(job.id);
    if (count === undefined) return;
    waiting.delete(job.id);
    if (job.status === 'success') showAnalysis(job.result_data, count);
  });
  $('use-prompt').addEventListener('click', () => {
    $('prompt').value = $('prompt-stream').textContent;
    $('job-kind').value = 'generate';
    $('job-kind').dispatchEvent(new Event('change'));
    $('prompt').focus();
  });
}

/** Remembers that `jobId` is an analysis whose result should be written into prompts. */
export function startAnalysis(jobId, count) {
  waiting.set(jobId, count);
  $('analysis').hidden = false;
  $('analysis-fields').replaceChildren(el('dd', { class: 'muted', text: 'Analysing the product…' }));
  $('prompt-stream').textContent = '';
  $('use-prompt').hidden = true;
}

function showAnalysis(analysis, count) {
  const fields = [];
  const add = (label, value) => {
    if (value === undefined || value === null || value === '') return;
    const text = Array.isArray(value) ? value.join(', ') : (typeof value === 'object' ? JSON.stringify(value) : String(value));
    fields.push(el('dt', { text: label }), el('dd', { text }));
  };
  add('Product', analysis?.product_name);
  add('Category', analysis?.category);
  add('Selling points', analysis?.selling_points);
  add('Materials', analysis?.materials);
  add('Colours', analysis?.colors);
  add('Style', analysis?.style);
  $('analysis-fields').replaceChildren(...fields);
  streamPrompts(analysis, count);
}

/**
 * The prompt texts of a frame's `fullText`: a JSON array of prompt objects
 * `{prompt, title, negative_prompt, marketing_hook, priority}` (the first frame is empty).
 */
function promptTexts(fullText) {
  if (typeof fullText !== 'string' || fullText === '') return [];
  try {
    const items = JSON.parse(fullText);
    return Array.isArray(items) ? items.map((p) => String(p?.prompt ?? '')).filter(Boolean) : [];
  } catch {
    return [];
  }
}

async function streamPrompts(analysis, count) {
  const out = $('prompt-stream');
  const error = $('job-error');
  out.setAttribute('aria-busy', 'true');
  out.textContent = 'Writing prompts…';
  try {
    const res = await api.send('/functions/v1/generate-prompts-v2', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ analysisJson: analysis, imageCount: count, stream: true }),
    });
    await readEvents(res, (event) => {
      if (event.data === '[DONE]') return false;
      const data = JSON.parse(event.data);
      if (typeof data.error === 'string') {
        showError(error, new Error(data.error || data.code));
        return false;
      }
      const prompts = promptTexts(data.fullText);
      if (prompts.length > 0) out.textContent = prompts.join('\n');
      return true;
    });
    $('use-prompt').hidden = !out.textContent || out.textContent === 'Writing prompts…';
  } catch (err) {
    showError(error, err);
  } finally {
    out.removeAttribute('aria-busy');
  }
}
