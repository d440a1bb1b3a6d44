// What the studio's modules share: the public config, the account, the photos, the
// jobs; and a tiny event bus between them.

export const state = {
  config: null,
  me: null,
  photos: [],
  jobs: new Map(),
};

const bus = new EventTarget();

/** Announces `name` (credits | photos | job | job-done | jobs) with `detail`. */
export function emit(name, detail) {
  bus.dispatchEvent(new CustomEvent(name, { detail }));
}

/** Runs `fn(detail)` on every `name`. */
export function on(name, fn) {
  bus.addEventListener(name, (event) => fn(event.detail));
}

/** Calls `fn` at most once per `ms`, after the last call. */
export function debounce(fn, ms) {
  let timer = null;
  return () => {
    clearTimeout(timer);
    timer = setTimeout(fn, ms);
  };
}
