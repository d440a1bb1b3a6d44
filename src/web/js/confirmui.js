// The confirmation step of a signup when the server confirms addresses
// (`auth.confirm_email`): the signup answers a user without a session and mails a
// 6-digit code, which POST /auth/v1/verify turns into a session.

import * as api from './api.js';
import * as session from './session.js';
import { $, busy, showError } from './dom.js';

let email = '';

/** Wires the code form (the studio's page has one; the console's has none);
 *  `done` runs once a code signed the user in. */
export function setupConfirmForm(done) {
  const form = document.getElementById('confirm-form');
  if (!form) return null;
  const error = $('confirm-error');
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    showError(error, null);
    const token = $('confirm-code').value.replace(/\s+/g, '');
    try {
      const answer = await busy($('confirm-submit'), 'Confirming…', () =>
        api.post('/auth/v1/verify', { type: 'signup', email, token }, { auth: false }));
      $('confirm-code').value = '';
      form.hidden = true;
      $('auth-form').hidden = false;
      $('auth-switch').hidden = false;
      done();
      session.save(answer);
    } catch (err) {
      showError(error, err);
    }
  });
  $('confirm-resend').addEventListener('click', async () => {
    showError(error, null);
    try {
      await busy($('confirm-resend'), 'Sending…', () =>
        api.post('/auth/v1/resend', { type: 'signup', email }, { auth: false }));
      $('confirm-sent').textContent = `A new code is on its way to ${email}.`;
    } catch (err) {
      showError(error, err);
    }
  });
  return {
    /** Shows the code form for `address`. */
    ask(address) {
      email = address;
      $('auth-form').hidden = true;
      $('auth-switch').hidden = true;
      form.hidden = false;
      $('confirm-sent').textContent = `We sent a 6-digit code to ${address}. Enter it to finish.`;
      $('confirm-code').focus();
    },
  };
}
