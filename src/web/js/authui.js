// The sign-in / sign-up form shared by the studio and the admin console.

import * as api from './api.js';
import * as session from './session.js';
import { $, busy, showError } from './dom.js';
import { setupConfirmForm } from './confirmui.js';

/** Wires the form; `allowSignup` adds the "create an account" switch. */
export function setupAuthForm({ allowSignup = true } = {}) {
  const form = $('auth-form');
  const submit = $('auth-submit');
  const title = $('auth-title');
  const error = $('auth-error');
  const password = $('auth-password');
  let signingUp = false;

  const mode = (signup) => {
    signingUp = signup;
    title.textContent = signup ? 'Create an account' : 'Sign in';
    submit.textContent = signup ? 'Create account' : 'Sign in';
    password.autocomplete = signup ? 'new-password' : 'current-password';
    const toggle = document.getElementById('auth-switch');
    if (toggle) {
      toggle.textContent = signup ? 'Have an account? Sign in' : 'New here? Create an account';
    }
    showError(error, null);
  };
  const confirm = setupConfirmForm(() => mode(false));
  const toggle = document.getElementById('auth-switch');
  if (toggle) {
    toggle.hidden = !allowSignup;
    toggle.addEventListener('click', () => mode(!signingUp));
  }

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    showError(error, null);
    const body = { email: $('auth-email').value.trim(), password: password.value };
    const path = signingUp ? '/auth/v1/signup' : '/auth/v1/token?grant_type=password';
    const label = signingUp ? 'Creating account…' : 'Signing in…';
    try {
      const answer = await busy(submit, label, () => api.post(path, body, { auth: false }));
      password.value = '';
      // A signup that waits for its mailed code answers the user without a session.
      if (!answer.access_token && confirm) return confirm.ask(body.email);
      session.save(answer);
    } catch (err) {
      showError(error, err);
    }
  });
  mode(false);

  return {
    /** Shows why the user is back at the form (e.g. an expired session). */
    explain(message) {
      showError(error, message ? new Error(message) : null);
    },
  };
}

/** Signs out on the server (best effort) and forgets the session. */
export async function signOut() {
  try {
    await api.post('/auth/v1/logout', {});
  } catch {
    // The session ends locally either way.
  }
  session.end('');
}
