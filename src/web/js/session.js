// The signed-in session: kept in sessionStorage (never in URLs or cookies), refreshed a
// minute before the access token expires. A session that cannot be refreshed ends with
// a message for the sign-in form.

const KEY = 'atelier.session';
const listeners = new Set();
let timer = null;
let refreshing = null;

/** The stored session, or null. */
export function current() {
  try {
    return JSON.parse(sessionStorage.getItem(KEY) || 'null');
  } catch {
    return null;
  }
}

/** The access token's claims (role, email, exp), or null. */
export function claims() {
  const token = current()?.access_token;
  if (!token) return null;
  try {
    const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    return JSON.parse(atob(part.padEnd(part.length + ((4 - (part.length % 4)) % 4), '=')));
  } catch {
    return null;
  }
}

/** Calls `fn(session, message)` whenever the session starts or ends. */
export function onChange(fn) {
  listeners.add(fn);
}

function emit(message) {
  const session = current();
  for (const fn of listeners) fn(session, message);
}

/** Stores a session answered by /auth/v1 and schedules its refresh. */
export function save(session) {
  sessionStorage.setItem(KEY, JSON.stringify(session));
  schedule();
  emit('');
}

/** Forgets the session; `message` is shown on the sign-in form. */
export function end(message = '') {
  sessionStorage.removeItem(KEY);
  clearTimeout(timer);
  timer = null;
  emit(message);
}

/** Seconds until the access token expires. */
export function secondsLeft() {
  const session = current();
  if (!session) return 0;
  return (session.expires_at || 0) - Date.now() / 1000;
}

function schedule() {
  clearTimeout(timer);
  const wait = Math.max(5, secondsLeft() - 60) * 1000;
  timer = setTimeout(() => refresh().catch(() => {}), Math.min(wait, 2 ** 31 - 1));
}

/** Exchanges the refresh token for a new session (one exchange at a time). */
export function refresh() {
  if (refreshing) return refreshing;
  const session = current();
  if (!session) return Promise.reject(new Error('not signed in'));
  refreshing = (async () => {
    let res;
    try {
      res = await fetch('/auth/v1/token?grant_type=refresh_token', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ refresh_token: session.refresh_token }),
      });
    } catch {
      schedule();
      throw new Error('Cannot reach the server to renew the session.');
    }
    if (!res.ok) {
      end('Your session has expired. Please sign in again.');
      throw new Error('Your session has expired. Please sign in again.');
    }
    save(await res.json());
    return current();
  })();
  refreshing.finally(() => { refreshing = null; }).catch(() => {});
  return refreshing;
}

/** Starts the refresh timer for a session kept from before a reload. */
export function resume() {
  if (!current()) return;
  if (secondsLeft() < 30) {
    refresh().catch(() => {});
  } else {
    schedule();
  }
}
