// Admin: find users, see their credits, grant or deduct credits with a reason.

import * as api from './api.js';
import { $, el, busy, showError, uid } from './dom.js';

/** Wires the search form. */
export function setupUsers() {
  $('user-search').addEventListener('submit', (event) => {
    event.preventDefault();
    busy($('user-search-submit'), 'Searching…', searchUsers);
  });
}

/** Lists the users whose email contains the query. */
export async function searchUsers() {
  const error = $('users-error');
  showError(error, null);
  const query = $('user-query').value.trim();
  try {
    const page = await api.get(`/v1/admin/users?limit=50&query=${encodeURIComponent(query)}`);
    $('users').replaceChildren(...page.users.map(userCard));
  } catch (err) {
    showError(error, err);
  }
}

function userCard(user) {
  const c = user.credits || {};
  const credits = el('span', { class: 'small', 'data-credits': user.id,
    text: `${c.available ?? 0} available · ${c.subscription ?? 0} subscription · ${c.purchased ?? 0} purchased · ${c.held ?? 0} held` });
  const amountId = `amount-${user.id}`;
  const reasonId = `reason-${user.id}`;
  const amount = el('input', { id: amountId, type: 'number', step: 1, required: true, value: '' });
  const reason = el('input', { id: reasonId, maxLength: 500, required: true });
  const submit = el('button', { type: 'submit', text: 'Apply' });
  const error = el('p', { class: 'error', role: 'alert', hidden: true });
  const form = el('form', { class: 'grant', 'data-user': user.email },
    el('div', {}, el('label', { for: amountId, text: 'Credits (+ grant, − deduct)' }), amount),
    el('div', {}, el('label', { for: reasonId, text: 'Reason' }), reason),
    submit, error);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    showError(error, null);
    const body = { user_id: user.id, amount: parseInt(amount.value, 10), reason: reason.value.trim(),
      idempotency_key: uid() };
    if (!Number.isInteger(body.amount) || body.amount === 0) {
      showError(error, new Error('Enter a whole number of credits other than 0.'));
      return;
    }
    try {
      const answer = await busy(submit, 'Applying…', () => api.post('/v1/admin/credits', body));
      const n = answer.credits;
      credits.textContent = `${n.available} available · ${n.subscription} subscription · ${n.purchased} purchased · ${n.held} held`;
      amount.value = '';
      reason.value = '';
    } catch (err) {
      showError(error, err);
    }
  });
  return el('li', { class: 'user' },
    el('strong', { text: user.email }),
    el('span', { class: 'muted small', text: `${user.role}${user.debt ? ` · debt ${user.debt}` : ''}` }),
    credits, form);
}
