// AR&D report: one self-contained HTML page (inline CSS, JS and SVG; audio as base64 WAV data:
// URIs) summarising a RUN directory: SAE training curves and quality figures (FVU, L0, dead and
// dense latents, log10 feature-density histogram), the ranked features (one table row per group of
// features that say the same thing, see rank.ts) with their most and
// least representative clips (players, captions, labels, activation-over-time sparklines), the
// benchmark against baselines, and steering sweeps. Every section copes with its stage not having
// run yet. Audio is embedded once per clip (a JSON map the page's script hands to the players),
// truncated and, if asked, resampled, within a byte budget.
//
// FLAC, Ogg (Vorbis, Opus) and MP3 clips are decoded and embedded as WAV like the others, not as
// their own bytes: every browser plays PCM WAV (Ogg is not everywhere), the players then give what
// the model heard (mono, 16 kHz, the first seconds), and one byte budget counts every clip alike.
// Their decoders are asynchronous, so writeReportAsync decodes the compressed clips a first
// rendering asked for and renders again; writeReport alone embeds WAV clips only.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { openClip, wavHeadSync, type ClipReader } from '../audio/stream.js';
import { encodeWav } from '../audio/wav.js';
import { resample } from '../audio/resample.js';
import { writeFileAtomic } from '../util/fs.js';
import { describeError } from '../util/errors.js';
import { SCORE_FORMULA } from './retrieve.js';
import type { CaptureClip, CaptureManifest } from './run.js';
import { readCaptureManifest, runPaths } from './run.js';
import type { ClipRef, FeatureEntry, FeaturesFile } from './rank.js';
import { RANK_METHOD, readFeatures } from './rank.js';
import type { EvalFile, MethodResult } from './evaluate.js';
import type { DensityHistogram, SaeQuality } from './quality.js';
import { QUALITY_METHOD } from './quality.js';
import { EVAL_METHOD } from './evaluate.js';
import type { SpliceFile } from './splice.js';
import { SPLICE_METHOD } from './splice.js';

export interface ReportOptions {
  /** Layers to show (default: every layer with a features or SAE file, else the manifest's). */
  layers?: number[];
  /** Features shown per layer (default 12). */
  maxFeatures?: number;
  /** H clips shown per feature (default 5) and L clips (default 3). */
  hClips?: number;
  lClips?: number;
  /** Embedded audio: at most this many seconds per clip (default 4) at this rate (default 16000). */
  audioSeconds?: number;
  audioRate?: number;
  /** Total embedded audio bytes before base64 (default 16 MiB); clips beyond it get no player. */
  maxAudioBytes?: number;
  /** Directory corpus-relative clip paths are resolved against (default: manifest.corpus, RUN). */
  corpusDir?: string;
  title?: string;
  /** Compressed clips decoded beforehand (absolute file → mono 16 kHz samples, at least audioSeconds' worth, or why it failed); writeReportAsync fills it. */
  decodedAudio?: ReadonlyMap<string, Float32Array | string>;
}

export interface ReportResult {
  file: string;
  bytes: number;
  sections: Record<string, 'ok' | 'missing' | 'error'>;
  audioClips: number;
  audioSkipped: number;
  /** Compressed clips the page wanted that decodedAudio did not hold (writeReportAsync decodes them). */
  audioPending: string[];
}

// ---- small HTML helpers ------------------------------------------------------------------------

export function esc(s: unknown): string {
  return String(s ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

/** Fixed decimals (exponent for tiny or huge values); '–' for missing. */
function fmt(x: unknown, digits = 3): string {
  const n = Number(x);
  if (x === null || x === undefined || !Number.isFinite(n)) return '–';
  const a = Math.abs(n);
  if (a !== 0 && (a < 1e-3 || a >= 1e5)) return n.toExponential(2);
  return n.toFixed(digits);
}

/** Compact plain number (counts, steps, sweep values, axis ticks): `sig` significant digits. */
function num(x: unknown, sig = 4): string {
  const n = Number(x);
  if (x === null || x === undefined || !Number.isFinite(n)) return '–';
  const a = Math.abs(n);
  if (a !== 0 && (a < 1e-3 || a >= 1e6)) return n.toExponential(Math.max(0, sig - 2));
  return String(Number(n.toPrecision(sig)));
}

function missing(what: string, file: string): string {
  return `<div class="missing"><b>${esc(what)}</b> has not run yet — <code>${esc(path.basename(file))}</code> not found.</div>`;
}

function readJsonIf(file: string): any | null {
  if (!fs.existsSync(file)) return null;
  return JSON.parse(fs.readFileSync(file, 'utf8'));
}

// ---- SVG plots -----------------------------------------------------------------------------------

/** A line plot of one series (x ascending) as inline SVG. */
export function linePlot(xs: number[], ys: number[], o: { title: string; width?: number; height?: number; color?: string; logY?: boolean; xLabel?: string }): string {
  const W = o.width ?? 340;
  const H = o.height ?? 180;
  const pad = { l: 52, r: 12, t: 26, b: 28 };
  const pts = xs.map((x, i) => [x, ys[i]!] as const).filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y) && (!o.logY || y > 0));
  if (pts.length === 0) return `<div class="plot empty">${esc(o.title)}: no data</div>`;
  const ty = (y: number) => (o.logY ? Math.log10(y) : y);
  let x0 = Math.min(...pts.map((p) => p[0]));
  let x1 = Math.max(...pts.map((p) => p[0]));
  let y0 = Math.min(...pts.map((p) => ty(p[1])));
  let y1 = Math.max(...pts.map((p) => ty(p[1])));
  if (x1 === x0) [x0, x1] = [x0 - 1, x1 + 1];
  if (y1 === y0) [y0, y1] = [y0 - 0.5, y1 + 0.5];
  const sx = (x: number) => pad.l + ((x - x0) / (x1 - x0)) * (W - pad.l - pad.r);
  const sy = (y: number) => H - pad.b - ((ty(y) - y0) / (y1 - y0)) * (H - pad.t - pad.b);
  const line = pts.map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(' ');
  const color = o.color ?? '#2563eb';
  const yLab = (v: number) => num(o.logY ? 10 ** v : v, 3);
  const grid = [0, 0.5, 1]
    .map((f) => {
      const v = y0 + f * (y1 - y0);
      const y = H - pad.b - f * (H - pad.t - pad.b);
      return `<line x1="${pad.l}" x2="${W - pad.r}" y1="${y.toFixed(1)}" y2="${y.toFixed(1)}" class="grid"/><text x="${pad.l - 6}" y="${(y + 4).toFixed(1)}" class="ytick">${esc(yLab(v))}</text>`;
    })
    .join('');
  const last = pts[pts.length - 1]!;
  return (
    `<svg class="plot" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="${esc(o.title)}">` +
    `<text x="${pad.l}" y="16" class="ptitle">${esc(o.title)}${o.logY ? ' (log)' : ''}</text>` +
    grid +
    `<line x1="${pad.l}" x2="${W - pad.r}" y1="${H - pad.b}" y2="${H - pad.b}" class="axis"/>` +
    `<text x="${pad.l}" y="${H - 8}" class="xtick">${esc(num(x0))}</text>` +
    `<text x="${(pad.l + W - pad.r) / 2}" y="${H - 8}" class="xtick mid">${esc(o.xLabel ?? '')}</text>` +
    `<text x="${W - pad.r}" y="${H - 8}" class="xtick end">${esc(num(x1))}</text>` +
    `<polyline points="${line}" fill="none" stroke="${color}" stroke-width="1.8" stroke-linejoin="round"/>` +
    `<circle cx="${sx(last[0]).toFixed(1)}" cy="${sy(last[1]).toFixed(1)}" r="2.8" fill="${color}"/>` +
    `<text x="${W - pad.r}" y="16" class="xtick end">last ${esc(num(last[1], 3))}</text>` +
    `</svg>`
  );
}

/** Bars of a log10 feature-density histogram, with the dead latents (density 0) as a separate bar on the left. */
export function densityHistogramPlot(h: DensityHistogram, o: { title?: string; width?: number; height?: number } = {}): string {
  const W = o.width ?? 340;
  const H = o.height ?? 180;
  const title = o.title ?? 'latents by log10 firing density';
  const pad = { l: 40, r: 12, t: 26, b: 28 };
  const bins = h.counts.length;
  if (!bins) return `<div class="plot empty">${esc(title)}: no data</div>`;
  const deadW = 22;
  const x0 = pad.l + deadW + 8;
  const bw = (W - pad.r - x0) / bins;
  const top = Math.max(1, h.dead, ...h.counts);
  const sy = (v: number) => H - pad.b - (v / top) * (H - pad.t - pad.b);
  const bar = (x: number, w: number, v: number, cls: string, tip: string) =>
    v > 0 ? `<rect x="${x.toFixed(1)}" y="${sy(v).toFixed(1)}" width="${Math.max(0.5, w - 1).toFixed(1)}" height="${(H - pad.b - sy(v)).toFixed(1)}" class="${cls}"><title>${esc(tip)}</title></rect>` : '';
  const w = (h.log10Hi - h.log10Lo) / bins;
  const bars = h.counts.map((c, i) => bar(x0 + i * bw, bw, c, 'hbar', `log10 density ${num(h.log10Lo + i * w)} to ${num(h.log10Lo + (i + 1) * w)}: ${c} latents`)).join('');
  const ticks = [h.log10Lo, (h.log10Lo + h.log10Hi) / 2, h.log10Hi]
    .map((v, i) => `<text x="${(x0 + ((v - h.log10Lo) / (h.log10Hi - h.log10Lo)) * bins * bw).toFixed(1)}" y="${H - 8}" class="xtick${i === 1 ? ' mid' : i === 2 ? ' end' : ''}">${esc(num(v))}</text>`)
    .join('');
  return (
    `<svg class="plot" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="${esc(title)}">` +
    `<text x="${pad.l}" y="16" class="ptitle">${esc(title)}</text>` +
    `<line x1="${pad.l}" x2="${W - pad.r}" y1="${sy(top).toFixed(1)}" y2="${sy(top).toFixed(1)}" class="grid"/><text x="${pad.l - 6}" y="${(sy(top) + 4).toFixed(1)}" class="ytick">${top}</text>` +
    `<text x="${pad.l - 6}" y="${(H - pad.b + 4).toFixed(1)}" class="ytick">0</text>` +
    `<line x1="${pad.l}" x2="${W - pad.r}" y1="${H - pad.b}" y2="${H - pad.b}" class="axis"/>` +
    bar(pad.l + 4, deadW, h.dead, 'hbar dead', `dead (never fired): ${h.dead} latents`) +
    `<text x="${(pad.l + 4 + deadW / 2).toFixed(1)}" y="${H - 8}" class="xtick mid">dead</text>` +
    bars +
    ticks +
    `<text x="${W - pad.r}" y="16" class="xtick end">${h.dead} dead</text>` +
    `</svg>`
  );
}

/** A small filled sparkline of per-token activations. */
export function sparkline(values: number[], scale: number, frameSeconds?: number): string {
  const W = 150;
  const H = 26;
  if (!values.length) return '';
  const s = scale > 0 ? scale : Math.max(...values, 1e-9);
  const n = values.length;
  const x = (i: number) => (n === 1 ? W / 2 : (i / (n - 1)) * (W - 2) + 1);
  const y = (v: number) => H - 2 - Math.min(1, Math.max(0, v / s)) * (H - 4);
  const pts = values.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(' ');
  const area = `1,${H - 2} ${pts} ${x(n - 1).toFixed(1)},${H - 2}`;
  const dur = frameSeconds ? ` over ${(n * frameSeconds).toFixed(1)} s` : '';
  return (
    `<svg class="spark" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="activation over time${esc(dur)}">` +
    `<title>activation over time${esc(dur)} (peak ${fmt(Math.max(...values), 3)})</title>` +
    `<polygon points="${area}" class="sparkfill"/><polyline points="${pts}" class="sparkline"/></svg>`
  );
}

function bar(v: number, max = 1, cls = ''): string {
  const w = Number.isFinite(v) && max > 0 ? Math.max(0, Math.min(1, v / max)) * 100 : 0;
  return `<span class="bar ${cls}"><span style="width:${w.toFixed(1)}%"></span></span>`;
}

// ---- training curves ------------------------------------------------------------------------------

/** Turns a training log (records, or columns, or {steps|log|history: records}) into series by metric. */
export function trainingSeries(doc: any): { x: number[]; series: Record<string, number[]>; meta: Record<string, unknown> } {
  let rows: any[] | null = null;
  const meta: Record<string, unknown> = {};
  if (Array.isArray(doc)) rows = doc;
  else if (doc && typeof doc === 'object') {
    for (const key of ['steps', 'log', 'history', 'records', 'curve', 'train']) {
      if (Array.isArray(doc[key]) && doc[key].length && typeof doc[key][0] === 'object') {
        rows = doc[key];
        break;
      }
    }
    for (const [k, v] of Object.entries(doc)) if (typeof v !== 'object' || v === null) meta[k] = v;
    if (!rows) {
      // columnar: { step: [...], mse: [...], ... }
      const cols = Object.entries(doc).filter(([, v]) => Array.isArray(v) && (v as unknown[]).every((x) => typeof x === 'number')) as [string, number[]][];
      if (cols.length) {
        const n = Math.max(...cols.map(([, v]) => v.length));
        const xcol = cols.find(([k]) => /^(step|steps|iter|iteration|tokens)$/i.test(k));
        const x = xcol ? xcol[1] : Array.from({ length: n }, (_, i) => i);
        const series: Record<string, number[]> = {};
        for (const [k, v] of cols) if (v !== xcol?.[1]) series[k] = v;
        return { x, series, meta };
      }
    }
  }
  if (!rows) return { x: [], series: {}, meta };
  const xKey = ['step', 'steps', 'iter', 'iteration', 'tokens'].find((k) => rows!.some((r) => typeof r?.[k] === 'number'));
  const x = rows.map((r, i) => (xKey ? Number(r[xKey]) : i));
  const keys = new Set<string>();
  for (const r of rows) for (const [k, v] of Object.entries(r ?? {})) if (typeof v === 'number' && k !== xKey) keys.add(k);
  const series: Record<string, number[]> = {};
  for (const k of keys) series[k] = rows.map((r) => (typeof r?.[k] === 'number' ? r[k] : NaN));
  return { x, series, meta };
}

const METRIC_ORDER = ['fvu', 'mse', 'loss', 'auxk', 'aux', 'dead', 'deadShare', 'dead_share', 'l0', 'lr'];
const PALETTE = ['#2563eb', '#dc2626', '#059669', '#d97706', '#7c3aed', '#0891b2', '#be185d', '#4b5563'];

function trainingSection(layer: number, file: string): [string, 'ok' | 'missing' | 'error'] {
  const title = `<h2 id="training-${layer}">SAE training — layer ${layer}</h2>`;
  const doc = readJsonIf(file);
  if (!doc) return [title + missing('SAE training', file), 'missing'];
  const { x, series, meta } = trainingSeries(doc);
  const names = Object.keys(series).sort((a, b) => rankOf(a) - rankOf(b) || a.localeCompare(b));
  if (!names.length) return [title + `<div class="missing">${esc(path.basename(file))} holds no numeric series.</div>`, 'error'];
  const plots = names
    .slice(0, 8)
    .map((k, i) => {
      const ys = series[k]!;
      const pos = ys.filter((v) => Number.isFinite(v));
      const logY = /mse|loss|fvu|aux/i.test(k) && pos.length > 2 && pos.every((v) => v > 0) && Math.max(...pos) / Math.min(...pos) > 20;
      return linePlot(x, ys, { title: k, color: PALETTE[i % PALETTE.length], logY, xLabel: 'step' });
    })
    .join('');
  const metaRows = Object.entries(meta)
    .slice(0, 12)
    .map(([k, v]) => `<span class="kv"><b>${esc(k)}</b> ${esc(typeof v === 'number' ? num(v) : v)}</span>`)
    .join('');
  const quality = doc.quality ? qualityBlock(doc.quality as SaeQuality) : `<div class="missing small">No quality figures in <code>${esc(path.basename(file))}</code> (re-run train-sae: it adds them).</div>`;
  const splice = spliceBlock(readJsonIf(path.join(path.dirname(file), `splice-${layer}.json`)) as SpliceFile | null);
  return [`${title}${metaRows ? `<div class="kvs">${metaRows}</div>` : ''}<div class="plots">${plots}</div>${quality}${splice}`, 'ok'];
}

/** The SAE's quality over the capture (quality.ts): a small table and the density histogram. */
function qualityBlock(q: SaeQuality): string {
  const pct = (x: number) => `${fmt(x * 100, 1)}%`;
  const rows: [string, string][] = [
    ['FVU', fmt(q.fvu, 4)],
    ['explained variance', fmt(q.explainedVariance, 4)],
    ['architecture', q.architecture === 'batchtopk' ? `BatchTopK <span class="dim">(k·batch per batch in training; threshold ${fmt(q.threshold ?? NaN, 4)} at inference)</span>` : 'Top-K'],
    ['L0 (mean active latents per token)', `${fmt(q.l0, 2)} <span class="dim">(${q.architecture === 'batchtopk' ? 'mean aimed at' : 'k'} = ${esc(q.k)})</span>`],
    ['dead latents (never fired)', `${num(q.dead)} <span class="dim">(${pct(q.deadShare)} of ${num(q.m)})</span>`],
    [`dense latents (fire on > ${fmt(q.denseThreshold * 100, 0)}% of tokens)`, `${num(q.dense)} <span class="dim">(${pct(q.denseShare)})</span>`],
    ['tokens measured', num(q.rows)],
  ];
  const table = `<table class="qtable"><tbody>${rows.map(([k, v]) => `<tr><th>${esc(k)}</th><td class="num">${v}</td></tr>`).join('')}</tbody></table>`;
  return (
    `<h3>SAE quality over the capture</h3><div class="quality">${table}${q.histogram ? densityHistogramPlot(q.histogram) : ''}</div>` +
    `<p class="dim small">${esc(q.method ?? QUALITY_METHOD)}.</p>`
  );
}

/** RUN/splice-L.json (splice.ts): the model's loss with the SAE spliced in, against clean and zero-ablation. */
function spliceBlock(s: SpliceFile | null): string {
  if (!s) return `<p class="dim small">Spliced-in loss not measured (run <code>ardgpu splice</code>).</p>`;
  const rows: [string, string][] = [
    ['fraction of loss recovered', `<b>${s.recovered === null ? 'n/a (zero-ablation changes nothing)' : fmt(s.recovered, 4)}</b>`],
    ['CE clean / SAE spliced / zero-ablated', `${fmt(s.ceClean, 4)} / ${fmt(s.ceSae, 4)} / ${fmt(s.ceZero, 4)} <span class="dim">nats per token</span>`],
    ['KL(clean ‖ SAE spliced)', `${fmt(s.klSae, 5)} <span class="dim">(zero-ablated: ${fmt(s.klZero, 5)})</span>`],
    ['answer tokens', `${num(s.tokens)} <span class="dim">over ${num(s.clips)} clips: ${num(s.captionAnswers)} captions, ${num(s.greedyAnswers)} greedy answers</span>`],
    ['positions replaced', esc(s.positions === 'all' ? 'every position' : 'audio tokens')],
  ];
  return (
    `<h3>Spliced-in loss</h3><table class="qtable"><tbody>${rows.map(([k, v]) => `<tr><th>${esc(k)}</th><td class="num">${v}</td></tr>`).join('')}</tbody></table>` +
    `<p class="dim small">${esc(s.method ?? SPLICE_METHOD)}.</p>`
  );
}

function rankOf(k: string): number {
  const i = METRIC_ORDER.findIndex((m) => k.toLowerCase() === m.toLowerCase());
  return i < 0 ? 99 : i;
}

// ---- audio ---------------------------------------------------------------------------------------

class AudioStore {
  readonly uris = new Map<number, string>();
  readonly failed = new Map<number, string>();
  readonly pending = new Set<string>();
  bytes = 0;
  skipped = 0;
  constructor(
    private clips: CaptureClip[],
    private dirs: string[],
    private seconds: number,
    private rate: number,
    private budget: number,
    private decoded?: ReadonlyMap<string, Float32Array | string>,
  ) {}

  resolve(file: string): string | null {
    if (path.isAbsolute(file)) return fs.existsSync(file) ? file : null;
    for (const d of this.dirs) {
      const f = path.resolve(d, file);
      if (fs.existsSync(f)) return f;
    }
    return null;
  }

  /** Registers a clip's audio; returns false when it cannot be embedded. */
  want(ci: number): boolean {
    if (this.uris.has(ci)) return true;
    if (this.failed.has(ci)) return false;
    const c = this.clips[ci];
    if (!c) return false;
    const file = this.resolve(c.file);
    if (!file) {
      this.failed.set(ci, 'audio file not found');
      return false;
    }
    try {
      const n = Math.round(this.seconds * 16000);
      // a WAV's first seconds are read here, synchronously and no further than they need
      const head = wavHeadSync(file, n);
      const format = head.format;
      let samples: Float32Array;
      if (head.samples) samples = head.samples;
      else {
        const got = this.decoded?.get(file);
        if (typeof got === 'string') {
          this.failed.set(ci, got);
          return false;
        }
        if (!got) {
          this.pending.add(file);
          this.failed.set(ci, `${format} clip: embedded by writeReportAsync (ardgpu report)`);
          return false;
        }
        samples = got;
      }
      let x = samples.subarray(0, Math.min(samples.length, n));
      if (this.rate !== 16000) x = resample(x, 16000, this.rate);
      const bytes = 44 + 2 * x.length;
      if (this.bytes + bytes > this.budget) {
        this.skipped++;
        this.failed.set(ci, 'audio size budget reached');
        return false;
      }
      const wav = encodeWav(x, this.rate, file);
      this.uris.set(ci, `data:audio/wav;base64,${Buffer.from(wav.buffer, wav.byteOffset, wav.byteLength).toString('base64')}`);
      this.bytes += bytes;
      return true;
    } catch (e) {
      this.failed.set(ci, describeError(e));
      return false;
    }
  }

  json(): string {
    const o: Record<string, string> = {};
    for (const [k, v] of this.uris) o[k] = v;
    // safe inside <script>: no "</" sequences can occur in base64 or digits
    return JSON.stringify(o);
  }
}

// ---- features -------------------------------------------------------------------------------------

function clipCard(
  ref: ClipRef,
  clip: CaptureClip | undefined,
  kind: 'H' | 'L',
  caption: string | undefined,
  timeline: number[] | undefined,
  scale: number,
  audio: AudioStore,
): string {
  const hasAudio = audio.want(ref.clip);
  const player = hasAudio
    ? `<audio controls preload="metadata" data-clip="${ref.clip}"></audio>`
    : `<div class="noaudio">${esc(audio.failed.get(ref.clip) ?? 'no audio')}</div>`;
  const labels = (clip?.labels ?? []).map((l) => `<span class="chip">${esc(l)}</span>`).join('');
  const cap = caption ?? clip?.caption;
  return (
    `<div class="clip ${kind}">` +
    `<div class="cliphead"><span class="cid" title="${esc(clip?.file ?? '')}">${esc(ref.id ?? `clip ${ref.clip}`)}</span>` +
    `<span class="cscore" title="score · mean · coverage">${fmt(ref.score, 2)} · ${fmt(ref.mean, 2)} · ${fmt(ref.coverage, 2)}</span></div>` +
    player +
    (timeline ? sparkline(timeline, scale, clip?.frameSeconds) : '') +
    (cap ? `<div class="caption" title="${caption ? 'caption from the describer' : 'corpus caption'}">${caption ? '“' : ''}${esc(cap)}${caption ? '”' : ''}</div>` : '') +
    `<div class="chips">${labels || '<span class="chip none">no labels</span>'}</div>` +
    `</div>`
  );
}

function featuresSection(
  layer: number,
  paths: ReturnType<typeof runPaths>,
  manifest: CaptureManifest | null,
  audio: AudioStore,
  o: Required<Pick<ReportOptions, 'maxFeatures' | 'hClips' | 'lClips'>>,
): [string, 'ok' | 'missing' | 'error', FeaturesFile | null] {
  const title = `<h2 id="features-${layer}">Features — layer ${layer}</h2>`;
  if (!fs.existsSync(paths.features)) return [title + missing('Retrieval and ranking', paths.features), 'missing', null];
  let doc: FeaturesFile;
  try {
    doc = readFeatures(paths.features);
  } catch (e) {
    return [title + `<div class="missing">${esc(describeError(e))}</div>`, 'error', null];
  }
  const timelines = readJsonIf(paths.timelines);
  const clips = manifest?.clips ?? [];
  // one row and one card per group (features without grouping data are their own group)
  const byId = new Map(doc.features.map((f) => [f.id, f]));
  const reps = doc.features.filter((f) => f.group === undefined || f.group === f.id);
  const shown = reps.slice(0, o.maxFeatures);
  const others = (f: FeatureEntry) => (f.members ?? []).filter((id) => id !== f.id).map((id) => byId.get(id) ?? ({ id } as FeatureEntry));
  const memberList = (f: FeatureEntry) =>
    others(f)
      .map((g) => `<span class="member" title="mono ${esc(fmt(g.scores?.mono))}">#${g.id}${g.name ? ` ${esc(g.name)}` : ''}</span>`)
      .join(', ');
  const excluded = Object.entries(doc.excluded ?? {})
    .map(([r, n]) => `<li>${esc(r)}: <b>${n}</b></li>`)
    .join('');
  const summary =
    `<p class="lead">${doc.features.length} features kept of ${doc.m || '?'} (p = ${doc.p} clips per H/L, ${doc.nClips || clips.length} clips). ` +
    `${reps.length < doc.features.length ? `They form ${reps.length} groups (${esc(doc.grouping?.method ?? 'grouped in rank')}${doc.grouping && !doc.grouping.decoder ? '; decoder directions not compared: no SAE file' : ''}); each row and card is one group, shown by its best-ranked member. ` : ''}` +
    `Showing the top ${shown.length} by monosemanticity. Clip cards show <i>score · mean activation · coverage</i>; ` +
    `sparklines show the feature's activation over the clip's tokens (same scale within a feature).</p>` +
    (excluded ? `<details class="excl"><summary>Excluded features</summary><ul>${excluded}</ul></details>` : '');
  const table =
    `<table class="ftable"><thead><tr><th>#</th><th>feature</th><th>name</th><th>mono</th><th>coherence</th><th>separation</th><th>H mean</th><th>L mean</th><th>firing clips</th><th>also in group</th></tr></thead><tbody>` +
    shown
      .map((f, i) => {
        const s = f.scores ?? ({} as FeatureEntry['scores']);
        return (
          `<tr><td>${i + 1}</td><td><a href="#f-${layer}-${f.id}">#${f.id}</a></td><td>${f.name ? `<b>${esc(f.name)}</b>` : '<span class="dim">unnamed</span>'}` +
          `${f.support !== undefined ? ` <span class="dim">(${Math.round(f.support * 100)}%)</span>` : ''}</td>` +
          `<td class="num">${fmt(s.mono)} ${bar(s.mono ?? 0, Math.max(...shown.map((g) => g.scores?.mono ?? 0), 1e-9))}</td><td class="num">${fmt(s.coherence)}</td><td class="num">${fmt(s.separation)}</td>` +
          `<td class="num">${fmt(s.hMean)}</td><td class="num">${fmt(s.lMean)}</td><td class="num">${num(s.firingClips)}${s.firingShare !== undefined ? ` <span class="dim">(${Math.round(s.firingShare * 100)}%)</span>` : ''}</td>` +
          `<td class="members">${memberList(f) || '<span class="dim">–</span>'}</td></tr>`
        );
      })
      .join('') +
    `</tbody></table>`;
  const cards = shown
    .map((f, i) => {
      const tl: Record<string, number[]> | undefined = timelines?.features?.[f.id];
      const scale = tl ? Math.max(1e-9, ...Object.values(tl).flat()) : 1;
      const h = f.H.slice(0, o.hClips)
        .map((c, j) => clipCard(c, clips[c.clip], 'H', f.captions?.[j], tl?.[c.clip], scale, audio))
        .join('');
      const l = f.L.slice(0, o.lClips)
        .map((c) => clipCard(c, clips[c.clip], 'L', undefined, tl?.[c.clip], scale, audio))
        .join('');
      return (
        `<article class="feature" id="f-${layer}-${f.id}"><header><span class="rank">${i + 1}</span><h3>${f.name ? esc(f.name) : 'unnamed'} <span class="fid">#${f.id}</span></h3>` +
        `<span class="fscores">mono ${fmt(f.scores?.mono)} · coherence ${fmt(f.scores?.coherence)} · separation ${fmt(f.scores?.separation)}</span>` +
        `${others(f).length ? `<span class="fmembers">also in this group: ${memberList(f)}</span>` : ''}</header>` +
        `<div class="hl"><h4>Most representative (H<sup>k</sup>)</h4><div class="clips">${h || '<span class="dim">none</span>'}</div></div>` +
        `<div class="hl low"><h4>Least representative (L<sup>k</sup>)</h4><div class="clips">${l || '<span class="dim">none</span>'}</div></div>` +
        `</article>`
      );
    })
    .join('');
  const tlNote = timelines ? '' : `<div class="missing small">Activation timelines not computed (<code>${esc(path.basename(paths.timelines))}</code> not found).</div>`;
  return [title + summary + table + tlNote + cards, 'ok', doc];
}

// ---- benchmark ----------------------------------------------------------------------------------

function benchmarkSection(file: string): [string, 'ok' | 'missing' | 'error'] {
  const title = `<h2 id="benchmark">Benchmark against labels</h2>`;
  const ev = readJsonIf(file) as EvalFile | null;
  if (!ev) return [title + missing('Evaluation', file), 'missing'];
  const methods: [string, MethodResult | undefined][] = [
    ['SAE features', ev.sae],
    ['Neurons (±)', ev.neurons],
    ['Random directions', ev.random],
  ];
  const best = Math.max(...methods.map(([, r]) => r?.map ?? 0));
  const summary =
    `<table class="btable"><thead><tr><th>method</th><th>precision</th><th>recall</th><th>F1</th><th>mAP</th></tr></thead><tbody>` +
    methods
      .map(
        ([name, r]) =>
          `<tr class="${r && r.map === best ? 'best' : ''}"><td>${esc(name)}</td>` +
          ['precision', 'recall', 'f1'].map((k) => `<td class="num">${fmt((r as any)?.[k])} ${bar((r as any)?.[k] ?? 0)}</td>`).join('') +
          `<td class="num"><b>${fmt(r?.map)}</b> ${bar(r?.map ?? 0, 1, 'strong')}</td></tr>`,
      )
      .join('') +
    `</tbody></table>`;
  const ratio = ev.sae && ev.neurons && ev.random ? ev.sae.map / Math.max(ev.neurons.map, ev.random.map) - 1 : NaN;
  const headline = Number.isFinite(ratio)
    ? `<p class="lead">SAE mAP is <b>${ratio >= 0 ? '+' : ''}${(ratio * 100).toFixed(0)}%</b> relative to the best baseline, over ${ev.labels?.length ?? '?'} labels (${ev.nVal} validation / ${ev.nTest} test clips).</p>`
    : '';
  const labels = ev.labels ?? Object.keys(ev.sae?.perLabel ?? {});
  const perLabel =
    `<details open><summary>Per label (test split)</summary><table class="ptable"><thead><tr><th>label</th><th>SAE feature</th><th>AP</th><th>F1</th><th>neuron</th><th>AP</th><th>random dir.</th><th>AP</th></tr></thead><tbody>` +
    labels
      .map((l) => {
        const s = ev.sae?.perLabel?.[l];
        const n = ev.neurons?.perLabel?.[l];
        const r = ev.random?.perLabel?.[l];
        return (
          `<tr><td>${esc(l)}</td><td>#${esc(s?.feature)}</td><td class="num">${fmt(s?.ap)} ${bar(s?.ap ?? 0)}</td><td class="num">${fmt(s?.f1)}</td>` +
          `<td>${esc(n?.feature)}</td><td class="num">${fmt(n?.ap)}</td><td>${r ? `#${esc(r.feature)}` : '–'}</td><td class="num">${fmt(r?.ap)}</td></tr>`
        );
      })
      .join('') +
    `</tbody></table></details>`;
  const names =
    ev.name_accuracy === null || ev.name_accuracy === undefined
      ? `<p class="dim">Name accuracy: no named features yet (run describe).</p>`
      : `<p><b>Name accuracy</b>: ${fmt(ev.name_accuracy * 100, 0)}% of ${ev.named} named features agree with the label they detect best.</p>` +
        (ev.name_mismatches?.length
          ? `<table class="ptable"><thead><tr><th>feature</th><th>name</th><th>best label</th><th>val AP</th></tr></thead><tbody>` +
            ev.name_mismatches.map((m) => `<tr><td>#${m.feature}</td><td>${esc(m.name)}</td><td>${esc(m.label)}</td><td class="num">${fmt(m.ap)}</td></tr>`).join('') +
            `</tbody></table>`
          : '');
  const skipped = ev.skippedLabels?.length ? `<p class="dim">Labels without positives in validation or test (skipped): ${esc(ev.skippedLabels.join(', '))}.</p>` : '';
  return [title + headline + summary + ablationBlock(ev) + perLabel + names + skipped, 'ok'];
}

/** eval.json's ablation table (ablation.ts) beside the AR&D paper's Table 1 as reported. */
function ablationBlock(ev: EvalFile): string {
  const a = ev.ablations;
  if (!a?.rows) return `<p class="dim small">No ablation table in eval.json (re-run evaluate: it adds one).</p>`;
  const label: Record<string, string> = {
    ard: 'AR&D (mean × coverage)',
    mean: 'mean activation only',
    coverage: 'coverage only',
    random: 'random representatives',
    neurons: 'polysemantic neurons (±)',
  };
  const cell = (x: number | null | undefined, d = 2) => `<td class="num">${x === null || x === undefined ? '–' : fmt(x, d)}</td>`;
  const rows = Object.entries(a.rows)
    .map(([k, r]) => {
      const pub = a.published?.[a.comparedWith?.[k as keyof typeof a.comparedWith] ?? ''];
      return (
        `<tr><td>${esc(label[k] ?? k)}</td>${cell(r.mono, 3)}${cell(r.precision, 3)}${cell(r.recall, 3)}${cell(r.f1, 3)}<td class="num"><b>${fmt(r.map, 3)}</b></td>` +
        `<td class="num">${r.kept} / ${r.labelsCovered}</td>` +
        `<td class="dim">${esc(a.comparedWith?.[k as keyof typeof a.comparedWith] ?? '')}</td>${cell(pub?.mono)}${cell(pub?.precision)}${cell(pub?.recall)}${cell(pub?.f1)}${cell(pub?.map)}</tr>`
      );
    })
    .join('');
  return (
    `<h3>Ablation: how representatives are chosen</h3>` +
    `<table class="btable"><thead><tr><th>variant</th><th>mono</th><th>P</th><th>R</th><th>F1</th><th>mAP</th><th>kept / labels found</th>` +
    `<th>AR&amp;D paper row</th><th>mono</th><th>P</th><th>R</th><th>F1</th><th>mAP</th></tr></thead><tbody>${rows}</tbody></table>` +
    `<p class="dim small">Ours (p = ${esc(a.p)}, C = ${esc(a.C)}): ${esc(a.method)}. Paper: AR&amp;D Table 1 (FSD50K, Qwen2-Audio-7B) as reported; ` +
    `its monosemanticity is a CLAP-embedding effect size, ours rank's coherence × separation, so compare the order of the rows, not the values. ` +
    `Name quality: the paper reports CLAP 0.84 and BERTScore 0.92; with no CLAP or BERT model here, name accuracy below stands in.</p>`
  );
}

// ---- steering ----------------------------------------------------------------------------------

/**
 * steering.json: { sweeps: [{ feature, name?, layer?, question? | prompt?, clip?, target?,
 *   values: [{ value, answers: string[], flipRate? }] }] } (a bare array of sweeps also works).
 */
function steeringSection(file: string): [string, 'ok' | 'missing' | 'error'] {
  const title = `<h2 id="steering">Steering sweeps</h2>`;
  const doc = readJsonIf(file);
  if (!doc) return [title + missing('Steering', file), 'missing'];
  const sweeps: any[] = Array.isArray(doc) ? doc : Array.isArray(doc.sweeps) ? doc.sweeps : [];
  if (!sweeps.length) return [title + `<div class="missing">steering.json has no sweeps.</div><pre>${esc(JSON.stringify(doc, null, 1).slice(0, 2000))}</pre>`, 'error'];
  const body = sweeps
    .map((s) => {
      const values: any[] = Array.isArray(s.values) ? s.values : [];
      const rates = values.map((v) => Number(v.flipRate ?? v.flip_rate ?? NaN));
      const xs = values.map((v) => Number(v.value));
      const plot = rates.some(Number.isFinite) ? linePlot(xs, rates, { title: 'flip rate vs feature value', color: '#dc2626', width: 300, height: 160, xLabel: 'feature value' }) : '';
      const rows = values
        .map((v, i) => {
          const answers: string[] = Array.isArray(v.answers) ? v.answers : v.answer !== undefined ? [v.answer] : [];
          return (
            `<tr><td class="num">${num(v.value)}</td><td class="num">${fmt(rates[i], 2)} ${Number.isFinite(rates[i]) ? bar(rates[i]!) : ''}</td>` +
            `<td>${answers.slice(0, 3).map((a) => `<div class="answer">${esc(a)}</div>`).join('')}${answers.length > 3 ? `<div class="dim">… ${answers.length - 3} more</div>` : ''}</td></tr>`
          );
        })
        .join('');
      const q = s.question ?? s.prompt;
      return (
        `<article class="sweep"><header><h3>${esc(s.name ?? 'feature')} <span class="fid">#${esc(s.feature)}</span>${s.layer !== undefined ? ` <span class="dim">layer ${esc(s.layer)}</span>` : ''}</h3>` +
        `${q ? `<div class="question">Q: ${esc(q)}</div>` : ''}${s.target ? `<div class="dim">target: ${esc(s.target)}</div>` : ''}</header>` +
        `<div class="sweepbody">${plot}<table class="ptable"><thead><tr><th style="width:70px">value</th><th style="width:140px">flip rate</th><th>answers</th></tr></thead><tbody>${rows}</tbody></table></div></article>`
      );
    })
    .join('');
  return [title + experimentSummary(doc) + steeringComparison(doc) + body, 'ok'];
}

/** Several series over the same x (ascending) as one inline SVG, with a legend; y fixed to [0, 1] when `unit`. */
export function multiLinePlot(
  xs: number[],
  series: { label: string; ys: number[]; color: string; dash?: boolean }[],
  o: { title: string; width?: number; height?: number; xLabel?: string; unit?: boolean },
): string {
  const W = o.width ?? 360;
  const H = o.height ?? 200;
  const pad = { l: 44, r: 12, t: 26, b: 44 };
  const ok = (x: number, y: number) => Number.isFinite(x) && Number.isFinite(y);
  const all = series.flatMap((s) => xs.map((x, i) => [x, s.ys[i]!] as const).filter(([x, y]) => ok(x, y)));
  if (all.length === 0) return `<div class="plot empty">${esc(o.title)}: no data</div>`;
  let x0 = Math.min(...all.map((p) => p[0]));
  let x1 = Math.max(...all.map((p) => p[0]));
  let y0 = o.unit ? 0 : Math.min(...all.map((p) => p[1]));
  let y1 = o.unit ? 1 : Math.max(...all.map((p) => p[1]));
  if (x1 === x0) [x0, x1] = [x0 - 1, x1 + 1];
  if (y1 === y0) [y0, y1] = [y0 - 0.5, y1 + 0.5];
  const sx = (x: number) => pad.l + ((x - x0) / (x1 - x0)) * (W - pad.l - pad.r);
  const sy = (y: number) => H - pad.b - ((y - y0) / (y1 - y0)) * (H - pad.t - pad.b);
  const grid = [0, 0.5, 1]
    .map((f) => {
      const v = y0 + f * (y1 - y0);
      const y = sy(v);
      return `<line x1="${pad.l}" x2="${W - pad.r}" y1="${y.toFixed(1)}" y2="${y.toFixed(1)}" class="grid"/><text x="${pad.l - 6}" y="${(y + 4).toFixed(1)}" class="ytick">${esc(num(v, 3))}</text>`;
    })
    .join('');
  const lines = series
    .map((s) => {
      const pts = xs.map((x, i) => [x, s.ys[i]!] as const).filter(([x, y]) => ok(x, y));
      const poly = pts.map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(' ');
      const dots = pts.map(([x, y]) => `<circle cx="${sx(x).toFixed(1)}" cy="${sy(y).toFixed(1)}" r="2.4" fill="${s.color}"/>`).join('');
      return `<polyline points="${poly}" fill="none" stroke="${s.color}" stroke-width="1.8" stroke-linejoin="round"${s.dash ? ' stroke-dasharray="5 3"' : ''}/>${dots}`;
    })
    .join('');
  // legend keys one after another, each as wide as its label (about 6 px a character)
  const keyX: number[] = [];
  series.reduce((x, s) => (keyX.push(x), x + 28 + s.label.length * 6), pad.l);
  const legend = series
    .map((s, i) => {
      const x = keyX[i]!;
      return `<line x1="${x.toFixed(1)}" x2="${(x + 16).toFixed(1)}" y1="${H - 6}" y2="${H - 6}" stroke="${s.color}" stroke-width="2"${s.dash ? ' stroke-dasharray="5 3"' : ''}/><text x="${(x + 20).toFixed(1)}" y="${H - 2}" class="legend">${esc(s.label)}</text>`;
    })
    .join('');
  return (
    `<svg class="plot" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="${esc(o.title)}">` +
    `<text x="${pad.l}" y="16" class="ptitle">${esc(o.title)}</text>` +
    grid +
    `<line x1="${pad.l}" x2="${W - pad.r}" y1="${H - pad.b}" y2="${H - pad.b}" class="axis"/>` +
    `<text x="${pad.l}" y="${H - pad.b + 14}" class="xtick">${esc(num(x0))}</text>` +
    `<text x="${(pad.l + W - pad.r) / 2}" y="${H - pad.b + 14}" class="xtick mid">${esc(o.xLabel ?? '')}</text>` +
    `<text x="${W - pad.r}" y="${H - pad.b + 14}" class="xtick end">${esc(num(x1))}</text>` +
    lines +
    legend +
    `</svg>`
  );
}

/**
 * The feature's sweep beside its baselines (steering.json `baselines`: the best raw neuron and a
 * random direction, each moved by the feature's norm of change): flip rate per value, plotted
 * together, and each method's flip and control rates.
 */
export function steeringComparison(doc: any): string {
  const bases: any[] = Array.isArray(doc?.baselines) ? doc.baselines : [];
  const feat = Array.isArray(doc?.sweeps) ? doc.sweeps[0] : null;
  if (!bases.length || !feat || !Array.isArray(feat.values)) return '';
  const pct = (x: unknown) => (typeof x === 'number' ? `${(x * 100).toFixed(0)} %` : '–');
  // x: the value swept, or its magnitude when all are ≤ 0 (a suppressed feature)
  const vals: number[] = feat.values.map((v: any) => Number(v.value));
  const xs = vals.every((v) => v <= 0) ? vals.map((v) => Math.abs(v)) : vals;
  const rates = (vs: any[]) => xs.map((_: number, i: number) => Number(vs?.[i]?.flipRate ?? NaN));
  const colors: Record<string, string> = { neuron: '#d97706', random: '#6b7280' };
  const series = [
    { label: `SAE feature #${feat.feature}`, ys: rates(feat.values), color: '#dc2626' },
    ...bases.map((b) => ({ label: b.kind === 'neuron' ? `neuron ${b.details?.neuron ?? ''}`.trim() : b.kind === 'random' ? 'random direction' : String(b.kind), ys: rates(b.values), color: colors[b.kind] ?? '#2563eb', dash: true })),
  ];
  const plot = multiLinePlot(xs, series, { title: 'flip rate vs magnitude: feature and baselines', xLabel: `${xs === vals ? 'value' : '|value|'}${doc.value_unit && doc.value_unit !== 1 ? ` (1 unit = ${num(doc.value_unit, 4)})` : ''}`, unit: true, width: 380, height: 210 });
  const rows = [
    `<tr class="chosen"><td>SAE feature #${esc(doc.feature)}${doc.name ? ` (${esc(doc.name)})` : ''}</td><td class="num">${pct(doc.flip_rate)}</td><td class="num">${pct(doc.unchanged_rate)}</td><td class="dim">${esc(doc.strategy ?? '')}</td></tr>`,
    ...bases.map((b) => `<tr><td>${esc(b.kind)}</td><td class="num">${pct(b.flip_rate)}</td><td class="num">${pct(b.unchanged_rate)}</td><td class="dim">${esc(b.description ?? '')}</td></tr>`),
  ].join('');
  return (
    `<div class="sweepbody baselines">${plot}<div><p class="dim">Against baselines over the same ${esc(doc.clips)} clips and values${doc.baseline_scaling ? ` — ${esc(doc.baseline_scaling)}` : ''}.</p>` +
    `<table class="ptable baselines"><thead><tr><th>method</th><th>flip rate</th><th>control unchanged</th><th>what</th></tr></thead><tbody>${rows}</tbody></table></div></div>`
  );
}

/** The gender experiment's outcome and, when several named features were compared, that comparison. */
function experimentSummary(doc: any): string {
  if (Array.isArray(doc) || typeof doc.flip_rate !== 'number') return '';
  const pct = (x: unknown) => (typeof x === 'number' ? `${(x * 100).toFixed(0)} %` : '–');
  let html = `<p>Over ${esc(doc.clips)} clips: flip rate <b>${pct(doc.flip_rate)}</b>, control answer unchanged <b>${pct(doc.unchanged_rate)}</b>${doc.feature_source ? ` <span class="dim">(${esc(doc.feature_source)})</span>` : ''}.</p>`;
  const cands: any[] = Array.isArray(doc.selection?.candidates) ? doc.selection.candidates : [];
  if (cands.length) {
    const rows = cands
      .map((c) => `<tr${c.feature === doc.feature ? ' class="chosen"' : ''}><td>#${esc(c.feature)}</td><td>${esc(c.name)}</td><td class="num">${pct(c.flip_rate)}</td><td class="num">${pct(c.unchanged_rate)}</td></tr>`)
      .join('');
    html += `<p class="dim">Candidates compared on ${esc(doc.selection.clips)} selection clips (the chosen one is steered on the clips above):</p><table class="ptable selection"><thead><tr><th>feature</th><th>name</th><th>flip rate</th><th>control unchanged</th></tr></thead><tbody>${rows}</tbody></table>`;
  }
  return html;
}

// ---- page ---------------------------------------------------------------------------------------

const CSS = `
:root{--fg:#1f2937;--dim:#6b7280;--line:#e5e7eb;--bg:#f8fafc;--card:#fff;--acc:#2563eb;--warn:#b45309}
*{box-sizing:border-box}
body{margin:0;font:14px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:var(--fg);background:var(--bg)}
header.top{background:#0f172a;color:#e2e8f0;padding:22px 0 18px}
.wrap{max-width:1180px;margin:0 auto;padding:0 24px}
header.top h1{margin:0 0 4px;font-size:22px;font-weight:650;letter-spacing:.2px}
header.top .sub{color:#94a3b8;font-size:13px}
nav{position:sticky;top:0;z-index:5;background:rgba(255,255,255,.95);border-bottom:1px solid var(--line);backdrop-filter:blur(4px)}
nav .wrap{display:flex;gap:18px;flex-wrap:wrap;padding-top:8px;padding-bottom:8px}
nav a{color:var(--fg);text-decoration:none;font-weight:500;font-size:13px}
nav a:hover{color:var(--acc)}
main section{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:18px 22px;margin:18px 0}
h2{font-size:18px;margin:0 0 10px;font-weight:650}
h3{font-size:15px;margin:0;font-weight:600}
tr.chosen td{font-weight:600}
h4{font-size:12px;text-transform:uppercase;letter-spacing:.6px;color:var(--dim);margin:10px 0 6px;font-weight:600}
.lead{color:#374151;margin:4px 0 12px}
.dim{color:var(--dim)}
.missing{border:1px dashed #d1d5db;background:#f9fafb;color:#4b5563;padding:12px 14px;border-radius:8px}
.missing.small{padding:6px 10px;margin:8px 0;font-size:12.5px}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:12px}
.stat{border:1px solid var(--line);border-radius:8px;padding:10px 12px;background:#fcfdff}
.stat .v{font-size:20px;font-weight:650}
.stat .k{color:var(--dim);font-size:12px}
table{border-collapse:collapse;width:100%;margin:6px 0 10px;font-size:13px}
th{text-align:left;font-weight:600;color:#374151;border-bottom:2px solid var(--line);padding:6px 8px;white-space:nowrap}
td{border-bottom:1px solid #f1f5f9;padding:5px 8px;vertical-align:top}
tbody tr:nth-child(even){background:#fafbfc}
td.num{font-variant-numeric:tabular-nums;white-space:nowrap}
tr.best td{background:#eff6ff}
.bar{display:inline-block;width:70px;height:6px;background:#eef2f7;border-radius:3px;vertical-align:middle;margin-left:4px;overflow:hidden}
.bar span{display:block;height:100%;background:#93c5fd}
.bar.strong span{background:var(--acc)}
.plots{display:flex;flex-wrap:wrap;gap:10px}
svg.plot{background:#fff;border:1px solid var(--line);border-radius:8px}
svg .grid{stroke:#eef2f7}
svg .axis{stroke:#cbd5e1}
svg text{font:11px system-ui,sans-serif;fill:#6b7280}
svg .ptitle{font-weight:600;fill:#374151;font-size:12px}
svg .ytick{text-anchor:end}
svg .xtick.end{text-anchor:end}
svg .xtick.mid{text-anchor:middle}
svg .legend{font-size:10.5px;fill:#374151}
.quality{display:flex;flex-wrap:wrap;gap:14px;align-items:flex-start}
.qtable th{text-align:left;font-weight:500;color:var(--dim);padding:2px 12px 2px 0}
rect.hbar{fill:#2563eb}rect.hbar.dead{fill:#9ca3af}
.fmembers{display:block;font-size:12px;color:var(--dim)}
.kvs{display:flex;flex-wrap:wrap;gap:6px 14px;margin:0 0 10px;font-size:12.5px}
.kv b{color:var(--dim);font-weight:500;margin-right:3px}
article.feature{border-top:1px solid var(--line);padding:14px 0 6px;margin-top:10px}
article.feature header{display:flex;align-items:baseline;gap:10px;flex-wrap:wrap}
.rank{display:inline-block;min-width:24px;height:24px;border-radius:12px;background:#0f172a;color:#fff;text-align:center;font-size:12px;line-height:24px;font-weight:600}
.fid{color:var(--dim);font-weight:400;font-size:13px}
.fscores{color:var(--dim);font-size:12.5px;font-variant-numeric:tabular-nums}
.clips{display:grid;grid-template-columns:repeat(auto-fill,minmax(205px,1fr));gap:10px}
.clip{border:1px solid var(--line);border-radius:8px;padding:8px;background:#fff;border-left:3px solid #3b82f6}
.hl.low .clip{border-left-color:#cbd5e1;background:#fcfcfd}
.cliphead{display:flex;justify-content:space-between;gap:6px;font-size:12px;margin-bottom:4px}
.cid{font-weight:600;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.cscore{color:var(--dim);font-variant-numeric:tabular-nums;white-space:nowrap}
audio{width:100%;height:32px;display:block;margin:2px 0}
.noaudio{font-size:12px;color:var(--warn);padding:4px 0}
svg.spark{display:block;margin:4px 0 2px;width:100%;height:26px}
.sparkfill{fill:#dbeafe}.sparkline{fill:none;stroke:#2563eb;stroke-width:1.3}
.hl.low .sparkfill{fill:#f1f5f9}.hl.low .sparkline{stroke:#94a3b8}
.caption{font-size:12.5px;color:#374151;font-style:italic;margin:2px 0}
.chips{display:flex;flex-wrap:wrap;gap:4px;margin-top:4px}
.chip{font-size:11px;background:#f1f5f9;border:1px solid #e2e8f0;border-radius:10px;padding:0 7px;color:#334155}
.chip.none{color:var(--dim)}
details summary{cursor:pointer;color:#374151;font-weight:500;margin:6px 0}
.sweep{border-top:1px solid var(--line);padding:12px 0}
.sweepbody{display:flex;gap:16px;flex-wrap:wrap;align-items:flex-start}
.sweepbody table{flex:1 1 420px;width:auto}
.question{margin:4px 0;color:#374151}
.answer{font-size:12.5px;border-left:2px solid #e5e7eb;padding-left:6px;margin:2px 0}
footer{color:var(--dim);font-size:12px;padding:8px 0 30px}
footer code,section code{background:#f1f5f9;padding:0 4px;border-radius:4px;font-size:12px}
`;

// Hands each player its clip's audio (embedded once per clip) and keeps one clip playing at a time.
const JS = `
(function(){
  var el=document.getElementById('audio-data');
  var data={};
  try{data=JSON.parse(el?el.textContent:'{}');}catch(e){data={};}
  var players=document.querySelectorAll('audio[data-clip]');
  for(var i=0;i<players.length;i++){
    var a=players[i], src=data[a.getAttribute('data-clip')];
    if(src){a.src=src;}
    a.addEventListener('play',function(ev){
      for(var j=0;j<players.length;j++){if(players[j]!==ev.target){players[j].pause();}}
    });
  }
})();
`;

/** Writes RUN/report.html (atomically) and says which sections had data. */
export function writeReport(run: string, opts: ReportOptions = {}): ReportResult {
  const sections: ReportResult['sections'] = {};
  let manifest: CaptureManifest | null = null;
  let manifestError: string | null = null;
  const manifestFile = path.join(run, 'capture', 'manifest.json');
  if (fs.existsSync(manifestFile)) {
    try {
      manifest = readCaptureManifest(run);
    } catch (e) {
      manifestError = describeError(e);
    }
  }
  const layers = opts.layers ?? discoverLayers(run, manifest);
  const dirs = [opts.corpusDir, manifest?.corpus, run, path.join(run, 'capture'), process.cwd()].filter((d): d is string => !!d);
  const audio = new AudioStore(manifest?.clips ?? [], dirs, opts.audioSeconds ?? 4, opts.audioRate ?? 16000, opts.maxAudioBytes ?? 16 * 1024 * 1024, opts.decodedAudio);
  const o = { maxFeatures: opts.maxFeatures ?? 12, hClips: opts.hClips ?? 5, lClips: opts.lClips ?? 3 };

  const parts: string[] = [];
  const nav: string[] = [`<a href="#overview">Overview</a>`];
  const featureDocs: FeaturesFile[] = [];
  const safe = (name: string, f: () => [string, 'ok' | 'missing' | 'error', ...unknown[]]): string => {
    try {
      const [html, st] = f();
      sections[name] = st;
      return html;
    } catch (e) {
      sections[name] = 'error';
      return `<div class="missing">Could not render ${esc(name)}: ${esc(describeError(e))}</div>`;
    }
  };
  for (const L of layers) {
    const p = runPaths(run, L);
    parts.push(`<section>${safe(`training-${L}`, () => trainingSection(L, p.saeTrain))}</section>`);
    nav.push(`<a href="#training-${L}">Training L${L}</a>`);
    parts.push(
      `<section>${safe(`features-${L}`, () => {
        const r = featuresSection(L, p, manifest, audio, o);
        if (r[2]) featureDocs.push(r[2]);
        return r;
      })}</section>`,
    );
    nav.push(`<a href="#features-${L}">Features L${L}</a>`);
  }
  if (!layers.length) parts.push(`<section><h2 id="features">Features</h2>${missing('Capture', manifestFile)}</section>`);
  const evalFile = path.join(run, 'eval.json');
  parts.push(`<section>${safe('benchmark', () => benchmarkSection(evalFile))}</section>`);
  nav.push(`<a href="#benchmark">Benchmark</a>`);
  parts.push(`<section>${safe('steering', () => steeringSection(path.join(run, 'steering.json')))}</section>`);
  nav.push(`<a href="#steering">Steering</a>`);

  let ev: EvalFile | null = null;
  try {
    ev = readJsonIf(evalFile);
  } catch {
    /* reported by the benchmark section */
  }
  const stats: [string, string][] = [
    ['clips', manifest ? String(manifest.clips.length) : '–'],
    [layers.length > 1 ? 'layers' : 'layer', layers.length ? layers.join(', ') : '–'],
    ['features kept', featureDocs.length ? String(featureDocs.reduce((a, d) => a + d.features.length, 0)) : '–'],
    ['named', featureDocs.length ? String(featureDocs.reduce((a, d) => a + d.features.filter((f) => f.name).length, 0)) : '–'],
    ['SAE mAP', ev?.sae ? fmt(ev.sae.map) : '–'],
    ['best baseline mAP', ev?.neurons && ev?.random ? fmt(Math.max(ev.neurons.map, ev.random.map)) : '–'],
    ['name accuracy', ev && ev.name_accuracy !== null && ev.name_accuracy !== undefined ? `${fmt(ev.name_accuracy * 100, 0)}%` : '–'],
  ];
  const overview =
    `<section><h2 id="overview">Overview</h2>` +
    (manifestError ? `<div class="missing">Capture manifest unreadable: ${esc(manifestError)}</div>` : manifest ? '' : missing('Capture', manifestFile)) +
    `<div class="cards">${stats.map(([k, v]) => `<div class="stat"><div class="v">${esc(v)}</div><div class="k">${esc(k)}</div></div>`).join('')}</div>` +
    `</section>`;

  const title = opts.title ?? 'AR&D report';
  const model = manifest?.model ? ` · model ${esc(manifest.model)}` : '';
  const html =
    `<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">` +
    `<title>${esc(title)}</title><link rel="icon" href="data:,"><style>${CSS}</style></head><body>` +
    `<header class="top"><div class="wrap"><h1>${esc(title)}</h1><div class="sub">${esc(path.resolve(run))}${model} · generated ${esc(new Date().toISOString().slice(0, 16).replace('T', ' '))} UTC</div></div></header>` +
    `<nav><div class="wrap">${nav.join('')}</div></nav>` +
    `<main class="wrap">${overview}${parts.join('')}</main>` +
    `<footer class="wrap"><p><b>Methods.</b> Representativeness: <code>${esc(SCORE_FORMULA)}</code>. Ranking: ${esc(RANK_METHOD)}. Evaluation: ${esc(EVAL_METHOD)}.</p>` +
    `<p>Audio: first ${num(opts.audioSeconds ?? 4)} s of each clip at ${opts.audioRate ?? 16000} Hz, 16-bit${audio.skipped ? `; ${audio.skipped} clips left out to keep the file small` : ''}.</p></footer>` +
    `<script type="application/json" id="audio-data">${audio.json()}</script><script>${JS}</script>` +
    `</body></html>\n`;
  const file = path.join(run, 'report.html');
  writeFileAtomic(file, html);
  return { file, bytes: Buffer.byteLength(html), sections, audioClips: audio.uris.size, audioSkipped: audio.skipped, audioPending: [...audio.pending] };
}

/**
 * writeReport with players for every clip format ardgpu reads: renders once, decodes the FLAC, Ogg
 * and MP3 clips that rendering wanted (a clip that fails to decode says why in place of its
 * player), and renders again with them.
 */
export async function writeReportAsync(run: string, opts: ReportOptions = {}): Promise<ReportResult> {
  const first = writeReport(run, opts);
  if (!first.audioPending.length) return first;
  const decoded = new Map<string, Float32Array | string>(opts.decodedAudio ?? []);
  const n = Math.round((opts.audioSeconds ?? 4) * 16000);
  for (const file of first.audioPending) {
    // only the seconds the player needs are kept; a long clip is decoded through (and so checked) a block at a time
    let clip: ClipReader | null = null;
    try {
      clip = await openClip(file, n);
      decoded.set(file, await clip.window(0, Math.min(clip.length, n)));
    } catch (e) {
      decoded.set(file, describeError(e));
    } finally {
      clip?.close();
    }
  }
  return writeReport(run, { ...opts, decodedAudio: decoded });
}

function discoverLayers(run: string, manifest: CaptureManifest | null): number[] {
  const found = new Set<number>();
  if (fs.existsSync(run)) {
    for (const f of fs.readdirSync(run)) {
      const m = f.match(/^(?:features|sae|retrieve)-(\d+)\.(?:json|safetensors|train\.json)$/);
      if (m) found.add(Number(m[1]));
    }
  }
  if (!found.size) for (const l of manifest?.layers ?? []) found.add(l);
  return [...found].sort((a, b) => a - b);
}
