// merge-capture: joins the parts of a sharded capture (RUN/capture/parts/I-of-N, see capture.ts)
// into RUN/capture/manifest.json, which every later stage reads as it reads a one-process capture.
// No activation is copied: the merged manifest lists the parts' shard files (paths relative to
// RUN/capture) with their rows moved to the whole list's numbering. Parts are contiguous blocks of
// the same clip list, so their clips, rows and bad clips laid end to end in part order are those one
// process would have written; the manifest is marked fresh under the whole capture's key, so a
// later one-process `capture` with the same options finds it up to date.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ArdError } from '../util/errors.js';
import { readJson, writeJsonAtomic } from '../util/fs.js';
import type { CaptureManifest, CaptureShard } from './run.js';
import { isFresh, markFresh, runPaths, stageInputsKey } from './run.js';

export interface MergeCaptureOptions {
  run: string;
  /** Which sharding to merge when parts of several part counts are present. */
  shards?: number;
}

export interface MergeCaptureResult {
  manifest: string;
  /** The merged manifest was already there, fresh and identical. */
  skipped: boolean;
  parts: number;
  clips: number;
  rows: number;
  bad: { file: string; error: string }[];
}

const PART_DIR = /^(\d+)-of-(\d+)$/;

/** The fields every part must share with the others (they are the whole capture's). */
const SHARED: (keyof CaptureManifest)[] = ['model', 'prompt', 'layers', 'd', 'dtype', 'positions', 'inputsHash', 'corpus', 'source', 'frameSeconds'];

export function mergeCapture(o: MergeCaptureOptions): MergeCaptureResult {
  const { captureDir, manifest: manifestFile } = runPaths(o.run, 0);
  const partsDir = path.join(captureDir, 'parts');
  if (!fs.existsSync(partsDir)) throw new ArdError(`${partsDir}: no capture parts (run capture with --shard I/N or --shards N first)`);
  const counts = [...new Set(fs.readdirSync(partsDir).map((n) => PART_DIR.exec(n)).filter((m) => m).map((m) => Number(m![2])))].sort((a, b) => a - b);
  if (o.shards !== undefined && !counts.includes(o.shards)) throw new ArdError(`${partsDir}: no parts of a ${o.shards}-way capture${counts.length ? ` (found: ${counts.join(', ')}-way)` : ''}`);
  if (!counts.length) throw new ArdError(`${partsDir}: no capture parts (folders named I-of-N)`);
  if (o.shards === undefined && counts.length > 1) throw new ArdError(`${partsDir}: parts of ${counts.join(' and ')}-way captures are both there; choose one with --shards N`);
  const n = o.shards ?? counts[0]!;

  // every part finished: its manifest written and fresh (a part being redone has lost its mark)
  const parts: CaptureManifest[] = [];
  const unfinished: string[] = [];
  for (let i = 0; i < n; i++) {
    const file = path.join(partsDir, `${i}-of-${n}`, 'manifest.json');
    const m = fs.existsSync(file) ? readJson<CaptureManifest>(file) : undefined;
    const key = m?.inputsHash !== undefined ? stageInputsKey('capture-part', { whole: m.inputsHash, index: i, count: n }) : '';
    if (!m || !isFresh(file, key)) {
      unfinished.push(`${i}${fs.existsSync(path.join(partsDir, `${i}-of-${n}`, 'progress.json')) ? ' (under way)' : ''}`);
      continue;
    }
    if (!m.part || m.part.index !== i || m.part.count !== n) throw new ArdError(`${file}: not the manifest of part ${i} of ${n}`);
    parts.push(m);
  }
  if (unfinished.length) {
    throw new ArdError(`${partsDir}: ${unfinished.length} of ${n} parts not finished: ${unfinished.join(', ')} (run capture --shard I/${n} for each; finished parts are kept)`);
  }

  const first = parts[0]!;
  for (const m of parts) {
    for (const k of SHARED) {
      if (JSON.stringify(m[k]) !== JSON.stringify(first[k])) {
        throw new ArdError(`${path.join(partsDir, `${m.part!.index}-of-${n}`, 'manifest.json')}: its '${k}' differs from part 0's: the parts were captured with different corpora or options`);
      }
    }
  }
  let clipAt = 0;
  for (const m of parts) {
    const p = m.part!;
    if (p.totalClips !== first.part!.totalClips || p.clipStart !== clipAt || p.clipEnd < p.clipStart) {
      throw new ArdError(`${partsDir}: part ${p.index} holds clips ${p.clipStart}–${p.clipEnd} of ${p.totalClips}, expected to start at ${clipAt}`);
    }
    if (m.clips.length + (m.bad?.length ?? 0) !== p.clipEnd - p.clipStart) {
      throw new ArdError(`${partsDir}: part ${p.index} lists ${m.clips.length + (m.bad?.length ?? 0)} clips, expected ${p.clipEnd - p.clipStart}`);
    }
    clipAt = p.clipEnd;
  }
  if (clipAt !== first.part!.totalClips) throw new ArdError(`${partsDir}: the parts hold ${clipAt} of ${first.part!.totalClips} clips`);

  // clips, windows and shards moved to the whole list's rows
  const clips: CaptureManifest['clips'] = [];
  const shards: Record<string, CaptureShard[]> = Object.fromEntries(first.layers.map((l) => [String(l), []]));
  const bad: { file: string; error: string }[] = [];
  let rowAt = 0;
  for (const m of parts) {
    const rows = m.clips.reduce((a, c) => a + c.rowCount, 0);
    for (const c of m.clips) {
      clips.push({
        ...c,
        rowStart: c.rowStart + rowAt,
        ...(c.windows ? { windows: c.windows.map((w) => ({ ...w, rowStart: w.rowStart + rowAt })) } : {}),
      });
    }
    for (const l of first.layers) {
      const list = m.shards[String(l)] ?? [];
      if (list.reduce((a, s) => a + s.rowCount, 0) !== rows) throw new ArdError(`${partsDir}: part ${m.part!.index}'s layer ${l} shards do not hold its ${rows} rows`);
      for (const s of list) shards[String(l)]!.push({ ...s, rowStart: s.rowStart + rowAt });
    }
    bad.push(...(m.bad ?? []));
    rowAt += rows;
  }

  // the fields in the order capture writes them, so one process's manifest and the merged one read alike
  const merged: CaptureManifest = {
    model: first.model,
    prompt: first.prompt,
    layers: first.layers,
    d: first.d,
    dtype: first.dtype,
    positions: first.positions,
    clips,
    shards,
    bad,
    inputsHash: first.inputsHash,
    corpus: first.corpus,
    source: first.source,
    frameSeconds: first.frameSeconds,
    // the latest part's time: merging again gives the same bytes, so later stages stay fresh
    createdAt: parts.map((m) => m.createdAt ?? '').sort().at(-1) || undefined,
  };
  const result = { manifest: manifestFile, parts: n, clips: clips.length, rows: rowAt, bad };
  const text = JSON.stringify(merged);
  if (first.inputsHash && isFresh(manifestFile, first.inputsHash)) {
    try {
      if (JSON.stringify(readJson(manifestFile)) === text) return { ...result, skipped: true };
    } catch {
      // unreadable: rewritten below
    }
  }
  writeJsonAtomic(manifestFile, merged);
  if (first.inputsHash) markFresh(manifestFile, first.inputsHash);
  return { ...result, skipped: false };
}
