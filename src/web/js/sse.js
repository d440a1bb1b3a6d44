// Reading Server-Sent Events from a fetch Response (EventSource cannot send the
// Authorization header).

/** Calls `onEvent({event, id, data})` for every event of `res`'s body until it ends. */
export async function readEvents(res, onEvent) {
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, '\n');
    let cut;
    while ((cut = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      const event = { event: 'message', id: null, data: [] };
      for (const line of block.split('\n')) {
        if (!line || line.startsWith(':')) continue;
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        const val = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
        if (field === 'data') event.data.push(val);
        else if (field === 'event') event.event = val;
        else if (field === 'id') event.id = val;
      }
      if (event.data.length) {
        if (onEvent({ ...event, data: event.data.join('\n') }) === false) {
          await reader.cancel();
          return;
        }
      }
    }
  }
}
