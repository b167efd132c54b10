// Capture: run the AudioLLM over every clip of a corpus with a fixed prompt and store the residual
// stream after the chosen decoder layers at the audio-token positions (or every position), in
// shards of whole clips. Each shard is written atomically and recorded in capture/progress.json,
// so an interrupted run resumes after the last complete shard; bad clips are reported and skipped.
//
//   RUN/capture/layer-L/shard-NNNNN.safetensors   acts [rows, d] (f16 or f32)
//   RUN/capture/manifest.json                     clips → rows, shards per layer (see run.ts)
//
// Sharded across machines (--shard I/N, or --shards N with the index from a SLURM array task or a
// Kubernetes Indexed Job): part I takes the I-th contiguous block of the clip list, which every part
// computes identically from the same corpus and options, and writes only below its own folder,
//   RUN/capture/parts/I-of-N/{layer-L/shard-NNNNN.safetensors, manifest.json, progress.json}
// so N processes can share one run folder, each resumable on its own. merge-capture
// (merge-capture.ts) then writes RUN/capture/manifest.json pointing at the parts' shards: the same
// clips, rows and manifest one process would have written (blocks keep the clip order).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { openClip, type ClipReader } from '../audio/stream.js';
import { openClipSource, type ClipRecord, type CorpusOptions } from '../corpus/clips.js';
import type { AudioLLM } from '../model/audiollm.js';
import { buildChatPrompt } from '../model/chat.js';
import { writeSafetensors } from '../io/safetensors.js';
import { contiguous, slice } from '../tensor/ops/layout.js';
import { keep, tidy } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';
import { ArdError, describeError } from '../util/errors.js';
import { readJson, writeJsonAtomic } from '../util/fs.js';
import type { CaptureClip, CaptureManifest, CapturePartInfo, CaptureShard, CaptureShardSpec, CaptureSource, CaptureWindow } from './run.js';
import { clearFresh, fileStamp, isFresh, markFresh, runPaths, stageInputsKey } from './run.js';

export const DEFAULT_CAPTURE_PROMPT = 'Describe the sound.';

export interface CaptureOptions {
  model: AudioLLM;
  /** A corpus folder in any layout openClipSource reads (manifest.jsonl, a dataset's metadata, class folders, WAVs). */
  corpus: string;
  /** A label file, its columns, and the split rule's choices (see openClipSource). */
  corpusOptions?: CorpusOptions;
  run: string;
  layers: number[];
  prompt?: string;
  positions?: 'audio' | 'all';
  dtype?: 'f16' | 'f32';
  /** Clips per shard are added until a shard holds at least this many rows. */
  shardRows?: number;
  /** Only these splits (default: all). */
  splits?: string[];
  /** At most this many clips (after the split filter), for quick runs. */
  limit?: number;
  force?: boolean;
  /** Model identity for the skip check (e.g. the weights folder and its files' sizes). */
  modelId?: string;
  onProgress?: (done: number, total: number, note?: string) => void;
  onBadClip?: (file: string, error: string) => void;
  /** Called once per metadata row the corpus reader left out (one line: FILE:LINE: problem). */
  onSkippedRow?: (line: string) => void;
  /** Capture only part `index` (0-based) of `count` into RUN/capture/parts/INDEX-of-COUNT/ (see the header). */
  shard?: CaptureShardSpec;
}

export type { CaptureShardSpec, CapturePartInfo } from './run.js';

/** The clips of part `index` of `count`: a contiguous block, sizes differing by at most one. */
export function partRange(total: number, index: number, count: number): { start: number; end: number } {
  return { start: Math.floor((index * total) / count), end: Math.floor(((index + 1) * total) / count) };
}

/** RUN/capture/parts/I-of-N, relative to the capture folder. */
export function partFolder(index: number, count: number): string {
  return `parts/${index}-of-${count}`;
}

/**
 * The part a sharded capture takes: `shard` is "I/N" (0 ≤ I < N); `shards` is N with I taken from the
 * environment: JOB_COMPLETION_INDEX (Kubernetes Indexed Job), else SLURM_ARRAY_TASK_ID minus
 * SLURM_ARRAY_TASK_MIN (divided by SLURM_ARRAY_TASK_STEP), checked against SLURM_ARRAY_TASK_COUNT.
 * Undefined when neither is given. Throws ArdError on values that do not fit.
 */
export function shardFromFlags(shard: string | undefined, shards: string | number | undefined, env: Record<string, string | undefined> = process.env): CaptureShardSpec | undefined {
  const int = (v: string | undefined) => (v !== undefined && /^\d+$/.test(v.trim()) ? Number(v.trim()) : undefined);
  if (shard !== undefined && shards !== undefined) throw new ArdError('capture: give --shard I/N or --shards N, not both');
  if (shard !== undefined) {
    const m = /^\s*(\d+)\s*\/\s*(\d+)\s*$/.exec(String(shard));
    if (!m) throw new ArdError(`capture: --shard ${shard}: expected I/N, e.g. 0/4 (I counts from 0)`);
    const index = Number(m[1]);
    const count = Number(m[2]);
    if (count < 1 || index >= count) throw new ArdError(`capture: --shard ${shard}: I must be 0 … N-1 and N at least 1`);
    return { index, count };
  }
  if (shards === undefined) return undefined;
  const count = int(String(shards));
  if (!count) throw new ArdError(`capture: --shards ${shards}: expected a positive whole number`);
  let index: number | undefined;
  let where: string;
  if (env.JOB_COMPLETION_INDEX !== undefined) {
    index = int(env.JOB_COMPLETION_INDEX);
    where = `JOB_COMPLETION_INDEX=${env.JOB_COMPLETION_INDEX}`;
    if (index === undefined) throw new ArdError(`capture: --shards: ${where} is not a whole number`);
  } else if (env.SLURM_ARRAY_TASK_ID !== undefined) {
    const id = int(env.SLURM_ARRAY_TASK_ID);
    const min = env.SLURM_ARRAY_TASK_MIN !== undefined ? int(env.SLURM_ARRAY_TASK_MIN) : 0;
    const step = env.SLURM_ARRAY_TASK_STEP !== undefined ? int(env.SLURM_ARRAY_TASK_STEP) : 1;
    where = `SLURM_ARRAY_TASK_ID=${env.SLURM_ARRAY_TASK_ID}`;
    if (id === undefined || min === undefined || !step) throw new ArdError(`capture: --shards: ${where}, SLURM_ARRAY_TASK_MIN=${env.SLURM_ARRAY_TASK_MIN}, SLURM_ARRAY_TASK_STEP=${env.SLURM_ARRAY_TASK_STEP}: not whole numbers`);
    if (id < min || (id - min) % step) throw new ArdError(`capture: --shards: ${where} is not on the array's range (min ${min}, step ${step})`);
    index = (id - min) / step;
    const total = env.SLURM_ARRAY_TASK_COUNT !== undefined ? int(env.SLURM_ARRAY_TASK_COUNT) : undefined;
    if (total !== undefined && total !== count) throw new ArdError(`capture: --shards ${count}, but the SLURM array has ${total} tasks (SLURM_ARRAY_TASK_COUNT): they must agree`);
  } else {
    throw new ArdError(`capture: --shards ${count}: no part index in the environment (JOB_COMPLETION_INDEX or SLURM_ARRAY_TASK_ID); outside a job array use --shard I/${count}`);
  }
  if (index >= count) throw new ArdError(`capture: --shards ${count}: ${where} gives part ${index}, beyond ${count - 1} (parts count from 0)`);
  return { index, count };
}

export interface CaptureResult {
  manifest: string;
  skipped: boolean;
  clips: number;
  rows: number;
  bad: { file: string; error: string }[];
  /** Metadata rows the corpus reader left out, one line each. */
  skippedRows: string[];
  /** How the clips' splits were decided. */
  split: CaptureSource['split'];
  seconds: number;
  /** A sharded capture: which part, and its clips of the whole list. */
  part?: CapturePartInfo;
}

interface Progress {
  inputsHash: string;
  /** Clips (by index into the source list) fully stored, and their rows. */
  clips: CaptureClip[];
  shards: Record<string, CaptureShard[]>;
  bad: { file: string; error: string }[];
  /** Index of the next source clip to process. */
  next: number;
  rows: number;
}

/** The capture's inputs: model, options, and each clip (file identity by size and mtime, labels, split). */
function inputsKey(o: CaptureOptions, clips: ClipRecord[]): string {
  return stageInputsKey('capture', {
    model: o.modelId ?? o.model.source, layers: o.layers, prompt: o.prompt, positions: o.positions, dtype: o.dtype, shardRows: o.shardRows,
    clips: clips.map((c) => [c.file, fileStamp(c.file), c.labels.join(','), c.split]),
  });
}

/**
 * The residual stream after each of `layers` for one window of audio (samples of at most one
 * encoder window) in the capture prompt: the audio-token rows, or every row with positions 'all'.
 * Layers whose hook did not run are missing from the map; the caller disposes the tensors.
 */
export function windowResiduals(
  model: AudioLLM,
  samples: Float32Array,
  layers: readonly number[],
  opts: { prompt?: string; positions?: 'audio' | 'all'; lastLayer?: number } = {},
): Map<number, Tensor> {
  if (!model.tokenizer) throw new ArdError(`${model.source}: no tokenizer.json (needed to build the prompt)`);
  if (samples.length > model.windowSamples) throw new ArdError(`capture: ${samples.length} samples are more than one audio window (${model.windowSamples})`);
  const tokens = model.audioTokens(samples.length);
  const ids = buildChatPrompt(model.tokenizer, [tokens], opts.prompt ?? DEFAULT_CAPTURE_PROMPT, { audioTokenIndex: model.audioTokenIndex });
  const first = ids.indexOf(model.audioTokenIndex);
  const [rowFrom, rowCount] = opts.positions === 'all' ? [0, ids.length] : [first, tokens];
  const got = new Map<number, Tensor>();
  const handles = layers.map((l) =>
    model.hooks.add({
      layer: l,
      fn: (resid, ctx) => {
        if (ctx.step !== 0) return;
        got.set(l, keep(contiguous(slice(resid, 0, rowFrom - ctx.start, rowFrom - ctx.start + rowCount))));
      },
    }),
  );
  try {
    const audio = model.encodeAudio(samples);
    try {
      tidy(() => void model.forward(ids, audio, { logits: 'none', lastLayer: opts.lastLayer }));
    } finally {
      audio.dispose();
    }
  } catch (e) {
    for (const t of got.values()) t.dispose();
    throw e;
  } finally {
    for (const h of handles) h.remove();
  }
  return got;
}

export async function capture(opts: CaptureOptions): Promise<CaptureResult> {
  const t0 = Date.now();
  const o: CaptureOptions = { prompt: DEFAULT_CAPTURE_PROMPT, positions: 'audio', dtype: 'f16', shardRows: 16384, ...opts };
  const { model } = o;
  const engine = model.engine;
  const nLayers = model.config.text_config.num_hidden_layers;
  const layers = [...new Set(o.layers)].sort((a, b) => a - b);
  if (!layers.length) throw new ArdError('capture: no layers given');
  for (const l of layers) if (!Number.isInteger(l) || l < 0 || l >= nLayers) throw new ArdError(`capture: layer ${l} out of range (the model has ${nLayers} decoder layers, 0–${nLayers - 1})`);
  if (o.dtype === 'f16' && !engine.f16) o.dtype = 'f32';
  if (!model.tokenizer) throw new ArdError(`${model.source}: no tokenizer.json (needed to build the prompt)`);
  const sourceReader = openClipSource(o.corpus, o.corpusOptions);
  let clips = sourceReader.clips(o.splits);
  const source: CaptureSource = { layout: sourceReader.layout, origin: path.resolve(sourceReader.origin), split: sourceReader.splitRule(), skippedRows: sourceReader.problems() };
  for (const line of source.skippedRows) o.onSkippedRow?.(line);
  if (!clips.length) throw new ArdError(`${o.corpus}: no clips${o.splits?.length ? ` in split(s) ${o.splits.join(',')}` : ''}${source.skippedRows.length ? ` (${source.skippedRows.length} metadata rows left out)` : ''}`);
  if (o.limit !== undefined) clips = clips.slice(0, o.limit);
  const { captureDir: capDir } = runPaths(o.run, layers[0]!);
  // the key of the whole capture: every part computes it from the whole clip list
  const inputsHash = inputsKey({ ...o, layers }, clips);
  let part: CapturePartInfo | undefined;
  let outDir = capDir; // where this process writes: the capture folder, or its part's folder
  let shardPrefix = '';
  let freshKey = inputsHash;
  if (o.shard) {
    const { index, count } = o.shard;
    if (!Number.isInteger(index) || !Number.isInteger(count) || count < 1 || index < 0 || index >= count) throw new ArdError(`capture: part ${index} of ${count}: the index must be 0 … count-1`);
    const r = partRange(clips.length, index, count);
    part = { index, count, clipStart: r.start, clipEnd: r.end, totalClips: clips.length };
    shardPrefix = `${partFolder(index, count)}/`;
    outDir = path.join(capDir, partFolder(index, count));
    freshKey = stageInputsKey('capture-part', { whole: inputsHash, index, count });
    clips = clips.slice(r.start, r.end);
  }
  const manifestFile = path.join(outDir, 'manifest.json');
  const progressFile = path.join(outDir, 'progress.json');

  if (!o.force && isFresh(manifestFile, freshKey)) {
    const m = readJson<CaptureManifest>(manifestFile);
    return { manifest: manifestFile, skipped: true, clips: m.clips.length, rows: m.clips.reduce((a, c) => a + c.rowCount, 0), bad: m.bad ?? [], skippedRows: source.skippedRows, split: source.split, seconds: 0, part };
  }
  clearFresh(manifestFile);
  let prog: Progress = { inputsHash: freshKey, clips: [], shards: Object.fromEntries(layers.map((l) => [String(l), []])), bad: [], next: 0, rows: 0 };
  if (!o.force && fs.existsSync(progressFile)) {
    const p = readJson<Progress>(progressFile);
    if (p.inputsHash === freshKey) prog = p;
  }
  if (prog.next === 0) {
    // fresh start: nothing of an older capture may leak into this one (a part clears only its own folder)
    fs.rmSync(outDir, { recursive: true, force: true });
  }
  fs.mkdirSync(outDir, { recursive: true });

  const d = model.config.text_config.hidden_size;
  const frameSeconds = model.frameSeconds;
  // pending (not yet written) rows per layer, as host arrays, with the clips they belong to
  let pending: Map<number, Float32Array[]> = new Map(layers.map((l) => [l, []]));
  let pendingClips: CaptureClip[] = [];
  let pendingRows = 0;
  let pendingBad: { file: string; error: string }[] = [];
  // rows in written shards; equals prog.rows except inside a long clip (see writeShard)
  let written = prog.rows;

  /**
   * Writes the pending rows as the next shard of each layer. Shards normally end at a clip's end;
   * a clip of many windows may also be split between shards (so host memory stays flat in its
   * length). progress.json is only written at clip ends (commit), so a run that dies inside a
   * clip resumes at that clip and rewrites its shards under the same names.
   */
  const writeShard = () => {
    if (pendingRows === 0) return;
    for (const l of layers) {
      const parts = pending.get(l)!;
      const all = new Float32Array(pendingRows * d);
      let at = 0;
      for (const p of parts) {
        all.set(p, at);
        at += p.length;
      }
      const idx = prog.shards[String(l)]!.length;
      const rel = `${shardPrefix}layer-${l}/shard-${String(idx).padStart(5, '0')}.safetensors`;
      writeSafetensors(
        path.join(capDir, rel),
        { acts: { dtype: o.dtype === 'f16' ? 'F16' : 'F32', shape: [pendingRows, d], data: all } },
        { layer: String(l), rowStart: String(written), prompt: o.prompt!, positions: o.positions! },
      );
      prog.shards[String(l)]!.push({ file: rel, rowStart: written, rowCount: pendingRows });
    }
    written += pendingRows;
    pending = new Map(layers.map((l) => [l, []]));
    pendingRows = 0;
  };

  const flushShard = () => {
    if (!pendingClips.length && !pendingBad.length) return;
    writeShard();
    prog.clips.push(...pendingClips);
    prog.bad.push(...pendingBad);
    prog.rows = written;
    prog.next += pendingClips.length + pendingBad.length;
    writeJsonAtomic(progressFile, prog);
    pendingClips = [];
    pendingBad = [];
  };

  const badClip = (file: string, error: string) => {
    pendingBad.push({ file, error });
    o.onBadClip?.(file, error);
    o.onProgress?.(prog.next + pendingClips.length + pendingBad.length, clips.length, 'bad clip skipped');
  };

  /** One window's residual rows at each layer, as host copies. */
  const captureWindow = async (file: string, samples: Float32Array): Promise<Map<number, Float32Array>> => {
    const got = windowResiduals(model, samples, layers, { prompt: o.prompt!, positions: o.positions! });
    const out = new Map<number, Float32Array>();
    try {
      for (const l of layers) {
        const t = got.get(l);
        if (!t) throw new ArdError(`capture: the layer ${l} hook did not run for ${file}`);
        out.set(l, (await t.toFloat32()).slice());
      }
    } finally {
      for (const t of got.values()) t.dispose();
    }
    return out;
  };

  o.onProgress?.(prog.next, clips.length);
  for (let i = prog.next; i < clips.length; i++) {
    const c = clips[i]!;
    // read a window at a time (a long clip is measured, and so checked, first): host memory stays
    // flat in the clip's length
    let clip: ClipReader;
    try {
      clip = await openClip(c.file, model.windowSamples);
    } catch (e) {
      badClip(c.file, describeError(e));
      continue;
    }
    // one prompt per window of the model's audio window, exactly as ask() builds it for that window
    const windows = model.windows(clip.length);
    if (!windows.length) {
      clip.close();
      badClip(c.file, `${c.file}: ${clip.length} samples are too short to give an audio token`);
      continue;
    }
    const rowStart = written + pendingRows;
    const captured: CaptureWindow[] = [];
    try {
      for (const w of windows) {
        const rows = await captureWindow(c.file, await clip.window(w.from, w.to));
        for (const l of layers) pending.get(l)!.push(rows.get(l)!);
        const rowCount = rows.get(layers[0]!)!.length / d;
        captured.push({ index: w.index, start: w.start, end: w.end, rowStart: written + pendingRows, rowCount });
        pendingRows += rowCount;
        if (pendingRows >= o.shardRows! && w !== windows[windows.length - 1]) writeShard();
      }
    } finally {
      clip.close();
    }
    const rowCount = written + pendingRows - rowStart;
    pendingClips.push({
      id: c.id,
      file: c.file,
      labels: c.labels,
      split: c.split,
      gender: c.gender ?? null,
      speech: c.speech,
      caption: c.caption,
      duration: clip.length / 16000,
      rowStart,
      rowCount,
      frameSeconds,
      ...(captured.length > 1 ? { windows: captured } : {}),
    });
    if (pendingRows >= o.shardRows! || written > rowStart) flushShard();
    o.onProgress?.(prog.next + pendingClips.length + pendingBad.length, clips.length);
  }
  flushShard();

  const manifest: CaptureManifest = {
    model: o.modelId ?? model.source,
    prompt: o.prompt,
    layers,
    d,
    dtype: o.dtype!,
    positions: o.positions,
    clips: prog.clips,
    shards: prog.shards,
    bad: prog.bad,
    inputsHash,
    corpus: path.resolve(o.corpus),
    source,
    frameSeconds,
    createdAt: new Date().toISOString(),
    // a part's rows count from 0 in its own block; merge-capture moves them to the whole list's rows
    ...(part ? { part } : {}),
  };
  writeJsonAtomic(manifestFile, manifest);
  markFresh(manifestFile, freshKey);
  fs.rmSync(progressFile, { force: true });
  return { manifest: manifestFile, skipped: false, clips: prog.clips.length, rows: prog.rows, bad: prog.bad, skippedRows: source.skippedRows, split: source.split, seconds: (Date.now() - t0) / 1000, part };
}
