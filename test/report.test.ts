// The HTML report, checked in a real browser: a small synthetic RUN is written, the report is
// rendered by headless Chromium (screenshot + DOM dump with console logging) and inspected.
import { afterAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { encodeWav } from '../src/audio/wav.js';
import { evaluateAll } from '../src/ard/evaluate.js';
import type { FeaturesFile } from '../src/ard/rank.js';
import { densityHistogramPlot, linePlot, multiLinePlot, sparkline, trainingSeries, writeReport } from '../src/ard/report.js';
import { groupFeatures, readFeatures } from '../src/ard/rank.js';
import { qualityFromCounts } from '../src/ard/quality.js';
import type { CaptureManifest } from '../src/ard/run.js';
import { randn, rng } from './helpers.js';

const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ardgpu-report-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const LABELS = ['female speech', 'male speech', 'alarm', 'ticking'];
const LAYER = 5;

/** A RUN with every stage's output, small: 16 clips, 4 features. */
function syntheticRun(dir: string): void {
  const r = rng(11);
  fs.mkdirSync(path.join(dir, 'clips'), { recursive: true });
  const clips: CaptureManifest['clips'] = [];
  let row = 0;
  for (let i = 0; i < 16; i++) {
    const label = LABELS[i % 4]!;
    const dur = 1.5 + (i % 3) * 1.5; // up to 4.5 s: the report truncates to 4 s
    const n = Math.round(dur * 16000);
    const x = new Float32Array(n);
    const f0 = 220 + 110 * (i % 4);
    for (let t = 0; t < n; t++) x[t] = 0.3 * Math.sin((2 * Math.PI * f0 * t) / 16000) * (label === 'alarm' ? (Math.floor(t / 1600) % 2) : 1) + 0.02 * (r() - 0.5);
    const file = `clips/clip-${i}.wav`;
    fs.writeFileSync(path.join(dir, file), encodeWav(x, 16000));
    const T = Math.round(dur / 0.04);
    clips.push({ id: `clip-${i}`, file, labels: [label], split: ['train', 'val', 'test', 'val'][Math.floor(i / 4) % 4]!, caption: `a ${label}`, duration: dur, rowStart: row, rowCount: T, frameSeconds: 0.04 });
    row += T;
  }
  const manifest: CaptureManifest = { model: 'tiny-audiollm', layers: [LAYER], d: 8, dtype: 'f32', positions: 'audio', clips, shards: {} };
  fs.mkdirSync(path.join(dir, 'capture'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'capture', 'manifest.json'), JSON.stringify(manifest));
  // training log
  const steps = Array.from({ length: 40 }, (_, s) => ({ step: s * 50, mse: 2 * Math.exp(-s / 8) + 0.1, fvu: Math.exp(-s / 10) * 0.9 + 0.05, dead: Math.max(0, 0.4 - s * 0.012), auxk: 0.5 * Math.exp(-s / 5) }));
  fs.writeFileSync(path.join(dir, `sae-${LAYER}.train.json`), JSON.stringify({ d: 8, m: 64, k: 4, layer: LAYER, steps }));
  // features: each detects one label; H from its label's clips, L from others
  const names = ['female speech', 'male speech', 'alarm', 'ticking'];
  const feats: FeaturesFile = {
    layer: LAYER, p: 3, C: 4, method: 'synthetic', nClips: 16, m: 64,
    excluded: { 'dead (fires on no clip)': 40, 'fires on more than 80% of clips': 3 },
    features: names.map((name, j) => {
      const own = clips.map((_, i) => i).filter((i) => i % 4 === j);
      const other = clips.map((_, i) => i).filter((i) => i % 4 !== j);
      return {
        id: 10 + j,
        name,
        support: 1,
        captions: own.slice(0, 3).map((i) => `a clip of ${name} (${i})`),
        scores: { mono: 0.8 - 0.1 * j, coherence: 0.9 - 0.1 * j, separation: 0.88, within: 0.8, cross: -0.1, hMean: 0.9, lMean: 0.02, firingClips: 6, firingShare: 0.375, maxMean: 1 },
        H: own.slice(0, 3).map((i, k) => ({ clip: i, id: `clip-${i}`, score: 0.9 - 0.1 * k, mean: 1 - 0.1 * k, coverage: 0.9 })),
        L: other.slice(0, 2).map((i) => ({ clip: i, id: `clip-${i}`, score: 0.02, mean: 0.05, coverage: 0.1 })),
      };
    }),
  };
  fs.writeFileSync(path.join(dir, `features-${LAYER}.json`), JSON.stringify(feats));
  const timelines: any = { layer: LAYER, features: {}, frameSeconds: {} };
  for (const f of feats.features) {
    timelines.features[f.id] = {};
    for (const c of [...f.H, ...f.L]) {
      const T = clips[c.clip]!.rowCount;
      timelines.features[f.id][c.clip] = Array.from({ length: T }, (_, t) => Math.max(0, c.mean * (1 + Math.sin(t / 3)) * (r() > 0.2 ? 1 : 0)));
      timelines.frameSeconds[c.clip] = 0.04;
    }
  }
  fs.writeFileSync(path.join(dir, `timelines-${LAYER}.json`), JSON.stringify(timelines));
  // evaluation computed by the real code on small synthetic scores
  const m = 64;
  const clipMean = new Float32Array(16 * m);
  const resid = randn(16 * 8, 5);
  clips.forEach((c, i) => {
    for (let f = 0; f < m; f++) clipMean[i * m + f] = 0.1 * r();
    clipMean[i * m + 10 + LABELS.indexOf(c.labels[0]!)] = 0.8 + 0.2 * r();
  });
  const ev = evaluateAll({ clips, clipMean, m, residMean: resid, d: 8, features: feats, seed: 3, layer: LAYER });
  fs.writeFileSync(path.join(dir, 'eval.json'), JSON.stringify(ev));
  fs.writeFileSync(
    path.join(dir, 'steering.json'),
    JSON.stringify({
      feature: 10, clips: 20, flip_rate: 0.9, unchanged_rate: 0.95, feature_source: 'features-2.json: the best of 2 candidates',
      selection: { clips: 5, candidates: [{ feature: 12, name: 'male voice', mode: 'add', flip_rate: 0.2, unchanged_rate: 1, clips: 5 }, { feature: 10, name: 'female speech', mode: 'set', flip_rate: 0.8, unchanged_rate: 1, clips: 5 }] },
      sweeps: [
        {
          feature: 10, name: 'female speech', layer: LAYER, question: 'Is the speaker male or female?', target: 'male',
          values: [-8, -4, 0, 4, 8].map((v, i) => ({ value: v, flipRate: [0, 0.05, 0.1, 0.55, 0.9][i], answers: [`The speaker is ${i > 2 ? 'male' : 'female'}.`, 'A person speaking.', 'Female voice.', 'Another answer.'] })),
        },
      ],
    }),
  );
}

// ---- minimal PNG decoding (8-bit RGB/RGBA, non-interlaced) -------------------------------------

function decodePng(buf: Buffer): { width: number; height: number; channels: number; pixels: Uint8Array } {
  if (buf.readUInt32BE(0) !== 0x89504e47) throw new Error('not a PNG');
  let off = 8;
  let width = 0;
  let height = 0;
  let channels = 0;
  const idat: Buffer[] = [];
  while (off < buf.length) {
    const len = buf.readUInt32BE(off);
    const type = buf.toString('ascii', off + 4, off + 8);
    const data = buf.subarray(off + 8, off + 8 + len);
    if (type === 'IHDR') {
      width = data.readUInt32BE(0);
      height = data.readUInt32BE(4);
      const depth = data[8]!;
      const colour = data[9]!;
      if (depth !== 8 || (colour !== 2 && colour !== 6) || data[12] !== 0) throw new Error(`unsupported PNG (depth ${depth}, colour ${colour}, interlace ${data[12]})`);
      channels = colour === 6 ? 4 : 3;
    } else if (type === 'IDAT') idat.push(data);
    else if (type === 'IEND') break;
    off += 12 + len;
  }
  const raw = zlib.inflateSync(Buffer.concat(idat));
  const stride = width * channels;
  const px = new Uint8Array(height * stride);
  for (let y = 0; y < height; y++) {
    const f = raw[y * (stride + 1)]!;
    const line = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    for (let x = 0; x < stride; x++) {
      const a = x >= channels ? px[y * stride + x - channels]! : 0;
      const b = y > 0 ? px[(y - 1) * stride + x]! : 0;
      const c = x >= channels && y > 0 ? px[(y - 1) * stride + x - channels]! : 0;
      let v = line[x]!;
      if (f === 1) v += a;
      else if (f === 2) v += b;
      else if (f === 3) v += (a + b) >> 1;
      else if (f === 4) {
        const p = a + b - c;
        const pa = Math.abs(p - a);
        const pb = Math.abs(p - b);
        const pc = Math.abs(p - c);
        v += pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
      }
      px[y * stride + x] = v & 255;
    }
  }
  return { width, height, channels, pixels: px };
}

function chromium(args: string[]): { stdout: string; stderr: string; status: number | null } {
  const profile = fs.mkdtempSync(path.join(tmp, 'chrome-'));
  const res = spawnSync(
    CHROMIUM,
    ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--hide-scrollbars', `--user-data-dir=${profile}`, ...args],
    { encoding: 'utf8', timeout: 60_000, maxBuffer: 256 * 1024 * 1024 },
  );
  return { stdout: res.stdout ?? '', stderr: res.stderr ?? '', status: res.status };
}

describe('report', () => {
  it('helpers: training logs in several shapes, plots, sparklines', () => {
    const a = trainingSeries({ steps: [{ step: 0, mse: 2, fvu: 1 }, { step: 10, mse: 1, fvu: 0.5 }] });
    expect(a.x).toEqual([0, 10]);
    expect(a.series).toEqual({ mse: [2, 1], fvu: [1, 0.5] });
    const b = trainingSeries({ step: [0, 5, 9], fvu: [1, 0.6, 0.4], k: 32 });
    expect(b.x).toEqual([0, 5, 9]);
    expect(b.series.fvu).toEqual([1, 0.6, 0.4]);
    expect(b.meta.k).toBe(32);
    const c = trainingSeries([{ loss: 3 }, { loss: 2 }]);
    expect(c.x).toEqual([0, 1]);
    const svg = linePlot([0, 1, 2], [3, 2, 1], { title: 'mse <x>' });
    expect(svg).toMatch(/^<svg/);
    expect(svg).toContain('mse &lt;x&gt;');
    expect(svg.match(/<polyline points="([^"]+)"/)![1]!.split(' ')).toHaveLength(3);
    expect(sparkline([0, 1, 0.5], 1)).toMatch(/<polygon points="1,24 1\.0,24\.0 75\.0,2\.0 149\.0,13\.0 149\.0,24"/);
  });

  it('renders every section that has data and says which stages have not run', () => {
    const dir = path.join(tmp, 'partial');
    fs.mkdirSync(path.join(dir, 'capture'), { recursive: true });
    fs.writeFileSync(path.join(dir, 'capture', 'manifest.json'), JSON.stringify({ layers: [2], d: 4, dtype: 'f32', clips: [], shards: {} }));
    const res = writeReport(dir);
    expect(res.sections).toEqual({ 'training-2': 'missing', 'features-2': 'missing', benchmark: 'missing', steering: 'missing' });
    const html = fs.readFileSync(res.file, 'utf8');
    expect(html).toContain('<b>SAE training</b> has not run yet');
    expect(html).toContain('<b>Evaluation</b> has not run yet');
    expect(html).toContain('<b>Steering</b> has not run yet');
    // and with nothing at all
    const empty = path.join(tmp, 'empty');
    fs.mkdirSync(empty);
    const r2 = writeReport(empty);
    expect(fs.readFileSync(r2.file, 'utf8')).toContain('<b>Capture</b> has not run yet');
  });

  it("shows the steering experiment's outcome and the candidates it compared", () => {
    const dir = path.join(tmp, 'steer-summary');
    syntheticRun(dir);
    const html = fs.readFileSync(writeReport(dir, {}).file, 'utf8');
    expect(html).toMatch(/Over 20 clips: flip rate <b>90 %<\/b>, control answer unchanged <b>95 %<\/b>/);
    expect(html).toMatch(/Candidates compared on 5 selection clips/);
    expect(html).toMatch(/<tr class="chosen"><td>#10<\/td><td>female speech<\/td><td class="num">80 %<\/td>/);
    expect(html).toMatch(/<tr><td>#12<\/td><td>male voice<\/td><td class="num">20 %<\/td>/);
  });

  it('plots the steered feature beside its neuron and random-direction baselines (steering.json baselines)', () => {
    const dir = path.join(tmp, 'steer-baselines');
    syntheticRun(dir);
    const file = path.join(dir, 'steering.json');
    const doc = JSON.parse(fs.readFileSync(file, 'utf8'));
    const html0 = fs.readFileSync(writeReport(dir, {}).file, 'utf8');
    expect(html0).not.toContain('feature and baselines'); // no baselines, no comparison
    const values = (rates: number[]) => [-8, -4, 0, 4, 8].map((value, i) => ({ value, flipRate: rates[i], answers: ['x'] }));
    doc.baselines = [
      { kind: 'neuron', description: 'neuron 7: its clip mean rises on female speech clips', details: { neuron: 7 }, flip_rate: 0.15, unchanged_rate: 0.6, values: values([0, 0, 0.1, 0.1, 0.15]) },
      { kind: 'random', description: 'a random unit direction (Gaussian, seed 0)', details: { seed: 0 }, flip_rate: 0.05, unchanged_rate: 1, values: values([0, 0, 0.1, 0.05, 0.05]) },
    ];
    doc.baseline_scaling = 'same norm of change';
    fs.writeFileSync(file, JSON.stringify(doc));
    const html = fs.readFileSync(writeReport(dir, {}).file, 'utf8');
    const svg = html.match(/<svg[^>]*aria-label="flip rate vs magnitude: feature and baselines".*?<\/svg>/s)![0];
    expect(svg.match(/<polyline /g)).toHaveLength(3);
    expect(svg.match(/stroke-dasharray/g)).toHaveLength(4); // two dashed baseline lines and their legend keys
    for (const label of ['SAE feature #10', 'neuron 7', 'random direction']) expect(svg).toContain(`class="legend">${label}</text>`);
    expect(html).toMatch(/<tr class="chosen"><td>SAE feature #10<\/td><td class="num">90 %<\/td><td class="num">95 %<\/td>/);
    expect(html).toMatch(/<tr><td>neuron<\/td><td class="num">15 %<\/td><td class="num">60 %<\/td><td class="dim">neuron 7: its clip mean rises/);
    expect(html).toMatch(/<tr><td>random<\/td><td class="num">5 %<\/td><td class="num">100 %<\/td>/);
    expect(html).toContain('Against baselines over the same 20 clips and values — same norm of change.');
    // y runs from 0 to 1 whatever the rates; each point is placed on it
    const p = multiLinePlot([0, 1], [{ label: 'a', ys: [0, 1], color: '#000' }, { label: 'b', ys: [0.5, 0.5], color: '#111' }], { title: 't', width: 100, height: 100, unit: true });
    expect(p).toContain('<polyline points="44.0,56.0 88.0,26.0"'); // pad l 44, r 12, t 26, b 44
    expect(p).toContain('<polyline points="44.0,41.0 88.0,41.0"');
    expect(multiLinePlot([1], [{ label: 'a', ys: [NaN], color: '#000' }], { title: 'none' })).toContain('none: no data');
  });

  it('shows the SAE quality table and density histogram, and one ranked row and card per feature group', () => {
    const dir = path.join(tmp, 'quality-groups');
    syntheticRun(dir);
    // quality: 64 latents over 1000 tokens; 40 dead, 2 dense (> 100 firings), the rest rare
    const counts = Array.from({ length: 64 }, (_, j) => (j < 40 ? 0 : j < 42 ? 500 : 3));
    const q = qualityFromCounts(counts, 1000, 25, 100, { d: 8, k: 4 });
    const trainFile = path.join(dir, `sae-${LAYER}.train.json`);
    fs.writeFileSync(trainFile, JSON.stringify({ ...JSON.parse(fs.readFileSync(trainFile, 'utf8')), quality: q }));
    // features 10 and 12 share their H^k clips: one group under 10 (the better ranked)
    const featFile = path.join(dir, `features-${LAYER}.json`);
    const doc = readFeatures(featFile);
    doc.features[2]!.H = doc.features[0]!.H.map((c) => ({ ...c }));
    expect(groupFeatures(doc.features, null)).toBe(3);
    fs.writeFileSync(featFile, JSON.stringify(doc));
    const html = fs.readFileSync(writeReport(dir).file, 'utf8');
    expect(html).toMatch(/<th>FVU<\/th><td class="num">0\.2500<\/td>/);
    expect(html).toMatch(/<th>explained variance<\/th><td class="num">0\.7500<\/td>/);
    expect(html).toMatch(/<th>dead latents \(never fired\)<\/th><td class="num">40 /);
    expect(html).toMatch(/<th>dense latents \(fire on &gt; 10% of tokens\)<\/th><td class="num">2 /);
    expect(html).toContain('aria-label="latents by log10 firing density"');
    const rows = html.match(/<table class="ftable">.*?<\/table>/s)![0].match(/<tr><td>\d+<\/td>/g)!;
    expect(rows).toHaveLength(3);
    expect(html).toMatch(/<td class="members"><span class="member" title="mono 0\.600">#12 alarm<\/span><\/td>/);
    expect(html).not.toContain('id="f-5-12"');
    expect(html).toContain('They form 3 groups');
  });

  it('draws a density histogram: one bar per non-empty bin and the dead latents apart', () => {
    const svg = densityHistogramPlot({ log10Lo: -10, log10Hi: 0, counts: [0, 2, 0, 5], dead: 3 });
    expect(svg.match(/<rect [^>]*class="hbar"/g)).toHaveLength(2);
    expect(svg.match(/<rect [^>]*class="hbar dead"/g)).toHaveLength(1);
    expect(svg).toContain('3 dead');
    expect(densityHistogramPlot({ log10Lo: -10, log10Hi: 0, counts: [0, 0], dead: 0 }).match(/<rect/g)).toBeNull();
  });

  it('is one self-contained file that a real browser renders: non-blank, audio players with data: sources, no console errors', () => {
    if (!fs.existsSync(CHROMIUM)) {
      throw new Error(`${CHROMIUM} not found: the report test needs Chromium. Run the setup with --with-test-tools (bash tools/setup.sh --with-test-tools).`);
    }
    const dir = path.join(tmp, 'full');
    syntheticRun(dir);
    const res = writeReport(dir, { title: 'AR&D report — synthetic run' });
    expect(res.sections).toEqual({ [`training-${LAYER}`]: 'ok', [`features-${LAYER}`]: 'ok', benchmark: 'ok', steering: 'ok' });
    // 4 features × (3 H + 2 L) clip cards; 16 distinct clips at most, each embedded once
    expect(res.audioClips).toBeGreaterThan(8);
    expect(res.bytes).toBeLessThan(4 * 1024 * 1024);
    const html = fs.readFileSync(res.file, 'utf8');
    // self-contained: nothing fetched from elsewhere
    expect(html).not.toMatch(/<(?:script|link|img)[^>]+(?:src|href)="(?!data:)[^"#]/i);
    expect(html).not.toMatch(/https?:\/\//);
    const url = 'file://' + res.file;

    const shot = path.join(tmp, 'report.png');
    const s = chromium([`--screenshot=${shot}`, '--window-size=1280,2000', url]);
    expect(fs.existsSync(shot), `no screenshot (status ${s.status}): ${s.stderr.slice(-800)}`).toBe(true);
    if (process.env.ARD_KEEP_SCREENSHOT) fs.copyFileSync(shot, process.env.ARD_KEEP_SCREENSHOT);
    if (process.env.ARD_KEEP_REPORT) fs.cpSync(dir, process.env.ARD_KEEP_REPORT, { recursive: true });
    const png = decodePng(fs.readFileSync(shot));
    expect([png.width, png.height]).toEqual([1280, 2000]);
    // non-blank: luminance varies, and a good share of pixels is not background
    let sum = 0;
    let sq = 0;
    let ink = 0;
    const n = png.width * png.height;
    for (let i = 0; i < n; i++) {
      const o = i * png.channels;
      const y = 0.299 * png.pixels[o]! + 0.587 * png.pixels[o + 1]! + 0.114 * png.pixels[o + 2]!;
      sum += y;
      sq += y * y;
      if (y < 200) ink++;
    }
    const mean = sum / n;
    const variance = sq / n - mean * mean;
    expect(variance).toBeGreaterThan(200);
    expect(ink / n).toBeGreaterThan(0.02);

    const d = chromium(['--enable-logging=stderr', '--v=0', '--virtual-time-budget=3000', '--dump-dom', url]);
    expect(d.status, d.stderr.slice(-800)).toBe(0);
    const dom = d.stdout;
    const audios = dom.match(/<audio\b[^>]*>/g) ?? [];
    expect(audios.length).toBe(4 * 5);
    const withData = audios.filter((a) => /\ssrc="data:audio\/wav;base64,[A-Za-z0-9+/]{100,}/.test(a));
    expect(withData.length).toBe(audios.length);
    expect(dom).toContain('Benchmark against labels');
    expect(dom).toMatch(/<svg class="plot"/);
    expect(dom).toMatch(/<svg class="spark"/);
    const consoleLines = d.stderr.split('\n').filter((l) => /CONSOLE|Uncaught/.test(l));
    expect(consoleLines, consoleLines.join('\n')).toEqual([]);

    // controls: the same checks do catch a script error and a blank page
    const bad = path.join(tmp, 'bad.html');
    fs.writeFileSync(bad, '<!DOCTYPE html><html><head><link rel="icon" href="data:,"></head><body style="background:#fff"><script>undefinedFunction();</script></body></html>');
    const c1 = chromium(['--enable-logging=stderr', '--v=0', '--dump-dom', 'file://' + bad]);
    expect(c1.stderr.split('\n').filter((l) => /CONSOLE|Uncaught/.test(l)).join('\n')).toMatch(/undefinedFunction/);
    const blankShot = path.join(tmp, 'blank.png');
    chromium([`--screenshot=${blankShot}`, '--window-size=320,240', 'file://' + bad]);
    const blank = decodePng(fs.readFileSync(blankShot));
    let bs = 0;
    let bq = 0;
    for (let i = 0; i < blank.width * blank.height; i++) {
      const y = blank.pixels[i * blank.channels]!;
      bs += y;
      bq += y * y;
    }
    const bn = blank.width * blank.height;
    expect(bq / bn - (bs / bn) ** 2).toBeLessThan(1);
  });
});
