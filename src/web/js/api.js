// Calls to the Atelier API with the bearer token. Every failure becomes an ApiError
// carrying the server's message (the envelope's, or GoTrue's `msg` under /auth/v1).

import * as session from './session.js';

/** A failed request: `status`, `code` and the message to show. */
export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

/** The ApiError for a non-2xx response. */
export async function errorOf(res) {
  let body = null;
  try {
    body = await res.json();
  } catch {
    body = null;
  }
  if (body && body.error && typeof body.error.message === 'string') {
    return new ApiError(res.status, body.error.code, body.error.message, body.error.details);
  }
  if (body && typeof body.msg === 'string') {
    return new ApiError(res.status, body.error_code, body.msg);
  }
  return new ApiError(res.status, 'HTTP_' + res.status, `The server answered ${res.status}.`);
}

/** The message for a request that never reached the server. */
export const OFFLINE = 'Cannot reach the server. Check that Atelier is running, then try again.';

/** A fetch with the access token, renewing it first when close to expiry and once
 *  more on a 401. Answers the Response (ok) or throws an ApiError. */
export async function send(path, init = {}, { auth = true } = {}) {
  if (auth && session.current() && session.secondsLeft() < 30) {
    await session.refresh();
  }
  const attempt = async () => {
    const headers = new Headers(init.headers || {});
    const token = session.current()?.access_token;
    if (auth && token) headers.set('authorization', `Bearer ${token}`);
    try {
      return await fetch(path, { ...init, headers });
    } catch (err) {
      if (err.name === 'AbortError') throw err;
      throw new ApiError(0, 'NETWORK', OFFLINE);
    }
  };
  let res = await attempt();
  if (res.status === 401 && auth && session.current()) {
    await session.refresh();
    res = await attempt();
    if (res.status === 401) {
      session.end('Your session has expired. Please sign in again.');
    }
  }
  if (!res.ok) throw await errorOf(res);
  return res;
}

/** A JSON request; answers the parsed body (null for 204). */
export async function json(method, path, body, options) {
  const init = { method };
  if (body !== undefined) {
    init.headers = { 'content-type': 'application/json' };
    init.body = JSON.stringify(body);
  }
  const res = await send(path, init, options);
  if (res.status === 204) return null;
  return res.json();
}

export const get = (path, options) => json('GET', path, undefined, options);
export const post = (path, body, options) => json('POST', path, body ?? {}, options);
