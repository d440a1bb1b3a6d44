// Admin: redeem codes (create, list, deactivate), invite bindings, and the mail outbox.

import * as api from './api.js';
import { $, el, busy, showError, when, notify } from './dom.js';

function emptyRow(columns, text) {
  return el('tr', {}, el('td', { colSpan: columns, class: 'muted', text }));
}

/** Lists the newest redeem codes. */
export async function loadCodes() {
  try {
    const { codes } = await api.get('/v1/admin/redeem-codes?limit=50');
    const rows = codes.map((c) => {
      const off = el('button', { type: 'button', class: 'secondary', text: 'Deactivate',
        'aria-label': `Deactivate ${c.code}`, disabled: !c.active });
      off.addEventListener('click', async () => {
        try {
          await busy(off, 'Deactivating…', () => api.post(`/v1/admin/redeem-codes/${encodeURIComponent(c.id)}/deactivate`));
          await loadCodes();
        } catch (err) {
          showError($('codes-error'), err);
        }
      });
      return el('tr', { 'data-code': c.code },
        el('td', {}, el('code', { text: c.code })),
        el('td', { class: 'num', text: String(c.credit_amount) }),
        el('td', { class: 'num', text: `${c.used_count} / ${c.max_uses}` }),
        el('td', { text: c.expires_at ? when(c.expires_at) : 'never' }),
        el('td', { 'data-state': c.state, text: c.state }),
        el('td', {}, off));
    });
    $('redeem-codes').replaceChildren(...(rows.length ? rows : [emptyRow(6, 'No redeem codes yet.')]));
  } catch (err) {
    showError($('codes-error'), err);
  }
}

/** Lists who invited whom. */
export async function loadBindings() {
  try {
    const { bindings } = await api.get('/v1/admin/invite-bindings?limit=50');
    const rows = bindings.map((b) => el('tr', {},
      el('td', { text: when(b.bound_at) }),
      el('td', { text: `${b.inviter.email} (${b.code})` }),
      el('td', { text: b.invitee.email }),
      el('td', { class: 'num', text: b.rewarded_at
        ? `${b.reward_credits - b.reward_reversed} credits` : 'none yet' })));
    $('invite-bindings').replaceChildren(...(rows.length ? rows : [emptyRow(4, 'No bindings yet.')]));
  } catch (err) {
    notify(err.message, 'error');
  }
}

/** Lists the latest mail and what became of it. */
export async function loadOutbox() {
  try {
    const { transport, mails } = await api.get('/v1/admin/mail-outbox?limit=50');
    $('outbox-transport').textContent = transport === 'file'
      ? 'No mail server configured: messages are written as .eml files under the data dir.'
      : 'Messages are sent by SMTP.';
    const rows = mails.map((m) => el('tr', { 'data-kind': m.kind },
      el('td', { text: when(m.created_at) }),
      el('td', { text: m.to }),
      el('td', { text: m.kind }),
      el('td', { text: m.status }),
      el('td', { class: 'num', text: String(m.attempts) }),
      el('td', { text: m.last_error || '' })));
    $('mail-outbox').replaceChildren(...(rows.length ? rows : [emptyRow(6, 'No mail yet.')]));
  } catch (err) {
    notify(err.message, 'error');
  }
}

/** Wires the create-code form. */
export function setupGrowth() {
  $('code-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const error = $('codes-error');
    showError(error, null);
    const expires = $('code-expires').value;
    const body = {
      credit_amount: parseInt($('code-credits').value, 10),
      max_uses: parseInt($('code-uses').value, 10),
    };
    const code = $('code-text').value.trim();
    if (code) body.code = code;
    if (expires) body.expires_at = new Date(expires).toISOString();
    const note = $('code-note').value.trim();
    if (note) body.note = note;
    if (!Number.isInteger(body.credit_amount) || body.credit_amount < 1) {
      showError(error, new Error('Enter the credits the code grants (1 or more).'));
      return;
    }
    try {
      await busy($('code-submit'), 'Creating…', () => api.post('/v1/admin/redeem-codes', body));
      for (const id of ['code-text', 'code-credits', 'code-note', 'code-expires']) $(id).value = '';
      await loadCodes();
    } catch (err) {
      showError(error, err);
    }
  });
}

/** Loads the three panels. */
export function loadGrowth() {
  return Promise.all([loadCodes(), loadBindings(), loadOutbox()]);
}
