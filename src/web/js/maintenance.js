// The maintenance banner: shown on every studio view while the operator has switched
// maintenance on (read from get-public-config, checked again every minute).

import * as api from './api.js';
import { $ } from './dom.js';

const EVERY_MS = 60_000;

/** Shows or hides the banner from a public config. */
export function showMaintenance(config) {
  const banner = $('maintenance-banner');
  const maintenance = config && config.maintenance;
  banner.hidden = !(maintenance && maintenance.enabled);
  $('maintenance-message').textContent = banner.hidden ? '' : maintenance.message;
}

async function check() {
  try {
    showMaintenance(await api.get('/functions/v1/get-public-config', { auth: false }));
  } catch {
    // The banner keeps its last state when the server cannot be reached.
  }
}

/** Checks now and every minute. */
export function watchMaintenance() {
  check();
  setInterval(check, EVERY_MS);
}
