import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import wavefile from 'wavefile';
import { ArdError } from '../src/util/errors.js';
import { makeCorpus, type MakeCorpusResult } from '../src/corpus/make-corpus.js';
import { readManifest, type ManifestEntry } from '../src/corpus/manifest.js';
import { CONCEPTS, SPLITS, planCorpus, sentenceSplit, voiceSpeaker, voiceVariant } from '../src/corpus/plan.js';
import { resample } from '../src/audio/resample.js';
import { GENERATORS, SOUND_CONCEPTS } from '../src/corpus/synth.js';
import { Rng } from '../src/corpus/rng.js';

const SMALL = 60;
let tmp: string;
let runA: MakeCorpusResult;

function listFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else out.push(path.relative(dir, p));
    }
  };
  walk(dir);
  return out;
}

function readWav(file: string): { rate: number; channels: number; bits: number; pcm: Int16Array } {
  const w = new wavefile.WaveFile(fs.readFileSync(file));
  const fmt = w.fmt as { sampleRate: number; numChannels: number; bitsPerSample: number };
  return { rate: fmt.sampleRate, channels: fmt.numChannels, bits: fmt.bitsPerSample, pcm: w.getSamples(false, Int16Array) as unknown as Int16Array };
}

/** Median F0 (Hz) of voiced frames by autocorrelation; rough but enough to tell 100 Hz from 220 Hz. */
function medianF0(pcm: Int16Array, sr: number): number {
  const x = Float64Array.from(pcm, (v) => v / 32768);
  const frame = Math.floor(0.04 * sr), hop = Math.floor(0.01 * sr);
  let peak = 0;
  for (const v of x) peak = Math.max(peak, Math.abs(v));
  const f0s: number[] = [];
  for (let s = 0; s + frame < x.length; s += hop) {
    let e = 0;
    for (let i = 0; i < frame; i++) e += x[s + i]! ** 2;
    if (Math.sqrt(e / frame) < 0.1 * peak) continue;
    let best = 0, bestLag = 0;
    for (let lag = Math.floor(sr / 450); lag <= Math.floor(sr / 60); lag++) {
      let c = 0;
      for (let i = 0; i < frame - lag; i++) c += x[s + i]! * x[s + i + lag]!;
      if (c > best) [best, bestLag] = [c, lag];
    }
    if (best > 0.4 * e && bestLag > 0) f0s.push(sr / bestLag);
  }
  f0s.sort((a, b) => a - b);
  return f0s.length ? f0s[Math.floor(f0s.length / 2)]! : 0;
}

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ardgpu-corpus-'));
  runA = await makeCorpus({ out: path.join(tmp, 'a'), seed: 11, size: SMALL });
});

afterAll(() => {
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

describe('resample', () => {
  const tone = (f: number, sr: number, n: number) => Float32Array.from({ length: n }, (_, i) => Math.sin((2 * Math.PI * f * i) / sr));
  const rmsMid = (y: Float32Array) => {
    let s = 0;
    const a = Math.floor(y.length * 0.2), b = Math.floor(y.length * 0.8);
    for (let i = a; i < b; i++) s += y[i]! * y[i]!;
    return Math.sqrt(s / (b - a));
  };
  it('keeps in-band tones at the right level and frequency, and removes what would alias', () => {
    const y = resample(tone(1000, 22050, 22050), 22050, 16000);
    expect(y.length).toBe(16000);
    expect(Math.abs(20 * Math.log10(rmsMid(y) * Math.SQRT2))).toBeLessThan(0.1);
    // Compare with an ideal 1 kHz sine at 16 kHz (same phase: both start at t = 0).
    const ref = tone(1000, 16000, 16000);
    let err = 0;
    for (let i = 1000; i < 15000; i++) err = Math.max(err, Math.abs(y[i]! - ref[i]!));
    expect(err).toBeLessThan(1e-3);
    const alias = resample(tone(10000, 22050, 22050), 22050, 16000);
    expect(20 * Math.log10(rmsMid(alias) * Math.SQRT2)).toBeLessThan(-60);
    const up = resample(tone(440, 8000, 8000), 8000, 16000);
    expect(up.length).toBe(16000);
    expect(Math.abs(rmsMid(up) * Math.SQRT2 - 1)).toBeLessThan(0.01);
  });
});

describe('synth generators', () => {
  it('give 16 kHz samples of the asked length, different per seed, within [-1, 1]', () => {
    for (const c of SOUND_CONCEPTS) {
      const a = GENERATORS[c](new Rng(1), 1.5);
      const b = GENERATORS[c](new Rng(2), 1.5);
      expect(a.length, c).toBe(24000);
      let pa = 0, diff = 0;
      for (let i = 0; i < a.length; i++) {
        pa = Math.max(pa, Math.abs(a[i]!));
        diff += Math.abs(a[i]! - b[i]!);
      }
      expect(pa, c).toBeLessThanOrEqual(1);
      expect(pa, c).toBeGreaterThan(c === 'silence' ? 0 : 0.5);
      if (c === 'silence') expect(pa).toBeLessThan(0.01);
      expect(diff, c).toBeGreaterThan(0);
    }
  });
});

describe('corpus plan (default size, no audio)', () => {
  const plan = planCorpus(0, 1200);
  it('covers at least 24 concepts with enough clips each', () => {
    const n = new Map<string, number>();
    for (const c of plan.clips) for (const l of c.labels) n.set(l, (n.get(l) ?? 0) + 1);
    expect(CONCEPTS.length).toBeGreaterThanOrEqual(24);
    expect(n.size).toBeGreaterThanOrEqual(24);
    for (const c of CONCEPTS) expect(n.get(c) ?? 0, c).toBeGreaterThanOrEqual(30);
    expect(n.get('female speech')).toBeGreaterThanOrEqual(150);
    expect(n.get('male speech')).toBeGreaterThanOrEqual(150);
    const mixes = plan.clips.filter((c) => c.labels.length > 1).length / plan.clips.length;
    expect(mixes).toBeGreaterThanOrEqual(0.2);
    expect(mixes).toBeLessThanOrEqual(0.25);
  });
  it('splits ~70/15/15, disjoint by sentence, voice and seed', () => {
    const count = (s: string) => plan.clips.filter((c) => c.split === s).length / plan.clips.length;
    expect(Math.abs(count('train') - 0.7)).toBeLessThan(0.03);
    expect(Math.abs(count('val') - 0.15)).toBeLessThan(0.03);
    expect(Math.abs(count('test') - 0.15)).toBeLessThan(0.03);
    const sentenceSplitOf = new Map<string, string>();
    const variantSplitOf = new Map<string, string>();
    for (const c of plan.clips) {
      if (!c.speech) continue;
      const variant = voiceSpeaker(c.speech.voice);
      expect(sentenceSplitOf.get(c.speech.sentence) ?? c.split).toBe(c.split);
      expect(variantSplitOf.get(variant) ?? c.split, variant).toBe(c.split);
      sentenceSplitOf.set(c.speech.sentence, c.split);
      variantSplitOf.set(variant, c.split);
      expect(sentenceSplit(0, c.speech.sentence)).toBe(c.split);
    }
    expect(sentenceSplitOf.size).toBeGreaterThanOrEqual(300); // hundreds of distinct sentences
    expect(new Set(plan.clips.map((c) => c.seed)).size).toBe(plan.clips.length);
    expect(new Set(plan.clips.map((c) => c.file)).size).toBe(plan.clips.length);
    for (const s of SPLITS) {
      const g = new Set(plan.clips.filter((c) => c.split === s).map((c) => c.gender));
      expect(g.has('female') && g.has('male'), s).toBe(true);
      // Each split has every concept.
      const labels = new Set(plan.clips.filter((c) => c.split === s).flatMap((c) => c.labels));
      expect(labels.size, s).toBe(CONCEPTS.length);
    }
  });
  it('captions keep a recognisable word of every label', () => {
    const key: Record<string, RegExp> = {
      'female speech': /woman|female/, 'male speech': /\bman\b|\bmale\b/, 'engine hum': /engine|hum/,
      'water drip': /drip/, 'square buzz': /square/, 'sawtooth buzz': /sawtooth/, 'rising chirp': /rising|upward/,
      'falling chirp': /falling|downward/, 'white noise': /white/, 'pink noise': /pink/, 'brown noise': /brown/,
      'low tone': /low/, 'mid tone': /mid/, 'high tone': /high/, birdsong: /bird/, heartbeat: /heart/,
      ticking: /tick/, clapping: /clap/, knocking: /knock/, whistle: /whistl/, alarm: /alarm/,
    };
    for (const c of plan.clips) {
      for (const l of c.labels) expect(c.caption, `${l} in "${c.caption}"`).toMatch(key[l] ?? new RegExp(l));
    }
    expect(new Set(plan.clips.map((c) => c.caption)).size).toBeGreaterThan(300);
  });
  it('plans the same corpus for the same seed and a different one for another seed', () => {
    expect(JSON.stringify(planCorpus(0, 1200))).toBe(JSON.stringify(plan));
    const other = planCorpus(1, 1200);
    expect(other.clips.map((c) => c.file)).not.toEqual(plan.clips.map((c) => c.file));
  });
  it('rejects a size that is too small', () => {
    expect(() => planCorpus(0, 5)).toThrow(ArdError);
  });
});

describe(`small corpus (size ${SMALL})`, () => {
  it('writes a valid manifest and corpus.json', () => {
    const dir = path.join(tmp, 'a');
    const entries = readManifest(dir);
    expect(entries.length).toBe(SMALL);
    expect(entries).toEqual(runA.entries);
    const info = JSON.parse(fs.readFileSync(path.join(dir, 'corpus.json'), 'utf8'));
    expect(info.seed).toBe(11);
    expect(info.size).toBe(SMALL);
    expect(info.concepts.length).toBeGreaterThanOrEqual(24);
    expect(info.counts.train.clips + info.counts.val.clips + info.counts.test.clips).toBe(SMALL);
    for (const e of entries) {
      expect(e.file).toMatch(/^clips\/\d{5}-[a-z_+]+-[0-9a-f]{8}\.wav$/);
      expect(e.labels.length).toBeGreaterThan(0);
      for (const l of e.labels) expect(CONCEPTS).toContain(l);
      expect(e.caption.length).toBeGreaterThan(3);
      const sp = e.labels.find((l) => l.endsWith('speech'));
      expect(e.speech).toBe(!!sp);
      expect(e.gender).toBe(sp === 'female speech' ? 'female' : sp === 'male speech' ? 'male' : null);
      expect(e.speech ? typeof e.voice === 'string' && typeof e.sentence === 'string' : e.voice === null && e.sentence === null).toBe(true);
      for (const a of e.augment) expect(a).toMatch(/^(gain|noise|telephone|reverb|offset):/);
    }
    for (const s of SPLITS) {
      const inSplit = entries.filter((e) => e.split === s);
      expect(inSplit.some((e) => e.gender === 'female'), `${s} female`).toBe(true);
      expect(inSplit.some((e) => e.gender === 'male'), `${s} male`).toBe(true);
      expect(inSplit.some((e) => e.augment.length === 0), `${s} clean`).toBe(true);
      expect(inSplit.some((e) => e.augment.length > 0), `${s} augmented`).toBe(true);
    }
    // Disjoint splits by sentence and by voice.
    const bySplit = (key: (e: ManifestEntry) => string | null) => {
      const m = new Map<string, Set<string>>();
      for (const e of entries) {
        const k = key(e);
        if (k) m.set(k, (m.get(k) ?? new Set()).add(e.split));
      }
      return m.size > 0 && [...m.values()].every((s) => s.size === 1);
    };
    expect(bySplit((e) => e.sentence)).toBe(true);
    expect(bySplit((e) => e.voice)).toBe(true);
    expect(bySplit((e) => (e.voice ? voiceVariant(e.voice) : null))).toBe(true);
    expect(bySplit((e) => (e.voice ? voiceSpeaker(e.voice) : null))).toBe(true);
    expect(new Set(entries.map((e) => e.seed)).size).toBe(SMALL);
  });

  it('writes 16 kHz mono 16-bit clips of 1–4 s that never clip', () => {
    const dir = path.join(tmp, 'a');
    for (const e of runA.entries) {
      const w = readWav(path.join(dir, e.file));
      expect([w.rate, w.channels, w.bits], e.file).toEqual([16000, 1, 16]);
      expect(w.pcm.length / 16000).toBeCloseTo(e.duration, 9);
      expect(e.duration).toBeGreaterThanOrEqual(1);
      expect(e.duration).toBeLessThanOrEqual(4);
      let peak = 0, sq = 0;
      for (const v of w.pcm) {
        peak = Math.max(peak, Math.abs(v));
        sq += v * v;
      }
      expect(peak, e.file).toBeLessThanOrEqual(Math.ceil(0.95 * 32767));
      const rms = Math.sqrt(sq / w.pcm.length) / 32768;
      if (e.labels.length === 1 && e.labels[0] === 'silence') expect(rms, e.file).toBeLessThan(0.003);
      else expect(peak / 32768, e.file).toBeGreaterThan(0.02);
      const off = e.augment.find((a) => a.startsWith('offset:'));
      if (off) {
        const lead = Math.round(parseFloat(off.slice(7)) * 16000);
        expect(w.pcm.subarray(0, lead).every((v) => v === 0), e.file).toBe(true);
      }
    }
  });

  it('gives female voices a higher pitch than male voices', () => {
    const dir = path.join(tmp, 'a');
    const f0 = (g: string) => {
      const v = runA.entries
        .filter((e) => e.gender === g && e.labels.length === 1 && e.augment.length === 0)
        .map((e) => medianF0(readWav(path.join(dir, e.file)).pcm, 16000))
        .sort((a, b) => a - b);
      return v[Math.floor(v.length / 2)]!;
    };
    const female = f0('female'), male = f0('male');
    expect(female).toBeGreaterThan(160);
    expect(male).toBeLessThan(140);
  });

  it('is byte-identical for the same seed, different for another seed', async () => {
    const b = path.join(tmp, 'b');
    await makeCorpus({ out: b, seed: 11, size: SMALL });
    const a = path.join(tmp, 'a');
    const files = listFiles(a);
    expect(listFiles(b)).toEqual(files);
    for (const f of files) expect(fs.readFileSync(path.join(b, f)).equals(fs.readFileSync(path.join(a, f))), f).toBe(true);

    const c = path.join(tmp, 'c');
    const other = await makeCorpus({ out: c, seed: 12, size: SMALL });
    expect(fs.readFileSync(path.join(c, 'manifest.jsonl')).equals(fs.readFileSync(path.join(a, 'manifest.jsonl')))).toBe(false);
    const aClips = new Set(listFiles(path.join(a, 'clips')).map((f) => fs.readFileSync(path.join(a, 'clips', f)).toString('base64')));
    const shared = other.entries.filter((e) => aClips.has(fs.readFileSync(path.join(c, e.file)).toString('base64')));
    expect(shared.length).toBe(0);
  });

  it('resumes: keeps existing clips, re-renders missing or broken ones identically', async () => {
    const b = path.join(tmp, 'b');
    const entries = readManifest(b);
    const gone = path.join(b, entries[3]!.file);
    const broken = path.join(b, entries[7]!.file);
    const want = [fs.readFileSync(gone), fs.readFileSync(broken)];
    fs.rmSync(gone);
    fs.writeFileSync(broken, want[1]!.subarray(0, 30)); // truncated header
    fs.rmSync(path.join(b, 'manifest.jsonl'));
    const stale = path.join(b, 'clips', 'x.wav.999999999.tmp'); // left by a run that died
    fs.writeFileSync(stale, 'partial');
    const seen: boolean[] = [];
    const r = await makeCorpus({ out: b, seed: 11, size: SMALL, onProgress: (p) => seen.push(p.skipped) });
    expect(r.rendered).toBe(2);
    expect(r.skipped).toBe(SMALL - 2);
    expect(seen.length).toBe(SMALL);
    expect(fs.readFileSync(gone).equals(want[0]!)).toBe(true);
    expect(fs.readFileSync(broken).equals(want[1]!)).toBe(true);
    expect(fs.readFileSync(path.join(b, 'manifest.jsonl')).equals(fs.readFileSync(path.join(tmp, 'a', 'manifest.jsonl')))).toBe(true);
    expect(listFiles(b).some((f) => f.endsWith('.tmp'))).toBe(false);
  });
});

describe('readManifest', () => {
  it('names the file and line of a bad entry', () => {
    const dir = path.join(tmp, 'bad');
    fs.mkdirSync(dir, { recursive: true });
    const good: ManifestEntry = {
      file: 'clips/x.wav', labels: ['bell'], caption: 'a bell', gender: null, speech: false, split: 'train',
      augment: [], duration: 1.5, voice: null, sentence: null, seed: 1,
    };
    const file = path.join(dir, 'manifest.jsonl');
    fs.writeFileSync(file, `${JSON.stringify(good)}\n${JSON.stringify({ ...good, split: 'dev' })}\n`);
    expect(() => readManifest(dir)).toThrow(ArdError);
    expect(() => readManifest(dir)).toThrow(`${file}:2: 'split'`);
    fs.writeFileSync(file, `${JSON.stringify(good)}\n\n{not json\n`);
    expect(() => readManifest(dir)).toThrow(`${file}:3: invalid JSON`);
    fs.writeFileSync(file, `${JSON.stringify({ ...good, labels: 'bell' })}\n`);
    expect(() => readManifest(dir)).toThrow(`${file}:1: 'labels'`);
    fs.writeFileSync(file, `${JSON.stringify(good)}\n`);
    expect(readManifest(dir)).toEqual([good]);
    expect(() => readManifest(path.join(dir, 'nope'))).toThrow(/cannot read/);
  });

  it("reads clips marked 'labelled: false' and refuses labels on them", () => {
    const dir = path.join(tmp, 'unlabelled');
    fs.mkdirSync(dir, { recursive: true });
    const file = path.join(dir, 'manifest.jsonl');
    const rec = { file: 'clips/r.wav', labels: [], caption: '', gender: null, speech: true, split: 'train', augment: [], duration: 0.5, labelled: false, source: 'pkg:/a.ogg' };
    fs.writeFileSync(file, `${JSON.stringify(rec)}
`);
    expect(readManifest(dir)).toEqual([{ ...rec, voice: null, sentence: null, seed: 0, source: undefined }].map(({ source: _, ...e }) => e));
    fs.writeFileSync(file, `${JSON.stringify({ ...rec, labels: ['bell'] })}
`);
    expect(() => readManifest(dir)).toThrow(`${file}:1: 'labels' must be empty where 'labelled' is false`);
    fs.writeFileSync(file, `${JSON.stringify({ ...rec, labelled: 'no' })}
`);
    expect(() => readManifest(dir)).toThrow(`${file}:1: 'labelled' must be true or false`);
    // labelled: true is the same as absent
    fs.writeFileSync(file, `${JSON.stringify({ ...rec, labels: ['bell'], labelled: true })}
`);
    expect(readManifest(dir)[0]!.labelled).toBeUndefined();
  });
});
