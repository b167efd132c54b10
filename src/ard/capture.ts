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
import type { CaptureClip, CaptureManifest, CaptureShard, CaptureSource } from './run.js';
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
  const frameSeconds = (model.frontend.hopLength / model.frontend.samplingRate) * 4; // conv stride 2 × pool 2
  // pending (not yet written) rows per layer, as host arrays, with the clips they belong to
  let pending: Map<number, Float32Array[]> = new Map(layers.map((l) => [l, []]));
  let pendingClips: CaptureClip[] = [];
  let pendingRows = 0;
  let pendingBad: { file: string; error: string }[] = [];

  const flushShard = () => {
    if (!pendingClips.length && !pendingBad.length) return;
    if (pendingRows > 0) {
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
          { layer: String(l), rowStart: String(prog.rows), prompt: o.prompt!, positions: o.positions! },
        );
        prog.shards[String(l)]!.push({ file: rel, rowStart: prog.rows, rowCount: pendingRows });
      }
    }
    prog.clips.push(...pendingClips);
    prog.bad.push(...pendingBad);
    prog.rows += pendingRows;
    prog.next += pendingClips.length + pendingBad.length;
    writeJsonAtomic(progressFile, prog);
    pending = new Map(layers.map((l) => [l, []]));
    pendingClips = [];
    pendingBad = [];
    pendingRows = 0;
  };

  o.onProgress?.(prog.next, clips.length);
  for (let i = prog.next; i < clips.length; i++) {
    const c = clips[i]!;
    let samples: Float32Array;
    try {
      samples = (await readAudio(c.file)).samples;
    } catch (e) {
      const error = describeError(e);
      pendingBad.push({ file: c.file, error });
      o.onBadClip?.(c.file, error);
      o.onProgress?.(prog.next + pendingClips.length + pendingBad.length, clips.length, 'bad clip skipped');
      continue;
    }
    // one audio block per clip (its windows' tokens back to back), exactly as ask() builds it
    const nAudio = model.audioTokens(samples.length);
    const ids = buildChatPrompt(model.tokenizer, [nAudio], o.prompt!, { audioTokenIndex: model.audioTokenIndex });
    const first = ids.indexOf(model.audioTokenIndex);
    const [rowFrom, rowCount] = o.positions === 'all' ? [0, ids.length] : [first, nAudio];
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
        tidy(() => void model.forward(ids, audio, { logits: 'none' }));
      } finally {
        audio.dispose();
      }
    } finally {
      for (const h of handles) h.remove();
    }
    for (const l of layers) {
      const t = got.get(l);
      if (!t) throw new ArdError(`capture: the layer ${l} hook did not run for ${c.file}`);
      pending.get(l)!.push((await t.toFloat32()).slice());
      t.dispose();
    }
    pendingClips.push({
      id: c.id,
      file: c.file,
      labels: c.labels,
      split: c.split,
      gender: c.gender ?? null,
      speech: c.speech,
      caption: c.caption,
      duration: samples.length / 16000,
      rowStart: prog.rows + pendingRows,
      rowCount,
      frameSeconds,
    });
    pendingRows += rowCount;
    if (pendingRows >= o.shardRows!) flushShard();
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
