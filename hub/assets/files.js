// Print files (`/files`): upload with progress (operators), then every file with its
// pictures, plates, times and the filaments each plate needs; download; delete.

import { html, useState } from './lib.js';
import { api, upload } from './api.js';
import { me, printers, useQuery } from './store.js';
import { Badge, EmptyState, ErrorBox, Field, Loading, confirmDialog, toast, useTitle } from './ui.js';
import { bytes, dateTime, duration } from './format.js';
import { markFailed, markLoaded, printerName } from './widgets.js';

export default function FilesPage() {
  useTitle('Files');
  const files = useQuery(() => api('/files?limit=200', { resource: 'FileList' }), []);
  const canUpload = me.value?.role === 'operator' || me.value?.role === 'admin';

  function uploaded(file) {
    files.update((data) => {
      const rest = (data?.files ?? []).filter((f) => f.id !== file.id);
      return { files: [file, ...rest] };
    });
  }

  function removed(id) {
    files.update((data) => ({ files: (data?.files ?? []).filter((f) => f.id !== id) }));
  }

  let list;
  if (!files.data) list = files.error ? html`<${ErrorBox} error=${files.error} />` : html`<${Loading}>Loading files…<//>`;
  else if (!files.data.files.length) {
    list = html`<${EmptyState} title="No files yet">
      <p>Upload a sliced file: a .gcode.3mf from Bambu Studio or OrcaSlicer, or a .gcode from PrusaSlicer, OrcaSlicer or Cura.</p>
    <//>`;
  } else {
    list = html`<ul class="file-list" data-testid="file-list">
      ${files.data.files.map((file) => html`<${FileCard} key=${file.id} file=${file} canDelete=${canUpload} onDeleted=${removed} />`)}
    </ul>`;
  }

  return html`<div class="page">
    <div class="page-head"><div><h1>Files</h1>
      <p class="muted">Sliced files, each kept once; what the slicer wrote is read on upload.</p>
    </div></div>
    ${canUpload ? html`<${UploadForm} onUploaded=${uploaded} />` : null}
    ${list}
  </div>`;
}

function UploadForm({ onUploaded }) {
  const [file, setFile] = useState(null);
  const [printer, setPrinter] = useState('');
  const [progress, setProgress] = useState(null);
  const [error, setError] = useState(null);
  const known = [...printers.value.values()].map((p) => p.value).sort((a, b) => printerName(a).localeCompare(printerName(b)));

  async function submit(event) {
    event.preventDefault();
    if (!file) return;
    setError(null);
    setProgress({ sent: 0, total: file.size });
    try {
      const query = printer ? `?printer=${encodeURIComponent(printer)}` : '';
      const { data, status } = await upload(`/files${query}`, file, {
        resource: 'FileView',
        onProgress: (sent, total) => setProgress({ sent, total }),
      });
      onUploaded(data);
      toast(status === 201 ? `${data.name} uploaded` : `${data.name} was already here`, 'success');
      event.target.reset();
      setFile(null);
    } catch (failure) {
      if (failure.status !== 401) setError(failure);
    } finally {
      setProgress(null);
    }
  }

  const percent = progress && progress.total ? Math.min(100, Math.round((progress.sent / progress.total) * 100)) : 0;
  return html`<form class="card upload" aria-label="Upload a file" onSubmit=${submit}>
    <div class="form-row">
      <${Field} label="Sliced file" hint=".gcode.3mf, .3mf with sliced plates, or .gcode" control=${(id, hint) => html`<input
        id=${id} type="file" name="file" accept=".3mf,.gcode,.gco" aria-describedby=${hint} data-testid="upload-input"
        onChange=${(e) => setFile(e.currentTarget.files?.[0] ?? null)} />`} />
      <${Field} label="For printer (optional)" hint="Checks that the file was sliced for it" control=${(id, hint) => html`<select
        id=${id} name="printer" aria-describedby=${hint} value=${printer} onChange=${(e) => setPrinter(e.currentTarget.value)}>
        <option value="">Any printer</option>
        ${known.map((p) => html`<option key=${p.id} value=${p.id}>${printerName(p)}</option>`)}
      </select>`} />
      <div class="field field-action">
        <button type="submit" class="btn btn-primary" disabled=${!file || progress} data-testid="upload-submit">Upload</button>
      </div>
    </div>
    ${progress ? html`<div class="upload-progress" data-testid="upload-progress">
      <progress max="100" value=${percent} aria-label="Upload progress">${percent}%</progress>
      <span class="muted">${percent < 100 ? `${bytes(progress.sent)} of ${bytes(progress.total)}` : 'Reading the file…'}</span>
    </div>` : null}
    ${error ? html`<${ErrorBox} error=${error} />` : null}
  </form>`;
}

function FileCard({ file, canDelete, onDeleted }) {
  const picture = file.plates.find((p) => p.thumbnail_url)?.thumbnail_url ?? file.thumbnails[0]?.url;
  const [deleting, setDeleting] = useState(false);

  async function remove() {
    const sure = await confirmDialog({
      title: `Delete ${file.name}?`,
      body: 'The file and its pictures are removed from the hub.',
      confirmLabel: 'Delete',
      danger: true,
    });
    if (!sure) return;
    setDeleting(true);
    try {
      await api(`/files/${file.id}`, { method: 'DELETE' });
      onDeleted(file.id);
      toast(`${file.name} deleted`);
    } catch (failure) {
      if (failure.status !== 401) toast(failure.message, 'error');
      setDeleting(false);
    }
  }

  const sliced = [file.slicer, file.slicer_version].filter(Boolean).join(' ');
  return html`<li class="card file-card" data-testid="file-card" data-file=${file.id}>
    <div class="file-head">
      ${picture
        ? html`<img class="file-thumb" src=${picture} alt=${`Preview of ${file.name}`} loading="lazy" width="96" height="96"
            onLoad=${markLoaded} onError=${markFailed} />`
        : html`<div class="file-thumb file-thumb-none" aria-hidden="true">No picture</div>`}
      <div class="file-summary">
        <h2 class="file-name">${file.name}</h2>
        <p class="muted">
          ${file.printer_model ? html`For <strong>${file.printer_model}</strong>` : 'No printer named'}
          ${file.nozzle_diameter ? ` · ${file.nozzle_diameter} mm nozzle` : ''}
          ${file.bed_type ? ` · ${file.bed_type}` : ''}
        </p>
        <p class="muted">${bytes(file.size)} · ${sliced || 'unknown slicer'} · uploaded by ${file.uploaded_by}, ${dateTime(file.uploaded_at)}</p>
      </div>
      <div class="file-actions">
        <a class="btn" href=${`/api/v1/files/${file.id}/content`} download=${file.name}>Download</a>
        ${canDelete ? html`<button type="button" class="btn btn-danger" disabled=${deleting} onClick=${remove}>Delete</button>` : null}
      </div>
    </div>
    <table class="table stack plates">
      <caption class="visually-hidden">Plates of ${file.name}</caption>
      <thead><tr><th scope="col">Plate</th><th scope="col">Time</th><th scope="col">Filament</th><th scope="col">Needs</th></tr></thead>
      <tbody>${file.plates.map((plate) => html`<tr key=${plate.index} data-plate=${plate.index}>
        <td data-label="Plate">${plate.index}${plate.layers ? html` <span class="muted">(${plate.layers} layers)</span>` : null}</td>
        <td data-label="Time">${duration(plate.estimated_s)}</td>
        <td data-label="Filament">${plate.weight_g != null ? `${plate.weight_g.toFixed(1)} g` : '—'}</td>
        <td data-label="Needs"><${FilamentNeeds} filaments=${plate.filaments} /></td>
      </tr>`)}</tbody>
    </table>
  </li>`;
}

function FilamentNeeds({ filaments }) {
  if (!filaments.length) return html`<span class="muted">not stated</span>`;
  return html`<ul class="filament-needs">${filaments.map((f) => html`<li key=${f.slot}>
    <${Badge} kind="neutral" title=${`Slot ${f.slot}`}>
      <span class="swatch-dot" style=${f.color ? { backgroundColor: f.color.slice(0, 7) } : undefined} aria-hidden="true"></span>
      ${f.slot}: ${f.type ?? 'any material'}${f.color ? ` ${f.color}` : ''}${f.grams != null ? ` · ${f.grams.toFixed(1)} g` : ''}
    <//>
  </li>`)}</ul>`;
}
