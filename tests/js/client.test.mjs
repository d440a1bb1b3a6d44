// The official supabase-js client against a running Atelier: sign up, sign in, refresh,
// invoke generate-image with the offline `local` model, poll the job to success.
// Run by tests/supabase_js.rs, which starts the server and sets ATELIER_URL/ANON_KEY.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createClient } from '@supabase/supabase-js';
import ws from 'ws';

const url = process.env.ATELIER_URL;
const anonKey = process.env.ATELIER_ANON_KEY;
const PNG =
  'data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAgAAAAICAIAAABLbSncAAAAEUlEQVR4nGM4ISeHFTEMLQkAkL9BAbKfPiIAAAAASUVORK5CYII=';

test('supabase-js signs up, refreshes and runs a generation job', async () => {
  assert.ok(url && anonKey, 'ATELIER_URL and ATELIER_ANON_KEY are set');
  const supabase = createClient(url, anonKey, {
    auth: { persistSession: false, autoRefreshToken: false },
    // Node 20 has no native WebSocket; realtime is not used, but the client builds it.
    realtime: { transport: ws },
  });
  const email = `js-${Date.now()}@example.com`;
  const password = 'a-long-password';

  const signUp = await supabase.auth.signUp({ email, password });
  assert.equal(signUp.error, null, `signUp: ${signUp.error?.message}`);
  assert.ok(signUp.data.session?.access_token, 'signUp returns a session');
  assert.equal(signUp.data.user.email, email);

  const duplicate = await supabase.auth.signUp({ email, password });
  assert.ok(duplicate.error, 'a second signUp with the same email fails');
  assert.equal(duplicate.error.code, 'user_already_exists');

  const wrong = await supabase.auth.signInWithPassword({ email, password: 'not-the-password' });
  assert.equal(wrong.error?.code, 'invalid_credentials');

  const signIn = await supabase.auth.signInWithPassword({ email, password });
  assert.equal(signIn.error, null, `signIn: ${signIn.error?.message}`);
  const first = signIn.data.session;
  assert.ok(first.refresh_token);

  const refreshed = await supabase.auth.refreshSession();
  assert.equal(refreshed.error, null, `refresh: ${refreshed.error?.message}`);
  assert.notEqual(refreshed.data.session.refresh_token, first.refresh_token, 'rotated');

  const me = await supabase.auth.getUser();
  assert.equal(me.error, null);
  assert.equal(me.data.user.email, email);

  const invoked = await supabase.functions.invoke('generate-image', {
    body: {
      model: 'local', prompt: 'a red box', imageCount: 2, aspectRatio: '16:9',
      productImage: PNG,
    },
  });
  assert.equal(invoked.error, null, `invoke: ${invoked.error?.message}`);
  assert.equal(invoked.data.status, 'processing');
  const jobId = invoked.data.job_id;
  assert.ok(jobId);

  const token = refreshed.data.session.access_token;
  const deadline = Date.now() + 20_000;
  let job;
  for (;;) {
    const res = await fetch(`${url}/v1/jobs/${jobId}`, {
      headers: { Authorization: `Bearer ${token}` },
    });
    assert.equal(res.status, 200);
    job = await res.json();
    if (job.status !== 'processing') break;
    assert.ok(Date.now() < deadline, `job still processing: ${JSON.stringify(job)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal(job.status, 'success', JSON.stringify(job));
  assert.equal(job.result_data.images.length, 2);
  assert.equal(job.cost_amount, 2);

  const refused = await supabase.functions.invoke('generate-image', {
    body: { model: 'local', prompt: '   ', productImage: PNG },
  });
  assert.ok(refused.error, 'an empty prompt is refused');
  const envelope = await refused.error.context.json();
  assert.equal(envelope.error.code, 'IMAGE_INPUT_PROMPT_MISSING');

  const out = await supabase.auth.signOut();
  assert.equal(out.error, null);
});
