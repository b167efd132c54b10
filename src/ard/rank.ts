// AR&D ranking: a monosemanticity score per feature from its most (H^k) and least (L^k)
// representative clips, then the top C features → RUN/features-L.json.
//
// Score (no labels needed; the model's own representation judges consistency, the feature's own
// activation judges separation):
//   v_c  = the clip's mean residual-stream vector (from retrieve), centred by the mean over clips
//          and each dimension divided by its std over clips (so a few huge dimensions, common in
//          LLM residual streams, do not dominate), then scaled to unit length.
//   within(H)  = mean pairwise cosine over distinct pairs of H = (|Σ_H v|² − |H|) / (|H|(|H|−1))
//   cross(H,L) = mean cosine between H and L members           = (Σ_H v)·(Σ_L v) / (|H||L|)
//   coherence  = within(H) − cross(H, L)                                      ∈ [−2, 2]
//   separation = hMean − lMean (mean representativeness score over H and over L) ∈ [0, 1]
//   mono       = coherence × separation
// A monosemantic feature's top clips share one concept (high within) that its weak clips lack
// (low cross), and it is strong and sustained on them while barely present on L (high
// separation). A polysemantic feature mixes concepts in H (lower within); a feature that fires on
// everything has H and L alike (cross ≈ within); a faint, flickering feature whose few clips
// happen to agree has a small separation. The sums make it O((|H| + |L|)·d) per feature.
// Excluded (with the reason counted in the output): dead features, features firing on fewer
// than p clips (H would be incomplete), features firing on more than maxFiringShare of the clips
// (present almost everywhere: not a concept), and features with no L clip outside H.
//
// Grouping (presentation and metadata, not a filter): kept features i and j that say the same thing
// are linked when their decoder directions are nearly parallel, cos(W_dec[i], W_dec[j]) > 0.9
// (signed: opposite directions are different concepts), or their H^k clip sets mostly overlap,
// |H_i ∩ H_j| / |H_i ∪ H_j| > 0.5 (with p = 4 that is 3 shared clips of 4). Groups are the connected
// components of these links (union-find over the kept features); a group's representative is its
// best-ranked member. Each feature records its group's representative (`group`); representatives
// list their members in rank order (`members`, the representative first).
import * as fs from 'node:fs';
import { openSafetensors, toFloat32 } from '../io/safetensors.js';
import { ArdError } from '../util/errors.js';
import { readJson, writeJsonAtomic } from '../util/fs.js';
import type { ClipStats } from './retrieve.js';
import { readRetrieve } from './retrieve.js';
import type { CaptureManifest } from './run.js';
import { readCaptureManifest, runPaths } from './run.js';
import { saeWeightsFile } from '../sae/load.js';

export interface ClipRef {
  /** Clip index in the capture manifest. */
  clip: number;
  id: string;
  score: number;
  mean: number;
  coverage: number;
}

export interface FeatureEntry {
  id: number;
  name?: string;
  /** Which describer wrote the name (describe's key for it); absent for names set by hand. */
  describedBy?: string;
  /** Fraction of the captions that contain the name (describe). */
  support?: number;
  captions?: string[];
  scores: {
    mono: number;
    coherence: number;
    separation: number;
    within: number;
    cross: number;
    hMean: number;
    lMean: number;
    firingClips: number;
    firingShare: number;
    maxMean: number;
  };
  H: ClipRef[];
  L: ClipRef[];
  /** Feature id of the group's representative (its best-ranked member; itself when alone). */
  group?: number;
  /** On representatives: the group's feature ids in rank order, the representative first. */
  members?: number[];
}

export interface FeatureGrouping {
  method: string;
  decoderCosine: number;
  hJaccard: number;
  /** Whether decoder directions were compared (false when the SAE file was not there). */
  decoder: boolean;
  groups: number;
}

export interface FeaturesFile {
  layer: number;
  p: number;
  C: number;
  method: string;
  nClips: number;
  m: number;
  excluded: Record<string, number>;
  grouping?: FeatureGrouping;
  features: FeatureEntry[];
}

/** Kept features closer than this decoder cosine are grouped. */
export const GROUP_DECODER_COSINE = 0.9;
/** Kept features whose H^k sets overlap by more than this Jaccard index are grouped. */
export const GROUP_H_JACCARD = 0.5;
export const GROUP_METHOD =
  `same group when cos(W_dec[i], W_dec[j]) > ${GROUP_DECODER_COSINE} or Jaccard(H_i, H_j) > ${GROUP_H_JACCARD}; ` +
  'groups = connected components over the kept features; representative = best-ranked member';

/** Decoder directions by feature id (rows of W_dec). */
export interface DecoderRows {
  d: number;
  row(id: number): Float32Array;
}

export const RANK_METHOD =
  'mono = coherence × separation; coherence = mean pairwise cosine within H − mean cosine between H and L ' +
  'over clip-mean residual vectors (centred, per-dimension standardised, unit length); separation = mean ' +
  'score over H − over L; H/L = most/least representative firing clips by score = mean/max(mean) × coverage';

export interface RankOptions {
  run: string;
  layer: number;
  /** Features kept (default 50). */
  C?: number;
  /** Exclude features firing on more than this share of clips (default 0.8). */
  maxFiringShare?: number;
  /** The SAE retrieve used when it is not RUN/sae-L.safetensors (a file or a SAELens / sparsify folder): its decoder groups features. */
  saeFile?: string;
}

/** Unit-length, centred, standardised clip vectors [nClips, d] (clips without rows stay zero). */
export function normaliseClipVectors(resid: Float32Array, rows: ArrayLike<number>, nClips: number, d: number): Float32Array {
  const mu = new Float64Array(d);
  const sq = new Float64Array(d);
  let n = 0;
  for (let c = 0; c < nClips; c++) {
    if (!(rows[c]! > 0)) continue;
    n++;
    for (let j = 0; j < d; j++) {
      const v = resid[c * d + j]!;
      mu[j] += v;
      sq[j] += v * v;
    }
  }
  const sd = new Float64Array(d);
  for (let j = 0; j < d; j++) {
    mu[j] /= Math.max(1, n);
    const varj = sq[j]! / Math.max(1, n) - mu[j]! * mu[j]!;
    sd[j] = Math.sqrt(Math.max(varj, 0)) + 1e-6;
  }
  const out = new Float32Array(nClips * d);
  for (let c = 0; c < nClips; c++) {
    if (!(rows[c]! > 0)) continue;
    let norm = 0;
    for (let j = 0; j < d; j++) {
      const v = (resid[c * d + j]! - mu[j]!) / sd[j]!;
      out[c * d + j] = v;
      norm += v * v;
    }
    const inv = norm > 0 ? 1 / Math.sqrt(norm) : 0;
    for (let j = 0; j < d; j++) out[c * d + j]! *= inv;
  }
  return out;
}

/** within(H), cross(H, L) and their difference for unit vectors `v` [nClips, d]. */
export function coherenceScore(v: Float32Array, d: number, H: readonly number[], L: readonly number[]): { coherence: number; within: number; cross: number } {
  const sH = new Float64Array(d);
  const sL = new Float64Array(d);
  for (const c of H) for (let j = 0; j < d; j++) sH[j] += v[c * d + j]!;
  for (const c of L) for (let j = 0; j < d; j++) sL[j] += v[c * d + j]!;
  let hh = 0;
  let hl = 0;
  let selfH = 0;
  for (let j = 0; j < d; j++) {
    hh += sH[j]! * sH[j]!;
    hl += sH[j]! * sL[j]!;
  }
  for (const c of H) {
    let s = 0;
    for (let j = 0; j < d; j++) s += v[c * d + j]! * v[c * d + j]!;
    selfH += s; // 1 per clip, 0 for an empty clip
  }
  const nh = H.length;
  const within = nh > 1 ? (hh - selfH) / (nh * (nh - 1)) : 0;
  const cross = nh && L.length ? hl / (nh * L.length) : 0;
  return { coherence: within - cross, within, cross };
}

/**
 * Groups `features` (in rank order) in place: sets `group` on each and `members` on each
 * representative (see the header). Returns the number of groups.
 */
export function groupFeatures(
  features: FeatureEntry[],
  decoder: DecoderRows | null,
  o: { decoderCosine?: number; hJaccard?: number } = {},
): number {
  const cosMax = o.decoderCosine ?? GROUP_DECODER_COSINE;
  const jacMax = o.hJaccard ?? GROUP_H_JACCARD;
  const n = features.length;
  const parent = Array.from({ length: n }, (_, i) => i);
  const find = (i: number): number => {
    while (parent[i] !== i) i = parent[i] = parent[parent[i]!]!;
    return i;
  };
  // union by the smaller index: each root is its component's best-ranked member
  const union = (a: number, b: number) => {
    const [ra, rb] = [find(a), find(b)];
    if (ra !== rb) parent[Math.max(ra, rb)] = Math.min(ra, rb);
  };
  let unit: Float64Array[] | null = null;
  if (decoder) {
    unit = features.map((f) => {
      const r = decoder.row(f.id);
      if (r.length !== decoder.d) throw new ArdError(`rank: decoder row of feature ${f.id} has ${r.length} values, expected ${decoder.d}`);
      let n2 = 0;
      for (let j = 0; j < r.length; j++) n2 += r[j]! * r[j]!;
      const inv = n2 > 0 ? 1 / Math.sqrt(n2) : 0;
      return Float64Array.from(r, (v) => v * inv);
    });
  }
  const hSets = features.map((f) => new Set(f.H.map((c) => c.clip)));
  for (let i = 0; i < n; i++) {
    for (let j = i + 1; j < n; j++) {
      if (find(i) === find(j)) continue;
      let linked = false;
      if (unit) {
        const a = unit[i]!;
        const b = unit[j]!;
        let dot = 0;
        for (let t = 0; t < a.length; t++) dot += a[t]! * b[t]!;
        linked = dot > cosMax;
      }
      if (!linked) {
        const [A, B] = [hSets[i]!, hSets[j]!];
        let inter = 0;
        for (const c of A) if (B.has(c)) inter++;
        const uni = A.size + B.size - inter;
        linked = uni > 0 && inter / uni > jacMax;
      }
      if (linked) union(i, j);
    }
  }
  const members = new Map<number, number[]>();
  for (let i = 0; i < n; i++) {
    const r = find(i);
    if (!members.has(r)) members.set(r, []);
    members.get(r)!.push(features[i]!.id);
  }
  for (let i = 0; i < n; i++) {
    const f = features[i]!;
    const r = find(i);
    f.group = features[r]!.id;
    if (r === i) f.members = members.get(r)!;
    else delete f.members;
  }
  return members.size;
}

/**
 * Rows of W_dec read from an SAE safetensors file, one row at a time (the file is opened once per
 * call); null when the file holds no W_dec (an encoder-only file: grouping then uses H^k alone).
 */
export function decoderRowsFromFile(file: string): DecoderRows | null {
  const f = openSafetensors(file);
  let info;
  try {
    info = f.tensors.get('W_dec');
  } finally {
    f.close();
  }
  if (!info) return null;
  if (info.shape.length !== 2) throw new ArdError(`${file}: W_dec has shape [${info.shape.join(', ')}], expected [m, d]`);
  if (info.dtype !== 'F32' && info.dtype !== 'F16' && info.dtype !== 'BF16') throw new ArdError(`${file}: W_dec is ${info.dtype}, expected F32, F16 or BF16`);
  const [m, d] = info.shape as [number, number];
  const dtype = info.dtype;
  const bpe = dtype === 'F32' ? 4 : 2;
  return {
    d,
    row(id: number) {
      if (!Number.isInteger(id) || id < 0 || id >= m) throw new ArdError(`${file}: feature ${id} is outside W_dec's ${m} rows`);
      const g = openSafetensors(file);
      try {
        return toFloat32(g.readRange('W_dec', id * d * bpe, (id + 1) * d * bpe), dtype).slice();
      } finally {
        g.close();
      }
    },
  };
}

/** Rank features from in-memory retrieval statistics (pure; no files). */
export function rankFeatures(
  stats: ClipStats,
  manifest: Pick<CaptureManifest, 'clips'>,
  opts: { C?: number; maxFiringShare?: number; layer?: number; decoder?: DecoderRows | null } = {},
): FeaturesFile {
  const { nClips, m, d, p } = stats;
  const C = opts.C ?? 50;
  const maxShare = opts.maxFiringShare ?? 0.8;
  if (!stats.residMean) throw new ArdError('rank: retrieval has no clip residual means (clip_resid_mean)');
  const v = normaliseClipVectors(stats.residMean, stats.rows, nClips, d);
  const excluded: Record<string, number> = {};
  const bump = (r: string) => (excluded[r] = (excluded[r] ?? 0) + 1);
  const ref = (c: number, f: number): ClipRef => ({
    clip: c,
    id: manifest.clips[c]?.id ?? String(c),
    score: round(stats.score[c * m + f]!),
    mean: round(stats.mean[c * m + f]!),
    coverage: round(stats.coverage[c * m + f]!),
  });
  const cands: FeatureEntry[] = [];
  for (let f = 0; f < m; f++) {
    const firing = stats.firing[f]!;
    if (firing === 0) {
      bump('dead (fires on no clip)');
      continue;
    }
    if (firing < p) {
      bump(`fires on fewer than p = ${p} clips`);
      continue;
    }
    if (firing > maxShare * nClips) {
      bump(`fires on more than ${Math.round(maxShare * 100)}% of clips`);
      continue;
    }
    const H: number[] = [];
    const L: number[] = [];
    for (let j = 0; j < p; j++) {
      const h = stats.H[f * p + j]!;
      const l = stats.L[f * p + j]!;
      if (h >= 0) H.push(h);
      if (l >= 0) L.push(l);
    }
    if (L.length === 0) {
      bump('no L clip outside H');
      continue;
    }
    const s = coherenceScore(v, d, H, L);
    const hMean = H.reduce((a, c) => a + stats.score[c * m + f]!, 0) / H.length;
    const lMean = L.reduce((a, c) => a + stats.score[c * m + f]!, 0) / L.length;
    const separation = hMean - lMean;
    cands.push({
      id: f,
      scores: {
        mono: round(s.coherence * separation),
        coherence: round(s.coherence),
        separation: round(separation),
        within: round(s.within),
        cross: round(s.cross),
        hMean: round(hMean),
        lMean: round(lMean),
        firingClips: firing,
        firingShare: round(firing / nClips),
        maxMean: round(stats.maxMean[f]!),
      },
      H: H.map((c) => ref(c, f)),
      L: L.map((c) => ref(c, f)),
    });
  }
  // unrounded order would differ from the file only on near-ties; sort by the stored values
  cands.sort((a, b) => b.scores.mono - a.scores.mono || b.scores.coherence - a.scores.coherence || a.id - b.id);
  const kept = cands.slice(0, C);
  if (cands.length > C) excluded[`ranked below the top C = ${C}`] = cands.length - C;
  const decoder = opts.decoder ?? null;
  const groups = groupFeatures(kept, decoder);
  const grouping: FeatureGrouping = { method: GROUP_METHOD, decoderCosine: GROUP_DECODER_COSINE, hJaccard: GROUP_H_JACCARD, decoder: decoder !== null, groups };
  return { layer: opts.layer ?? -1, p, C, method: RANK_METHOD, nClips, m, excluded, grouping, features: kept };
}

function round(x: number): number {
  return Math.round(x * 1e6) / 1e6;
}

/** The rank stage: RUN/retrieve-L.safetensors + capture manifest → RUN/features-L.json. */
export function rank(o: RankOptions): FeaturesFile {
  const paths = runPaths(o.run, o.layer);
  const stats = readRetrieve(paths.retrieve);
  const manifest = readCaptureManifest(o.run);
  if (manifest.clips.length !== stats.nClips) {
    throw new ArdError(`${paths.retrieve}: ${stats.nClips} clips but the capture manifest has ${manifest.clips.length} (re-run retrieve)`);
  }
  // decoder directions for grouping come from the run's SAE; without it features are grouped by H^k alone
  const decoder =
    o.saeFile !== undefined
      ? decoderRowsFromFile(saeWeightsFile(o.saeFile))
      : fs.existsSync(paths.sae) && fs.statSync(paths.sae).isFile()
        ? decoderRowsFromFile(paths.sae)
        : null;
  const out = rankFeatures(stats, manifest, { C: o.C, maxFiringShare: o.maxFiringShare, layer: o.layer, decoder });
  // keep names/captions from an earlier describe pass of the same features
  if (fs.existsSync(paths.features)) {
    try {
      const prev = readFeatures(paths.features);
      const byId = new Map(prev.features.map((f) => [f.id, f]));
      for (const f of out.features) {
        const old = byId.get(f.id);
        if (old?.name && sameClips(old.H, f.H)) {
          f.name = old.name;
          f.support = old.support;
          f.captions = old.captions;
          if (old.describedBy !== undefined) f.describedBy = old.describedBy;
        }
      }
    } catch {
      /* an unreadable old file is simply replaced */
    }
  }
  writeJsonAtomic(paths.features, out);
  return out;
}

function sameClips(a: ClipRef[] | undefined, b: ClipRef[]): boolean {
  return !!a && a.length === b.length && a.every((c, i) => c.clip === b[i]!.clip);
}

/** Reads RUN/features-L.json (also accepts a bare array of features). */
export function readFeatures(file: string): FeaturesFile {
  const doc = readJson<any>(file);
  const features: any[] = Array.isArray(doc) ? doc : doc?.features;
  if (!Array.isArray(features)) throw new ArdError(`${file}: no 'features' array`);
  features.forEach((f, i) => {
    if (!Number.isInteger(f?.id)) throw new ArdError(`${file}: features[${i}] has no integer 'id'`);
    if (!Array.isArray(f.H) || !Array.isArray(f.L)) throw new ArdError(`${file}: features[${i}] needs H and L arrays`);
    f.scores ??= {};
  });
  if (Array.isArray(doc)) return { layer: -1, p: features[0]?.H?.length ?? 0, C: features.length, method: '', nClips: 0, m: 0, excluded: {}, features };
  return doc as FeaturesFile;
}
