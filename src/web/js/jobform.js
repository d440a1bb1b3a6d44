// The job form: what to make, the model (unavailable ones disabled with the reason),
// ratio, size, count, turbo, and the cost before submitting.

import * as api from './api.js';
import * as session from './session.js';
import { $, el, busy, showError, uid } from './dom.js';
import { state, on } from './state.js';
import { track } from './jobs.js';
import { startAnalysis } from './analysis.js';

const value = (id) => $(id).value;
const number = (id) => Math.max(1, Math.min(9, parseInt(value(id), 10) || 1));

/** Wires the form; call `fillModels()` once the config is loaded. */
export function setupJobForm() {
  $('job-kind').addEventListener('change', () => { showKind(); updateCost(); });
  $('model').addEventListener('change', () => { fillModelOptions(); updateCost(); });
  for (const id of ['size', 'count', 'groups', 'turbo', 'ratio']) {
    $(id).addEventListener('input', updateCost);
    $(id).addEventListener('change', updateCost);
  }
  on('photos', updateCost);
  on('credits', updateCost);
  $('job-form').addEventListener('submit', submit);
  showKind();
}

function showKind() {
  const kind = value('job-kind');
  for (const node of $('job-form').querySelectorAll('[data-kinds]')) {
    node.hidden = !node.dataset.kinds.split(' ').includes(kind);
  }
  $('count-label').textContent = kind === 'analysis' ? 'Prompts to write' : 'Images per product';
  if (kind === 'generate') $('count-label').textContent = 'Images';
  $('job-submit').textContent = kind === 'analysis' ? 'Analyse' : 'Generate';
}

/** Why a model cannot be chosen by this user, or ''. */
function unavailable(model) {
  if (!model.available) return 'unavailable: its provider has no API key on this server';
  if (model.admin_only && session.claims()?.role !== 'admin') return 'for operators only';
  return '';
}

/** Fills the model list from get-public-config. */
export function fillModels() {
  const select = $('model');
  const models = state.config?.models || [];
  select.replaceChildren(...models.map((model) => {
    const why = unavailable(model);
    return el('option', {
      value: model.id,
      disabled: Boolean(why),
      text: why ? `${model.label} (${why})` : `${model.label}`,
    });
  }));
  const first = models.find((m) => !unavailable(m));
  if (first) select.value = first.id;
  fillModelOptions();
  updateCost();
}

function currentModel() {
  return (state.config?.models || []).find((m) => m.id === value('model'));
}

function fillModelOptions() {
  const model = currentModel();
  $('model-note').textContent = model ? `Provider: ${model.provider}` : 'No model is available on this server.';
  const fill = (id, items, preferred) => {
    const select = $(id);
    const before = select.value;
    select.replaceChildren(...items.map((v) => el('option', { value: v, text: v })));
    select.value = items.includes(before) ? before : (items.includes(preferred) ? preferred : items[0] || '');
  };
  fill('ratio', model?.aspect_ratios || [], '1:1');
  fill('size', model?.sizes || [], model?.default_size);
}

/** How many units (images) a submit would make. */
function units(kind) {
  const products = state.photos.filter((p) => p.product).length;
  const references = state.photos.filter((p) => p.reference).length;
  switch (kind) {
    case 'generate': return number('count');
    case 'single': return products * number('count');
    case 'batch': return references * number('groups');
    case 'refinement': return products;
    default: return 0;
  }
}

function updateCost() {
  const kind = value('job-kind');
  const line = $('cost');
  line.classList.remove('short');
  if (kind === 'analysis') {
    line.textContent = 'Free: analysing a product and writing prompts costs no credits.';
    return;
  }
  const model = currentModel();
  if (!model) {
    line.textContent = '';
    return;
  }
  const size = value('size');
  const unitCost = (model.costs?.[size] || 0) + ($('turbo').checked ? (model.turbo_surcharge?.[size] || 0) : 0);
  const count = units(kind);
  const available = state.me?.credits?.available ?? 0;
  if (count === 0) {
    line.textContent = kind === 'batch'
      ? 'Tick at least one style reference photo to see the cost.'
      : 'Add a product photo to see the cost.';
    return;
  }
  const total = count * unitCost;
  const plural = count === 1 ? 'image' : 'images';
  line.textContent = `Cost: ${count} ${plural} × ${unitCost} credit${unitCost === 1 ? '' : 's'} = ${total} credits · ${available} available`;
  if (total > available) {
    line.textContent += ' — not enough credits';
    line.classList.add('short');
  }
}

function body(kind) {
  const products = state.photos.filter((p) => p.product).map((p) => p.url);
  const references = state.photos.filter((p) => p.reference).map((p) => p.url);
  const common = {
    model: value('model'), aspectRatio: value('ratio'), imageSize: value('size'),
    turboEnabled: $('turbo').checked, client_job_id: uid(),
  };
  switch (kind) {
    case 'generate':
      return ['generate-image', { ...common, prompt: value('prompt'), productImage: products[0],
        productImages: products, imageCount: number('count') }];
    case 'single':
      return ['analyze-single', { ...common, mode: 'single', referenceImage: references[0],
        productImages: products, imageCount: number('count'), userPrompt: value('user-prompt') }];
    case 'batch':
      return ['analyze-single', { ...common, mode: 'batch', referenceImages: references,
        productImage: products[0], groupCount: number('groups'), userPrompt: value('user-prompt') }];
    case 'refinement':
      return ['analyze-single', { ...common, mode: 'refinement', productImages: products,
        backgroundMode: value('background') }];
    default:
      return ['analyze-product-v2', { productImage: products[0], productImages: products,
        requirements: value('requirements'), imageCount: number('count'), client_job_id: uid() }];
  }
}

async function submit(event) {
  event.preventDefault();
  const error = $('job-error');
  showError(error, null);
  const kind = value('job-kind');
  const [fn, payload] = body(kind);
  try {
    const ack = await busy($('job-submit'), 'Starting…', () => api.post(`/functions/v1/${fn}`, payload));
    if (kind === 'analysis') startAnalysis(ack.job_id, number('count'));
    track(ack.job_id);
  } catch (err) {
    showError(error, err);
  }
}
