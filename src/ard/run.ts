// The run folder: where each stage reads and writes (runPaths), what capture writes about the
// clips and shards it stored (the capture manifest), and how a stage decides that its output is
// still fresh for its inputs.
//
// Freshness: a stage describes everything its output depends on (options, upstream files by
// content or by size and mtime, model identity) and hashes that into a key (stageInputsKey).
// After writing its output it records the key in a hidden sidecar next to the output
// (.NAME.inputs); a later run with the same key finds the output fresh and skips unless --force.
// A stage removes the sidecar before it starts rewriting the output, so an output that was being
// replaced when the run died is never taken for fresh. One sidecar per output (rather than a field
// inside it) works for every file kind, including files two stages write (rank writes
// features-L.json, describe fills in its names).
import type { SplitRule } from '../corpus/clips.js';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { ClipRecord } from '../corpus/clips.js';
import { ShardReader } from '../io/shards.js';
import { ArdError } from '../util/errors.js';
import { hashFileInto, readJson, writeJsonAtomic } from '../util/fs.js';

// ---- layout --------------------------------------------------------------------------------------

export function runPaths(run: string, layer: number) {
  return {
    captureDir: path.join(run, 'capture'),
    manifest: path.join(run, 'capture', 'manifest.json'),
    sae: path.join(run, `sae-${layer}.safetensors`),
    saeCheckpoint: path.join(run, `sae-${layer}.ckpt.safetensors`),
    saeTrain: path.join(run, `sae-${layer}.train.json`),
    retrieve: path.join(run, `retrieve-${layer}.safetensors`),
    features: path.join(run, `features-${layer}.json`),
    timelines: path.join(run, `timelines-${layer}.json`),
    eval: path.join(run, 'eval.json'),
    steering: path.join(run, 'steering.json'),
    report: path.join(run, 'report.html'),
  };
}

export type RunPaths = ReturnType<typeof runPaths>;

// ---- the capture manifest (RUN/capture/manifest.json) ------------------------------------------

/** A captured clip: what its clip source said of it, its length, and where its rows are. */
export interface CaptureClip extends Pick<ClipRecord, 'id' | 'file' | 'labels' | 'split' | 'gender' | 'speech' | 'caption'> {
  duration: number;
  rowStart: number;
  rowCount: number;
  frameSeconds: number;
  /**
   * A clip longer than the model's audio window is captured window by window (one prompt per
   * window): each window's time range and its rows. Absent when the clip is one window. With
   * positions 'audio' row r of the clip lies at r × frameSeconds (every window but the last is
   * full); with positions 'all' each window's rows include its own prompt text.
   */
  windows?: CaptureWindow[];
}

/** One window of a captured clip: seconds [start, end) of the clip and the manifest rows it gave. */
export interface CaptureWindow {
  index: number;
  start: number;
  end: number;
  rowStart: number;
  rowCount: number;
}

export interface CaptureShard {
  file: string;
  rowStart: number;
  rowCount: number;
}

export interface CaptureSource {
  /** manifest, wav-folder, labels-file, class-folders, esc50, fsd50k or urbansound8k. */
  layout: string;
  origin: string;
  split: SplitRule;
  /** One line per metadata row left out (FILE:LINE: problem). */
  skippedRows: string[];
}

export interface CaptureManifest {
  model?: string;
  prompt?: string;
  layers: number[];
  d: number;
  dtype: 'f16' | 'f32';
  positions?: 'audio' | 'all';
  clips: CaptureClip[];
  shards: Record<string, CaptureShard[]>;
  bad?: { file: string; error: string }[];
  /** The capture's stage inputs key (provenance; freshness itself is the sidecar's). */
  inputsHash?: string;
  /** Directory corpus-relative clip files are resolved against (optional). */
  corpus?: string;
  /** Which reader listed the clips, how their splits were decided, and the metadata rows it left out. */
  source?: CaptureSource;
  frameSeconds?: number;
  createdAt?: string;
  /** Only in a part's manifest (RUN/capture/parts/I-of-N/manifest.json): which part it is. */
  part?: CapturePartInfo;
}

/** Part `index` (0-based) of `count` of a sharded capture. */
export interface CaptureShardSpec {
  index: number;
  count: number;
}

/** Which part, and which clips of the whole list it holds (clipStart ≤ i < clipEnd, of totalClips). */
export interface CapturePartInfo extends CaptureShardSpec {
  clipStart: number;
  clipEnd: number;
  totalClips: number;
}

/** Reads and checks RUN/capture/manifest.json. */
export function readCaptureManifest(run: string): CaptureManifest {
  const file = path.join(run, 'capture', 'manifest.json');
  const m = readJson<CaptureManifest>(file);
  if (!m || typeof m !== 'object') throw new ArdError(`${file}: not a JSON object`);
  if (!Array.isArray(m.clips)) throw new ArdError(`${file}: 'clips' must be an array`);
  if (!Number.isInteger(m.d) || m.d <= 0) throw new ArdError(`${file}: 'd' must be a positive integer`);
  m.clips.forEach((c, i) => {
    if (!c || typeof c.id !== 'string') throw new ArdError(`${file}: clips[${i}] has no string 'id'`);
    if (!Number.isInteger(c.rowStart) || !Number.isInteger(c.rowCount) || c.rowStart < 0 || c.rowCount < 0) {
      throw new ArdError(`${file}: clips[${i}] (${c.id}) needs non-negative integer rowStart/rowCount`);
    }
    if (!Array.isArray(c.labels)) c.labels = [];
  });
  m.shards ??= {};
  return m;
}

/** The layer's shards in row order, each resolved to its path; throws when the layer has none. */
export function layerShards(run: string, m: CaptureManifest, layer: number): (CaptureShard & { path: string })[] {
  const { manifest: file, captureDir } = runPaths(run, layer);
  const list = m.shards[String(layer)];
  if (!Array.isArray(list) || list.length === 0) {
    throw new ArdError(`${file}: no capture shards for layer ${layer}${m.layers?.length ? ` (layers: ${m.layers.join(', ')})` : ''}`);
  }
  return [...list].sort((a, b) => a.rowStart - b.rowStart).map((s) => ({ ...s, path: path.resolve(captureDir, s.file) }));
}

/**
 * The layer's capture rows as one ShardReader (row r of the reader is row r of the manifest);
 * the shards must cover rows 0… without gaps or overlaps and hold the rows the manifest says.
 */
export function captureShardReader(run: string, m: CaptureManifest, layer: number): ShardReader {
  const shards = layerShards(run, m, layer);
  let at = 0;
  for (const s of shards) {
    if (s.rowStart !== at) throw new ArdError(`${runPaths(run, layer).manifest}: layer ${layer} shards ${s.rowStart > at ? `miss row ${at}` : `overlap at row ${s.rowStart}`}`);
    at += s.rowCount;
  }
  return new ShardReader(shards.map((s) => ({ file: s.path, tensor: 'acts', rows: s.rowCount })), m.d);
}

// ---- freshness -------------------------------------------------------------------------------

/** Size and modification time of a file ('missing' when absent): cheap identity for many inputs. */
export function fileStamp(file: string): string {
  try {
    const s = fs.statSync(file);
    return `${s.size}:${s.mtimeMs}`;
  } catch {
    return 'missing';
  }
}

/** SHA-256 of a file's bytes (streamed): identity of an upstream output by content. */
export function fileDigest(file: string): string {
  const h = createHash('sha256');
  hashFileInto(h, file);
  return h.digest('hex');
}

/**
 * The key of a stage's inputs: a hash of the stage's name and a JSON description of everything its
 * output depends on (put file identities in as fileDigest / fileStamp strings).
 */
export function stageInputsKey(stage: string, inputs: unknown): string {
  return createHash('sha256').update(stage).update('\n').update(JSON.stringify(inputs) ?? 'undefined').digest('hex').slice(0, 32);
}

/** The sidecar holding the inputs key of `output`. */
export function freshnessFile(output: string): string {
  return path.join(path.dirname(output), `.${path.basename(output)}.inputs`);
}

/** True when `output` exists and was last written by a run whose inputs had this key. */
export function isFresh(output: string, key: string): boolean {
  if (!fs.existsSync(output)) return false;
  try {
    return readJson<{ key?: string }>(freshnessFile(output))?.key === key;
  } catch {
    return false;
  }
}

/** Forget the recorded key: call before a stage starts rewriting `output`. */
export function clearFresh(output: string): void {
  fs.rmSync(freshnessFile(output), { force: true });
}

/** Record that `output`, just written, was made from inputs with this key. */
export function markFresh(output: string, key: string): void {
  if (!fs.existsSync(output)) throw new ArdError(`${output}: cannot record its inputs, the file was not written`);
  writeJsonAtomic(freshnessFile(output), { key });
}
