// The credits panel: subscription, purchased, held, available and any debt (credits
// owed after a refund, paid from the next credits that arrive); reloaded as jobs move.

import * as api from './api.js';
import { $, notify, clearNotice } from './dom.js';
import { state, emit, debounce } from './state.js';

/** Reads /v1/me and shows the credits. */
export async function loadMe() {
  try {
    state.me = await api.get('/v1/me');
    clearNotice(api.OFFLINE);
  } catch (err) {
    notify(err.message, 'error');
    return;
  }
  const credits = state.me.credits || {};
  for (const key of ['available', 'subscription', 'purchased', 'held', 'debt']) {
    $(`credits-${key}`).textContent = String(credits[key] ?? 0);
  }
  $('credits-debt-row').hidden = !(credits.debt > 0);
  const sub = state.me.subscription;
  $('plan').textContent = sub ? `Plan: ${sub.plan} (${sub.status})` : 'No subscription';
  emit('credits', credits);
}

/** Reloads the credits shortly (many job events collapse into one request). */
export const refreshCredits = debounce(loadMe, 250);
