// The gallery: every finished image with its prompt and model; a full-size view and a
// download link.

import { $, el } from './dom.js';
import { state, on } from './state.js';
import { jobTitle } from './jobs.js';

/** Re-renders the gallery whenever a job finishes or the list loads. */
export function setupGallery() {
  on('job-done', render);
  on('jobs', render);
  $('viewer-close').addEventListener('click', () => $('viewer').close());
}

function images(job) {
  const list = job.result_data?.images;
  if (Array.isArray(list) && list.length) return list;
  const units = job.result_data?.units;
  if (Array.isArray(units)) return units.filter((u) => u.status === 'success' && u.url);
  return [];
}

/** Draws every image of the known jobs, newest job first. */
export function render() {
  const jobs = Array.from(state.jobs.values())
    .filter((job) => job.status === 'success')
    .sort((a, b) => (a.created_at < b.created_at ? 1 : -1));
  const items = [];
  for (const job of jobs) {
    for (const image of images(job)) items.push(item(job, image));
  }
  $('gallery').replaceChildren(...items);
  $('gallery-empty').hidden = items.length > 0;
}

function item(job, image) {
  const prompt = job.payload?.prompt || job.payload?.userPrompt || jobTitle(job);
  const model = job.model || job.payload?.model || '';
  const name = `atelier-${job.id}-${Number(image.unit) + 1}.png`;
  const img = el('img', { src: image.url, alt: `Result: ${prompt}`, loading: 'lazy' });
  const open = el('button', { type: 'button', class: 'thumb', 'aria-label': 'View full size' }, img);
  open.addEventListener('click', () => view(image.url, `${prompt} — ${model}`, name));
  return el('li', { class: 'shot', 'data-job-id': job.id, 'data-width': image.width, 'data-height': image.height },
    open,
    el('p', { class: 'prompt small', text: prompt }),
    el('p', { class: 'muted small', text: `${model} · ${image.width || '?'}×${image.height || '?'}` }),
    el('a', { href: image.url, download: name, class: 'small', text: 'Download' }));
}

function view(url, caption, name) {
  $('viewer-image').src = url;
  $('viewer-image').alt = caption;
  $('viewer-caption').textContent = caption;
  $('viewer-download').href = url;
  $('viewer-download').download = name;
  $('viewer').showModal();
}
