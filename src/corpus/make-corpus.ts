// makeCorpus: renders the planned probe corpus to DIR/clips/*.wav, DIR/manifest.jsonl and
// DIR/corpus.json. Deterministic for a seed (byte-identical files) and resumable: a clip whose file
// already exists under its expected name (the name carries a hash of the clip's recipe) and decodes
// as a valid corpus WAV is kept, not re-rendered.
import { encodeWav } from '../audio/wav.js';
import * as fs from 'node:fs';
import * as path from 'node:path';
import wavefile from 'wavefile';
import { ArdError } from '../util/errors.js';
import { writeFileAtomic, writeJsonAtomic } from '../util/fs.js';
import { REF_PEAK, applyAugment } from './augment.js';
import { SR, addInto, peak, scaleToPeak, scaleToRms } from './dsp.js';
import { qualityTag, speak } from './espeak.js';
import { CORPUS_FILE, MANIFEST_FILE, type ManifestEntry } from './manifest.js';
import {
  CONCEPTS, CORPUS_VERSION, DEFAULT_SEED, DEFAULT_SIZE, MAX_DURATION, MIN_DURATION, MIN_DURATION_VARIED, SPLITS, planCorpus,
  varietyLevel, type ClipPlan, type CorpusPlan, type Split, type VarietyVersion,
} from './plan.js';
import { checkRecordedSources, recordedConcept, renderRecorded } from './recorded.js';
import { Rng, hash32, mix32, seedToU32 } from './rng.js';
import { synthesize } from './synth.js';

export interface MakeCorpusProgress {
  /** Clips finished so far (rendered or kept). */
  done: number;
  total: number;
  /** The clip just finished, relative to `out`. */
  file: string;
  /** True when an existing file was kept. */
  skipped: boolean;
}

export interface MakeCorpusOptions {
  /** Corpus directory (created if missing). */
  out: string;
  /** Integer (0 … 2³²−1) or any string (hashed). Default 0. */
  seed?: number | string;
  /** Number of clips. Default 1200. */
  size?: number;
  onProgress?: (p: MakeCorpusProgress) => void;
  /** Clips rendered at once (espeak-ng child processes run in parallel). Default 2. */
  concurrency?: number;
  /** The varied corpus, version 1 (true) to 7 (plan.ts PlanOptions.variety). */
  variety?: boolean | VarietyVersion;
}

export interface SplitCounts {
  clips: number;
  female: number;
  male: number;
  augmented: number;
  seconds: number;
  labels: Record<string, number>;
}

export interface CorpusInfo {
  version: number;
  seed: number;
  size: number;
  /** The varied corpus (more voices, warps, single words, band limits, clipping): true for version 1, else the version (2 to 7). */
  variety: boolean | 2 | 3 | 4 | 5 | 6 | 7;
  sampleRate: number;
  concepts: string[];
  counts: Record<Split, SplitCounts> & { total: SplitCounts };
  /** espeak-ng voices per split (each voice belongs to exactly one). */
  voices: CorpusPlan['voices'];
}

export interface MakeCorpusResult {
  out: string;
  entries: ManifestEntry[];
  info: CorpusInfo;
  rendered: number;
  skipped: number;
  seconds: number;
}

const isSilent = (c: ClipPlan) => c.labels.length === 1 && c.labels[0] === 'silence';

/** Renders one planned clip to 16 kHz samples (peak ≤ 0.95). */
export async function renderClip(c: ClipPlan): Promise<Float32Array> {
  const rng = new Rng(c.seed);
  let x: Float32Array;
  const ref = 0.1; // RMS of the foreground before peak normalisation
  if (c.speech) {
    const sp = c.speech;
    const s = await speak({ voice: sp.voice, text: sp.sentence, speed: sp.speed, pitch: sp.pitch, ...(sp.warp !== undefined ? { warp: sp.warp } : {}), ...(sp.quality ? { quality: sp.quality } : {}) }, sp.short ? MIN_DURATION_VARIED : MIN_DURATION, c.maxCore);
    x = scaleToRms(s.samples, ref);
  } else if (isSilent(c)) {
    x = synthesize('silence', rng, c.duration!);
  } else {
    x = new Float32Array(Math.max(1, Math.round(c.duration! * SR)));
  }
  if (!isSilent(c)) {
    // Layers are set by RMS, but a sparse background (ticks, claps) may not out-peak the
    // foreground, or peak normalisation would bury the foreground.
    let fgPeak = c.speech ? peak(x) : 0;
    for (const l of c.layers) {
      // a recorded layer draws from its own stream, so adding it left the clip's other draws as they were
      const raw = l.style === 'recorded'
        ? await renderRecorded(recordedConcept(l.concept), new Rng(mix32(c.seed ^ hash32('recorded', l.concept))), x.length / SR)
        : synthesize(l.concept, rng, x.length / SR, l.style);
      const y = scaleToRms(raw, ref * Math.pow(10, l.levelDb / 20));
      if (fgPeak === 0) fgPeak = peak(y);
      else if (peak(y) > fgPeak) scaleToPeak(y, fgPeak);
      addInto(x, y);
    }
    scaleToPeak(x, REF_PEAK);
  }
  return applyAugment(x, c.augment, new Rng(mix32(c.seed ^ 0x9e3779b9)), isSilent(c));
}

/** Number of samples in an existing corpus WAV, or null when it is missing or not a valid clip. */
function existingClipSamples(file: string, minSeconds: number): number | null {
  if (!fs.existsSync(file)) return null;
  try {
    const w = new wavefile.WaveFile(fs.readFileSync(file));
    const fmt = w.fmt as { sampleRate: number; numChannels: number; bitsPerSample: number };
    if (fmt.sampleRate !== SR || fmt.numChannels !== 1 || fmt.bitsPerSample !== 16) return null;
    const n = (w.data as { chunkSize: number }).chunkSize / 2;
    return n >= Math.floor(minSeconds * SR) && n <= MAX_DURATION * SR ? n : null;
  } catch {
    return null;
  }
}

/** Deletes `<name>.<pid>.tmp` files left by an interrupted run (only when that process is gone). */
function removeStaleTmp(dir: string): void {
  for (const name of fs.readdirSync(dir)) {
    const m = /\.(\d+)\.tmp$/.exec(name);
    if (!m) continue;
    const pid = Number(m[1]);
    let alive = pid === process.pid;
    if (!alive) {
      try {
        process.kill(pid, 0);
        alive = true;
      } catch (e: any) {
        alive = e.code === 'EPERM';
      }
    }
    if (!alive) fs.rmSync(path.join(dir, name), { force: true });
  }
}

function emptyCounts(): SplitCounts {
  return { clips: 0, female: 0, male: 0, augmented: 0, seconds: 0, labels: Object.fromEntries(CONCEPTS.map((c) => [c, 0])) };
}

export async function makeCorpus(opts: MakeCorpusOptions): Promise<MakeCorpusResult> {
  const t0 = performance.now();
  if (!opts.out) throw new ArdError('make-corpus: --out is required');
  const seed = seedToU32(opts.seed ?? DEFAULT_SEED);
  const size = opts.size ?? DEFAULT_SIZE;
  const level = varietyLevel(opts.variety);
  const variety = level > 0;
  const plan = planCorpus(seed, size, { variety: opts.variety });
  if (level >= 4) checkRecordedSources(); // before anything is written
  const minSeconds = variety ? MIN_DURATION_VARIED : MIN_DURATION;
  const out = path.resolve(opts.out);
  try {
    fs.mkdirSync(path.join(out, 'clips'), { recursive: true });
  } catch (e: any) {
    throw new ArdError(`${out}: cannot create directory (${e.code ?? e.message})`);
  }

  removeStaleTmp(out);
  removeStaleTmp(path.join(out, 'clips'));

  const nSamples = new Array<number>(plan.clips.length).fill(0);
  let done = 0, rendered = 0, skipped = 0, next = 0;
  const worker = async () => {
    while (next < plan.clips.length) {
      const c = plan.clips[next++]!;
      const file = path.join(out, c.file);
      const have = existingClipSamples(file, minSeconds);
      if (have !== null) {
        nSamples[c.index] = have;
        skipped++;
      } else {
        const x = await renderClip(c);
        writeFileAtomic(file, encodeWav(x, SR, file));
        nSamples[c.index] = x.length;
        rendered++;
      }
      done++;
      opts.onProgress?.({ done, total: plan.clips.length, file: c.file, skipped: have !== null });
    }
  };
  const conc = Math.max(1, Math.floor(opts.concurrency ?? 2));
  await Promise.all(Array.from({ length: conc }, worker));

  const entries: ManifestEntry[] = plan.clips.map((c) => ({
    file: c.file,
    labels: [...c.labels],
    caption: c.caption,
    gender: c.gender,
    speech: c.speech !== null,
    split: c.split,
    // the varied corpus's voice perturbation is part of the clip's recipe: listed with the augmentations
    augment: [...c.augmentTags, ...(c.speech?.warp !== undefined && c.speech.warp !== 1 ? [`vtl:x${c.speech.warp.toFixed(3)}`] : []), ...(c.speech?.f0 ? [`f0:${c.speech.f0}Hz`] : []), ...(c.speech?.quality ? [qualityTag(c.speech.quality)] : [])],
    duration: nSamples[c.index]! / SR,
    voice: c.speech?.voice ?? null,
    sentence: c.speech?.sentence ?? null,
    seed: c.seed,
  }));
  const counts = { train: emptyCounts(), val: emptyCounts(), test: emptyCounts(), total: emptyCounts() };
  for (const e of entries) {
    for (const k of [e.split, 'total'] as const) {
      const s = counts[k];
      s.clips++;
      if (e.gender) s[e.gender]++;
      if (e.augment.length) s.augmented++;
      s.seconds += e.duration;
      for (const l of e.labels) s.labels[l] = (s.labels[l] ?? 0) + 1;
    }
  }
  for (const k of [...SPLITS, 'total'] as const) counts[k].seconds = Math.round(counts[k].seconds * 100) / 100;
  const info: CorpusInfo = {
    // version 1 writes `true`, as before, so its corpus.json is unchanged
    version: CORPUS_VERSION, seed, size, variety: level >= 2 ? (level as 2 | 3 | 4 | 5 | 6 | 7) : variety, sampleRate: SR, concepts: [...CONCEPTS], counts, voices: plan.voices,
  };
  writeFileAtomic(path.join(out, MANIFEST_FILE), entries.map((e) => JSON.stringify(e)).join('\n') + '\n');
  writeJsonAtomic(path.join(out, CORPUS_FILE), info);
  return { out, entries, info, rendered, skipped, seconds: (performance.now() - t0) / 1000 };
}
