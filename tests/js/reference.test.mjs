// The reference front end's (oscar-47/Oscar2 @ 2f6e874) own supabase-js calls, replayed
// exactly as its files write them, against Atelier's /rest/v1 and /realtime/v1.
// Run by tests/supabase_js.rs (ATELIER_URL, ATELIER_ANON_KEY; local model with a delay).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createClient } from '@supabase/supabase-js';
import ws from 'ws';

const url = process.env.ATELIER_URL;
const anonKey = process.env.ATELIER_ANON_KEY;
const PNG =
  'data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAgAAAAICAIAAABLbSncAAAAEUlEQVR4nGM4ISeHFTEMLQkAkL9BAbKfPiIAAAAASUVORK5CYII=';
const STARTER_PACK = '0190a000-0000-7000-8000-000000000004';

async function signedIn(vsn) {
  const supabase = createClient(url, anonKey, {
    auth: { persistSession: false, autoRefreshToken: false },
    realtime: { transport: ws, ...(vsn ? { vsn } : {}) },
  });
  const email = `ref-${Date.now()}-${Math.random().toString(36).slice(2)}@example.com`;
  const { data, error } = await supabase.auth.signUp({ email, password: 'a-long-password' });
  assert.equal(error, null, `signUp: ${error?.message}`);
  // supabase-js hands the session token to realtime on SIGNED_IN; make it explicit.
  supabase.realtime.setAuth(data.session.access_token);
  return { supabase, user: data.user };
}

function subscribed(channel) {
  return new Promise((resolve, reject) => {
    channel.subscribe((status, err) => {
      if (status === 'SUBSCRIBED') resolve();
      else if (status === 'CHANNEL_ERROR' || status === 'TIMED_OUT') reject(err ?? new Error(status));
    });
  });
}

function within(ms, what) {
  return new Promise((_, reject) => setTimeout(() => reject(new Error(`timed out: ${what}`)), ms));
}

async function startJob(supabase, imageCount = 1) {
  const { data, error } = await supabase.functions.invoke('generate-image', {
    body: { model: 'local', prompt: 'a red box', imageCount, productImage: PNG },
  });
  assert.equal(error, null, `invoke: ${error?.message}`);
  return data.job_id;
}

for (const vsn of ['1.0.0', '2.0.0']) {
  test(`waitForJob: poll .single() and the wait: channel (vsn ${vsn})`, async () => {
    const { supabase, user } = await signedIn(vsn);
    const jobId = await startJob(supabase);
    // lib/hooks/useWaitForJob.ts L32: the poll.
    const checkOnce = async () => {
      const { data } = await supabase.from('generation_jobs').select('*').eq('id', jobId).single();
      return data;
    };
    const first = await checkOnce();
    assert.equal(first.id, jobId);
    assert.equal(first.user_id, user.id);
    assert.equal(first.status, 'processing');
    // lib/hooks/useWaitForJob.ts L39–44: the channel, resolved from payload.new.
    let resolveDone;
    const done = new Promise((r) => { resolveDone = r; });
    const seen = [];
    const channel = supabase.channel(`wait:${jobId}`)
      .on('postgres_changes', { event: 'UPDATE', schema: 'public', table: 'generation_jobs', filter: `id=eq.${jobId}` }, (p) => {
        const job = p.new;
        seen.push(job.status);
        if (job.status === 'success') resolveDone(job);
      });
    await subscribed(channel);
    const job = await Promise.race([done, within(15000, 'the channel never said success')]);
    assert.equal(job.id, jobId);
    assert.ok(job.result_url.startsWith(url), `absolute: ${job.result_url}`);
    assert.ok(Array.isArray(job.result_data.images));
    assert.equal(seen.at(-1), 'success');
    const last = await checkOnce();
    assert.equal(last.status, 'success');
    assert.deepEqual(last.result_url, job.result_url);
    await supabase.removeChannel(channel);
    await supabase.realtime.disconnect();
  });
}

test("useCredits: the profile read and its profile: channel see a hold and a capture", async () => {
  const { supabase, user } = await signedIn();
  const uid = user.id;
  // lib/hooks/useCredits.ts L95–108.
  const [{ data: profileData }, { data: paidTransactions }] = await Promise.all([
    supabase
      .from('profiles')
      .select('subscription_credits, purchased_credits, subscription_plan, subscription_status')
      .eq('id', uid)
      .single(),
    supabase
      .from('transactions')
      .select('id')
      .eq('user_id', uid)
      .eq('status', 'completed')
      .gt('amount', 0)
      .limit(1),
  ]);
  assert.deepEqual(profileData, {
    subscription_credits: 0, purchased_credits: 30, subscription_plan: null, subscription_status: null,
  });
  assert.deepEqual(paidTransactions, []);
  // lib/hooks/useCredits.ts L117–132.
  const updates = [];
  let captured;
  const settled = new Promise((r) => { captured = r; });
  const channel = supabase
    .channel(`profile:${uid}`)
    .on('postgres_changes', { event: 'UPDATE', schema: 'public', table: 'profiles', filter: `id=eq.${uid}` }, (payload) => {
      updates.push(payload.new.purchased_credits);
      if (payload.new.purchased_credits === 28 && updates.length >= 2) captured(payload.new);
    });
  await subscribed(channel);
  await startJob(supabase, 2);
  const profile = await Promise.race([settled, within(15000, `credit updates: ${updates}`)]);
  assert.equal(profile.id, uid);
  assert.equal(updates[0], 28, 'the hold is visible at once (spendable credits)');
  const { data: after } = await supabase.from('profiles').select('purchased_credits').eq('id', uid).single();
  assert.equal(after.purchased_credits, 28);
  await supabase.removeChannel(channel);
  await supabase.realtime.disconnect();
});

test('ProfilePage and PricingPage: transactions after a purchase, packages', async () => {
  const { supabase, user } = await signedIn();
  const uid = user.id;
  const { data: session, error } = await supabase.functions.invoke('create-onetime-checkout', {
    body: { packageId: STARTER_PACK },
  });
  assert.equal(error, null, `checkout: ${error?.message}`);
  const paid = await fetch(`${session.url}/pay`, { method: 'POST', redirect: 'manual' });
  assert.equal(paid.status, 303);
  // components/profile/ProfilePage.tsx L72–84.
  const [{ data: profileData, error: profileError }, { data: paidTransactions }] = await Promise.all([
    supabase
      .from('profiles')
      .select('email, phone, full_name, subscription_plan, subscription_status, current_period_end, subscription_credits, purchased_credits, stripe_customer_id')
      .eq('id', uid)
      .single(),
    supabase
      .from('transactions')
      .select('plan, amount, credits, created_at')
      .eq('user_id', uid)
      .eq('status', 'completed')
      .gt('amount', 0)
      .order('created_at', { ascending: false })
      .limit(20),
  ]);
  assert.equal(profileError, null);
  assert.equal(profileData.email, user.email);
  assert.equal(profileData.purchased_credits, 280);
  assert.equal(paidTransactions.length, 1);
  assert.equal(paidTransactions[0].plan, 'Starter Pack');
  assert.equal(paidTransactions[0].amount, 5);
  assert.equal(paidTransactions[0].credits, 250);
  // components/pricing/PricingPage.tsx L189–192 (the anon client, as on the page).
  const anon = createClient(url, anonKey, { auth: { persistSession: false }, realtime: { transport: ws } });
  const { data: packages, error: packagesError } = await anon
    .from('packages')
    .select('id,name,type,price_usd,credits,first_sub_bonus,stripe_price_id,stripe_price_id_cny,stripe_price_id_hkd,is_popular,sort_order')
    .eq('active', true)
    .order('sort_order');
  assert.equal(packagesError, null);
  assert.equal(packages.length, 6);
  assert.deepEqual(packages.map((p) => p.sort_order), [1, 2, 3, 4, 5, 6]);
  // Anonymous reads of private relations are empty; writes are refused.
  const { data: jobs } = await anon.from('generation_jobs').select('*');
  assert.deepEqual(jobs, []);
  const { error: writeError } = await supabase.from('profiles').update({ purchased_credits: 99999 }).eq('id', uid);
  assert.equal(writeError.code, '42501');
  // .maybeSingle() on nothing is null without an error.
  const { data: none, error: noneError } = await supabase.from('generation_jobs').select('*').eq('id', 'nope').maybeSingle();
  assert.equal(noneError, null);
  assert.equal(none, null);
});

