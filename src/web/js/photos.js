// Product photos: drag-and-drop or the file picker, a signed upload each, a preview,
// and how the photo is used (product and/or style reference).

import * as api from './api.js';
import { $, el, showError, uid } from './dom.js';
import { state, emit } from './state.js';

const EXTENSIONS = { 'image/jpeg': 'jpg', 'image/webp': 'webp' };

/** Wires the drop zone and the file input. */
export function setupPhotos() {
  const zone = $('drop-zone');
  const input = $('file-input');
  input.addEventListener('change', () => {
    uploadAll(input.files);
    input.value = '';
  });
  zone.addEventListener('dragover', (event) => {
    event.preventDefault();
    zone.classList.add('over');
  });
  zone.addEventListener('dragleave', () => zone.classList.remove('over'));
  zone.addEventListener('drop', (event) => {
    event.preventDefault();
    zone.classList.remove('over');
    uploadAll(event.dataTransfer.files);
  });
}

/** Forgets every photo (sign-out). */
export function clearPhotos() {
  state.photos = [];
  $('photos').replaceChildren();
  showError($('upload-error'), null);
}

function uploadAll(files) {
  showError($('upload-error'), null);
  for (const file of Array.from(files || [])) upload(file);
}

async function upload(file) {
  const preview = URL.createObjectURL(file);
  const status = el('span', { class: 'muted small', text: 'Uploading…' });
  const tile = el('li', { class: 'photo busy', 'aria-busy': 'true' },
    el('img', { src: preview, alt: `Preview of ${file.name}` }),
    el('span', { class: 'name', text: file.name }),
    status);
  $('photos').append(tile);
  try {
    const ext = EXTENSIONS[file.type] || 'png';
    const sts = await api.post('/functions/v1/get-oss-sts', {
      bucket: 'uploads', prefix: 'products', key: `products/${uid()}.${ext}`,
    });
    const res = await api.send(sts.uploadUrl, {
      method: 'PUT',
      headers: { 'content-type': file.type || 'application/octet-stream' },
      body: file,
    }, { auth: false });
    const stored = await res.json();
    const photo = { id: uid(), name: file.name, url: stored.url, product: true, reference: false };
    state.photos.push(photo);
    tile.replaceWith(photoTile(photo));
    emit('photos');
  } catch (err) {
    tile.remove();
    const box = $('upload-error');
    const line = el('span', { text: `${file.name}: ${err.message}` });
    if (box.hidden) box.replaceChildren();
    box.append(line, el('br'));
    box.hidden = false;
  } finally {
    URL.revokeObjectURL(preview);
  }
}

function photoTile(photo) {
  const check = (role, label) => {
    const id = `photo-${photo.id}-${role}`;
    const box = el('input', { type: 'checkbox', id, checked: photo[role] });
    box.addEventListener('change', () => {
      photo[role] = box.checked;
      emit('photos');
    });
    return el('span', { class: 'check' }, box, el('label', { for: id, text: label }));
  };
  const remove = el('button', { type: 'button', class: 'link', text: 'Remove' });
  const tile = el('li', { class: 'photo', 'data-photo': photo.id },
    el('img', { src: photo.url, alt: `Product photo ${photo.name}` }),
    el('span', { class: 'name', text: photo.name }),
    check('product', 'Product'),
    check('reference', 'Style reference'),
    remove);
  remove.addEventListener('click', () => {
    state.photos = state.photos.filter((p) => p !== photo);
    tile.remove();
    emit('photos');
  });
  return tile;
}
