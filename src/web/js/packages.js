// Packages with Buy: the checkout (simulated in `simulated` mode, Stripe's page in
// `stripe` mode) comes back to the studio with ?success=true, and the credits reload.

import * as api from './api.js';
import { $, el, busy, notify, showError, when } from './dom.js';
import { state } from './state.js';
import { loadMe } from './credits.js';

/** Loads the packages on sale. */
export async function loadPackages() {
  const mode = state.config?.billing_mode;
  $('billing-mode').textContent = mode === 'simulated'
    ? 'Billing is simulated on this server: checkout is a test page, no money moves.'
    : '';
  let page;
  try {
    page = await api.get('/v1/packages', { auth: false });
  } catch (err) {
    notify(err.message, 'error');
    return;
  }
  await loadPayments();
  const sorted = page.packages.slice().sort((a, b) => a.type.localeCompare(b.type) || a.sort_order - b.sort_order);
  $('packages').replaceChildren(...sorted.map(card));
}

/** The seller's payments and refunds (/v1/billing/transactions). */
export async function loadPayments() {
  let page;
  try {
    page = await api.get('/v1/billing/transactions?limit=20');
  } catch (err) {
    notify(err.message, 'error');
    return;
  }
  const money = (cents, currency) => `${(cents / 100).toFixed(2)} ${String(currency || '').toUpperCase()}`;
  $('payments').replaceChildren(...page.transactions.map((t) => el('li', { class: 'small' },
    `${when(t.created_at)} · ${t.type === 'subscription' ? 'Subscription' : 'Credit pack'} · `,
    `${money(t.amount, t.currency)} · ${t.credits} credits`,
    t.amount_refunded ? ` · refunded ${money(t.amount_refunded, t.currency)}` : '')));
  $('payments-empty').hidden = page.transactions.length > 0;
}

function card(pack) {
  const monthly = pack.type === 'subscription';
  const buy = el('button', { type: 'button', text: monthly ? 'Subscribe' : 'Buy', 'data-package': pack.id });
  buy.addEventListener('click', () => checkout(pack, buy, false));
  const prices = [`$${pack.price_usd}`];
  const alipay = state.config?.alipay_enabled && pack.price_cny != null;
  if (alipay) prices.push(`¥${pack.price_cny}`);
  const buttons = [buy];
  if (alipay) {
    const viaAlipay = el('button', {
      type: 'button', class: 'secondary', text: 'Pay with Alipay', 'data-alipay': pack.id,
    });
    viaAlipay.addEventListener('click', () => checkout(pack, viaAlipay, true));
    buttons.push(viaAlipay);
  }
  return el('li', { class: `package${pack.is_popular ? ' popular' : ''}`, 'data-type': pack.type },
    el('strong', { text: pack.name }),
    el('span', { text: `${pack.credits} credits${monthly ? ' a month' : ''}` }),
    el('span', { class: 'muted small', text: `${prices.join(' · ')}${monthly ? ' / month' : ''}` }),
    ...buttons);
}

/** Opens a checkout: Stripe (card, or the simulated page) or Alipay (CNY). */
async function checkout(pack, button, viaAlipay) {
  const error = $('buy-error');
  showError(error, null);
  let fn = pack.type === 'subscription' ? 'create-credit-checkout' : 'create-onetime-checkout';
  if (viaAlipay) fn = 'create-alipay-checkout';
  try {
    const answer = await busy(button, 'Opening checkout…', () =>
      api.post(`/functions/v1/${fn}`, { packageId: pack.id, returnTo: '/' }));
    window.location.assign(answer.url);
  } catch (err) {
    showError(error, err);
  }
}

/** After a checkout: says how it went and reloads the credits until they change. */
export async function handleCheckoutReturn() {
  const params = new URLSearchParams(window.location.search);
  if (!params.has('success') && !params.has('canceled')) return;
  history.replaceState(null, '', window.location.pathname);
  if (params.has('canceled')) {
    notify('Checkout canceled: nothing was charged.');
    return;
  }
  notify('Payment received. Your credits will appear in a moment.');
  const before = state.me?.credits?.available;
  for (let i = 0; i < 10; i += 1) {
    await loadMe();
    if (state.me?.credits?.available !== before) break;
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
  await loadPayments();
}
