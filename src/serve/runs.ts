// What `ardgpu serve` knows about its runs: which layers each has, its JSON outputs (re-read when
// they change on disk), the audio file of a manifest clip, and per-feature extras computed on the
// host (label APs from the retrieve statistics, nearest features by decoder cosine).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { averagePrecision } from '../ard/evaluate.js';
import { decoderRowsFromFile, readFeatures } from '../ard/rank.js';
import type { FeatureEntry, FeaturesFile } from '../ard/rank.js';
import { openSafetensors } from '../io/safetensors.js';
import { readCaptureManifest, runPaths } from '../ard/run.js';
import type { CaptureManifest } from '../ard/run.js';
import { ArdError } from '../util/errors.js';
import { readJson } from '../util/fs.js';

export interface RunInfo {
  index: number;
  dir: string;
  name: string;
  layers: number[];
}

/** A value cached against a file's size and mtime. */
class FileCache<T> {
  private m = new Map<string, { key: string; value: T }>();
  get(file: string, load: (file: string) => T): T {
    let st: fs.Stats;
    try {
      st = fs.statSync(file);
    } catch {
      throw new ArdError(`${path.basename(file)}: not in this run`);
    }
    const key = `${st.size}:${st.mtimeMs}`;
    const hit = this.m.get(file);
    if (hit && hit.key === key) return hit.value;
    const value = load(file);
    this.m.set(file, { key, value });
    return value;
  }
}

export class Runs {
  readonly list: RunInfo[];
  private json = new FileCache<unknown>();
  private features = new FileCache<FeaturesFile>();
  private manifests = new FileCache<CaptureManifest>();
  private decoders = new FileCache<{ ids: number[]; unit: Float32Array[] } | null>();

  constructor(dirs: readonly string[]) {
    if (!dirs.length) throw new ArdError('serve: no run given (--run RUN)');
    this.list = dirs.map((d, index) => {
      const dir = path.resolve(d);
      if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) throw new ArdError(`${d}: no such run folder`);
      const layers = fs
        .readdirSync(dir)
        .map((f) => /^features-(\d+)\.json$/.exec(f)?.[1])
        .filter((x): x is string => x !== undefined)
        .map(Number)
        .sort((a, b) => a - b);
      if (!layers.length) throw new ArdError(`${d}: no features-L.json (run retrieve first)`);
      return { index, dir, name: path.basename(dir), layers };
    });
  }

  run(r: string | number): RunInfo {
    const info = this.list[Number(r)];
    if (!/^\d+$/.test(String(r)) || !info) throw new ArdError(`run ${r}: no such run`);
    return info;
  }

  layer(run: RunInfo, l: string | number | null | undefined): number {
    if (l === null || l === undefined || l === '') return run.layers[run.layers.length >> 1]!;
    const n = Number(l);
    if (!run.layers.includes(n)) throw new ArdError(`layer ${l}: not in run ${run.name} (layers ${run.layers.join(', ')})`);
    return n;
  }

  /** A JSON file of the run by its fixed name, or null when the run has none. */
  optionalJson(run: RunInfo, name: string): unknown {
    const file = path.join(run.dir, name);
    return fs.existsSync(file) ? this.json.get(file, (f) => readJson(f)) : null;
  }

  featuresFile(run: RunInfo, layer: number): FeaturesFile {
    return this.features.get(runPaths(run.dir, layer).features, readFeatures);
  }

  manifest(run: RunInfo): CaptureManifest {
    return this.manifests.get(runPaths(run.dir, 0).manifest, () => readCaptureManifest(run.dir));
  }

  /** The clip's audio file: resolved like report.ts does, and only inside the run or its corpus. */
  clipFile(run: RunInfo, i: number): string {
    const m = this.manifest(run);
    const c = m.clips[i];
    if (!Number.isInteger(i) || !c) throw new ArdError(`clip ${i}: not in run ${run.name}`);
    const roots = [m.corpus ? path.resolve(run.dir, m.corpus) : null, run.dir, path.join(run.dir, 'capture')].filter((d): d is string => !!d);
    for (const root of roots) {
      const f = path.resolve(root, c.file);
      let real: string;
      try {
        real = fs.realpathSync(f);
      } catch {
        continue;
      }
      const inside = roots.some((r) => {
        try {
          return real.startsWith(fs.realpathSync(r) + path.sep);
        } catch {
          return false;
        }
      });
      if (inside && fs.statSync(real).isFile()) return real;
    }
    throw new ArdError(`clip ${c.id}: audio file not found`);
  }

  /** AP of the feature's clip mean for every label over all captured clips, best first. */
  labelAps(run: RunInfo, layer: number, feature: number, top = 8): { label: string; ap: number; positives: number }[] {
    const file = runPaths(run.dir, layer).retrieve;
    if (!fs.existsSync(file)) return [];
    // one column of clip_mean [nClips, m], read value by value: the whole matrix can be large
    const f = openSafetensors(file);
    let scores: Float32Array;
    try {
      const info = f.tensors.get('clip_mean');
      if (!info || info.dtype !== 'F32' || info.shape.length !== 2) throw new ArdError(`${path.basename(file)}: no F32 clip_mean [clips, m]`);
      const [nClips, m] = info.shape as [number, number];
      if (feature < 0 || feature >= m) return [];
      scores = new Float32Array(nClips);
      for (let c = 0; c < nClips; c++) {
        const b = f.readRange('clip_mean', (c * m + feature) * 4, (c * m + feature + 1) * 4);
        scores[c] = new DataView(b.buffer, b.byteOffset, 4).getFloat32(0, true);
      }
    } finally {
      f.close();
    }
    const clips = this.manifest(run).clips.slice(0, scores.length);
    const labels = [...new Set(clips.flatMap((c) => c.labels))].sort();
    return labels
      .map((label) => {
        const pos = clips.map((c) => c.labels.includes(label));
        return { label, ap: averagePrecision(scores, pos), positives: pos.filter(Boolean).length };
      })
      .filter((x) => x.positives > 0 && Number.isFinite(x.ap))
      .sort((a, b) => b.ap - a.ap)
      .slice(0, top);
  }

  /** The kept features nearest to `feature` by decoder cosine (needs RUN/sae-L.safetensors). */
  neighbours(run: RunInfo, layer: number, feature: number, top = 8): { id: number; name?: string; cosine: number }[] {
    const feats = this.featuresFile(run, layer).features;
    const file = runPaths(run.dir, layer).sae;
    if (!fs.existsSync(file)) return [];
    const dec = this.decoders.get(file, (f) => {
      const rows = decoderRowsFromFile(f);
      if (!rows) return null;
      const ids = feats.map((e) => e.id);
      return { ids, unit: ids.map((id) => unit(rows.row(id))) };
    });
    if (!dec) return [];
    const j = dec.ids.indexOf(feature);
    let me: Float32Array;
    if (j >= 0) me = dec.unit[j]!;
    else {
      const rows = decoderRowsFromFile(file)!;
      me = unit(rows.row(feature));
    }
    const byId = new Map<number, FeatureEntry>(feats.map((e) => [e.id, e]));
    return dec.ids
      .map((id, i) => ({ id, name: byId.get(id)?.name, cosine: dot(me, dec.unit[i]!) }))
      .filter((x) => x.id !== feature)
      .sort((a, b) => b.cosine - a.cosine)
      .slice(0, top)
      .map((x) => ({ ...x, cosine: Math.round(x.cosine * 1e4) / 1e4 }));
  }
}

function unit(v: Float32Array): Float32Array {
  let s = 0;
  for (const x of v) s += x * x;
  const n = Math.sqrt(s) || 1;
  return v.map((x) => x / n);
}

function dot(a: Float32Array, b: Float32Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!;
  return s;
}
