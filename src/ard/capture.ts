// Capture: run the AudioLLM over every clip of a corpus with a fixed prompt and store the residual
// stream after the chosen decoder layers at the audio-token positions (or every position), in
// shards of whole clips. Each shard is written atomically and recorded in capture/progress.json,
// so an interrupted run resumes after the last complete shard; bad clips are reported and skipped.
//
//   RUN/capture/layer-L/shard-NNNNN.safetensors   acts [rows, d] (f16 or f32)
//   RUN/capture/manifest.json                     clips → rows, shards per layer (see run.ts)
import * as fs from 'node:fs';
import * as path from 'node:path';
import { readAudio } from '../audio/decode.js';
import { openClipSource, type ClipRecord, type CorpusOptions } from '../corpus/clips.js';
import type { AudioLLM } from '../model/audiollm.js';
import { buildChatPrompt } from '../model/chat.js';
import { writeSafetensors } from '../io/safetensors.js';
import { contiguous, slice } from '../tensor/ops/layout.js';
import { keep, tidy } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';
import { ArdError, describeError } from '../util/errors.js';
import { readJson, writeJsonAtomic } from '../util/fs.js';
import type { CaptureClip, CaptureManifest, CaptureShard, CaptureSource, CaptureWindow } from './run.js';
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
  const { captureDir: capDir, manifest: manifestFile } = runPaths(o.run, layers[0]!);
  const progressFile = path.join(capDir, 'progress.json');
  const inputsHash = inputsKey({ ...o, layers }, clips);

  if (!o.force && isFresh(manifestFile, inputsHash)) {
    const m = readJson<CaptureManifest>(manifestFile);
    return { manifest: manifestFile, skipped: true, clips: m.clips.length, rows: m.clips.reduce((a, c) => a + c.rowCount, 0), bad: m.bad ?? [], skippedRows: source.skippedRows, split: source.split, seconds: 0 };
  }
  clearFresh(manifestFile);
  let prog: Progress = { inputsHash, clips: [], shards: Object.fromEntries(layers.map((l) => [String(l), []])), bad: [], next: 0, rows: 0 };
  if (!o.force && fs.existsSync(progressFile)) {
    const p = readJson<Progress>(progressFile);
    if (p.inputsHash === inputsHash) prog = p;
  }
  if (prog.next === 0) {
    // fresh start: nothing of an older capture may leak into this one
    fs.rmSync(capDir, { recursive: true, force: true });
  }
  fs.mkdirSync(capDir, { recursive: true });

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
      const rel = `layer-${l}/shard-${String(idx).padStart(5, '0')}.safetensors`;
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
    let samples: Float32Array;
    try {
      samples = (await readAudio(c.file)).samples;
    } catch (e) {
      badClip(c.file, describeError(e));
      continue;
    }
    // one prompt per window of the model's audio window, exactly as ask() builds it for that window
    const windows = model.windows(samples.length);
    if (!windows.length) {
      badClip(c.file, `${c.file}: ${samples.length} samples are too short to give an audio token`);
      continue;
    }
    const rowStart = written + pendingRows;
    const captured: CaptureWindow[] = [];
    for (const w of windows) {
      const rows = await captureWindow(c.file, samples.subarray(w.from, w.to));
      for (const l of layers) pending.get(l)!.push(rows.get(l)!);
      const rowCount = rows.get(layers[0]!)!.length / d;
      captured.push({ index: w.index, start: w.start, end: w.end, rowStart: written + pendingRows, rowCount });
      pendingRows += rowCount;
      if (pendingRows >= o.shardRows! && w !== windows[windows.length - 1]) writeShard();
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
      duration: samples.length / 16000,
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
  };
  writeJsonAtomic(manifestFile, manifest);
  markFresh(manifestFile, inputsHash);
  fs.rmSync(progressFile, { force: true });
  return { manifest: manifestFile, skipped: false, clips: prog.clips.length, rows: prog.rows, bad: prog.bad, skippedRows: source.skippedRows, split: source.split, seconds: (Date.now() - t0) / 1000 };
}
