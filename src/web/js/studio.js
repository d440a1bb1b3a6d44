// The studio's entry module: sign-in, then credits, photos, the job form, jobs,
// gallery, packages and history.

import * as api from './api.js';
import * as session from './session.js';
import { $, notify } from './dom.js';
import { state, on } from './state.js';
import { setupAuthForm, signOut } from './authui.js';
import { loadMe, refreshCredits } from './credits.js';
import { setupPhotos, clearPhotos } from './photos.js';
import { setupJobForm, fillModels } from './jobform.js';
import { loadJobs, stopAll } from './jobs.js';
import { setupGallery, render as renderGallery } from './gallery.js';
import { loadLedger, refreshLedger } from './ledger.js';
import { loadPackages, handleCheckoutReturn } from './packages.js';
import { setupAnalysis } from './analysis.js';
import { setupGrowth, loadInvite } from './growth.js';
import { watchMaintenance, showMaintenance } from './maintenance.js';

const auth = setupAuthForm();
watchMaintenance();
setupPhotos();
setupJobForm();
setupGallery();
setupAnalysis();
setupGrowth();
on('job', refreshCredits);
on('job-done', refreshLedger);
$('sign-out').addEventListener('click', signOut);

let userId = null;

async function enter() {
  const claims = session.claims();
  if (claims?.sub === userId) return;
  userId = claims?.sub || null;
  $('account-email').textContent = claims?.email || '';
  $('signed-out').hidden = true;
  $('signed-in').hidden = false;
  $('account').hidden = false;
  notify('');
  try {
    state.config = await api.get('/functions/v1/get-public-config', { auth: false });
    showMaintenance(state.config);
  } catch (err) {
    notify(err.message, 'error');
  }
  fillModels();
  await loadMe();
  await Promise.all([loadJobs(), loadLedger(), loadPackages(), loadInvite()]);
  renderGallery();
  await handleCheckoutReturn();
}

function leave(message) {
  userId = null;
  stopAll();
  clearPhotos();
  renderGallery();
  $('signed-in').hidden = true;
  $('account').hidden = true;
  $('signed-out').hidden = false;
  auth.explain(message);
}

session.onChange((current, message) => (current ? enter() : leave(message)));
if (session.current()) {
  session.resume();
  enter();
} else {
  leave('');
}
