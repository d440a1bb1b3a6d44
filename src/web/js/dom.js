// Small DOM helpers. Text is always set with textContent, never parsed as HTML.

/** The element with this id (throws if the page lacks it). */
export function $(id) {
  const node = document.getElementById(id);
  if (!node) throw new Error(`missing #${id}`);
  return node;
}

/** A new element: `attrs` are properties or attributes, children are nodes or text. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'text') node.textContent = String(value);
    else if (key === 'class') node.className = value;
    else if (key.startsWith('data-') || key.startsWith('aria-') || key === 'for' || key === 'role') {
      node.setAttribute(key, String(value));
    } else node[key] = value;
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** Shows or hides a node. */
export function show(node, visible) {
  node.hidden = !visible;
}

/** Writes an error's message into an alert node (or hides it for `null`). */
export function showError(node, err) {
  node.textContent = err ? (err.message || String(err)) : '';
  node.hidden = !err;
}

/** Disables `button` with a busy label while `work` runs; returns its result. */
export async function busy(button, label, work) {
  const before = button.textContent;
  button.disabled = true;
  button.setAttribute('aria-busy', 'true');
  button.textContent = label;
  try {
    return await work();
  } finally {
    button.disabled = false;
    button.removeAttribute('aria-busy');
    button.textContent = before;
  }
}

/** A short page-wide message (`kind`: info | error). */
export function notify(message, kind = 'info') {
  const box = $('notice');
  box.textContent = message;
  box.className = `notice ${kind}`;
  box.hidden = !message;
}

/** Hides the page-wide message if it still says `message`. */
export function clearNotice(message) {
  const box = $('notice');
  if (box.textContent === message) box.hidden = true;
}

/** A random id for idempotency keys (works outside secure contexts too). */
export function uid() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

/** "2026-11-30 06:35" in the browser's time zone. */
export function when(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return '';
  return date.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
}
