// The reference's RPCs through supabase-js's own `supabase.rpc(name, args)`, with the
// signatures of oscar-47/Oscar2 @ 2f6e874
// supabase/migrations/20260302120000_referral_and_redeem.sql: `bind_invite_code(p_code text)`
// (L137, answer L210) and `claim_redeem_code(p_code text)` (L219, answer L280–284). The
// reference's client has no call site for either (grep `.rpc(` finds only server ones),
// so the calls are written as supabase-js documents them.
// Run by tests/supabase_js.rs (ATELIER_URL, ATELIER_ANON_KEY, ATELIER_REDEEM_CODE worth
// ATELIER_REDEEM_CREDITS).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createClient } from '@supabase/supabase-js';
import ws from 'ws';

const url = process.env.ATELIER_URL;
const anonKey = process.env.ATELIER_ANON_KEY;
const redeemCode = process.env.ATELIER_REDEEM_CODE;
const redeemCredits = Number(process.env.ATELIER_REDEEM_CREDITS);

function client() {
  return createClient(url, anonKey, {
    auth: { persistSession: false, autoRefreshToken: false },
    realtime: { transport: ws },
  });
}

async function signedIn() {
  const supabase = client();
  const email = `rpc-${Date.now()}-${Math.random().toString(36).slice(2)}@example.com`;
  const { data, error } = await supabase.auth.signUp({ email, password: 'a-long-password' });
  assert.equal(error, null, `signUp: ${error?.message}`);
  return { supabase, user: data.user };
}

async function profile(supabase, uid) {
  const { data, error } = await supabase
    .from('profiles')
    .select('invite_code, invited_by_user_id, purchased_credits')
    .eq('id', uid)
    .single();
  assert.equal(error, null, `profile: ${error?.message}`);
  return data;
}

test('bind_invite_code and claim_redeem_code through supabase.rpc', async () => {
  const inviter = await signedIn();
  const invitee = await signedIn();
  const { invite_code: code } = await profile(inviter.supabase, inviter.user.id);
  assert.match(code, /^[A-Z0-9]{8}$/);

  // Without a user (the anon key alone): the function answers UNAUTHORIZED, as auth.uid() is null.
  const anon = await client().rpc('bind_invite_code', { p_code: code });
  assert.equal(anon.error, null);
  assert.deepEqual(anon.data, { success: false, code: 'UNAUTHORIZED', message: 'Unauthorized' });

  const self = await inviter.supabase.rpc('bind_invite_code', { p_code: code });
  assert.equal(self.data.success, false);
  assert.equal(self.data.code, 'SELF_BIND_NOT_ALLOWED');

  const bound = await invitee.supabase.rpc('bind_invite_code', { p_code: code });
  assert.equal(bound.error, null, bound.error?.message);
  assert.deepEqual(bound.data, { success: true, inviter_user_id: inviter.user.id });
  const again = await invitee.supabase.rpc('bind_invite_code', { p_code: code });
  assert.equal(again.data.code, 'ALREADY_BOUND');
  assert.equal((await profile(invitee.supabase, invitee.user.id)).invited_by_user_id, inviter.user.id);

  const before = (await profile(invitee.supabase, invitee.user.id)).purchased_credits;
  const claimed = await invitee.supabase.rpc('claim_redeem_code', { p_code: redeemCode.toLowerCase() });
  assert.equal(claimed.error, null, claimed.error?.message);
  assert.equal(claimed.data.success, true);
  assert.equal(claimed.data.credits, redeemCredits);
  assert.equal(typeof claimed.data.claim_id, 'string');
  assert.equal((await profile(invitee.supabase, invitee.user.id)).purchased_credits, before + redeemCredits);
  const twice = await invitee.supabase.rpc('claim_redeem_code', { p_code: redeemCode });
  assert.equal(twice.data.code, 'ALREADY_CLAIMED');

  // An unknown function, or an unknown argument name: PostgREST's PGRST202 as error.
  const unknown = await invitee.supabase.rpc('no_such_function', { p_code: code });
  assert.equal(unknown.data, null);
  assert.equal(unknown.error.code, 'PGRST202');
  assert.equal(unknown.status, 404);
  const wrongArgs = await invitee.supabase.rpc('claim_redeem_code', { code: redeemCode });
  assert.equal(wrongArgs.error.code, 'PGRST202');
});
