// supabase-js against Atelier with `auth.confirm_email` on, the way the reference's
// AuthForm.tsx uses it: signUp answers a user without a session, the 6-digit code comes
// by mail (read here from the fake SMTP server's mailbox), verifyOtp({type:'signup'})
// signs in; then resetPasswordForEmail + verifyOtp({type:'recovery'}) + updateUser
// (password, metadata, e-mail with a code to the new address).
// Run by tests/supabase_js.rs, which sets ATELIER_URL, ATELIER_ANON_KEY and MAILBOX_URL.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createClient } from '@supabase/supabase-js';
import ws from 'ws';

const url = process.env.ATELIER_URL;
const anonKey = process.env.ATELIER_ANON_KEY;
const mailbox = process.env.MAILBOX_URL;

const client = () =>
  createClient(url, anonKey, {
    auth: { persistSession: false, autoRefreshToken: false },
    realtime: { transport: ws },
  });

/** The code of the `n`-th message (1-based) to `to`, waiting up to 10 s. */
async function code(to, n) {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const mails = await (await fetch(`${mailbox}/messages?to=${encodeURIComponent(to)}`)).json();
    if (mails.length >= n) {
      const found = /code is (\d{6})/.exec(mails[n - 1].data);
      assert.ok(found, `a code in: ${mails[n - 1].data}`);
      return found[1];
    }
    assert.ok(Date.now() < deadline, `${n} mails to ${to}, ${mails.length} arrived`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

const wrong = (c) => c.slice(0, 5) + String((Number(c[5]) + 1) % 10);

test('signUp waits for the mailed code; verifyOtp signs in with the bonus', async () => {
  assert.ok(url && anonKey && mailbox, 'ATELIER_URL, ATELIER_ANON_KEY and MAILBOX_URL are set');
  const supabase = client();
  const email = `js-confirm-${Date.now()}@example.com`;
  const password = 'a-long-password';

  const signUp = await supabase.auth.signUp({ email, password, options: { data: { full_name: 'Ada' } } });
  assert.equal(signUp.error, null, `signUp: ${signUp.error?.message}`);
  assert.equal(signUp.data.session, null, 'no session before the code (AuthForm shows the code form)');
  assert.equal(signUp.data.user.email, email);
  assert.equal(signUp.data.user.email_confirmed_at, null);

  const early = await supabase.auth.signInWithPassword({ email, password });
  assert.equal(early.error?.code, 'email_not_confirmed');

  const first = await code(email, 1);
  const bad = await supabase.auth.verifyOtp({ email, token: wrong(first), type: 'signup' });
  assert.equal(bad.error?.code, 'otp_expired');
  assert.equal(bad.data.session, null);

  const verified = await supabase.auth.verifyOtp({ email, token: first, type: 'signup' });
  assert.equal(verified.error, null, `verifyOtp: ${verified.error?.message}`);
  assert.ok(verified.data.session.access_token);
  assert.ok(verified.data.user.email_confirmed_at);
  assert.equal(verified.data.user.user_metadata.full_name, 'Ada');

  const { data: profile, error } = await supabase
    .from('profiles')
    .select('purchased_credits')
    .eq('id', verified.data.user.id)
    .single();
  assert.equal(error, null, `profiles: ${error?.message}`);
  assert.equal(profile.purchased_credits, 30, 'the signup bonus, on confirmation');

  const again = await supabase.auth.verifyOtp({ email, token: first, type: 'signup' });
  assert.equal(again.error?.code, 'otp_expired', 'a code confirms once');
});

test('resetPasswordForEmail, verifyOtp recovery and updateUser', async () => {
  const supabase = client();
  const email = `js-recover-${Date.now()}@example.com`;
  const password = 'the-first-password';
  await supabase.auth.signUp({ email, password });
  const signupCode = await code(email, 1);
  assert.equal((await supabase.auth.verifyOtp({ email, token: signupCode, type: 'signup' })).error, null);
  await supabase.auth.signOut();

  const unknown = await supabase.auth.resetPasswordForEmail(`nobody-${Date.now()}@example.com`);
  assert.equal(unknown.error, null, 'an unknown address gets the same answer');
  const reset = await supabase.auth.resetPasswordForEmail(email);
  assert.equal(reset.error, null, `recover: ${reset.error?.message}`);
  const recoveryCode = await code(email, 2);
  const recovered = await supabase.auth.verifyOtp({ email, token: recoveryCode, type: 'recovery' });
  assert.equal(recovered.error, null, `recovery: ${recovered.error?.message}`);

  const updated = await supabase.auth.updateUser({
    password: 'the-second-password',
    data: { full_name: 'Grace Hopper' },
  });
  assert.equal(updated.error, null, `updateUser: ${updated.error?.message}`);
  assert.equal(updated.data.user.user_metadata.full_name, 'Grace Hopper');
  const old = await client().auth.signInWithPassword({ email, password });
  assert.equal(old.error?.code, 'invalid_credentials');
  const fresh = await client().auth.signInWithPassword({ email, password: 'the-second-password' });
  assert.equal(fresh.error, null);

  const newEmail = `js-moved-${Date.now()}@example.com`;
  const moving = await supabase.auth.updateUser({ email: newEmail });
  assert.equal(moving.error, null, `updateUser email: ${moving.error?.message}`);
  assert.equal(moving.data.user.email, email, 'unchanged until confirmed');
  assert.equal(moving.data.user.new_email, newEmail);
  const changeCode = await code(newEmail, 1);
  const moved = await supabase.auth.verifyOtp({ email: newEmail, token: changeCode, type: 'email_change' });
  assert.equal(moved.error, null, `email_change: ${moved.error?.message}`);
  assert.equal(moved.data.user.email, newEmail);
  const user = await supabase.auth.getUser();
  assert.equal(user.data.user.email, newEmail);
});
