// The explorer page (served by `ardgpu serve`): hash routes #/ (feature table), #/feature/R/L/F,
// #/explain and #/steer. Plain DOM, no framework; all data comes from the server's /api routes.
// Every failure shows as one line in #msg, never a stack.

type Json = any;

interface RunSummary { index: number; name: string; layers: number[]; eval: boolean; steering: boolean; sae: number[] }

const state: { runs: RunSummary[]; run: number; layer: number; features: Map<string, Json> } = { runs: [], run: 0, layer: 0, features: new Map() };

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;

function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Record<string, unknown> = {}, ...kids: (Node | string | null | undefined)[]): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') e.addEventListener(k.slice(2), v as EventListener);
    else if (k in e && k !== 'list') (e as any)[k] = v;
    else e.setAttribute(k, String(v));
  }
  for (const c of kids) if (c !== null && c !== undefined) e.append(c);
  return e;
}

function showError(e: unknown): void {
  const m = $('msg');
  const text = (e instanceof Error ? e.message : String(e)).split('\n')[0]!;
  m.textContent = text;
  m.title = text;
  m.hidden = false;
}
function clearError(): void {
  $('msg').hidden = true;
}

/** GET/POST an API route; a non-2xx answer throws its one-line error. */
async function api(url: string, init?: RequestInit): Promise<Response> {
  const r = await fetch(url, init);
  if (!r.ok) {
    let msg = `${r.status} ${r.statusText}`;
    try {
      const j = await r.json();
      if (j && typeof j.error === 'string') msg = j.error;
    } catch {
      /* not JSON: keep the status line */
    }
    throw new Error(msg);
  }
  return r;
}
const getJson = async (url: string) => (await api(url)).json();

const fmt = (x: unknown, d = 3) => (typeof x === 'number' && Number.isFinite(x) ? (Number.isInteger(x) && Math.abs(x) >= 2 ? String(x) : x.toFixed(d)) : x === null || x === undefined ? '' : String(x));

// ---- plots ------------------------------------------------------------------------------------

function linePlot(values: number[], scale: number, w = 320, h0 = 60, color = '#c33'): HTMLCanvasElement {
  const c = h('canvas', { width: w, height: h0, className: 'plot' });
  const g = c.getContext('2d')!;
  g.fillStyle = '#fff';
  g.fillRect(0, 0, w, h0);
  g.strokeStyle = '#ccc';
  g.beginPath();
  g.moveTo(0, h0 - 0.5);
  g.lineTo(w, h0 - 0.5);
  g.stroke();
  if (!values.length) return c;
  const s = scale > 0 ? scale : Math.max(1e-9, ...values);
  g.strokeStyle = color;
  g.fillStyle = color + '44';
  g.beginPath();
  g.moveTo(0, h0);
  values.forEach((v, i) => g.lineTo((i / Math.max(1, values.length - 1)) * w, h0 - Math.min(1, Math.max(0, v / s)) * (h0 - 4)));
  g.lineTo(w, h0);
  g.closePath();
  g.fill();
  g.stroke();
  return c;
}

function histogram(counts: number[], lo: number, hi: number, w = 420, h0 = 140): HTMLCanvasElement {
  const c = h('canvas', { width: w, height: h0, className: 'plot' });
  const g = c.getContext('2d')!;
  g.fillStyle = '#fff';
  g.fillRect(0, 0, w, h0);
  const max = Math.max(1, ...counts);
  const bw = (w - 30) / Math.max(1, counts.length);
  g.fillStyle = '#36a';
  counts.forEach((n, i) => {
    const bh = (n / max) * (h0 - 24);
    g.fillRect(30 + i * bw + 1, h0 - 16 - bh, bw - 2, bh);
  });
  g.fillStyle = '#333';
  g.font = '10px sans-serif';
  g.fillText(`1e${lo}`, 30, h0 - 4);
  g.fillText(`1e${hi}`, w - 30, h0 - 4);
  g.fillText(String(max), 2, 12);
  return c;
}

// ---- header: run and layer --------------------------------------------------------------------

async function loadRuns(): Promise<void> {
  state.runs = (await getJson('/api/runs')).runs;
  const rs = $<HTMLSelectElement>('run');
  rs.replaceChildren(...state.runs.map((r) => h('option', { value: String(r.index), textContent: r.name })));
  rs.onchange = () => {
    state.run = Number(rs.value);
    fillLayers();
    render();
  };
  fillLayers();
}

function fillLayers(): void {
  const run = state.runs[state.run]!;
  const ls = $<HTMLSelectElement>('layer');
  ls.replaceChildren(...run.layers.map((l) => h('option', { value: String(l), textContent: String(l) })));
  if (!run.layers.includes(state.layer)) state.layer = run.layers[run.layers.length >> 1]!;
  ls.value = String(state.layer);
  ls.onchange = () => {
    state.layer = Number(ls.value);
    render();
  };
}

async function features(run = state.run, layer = state.layer): Promise<Json> {
  const key = `${run}/${layer}`;
  if (!state.features.has(key)) state.features.set(key, await getJson(`/api/runs/${run}/features/${layer}`));
  return state.features.get(key);
}

// ---- feature table ----------------------------------------------------------------------------

const SCORE_COLS = ['mono', 'coherence', 'separation', 'within', 'cross', 'hMean', 'lMean', 'firingClips', 'firingShare', 'maxMean'] as const;
const table = { sort: 'mono', desc: true, q: '', named: 'all', group: 'all' };

async function tableView(view: HTMLElement): Promise<void> {
  const ff = await features();
  const body = h('tbody');
  const count = h('span', { className: 'muted' });
  const cols: { key: string; label: string; get: (f: Json) => unknown; num?: boolean }[] = [
    { key: 'rank', label: 'rank', get: (f) => f._rank, num: true },
    { key: 'id', label: 'id', get: (f) => f.id, num: true },
    { key: 'name', label: 'name', get: (f) => f.name ?? '' },
    ...SCORE_COLS.map((k) => ({ key: k, label: k, get: (f: Json) => f.scores?.[k], num: true })),
    { key: 'support', label: 'support', get: (f) => f.support, num: true },
    { key: 'group', label: 'group', get: (f) => f.group, num: true },
  ];
  const all: Json[] = ff.features.map((f: Json, i: number) => ({ ...f, _rank: i + 1 }));
  const draw = () => {
    const q = table.q.trim().toLowerCase();
    let rows = all.filter((f) => {
      if (q && !(String(f.name ?? '').toLowerCase().includes(q) || `#${f.id}` === q || String(f.id) === q)) return false;
      if (table.named === 'named' && !f.name) return false;
      if (table.named === 'unnamed' && f.name) return false;
      if (table.group === 'representatives' && f.group !== undefined && f.group !== f.id) return false;
      if (table.group === 'grouped' && !(f.members?.length > 1 || (f.group !== undefined && f.group !== f.id))) return false;
      return true;
    });
    const col = cols.find((c) => c.key === table.sort) ?? cols[0]!;
    rows = rows.sort((a, b) => {
      const x = col.get(a);
      const y = col.get(b);
      const c = typeof x === 'number' && typeof y === 'number' ? x - y : String(x ?? '').localeCompare(String(y ?? ''));
      return table.desc ? -c : c;
    });
    body.replaceChildren(
      ...rows.map((f) =>
        h(
          'tr',
          { className: 'feat' },
          ...cols.map((c) => {
            const v = c.get(f);
            if (c.key === 'name') return h('td', {}, h('a', { href: `#/feature/${state.run}/${state.layer}/${f.id}`, textContent: f.name ?? `(unnamed #${f.id})` }));
            return h('td', { className: c.num ? 'num' : '' }, typeof v === 'number' && !Number.isInteger(v) ? fmt(v) : String(v ?? ''));
          }),
        ),
      ),
    );
    count.textContent = `${rows.length} of ${all.length} kept features (layer ${ff.layer}, ${ff.m} latents)`;
  };
  const head = h(
    'tr',
    {},
    ...cols.map((c) =>
      h('th', {
        className: 'sort',
        textContent: c.label + (table.sort === c.key ? (table.desc ? ' ▼' : ' ▲') : ''),
        'data-key': c.key,
        onclick: () => {
          if (table.sort === c.key) table.desc = !table.desc;
          else {
            table.sort = c.key;
            table.desc = c.num ?? false;
          }
          for (const th of head.children) {
            const k = (th as HTMLElement).dataset.key!;
            th.textContent = cols.find((x) => x.key === k)!.label + (table.sort === k ? (table.desc ? ' ▼' : ' ▲') : '');
          }
          draw();
        },
      }),
    ),
  );
  const search = h('input', { type: 'search', id: 'search', placeholder: 'search names or #id', value: table.q, oninput: () => ((table.q = search.value), draw()) });
  const named = h('select', { id: 'named', onchange: () => ((table.named = named.value), draw()) }, ...['all', 'named', 'unnamed'].map((v) => h('option', { value: v, textContent: v })));
  named.value = table.named;
  const group = h('select', { id: 'group', onchange: () => ((table.group = group.value), draw()) }, ...['all', 'representatives', 'grouped'].map((v) => h('option', { value: v, textContent: v })));
  group.value = table.group;
  view.replaceChildren(
    h('div', { className: 'controls' }, search, h('label', {}, 'names ', named), h('label', {}, 'groups ', group), count),
    h('table', { id: 'features' }, h('thead', {}, head), body),
  );
  draw();
}

// ---- feature page -----------------------------------------------------------------------------

async function featureView(view: HTMLElement, run: number, layer: number, id: number): Promise<void> {
  const d = await getJson(`/api/runs/${run}/feature/${layer}/${id}`);
  const f = d.feature;
  const clipCard = (ref: Json) => {
    const info = d.clips[ref.clip] ?? {};
    const acts: number[] = d.timelines[String(ref.clip)] ?? [];
    return h(
      'div',
      { className: 'clip' },
      h('div', {}, h('strong', { textContent: info.id ?? `clip ${ref.clip}` }), ` ${(info.labels ?? []).join(', ')} · mean ${fmt(ref.mean)} · coverage ${fmt(ref.coverage, 2)}`),
      h('audio', { controls: true, preload: 'none', src: `/api/runs/${run}/clip/${ref.clip}` }),
      acts.length ? linePlot(acts, f.scores.maxMean * 2 || 0) : h('div', { className: 'muted', textContent: 'no timeline stored for this clip' }),
      info.caption ? h('div', { className: 'muted', textContent: info.caption }) : null,
    );
  };
  const scores = h('table', {}, ...Object.entries(f.scores).map(([k, v]) => h('tr', {}, h('th', { textContent: k }), h('td', { className: 'num', textContent: fmt(v) }))));
  const labels = d.labels.length
    ? h('table', {}, h('tr', {}, h('th', { textContent: 'label' }), h('th', { textContent: 'AP' }), h('th', { textContent: 'clips' })), ...d.labels.map((l: Json) => h('tr', {}, h('td', { textContent: l.label }), h('td', { className: 'num', textContent: fmt(l.ap) }), h('td', { className: 'num', textContent: String(l.positives) }))))
    : h('p', { className: 'muted', textContent: 'no retrieve statistics in this run' });
  const neigh = d.neighbours.length
    ? h('ul', {}, ...d.neighbours.map((n: Json) => h('li', {}, h('a', { href: `#/feature/${run}/${layer}/${n.id}`, textContent: n.name ?? `#${n.id}` }), ` cosine ${fmt(n.cosine)}`)))
    : h('p', { className: 'muted', textContent: 'no SAE decoder in this run' });
  const sweepBox = h('div', {});
  for (const s of d.sweeps as Json[]) {
    sweepBox.append(
      h('p', { textContent: `${s.mode} sweep — ${s.question} (target: ${s.target})` }),
      h('table', { className: 'answers' }, h('tr', {}, h('th', { textContent: 'value' }), h('th', { textContent: 'flip rate' }), h('th', { textContent: 'first answer' })), ...s.values.map((v: Json) => h('tr', {}, h('td', { className: 'num', textContent: String(v.value) }), h('td', { className: 'num', textContent: fmt(v.flipRate, 2) }), h('td', { textContent: v.answers?.[0] ?? '' })))),
    );
  }
  if (!d.sweeps.length) sweepBox.append(h('p', { className: 'muted', textContent: 'no steering sweep of this feature in this run' }));
  const density = h('div', { className: 'muted', textContent: 'loading…' });
  view.replaceChildren(
    h('h2', { id: 'fname', textContent: `${f.name ?? '(unnamed)'} — feature #${f.id}, layer ${layer}` }),
    h('p', {}, h('a', { id: 'steerlink', href: steerLink(f.id, d.sweeps[0]), textContent: 'steer this feature →' }), f.members?.length > 1 ? ` · group of ${f.members.length}: ${f.members.join(', ')}` : ''),
    h(
      'div',
      { className: 'row' },
      h('div', { className: 'section' }, h('h3', { textContent: 'Scores' }), scores),
      h('div', { className: 'section' }, h('h3', { textContent: 'Top labels (AP over all clips)' }), labels),
      h('div', { className: 'section' }, h('h3', { textContent: 'Nearest by decoder cosine' }), neigh),
      h('div', { className: 'section' }, h('h3', { textContent: 'SAE latent density (log10 rate)' }), density),
    ),
    h('div', { className: 'section' }, h('h3', { textContent: `H^k: most representative clips (${f.H.length})` }), h('div', { className: 'clips', id: 'hclips' }, ...f.H.map(clipCard))),
    h('div', { className: 'section' }, h('h3', { textContent: `L^k: least representative firing clips (${f.L.length})` }), h('div', { className: 'clips', id: 'lclips' }, ...f.L.map(clipCard))),
    h('div', { className: 'section' }, h('h3', { textContent: 'Steering sweep' }), sweepBox),
    f.captions?.length ? h('div', { className: 'section' }, h('h3', { textContent: 'Captions of its top clips' }), h('ul', {}, ...f.captions.map((c: string) => h('li', { textContent: c })))) : "",
  );
  try {
    const q = await getJson(`/api/runs/${run}/quality/${layer}`);
    density.replaceWith(h('div', {}, histogram(q.histogram.counts, q.histogram.log10Lo, q.histogram.log10Hi), h('div', { className: 'muted', textContent: `${q.dead} dead, ${q.dense} dense; FVU ${fmt(q.fvu)}, L0 ${fmt(q.l0, 1)}` })));
  } catch (e) {
    density.textContent = (e as Error).message;
  }
}

/** The steer page for a feature, with the values and question of the run's sweep of it when there is one. */
function steerLink(id: number, sweep?: Json): string {
  const q = new URLSearchParams({ feature: String(id) });
  if (sweep) {
    q.set('values', sweep.values.map((v: Json) => v.value).join(','));
    q.set('prompt', sweep.question);
    q.set('mode', sweep.mode);
  }
  return `#/steer?${q}`;
}

// ---- explain ----------------------------------------------------------------------------------

async function clipOptions(): Promise<HTMLOptionElement[]> {
  const c = await getJson(`/api/runs/${state.run}/clips`);
  return [h('option', { value: '', textContent: '(upload a file)' }), ...c.clips.slice(0, 500).map((x: Json) => h('option', { value: String(x.clip), textContent: `${x.id} (${x.labels.join(', ')})` }))];
}

/** The chosen audio: a run clip (query `clip=`) or the chosen file as the request body. */
function audioRequest(clipSel: HTMLSelectElement, file: HTMLInputElement): { query: string; body?: File } {
  if (clipSel.value !== '') return { query: `clip=${clipSel.value}` };
  const f = file.files?.[0];
  if (!f) throw new Error('choose a clip of the run or an audio file');
  return { query: `name=${encodeURIComponent(f.name)}`, body: f };
}

/** The last explanation shown (tests compare browser and server runs through it). */
let lastExplain: Json = null;
(window as any).ardgpuLastExplain = () => lastExplain;

/** Explain on this browser's WebGPU with the browser build of the engine (fetched on first use). */
async function explainHere(a: { query: string; body?: File }, threshold: number, say: (s: string) => void): Promise<Json> {
  say('loading the engine into this browser…');
  const mod = await import(new URL('/ardgpu-browser.js', location.href).href);
  const audio = a.body ? new Uint8Array(await a.body.arrayBuffer()) : new Uint8Array(await (await api(`/api/runs/${state.run}/clip/${new URLSearchParams(a.query).get('clip')}`)).arrayBuffer());
  const name = a.body ? a.body.name : `clip ${new URLSearchParams(a.query).get('clip')}`;
  return mod.explainInBrowser({ run: state.run, layer: state.layer, audio, name, threshold, onStatus: say });
}

async function explainView(view: HTMLElement): Promise<void> {
  const clipSel = h('select', { id: 'clip' }, ...(await clipOptions()));
  const file = h('input', { type: 'file', id: 'file', accept: 'audio/*,.wav,.flac,.ogg,.opus,.mp3' });
  const thr = h('input', { type: 'number', id: 'threshold', value: '0', step: '0.1', min: '0', style: 'width:5em' });
  const hasGpu = 'gpu' in navigator;
  const where = h(
    'select',
    { id: 'where' },
    h('option', { value: 'auto', textContent: hasGpu ? 'this browser (WebGPU), else the server' : 'the server (this browser has no WebGPU)' }),
    h('option', { value: 'browser', textContent: 'this browser only', disabled: !hasGpu }),
    h('option', { value: 'server', textContent: 'the server' }),
  );
  const status = h('div', { id: 'status', className: 'progress' });
  const out = h('div', { id: 'timeline', className: 'tl' });
  const go = h('button', {
    id: 'go',
    textContent: 'Explain',
    onclick: async () => {
      clearError();
      out.replaceChildren();
      try {
        const a = audioRequest(clipSel, file);
        go.disabled = true;
        let r: Json = null;
        let fellBack = '';
        if (where.value !== 'server' && hasGpu) {
          try {
            r = await explainHere(a, Number(thr.value), (s) => (status.textContent = s));
          } catch (e) {
            if (where.value === 'browser') throw e;
            fellBack = ` (this browser could not: ${(e as Error).message.split('\n')[0]})`;
          }
        }
        if (!r) {
          status.textContent = 'running on the server (queued with other GPU work)…';
          r = await (await api(`/api/runs/${state.run}/explain?layer=${state.layer}&threshold=${encodeURIComponent(thr.value)}&${a.query}`, { method: 'POST', body: a.body })).json();
        }
        const ran = r.where === 'browser' ? `this browser (WebGPU: ${r.adapter})` : `server${fellBack}`;
        status.textContent = `ran on: ${ran} · ${r.features.length} named features fire in ${fmt(r.duration, 2)} s`;
        lastExplain = r;
        // strongest first; each row scaled to its own peak (the number beside it)
        const feats = [...r.features].sort((a: Json, b: Json) => b.peak * b.coverage - a.peak * a.coverage);
        for (const f of feats) {
          out.append(
            h('a', { href: `#/feature/${state.run}/${state.layer}/${f.feature}`, className: 'tlname', textContent: `${f.name} (#${f.feature})` }),
            linePlot(f.activations, f.peak, 600, 28, '#36a'),
            h('span', { className: 'muted', textContent: `peak ${fmt(f.peak, 2)} · ${Math.round(f.coverage * 100)} % of the time` }),
          );
        }
        if (feats.length) out.append(h('span', {}), h('span', { className: 'muted axis' }, h('span', { textContent: '0 s' }), h('span', { textContent: `${fmt(r.duration, 2)} s` })), h('span', {}));
        if (!r.features.length) out.append(h('span', { className: 'muted', textContent: 'no named feature fires' }));
      } catch (e) {
        status.textContent = '';
        showError(e);
      } finally {
        go.disabled = false;
      }
    },
  });
  // a file dropped anywhere on the page is the clip to explain
  view.ondragover = (e) => e.preventDefault();
  view.ondrop = (e) => {
    e.preventDefault();
    if (!e.dataTransfer?.files.length) return;
    file.files = e.dataTransfer.files;
    clipSel.value = '';
    go.click();
  };
  view.replaceChildren(
    h('h2', { textContent: 'Explain a clip: which named features fire when (choose or drop a file)' }),
    h('div', { className: 'controls' }, h('label', {}, 'run clip ', clipSel), h('label', {}, 'or file ', file), h('label', {}, 'threshold ', thr), h('label', {}, 'run on ', where), go),
    status,
    out,
  );
}

// ---- steer ------------------------------------------------------------------------------------

async function steerView(view: HTMLElement, params: URLSearchParams): Promise<void> {
  const ff = await features();
  const feat = h('select', { id: 'feature' }, ...ff.features.map((f: Json) => h('option', { value: String(f.id), textContent: `#${f.id} ${f.name ?? '(unnamed)'}` })));
  if (params.get('feature')) feat.value = params.get('feature')!;
  const mode = h('select', { id: 'mode' }, h('option', { value: 'add', textContent: 'add' }), h('option', { value: 'set', textContent: 'set' }));
  const values = h('input', { id: 'values', value: params.get('values') ?? '0,5,10,20', style: 'width:10em' });
  if (params.get('mode') === 'set') mode.value = 'set';
  const prompt = h('input', { id: 'prompt', value: params.get('prompt') ?? 'What is the gender of the speaker?', style: 'width:22em' });
  const maxTokens = h('input', { id: 'maxTokens', type: 'number', value: '32', min: '1', max: '64', style: 'width:4em' });
  const clipSel = h('select', { id: 'clip' }, ...(await clipOptions()));
  if (params.get('clip')) clipSel.value = params.get('clip')!;
  else if (clipSel.options.length > 1) clipSel.selectedIndex = 1;
  const file = h('input', { type: 'file', id: 'file', accept: 'audio/*,.wav,.flac,.ogg,.opus,.mp3' });
  const status = h('div', { id: 'status', className: 'progress' });
  const rows = h('tbody', { id: 'answers' });
  let ctl: AbortController | null = null;
  const go = h('button', {
    id: 'go',
    textContent: 'Steer',
    onclick: async () => {
      clearError();
      ctl?.abort();
      ctl = new AbortController();
      rows.replaceChildren();
      const cells = new Map<number, HTMLElement>();
      const row = (index: number, label: string) => {
        let c = cells.get(index);
        if (!c) {
          c = h('td', { className: 'answer' });
          cells.set(index, c);
          rows.append(h('tr', { 'data-index': String(index) }, h('td', { textContent: label }), c));
        }
        return c;
      };
      try {
        const a = audioRequest(clipSel, file);
        const q = `layer=${state.layer}&feature=${feat.value}&mode=${mode.value}&values=${encodeURIComponent(values.value)}&prompt=${encodeURIComponent(prompt.value)}&maxTokens=${encodeURIComponent(maxTokens.value)}&${a.query}`;
        status.textContent = 'sending…';
        const r = await api(`/api/runs/${state.run}/steer?${q}`, { method: 'POST', body: a.body, signal: ctl.signal });
        const reader = r.body!.pipeThrough(new TextDecoderStream()).getReader();
        let buf = '';
        let vals: number[] = [];
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += value;
          let nl: number;
          while ((nl = buf.indexOf('\n')) >= 0) {
            const msg = JSON.parse(buf.slice(0, nl));
            buf = buf.slice(nl + 1);
            if (msg.type === 'queued') status.textContent = msg.position > 1 ? `queued behind ${msg.position - 1} GPU jobs…` : 'starting…';
            else if (msg.type === 'start') {
              vals = msg.values;
              status.textContent = `generating (${msg.mode} feature #${msg.feature}${msg.name ? ` ${msg.name}` : ''})…`;
              row(-1, 'unsteered');
              vals.forEach((v, i) => row(i, `${msg.mode} ${v}`));
            } else if (msg.type === 'token') row(msg.index, '').textContent = msg.text + ' …';
            else if (msg.type === 'answer') row(msg.index, '').textContent = msg.answer;
            else if (msg.type === 'done') status.textContent = 'done';
            else if (msg.type === 'error') throw new Error(msg.error);
          }
        }
      } catch (e) {
        if ((e as Error).name !== 'AbortError') {
          status.textContent = '';
          showError(e);
        }
      }
    },
  });
  view.replaceChildren(
    h('h2', { textContent: 'Steer: answers as a feature is pushed' }),
    h('div', { className: 'controls' }, h('label', {}, 'feature ', feat), h('label', {}, 'mode ', mode), h('label', {}, 'values ', values), h('label', {}, 'max tokens ', maxTokens)),
    h('div', { className: 'controls' }, h('label', {}, 'prompt ', prompt), h('label', {}, 'run clip ', clipSel), h('label', {}, 'or file ', file), go),
    status,
    h('table', { className: 'answers' }, h('thead', {}, h('tr', {}, h('th', { textContent: 'steering' }), h('th', { textContent: 'answer' }))), rows),
  );
}

// ---- router -----------------------------------------------------------------------------------

async function render(): Promise<void> {
  clearError();
  const view = $('view');
  view.ondragover = view.ondrop = null;
  const [route, query] = (location.hash.slice(1) || '/').split('?');
  const params = new URLSearchParams(query ?? '');
  const parts = route!.split('/').filter(Boolean);
  try {
    if (parts[0] === 'feature' && parts.length === 4) {
      const [run, layer, id] = parts.slice(1).map(Number) as [number, number, number];
      if (state.runs[run] && run !== state.run) {
        state.run = run;
        $<HTMLSelectElement>('run').value = String(run);
        fillLayers();
      }
      if (layer !== state.layer && state.runs[state.run]?.layers.includes(layer)) {
        state.layer = layer;
        $<HTMLSelectElement>('layer').value = String(layer);
      }
      await featureView(view, run, layer, id);
    } else if (parts[0] === 'explain') await explainView(view);
    else if (parts[0] === 'steer') await steerView(view, params);
    else await tableView(view);
    document.body.dataset.ready = route;
  } catch (e) {
    view.replaceChildren();
    showError(e);
  }
}

window.addEventListener('hashchange', () => void render());
window.addEventListener('error', (e) => showError(e.message));
window.addEventListener('unhandledrejection', (e) => showError((e.reason as Error)?.message ?? e.reason));
loadRuns().then(render, showError);
