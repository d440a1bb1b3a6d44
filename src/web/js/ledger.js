// The credit history: every ledger movement in words.

import * as api from './api.js';
import { $, el, when, notify } from './dom.js';
import { debounce } from './state.js';

const SIGN = { grant: '+', release: '+', hold: '−', reverse: '−', capture: '' };

/** The direction of a movement for the available balance. */
function sign(entry) {
  if (entry.kind === 'adjust') return entry.bucket === 'mixed' ? '−' : '+';
  // A debt row either records what a refund could not take (nothing leaves the
  // balance yet) or repays it out of credits that just arrived.
  if (entry.kind === 'debt') return entry.bucket === 'mixed' ? '−' : '';
  return SIGN[entry.kind] ?? '';
}

function describe(entry) {
  const reason = entry.reason ? `: ${entry.reason}` : '';
  switch (entry.kind) {
    case 'grant':
      return entry.stripe_event_id ? 'Credits bought' : `Credits granted${reason}`;
    case 'hold': return `Held for a new job${entry.reason ? ` (${entry.reason})` : ''}`;
    case 'capture': return 'Charged for a finished image (from the hold)';
    case 'release': return 'Returned: an image failed or was cancelled';
    case 'reverse': return `Refund: credits taken back${reason}`;
    case 'adjust': return `Adjusted by an operator${reason}`;
    case 'debt':
      return entry.bucket === 'mixed' ? 'Owed credits repaid' : `Owed after a refund${reason}`;
    default: return entry.kind;
  }
}

/** Loads the latest 50 movements. */
export async function loadLedger() {
  let page;
  try {
    page = await api.get('/v1/ledger?limit=50');
  } catch (err) {
    notify(err.message, 'error');
    return;
  }
  $('ledger').replaceChildren(...page.entries.map((entry) => el('tr', { 'data-kind': entry.kind },
    el('td', { text: when(entry.created_at) }),
    el('td', { text: describe(entry) }),
    el('td', { class: 'num', text: `${sign(entry)}${entry.amount}` }),
    el('td', { class: 'num', text: String(entry.available_after ?? '') }))));
}

/** Reloads the history shortly. */
export const refreshLedger = debounce(loadLedger, 400);
