// The seller's invite code, invitees and rewards; binding someone's invite code;
// redeeming a promotion code (purchased credits, then the credits and history reload).

import * as api from './api.js';
import { $, el, busy, showError, when, notify } from './dom.js';
import { loadMe } from './credits.js';
import { refreshLedger } from './ledger.js';

/** Reads /v1/invite and shows the code, the binding and the invitees. */
export async function loadInvite() {
  let mine;
  try {
    mine = await api.get('/v1/invite');
  } catch (err) {
    notify(err.message, 'error');
    return;
  }
  $('invite-code').textContent = mine.invite_code || '–';
  const rate = Math.round((mine.reward_rate ?? 0) * 100);
  $('invite-summary').textContent =
    `You receive ${rate}% of the credits of each invitee's first purchase. Rewards so far: ${mine.reward_credits_total} credits.`;
  const invitees = mine.invitees || [];
  $('invitees-empty').hidden = invitees.length > 0;
  $('invitees').replaceChildren(...invitees.map((i) => el('li', { 'data-invitee': i.email },
    el('span', { text: i.email }),
    el('span', { class: 'muted small', text: i.rewarded_at
      ? ` · reward ${i.reward_credits} credits (${when(i.rewarded_at)})`
      : ` · bound ${when(i.bound_at)}, no purchase yet` }))));
  const bound = mine.invited;
  $('bind-form').hidden = Boolean(bound);
  if (bound) $('bind-result').textContent = `Invited with code ${bound.code}.`;
}

function codeForm(form, input, error, result, submit, label, work) {
  $(form).addEventListener('submit', async (event) => {
    event.preventDefault();
    showError($(error), null);
    $(result).textContent = '';
    const code = $(input).value.trim();
    if (!code) {
      showError($(error), new Error('Enter a code.'));
      return;
    }
    try {
      const answer = await busy($(submit), label, () => work(code));
      $(input).value = '';
      $(result).textContent = answer;
    } catch (err) {
      showError($(error), err);
    }
  });
}

/** Wires the bind and redeem forms. */
export function setupGrowth() {
  codeForm('bind-form', 'bind-code', 'bind-error', 'bind-result', 'bind-submit', 'Binding…',
    async (code) => {
      await api.post('/v1/invite/bind', { code });
      await loadInvite();
      return `Invited with code ${code.toUpperCase()}.`;
    });
  codeForm('redeem-form', 'redeem-code', 'redeem-error', 'redeem-result', 'redeem-submit',
    'Redeeming…', async (code) => {
      const answer = await api.post('/v1/redeem', { code });
      await loadMe();
      refreshLedger();
      return `${answer.credits} credits added.`;
    });
}
