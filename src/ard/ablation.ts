// The AR&D paper's ablation table (Table 1 shape): how much the choice of representative clips
// matters. Every row runs the same pipeline on the VALIDATION clips and is scored on the TEST clips:
//
//   1. candidates: SAE features (rows ard, mean, coverage, random) or raw neurons (row neurons:
//      each residual dimension's clip mean, both signs, 2·d candidates);
//   2. representatives, from the validation clips only: F = firing clips (SAE: coverage > 0;
//      neurons: every clip with tokens); H = the p clips of F with the highest selection score
//      (ties: lower clip index first), L = the p clips of F \ H with the lowest. Selection score per
//      row: ard = mean/max(mean) × coverage (retrieve's score); mean = clip mean activation only;
//      coverage = coverage only; random = none (H = p clips drawn from F by a seeded shuffle, L = the
//      next p of the shuffle); neurons = the signed clip mean. Excluded: |F| < p, L empty, and (SAE
//      rows) |F| > maxFiringShare × validation clips, as rank excludes them;
//   3. monosemanticity: rank's measure on (H, L), identical for every row so only the
//      representatives differ: mono = (within(H) − cross(H, L)) × (mean s over H − mean s over L),
//      s = the AR&D score (neurons: the clip mean min-max normalised over validation clips);
//   4. the top C candidates by mono are kept; the row's monosemanticity = their mean mono;
//   5. each kept candidate's concept = the label carried by most of its H clips (ties: first label
//      in sorted order; none when no H clip has an evaluated label). This stands in for naming the
//      concept from the representatives (describe), using the labels instead of captions;
//   6. per label: among the kept candidates with that concept, the one whose detector score has the
//      highest validation AP; threshold maximising validation F1; AP, P, R, F1 on test. A label no
//      kept candidate claims scores 0 on all four (the concept was not found). Detector score: the
//      row's selection score (random: the AR&D score; neurons: the signed clip mean);
//   7. P, R, F1, mAP = macro means over the evaluated labels (the same labels as evaluate's).
import { ArdError } from '../util/errors.js';
import { mulberry32 } from '../util/random.js';
import type { EvalSplits } from './evaluate.js';
import { averagePrecision, bestF1Threshold, prf } from './evaluate.js';
import { coherenceScore, normaliseClipVectors } from './rank.js';

export const ABLATION_ROWS = ['ard', 'mean', 'coverage', 'random', 'neurons'] as const;
export type AblationRowName = (typeof ABLATION_ROWS)[number];

export const ABLATION_METHOD =
  'representatives H/L = top/bottom p firing VALIDATION clips by the row\'s selection score (ard: mean/max(mean) × coverage; ' +
  'mean: clip mean only; coverage: coverage only; random: a seeded shuffle of the firing clips; neurons: signed clip mean of a ' +
  'residual dimension); mono = rank\'s coherence(H, L) × separation in AR&D score (neurons: min-max normalised clip mean); ' +
  'top C by mono kept, row mono = their mean; concept = majority label of H; per label: the kept candidate claiming it with ' +
  'max validation AP of the row\'s detector score (random: AR&D score), F1-best validation threshold, AP/P/R/F1 on test, 0 if ' +
  'no candidate claims the label; macro means over labels';

/** AR&D Table 1 (FSD50K) as reported: monosemanticity, P, R, F1, mAP. */
export const PUBLISHED_ABLATIONS: Readonly<Record<string, { mono: number | null; precision: number | null; recall: number | null; f1: number | null; map: number }>> = {
  'polysemantic features': { mono: 1.14, precision: 0.05, recall: 0.2, f1: 0.08, map: 0.05 },
  'random representatives': { mono: 2.13, precision: 0.11, recall: 0.23, f1: 0.15, map: 0.1 },
  'mean activation only': { mono: 4.76, precision: 0.42, recall: 0.42, f1: 0.42, map: 0.36 },
  'coverage only': { mono: 5.28, precision: 0.46, recall: 0.44, f1: 0.45, map: 0.39 },
  'AR&D, layer 5': { mono: null, precision: null, recall: null, f1: null, map: 0.47 },
  'AR&D, layer 16': { mono: null, precision: null, recall: null, f1: null, map: 0.53 },
  'AR&D, layer 26': { mono: null, precision: null, recall: null, f1: null, map: 0.58 },
};

/** Which published row each of ours is compared with. */
export const ABLATION_PUBLISHED_ROW: Readonly<Record<AblationRowName, string>> = {
  ard: 'AR&D, layer 16',
  mean: 'mean activation only',
  coverage: 'coverage only',
  random: 'random representatives',
  neurons: 'polysemantic features',
};

export interface AblationLabel {
  /** The chosen candidate (feature id, or neuron "+j"/"-j"); null when no kept candidate claims the label. */
  feature: number | string | null;
  ap: number;
  precision: number;
  recall: number;
  f1: number;
}

export interface AblationRow {
  mono: number;
  precision: number;
  recall: number;
  f1: number;
  map: number;
  /** Candidates kept (≤ C). */
  kept: number;
  /** Candidates with complete representatives before the top-C cut. */
  eligible: number;
  /** Labels claimed by at least one kept candidate. */
  labelsCovered: number;
  perLabel: Record<string, AblationLabel>;
}

export interface Ablations {
  method: string;
  p: number;
  C: number;
  maxFiringShare: number;
  seed: number;
  rows: Record<AblationRowName, AblationRow>;
  published: typeof PUBLISHED_ABLATIONS;
  comparedWith: typeof ABLATION_PUBLISHED_ROW;
}

/**
 * A candidate set over all clips: per candidate j, fill `out[c]` (c over every clip) with the
 * quantity asked for. Clips outside the validation and test splits are never read.
 */
export interface AblationCandidates {
  n: number;
  name(j: number): number | string;
  /** Selection score (null: random representatives). */
  select: ((j: number, out: Float32Array) => void) | null;
  /** The separation score s (in [0, 1]). */
  separation(j: number, out: Float32Array): void;
  /** Detector score (for AP, thresholds). */
  detector(j: number, out: Float32Array): void;
  /** Whether the candidate fires on clip c (after any of the fills above). */
  fires(j: number, c: number): boolean;
  /** Apply the firing-share exclusion. */
  firingShareRule: boolean;
}

/**
 * H and L among `clips` (validation clip indices): top / bottom p of the firing ones by `score`
 * (ties: lower clip index first), or by a shuffle from `rand` when `score` is null. Returns null
 * when fewer than p clips fire or L would be empty.
 */
export function selectRepresentatives(
  clips: readonly number[],
  firing: (c: number) => boolean,
  score: Float32Array | null,
  p: number,
  rand?: () => number,
): { H: number[]; L: number[]; firing: number } | null {
  const F = clips.filter(firing);
  if (F.length < p) return null;
  let order: number[];
  if (score) {
    order = [...F].sort((a, b) => score[b]! - score[a]! || a - b);
    const H = order.slice(0, p);
    const rest = order.slice(p);
    // lowest first; equal scores keep the lower clip index first
    const L = [...rest].sort((a, b) => score[a]! - score[b]! || a - b).slice(0, p);
    return L.length ? { H, L, firing: F.length } : null;
  }
  if (!rand) throw new ArdError('ablation: random representatives need a seeded generator');
  order = [...F];
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  const H = order.slice(0, p);
  const L = order.slice(p, 2 * p);
  return L.length ? { H, L, firing: F.length } : null;
}

/** The label carried by most of `H`'s clips (ties: first in `labels` order); -1 when none. */
export function majorityLabel(H: readonly number[], clipLabels: readonly (readonly string[])[], labels: readonly string[]): number {
  let best = -1;
  let bestN = 0;
  labels.forEach((l, i) => {
    let n = 0;
    for (const c of H) if (clipLabels[c]!.includes(l)) n++;
    if (n > bestN) [best, bestN] = [i, n];
  });
  return best;
}

export interface AblationContext {
  sp: EvalSplits;
  clipLabels: readonly (readonly string[])[];
  /** Unit clip vectors [nClips, d] (rank's normaliseClipVectors). */
  v: Float32Array;
  d: number;
  nClips: number;
  p: number;
  C: number;
  maxFiringShare: number;
}

/** One row of the table (see the header for the steps). */
export function ablationRow(ctx: AblationContext, cands: AblationCandidates, seed = 0): AblationRow {
  const { sp, p, C } = ctx;
  const buf = new Float32Array(ctx.nClips);
  const sep = new Float32Array(ctx.nClips);
  const rand = mulberry32(seed);
  const scored: { j: number; mono: number; H: number[] }[] = [];
  for (let j = 0; j < cands.n; j++) {
    if (cands.select) cands.select(j, buf);
    const r = selectRepresentatives(sp.val, (c) => cands.fires(j, c), cands.select ? buf : null, p, rand);
    if (!r) continue;
    if (cands.firingShareRule && r.firing > ctx.maxFiringShare * sp.val.length) continue;
    cands.separation(j, sep);
    const s = coherenceScore(ctx.v, ctx.d, r.H, r.L);
    const mean = (idx: number[]) => idx.reduce((a, c) => a + sep[c]!, 0) / idx.length;
    scored.push({ j, mono: s.coherence * (mean(r.H) - mean(r.L)), H: r.H });
  }
  scored.sort((a, b) => b.mono - a.mono || a.j - b.j);
  const kept = scored.slice(0, C);
  const claims: number[][] = sp.labels.map(() => []);
  for (const k of kept) {
    const l = majorityLabel(k.H, ctx.clipLabels, sp.labels);
    if (l >= 0) claims[l]!.push(k.j);
  }
  const vcol = new Float32Array(sp.val.length);
  const tcol = new Float32Array(sp.test.length);
  const perLabel: Record<string, AblationLabel> = {};
  let [sP, sR, sF, sA, covered] = [0, 0, 0, 0, 0];
  sp.labels.forEach((label, l) => {
    let best = -1;
    let bestAp = -Infinity;
    for (const j of claims[l]!) {
      cands.detector(j, buf);
      sp.val.forEach((c, i) => (vcol[i] = buf[c]!));
      const ap = averagePrecision(vcol, sp.valPos[l]!);
      if (ap > bestAp || (ap === bestAp && j < best)) [best, bestAp] = [j, ap];
    }
    if (best < 0) {
      perLabel[label] = { feature: null, ap: 0, precision: 0, recall: 0, f1: 0 };
      return;
    }
    covered++;
    cands.detector(best, buf);
    sp.val.forEach((c, i) => (vcol[i] = buf[c]!));
    sp.test.forEach((c, i) => (tcol[i] = buf[c]!));
    const { threshold } = bestF1Threshold(vcol, sp.valPos[l]!);
    const r = prf(tcol, sp.testPos[l]!, threshold);
    const ap = averagePrecision(tcol, sp.testPos[l]!);
    perLabel[label] = { feature: cands.name(best), ap: r6(ap), precision: r6(r.precision), recall: r6(r.recall), f1: r6(r.f1) };
    sP += r.precision;
    sR += r.recall;
    sF += r.f1;
    sA += ap;
  });
  const n = Math.max(1, sp.labels.length);
  const mono = kept.length ? kept.reduce((a, k) => a + k.mono, 0) / kept.length : 0;
  return {
    mono: r6(mono),
    precision: r6(sP / n),
    recall: r6(sR / n),
    f1: r6(sF / n),
    map: r6(sA / n),
    kept: kept.length,
    eligible: scored.length,
    labelsCovered: covered,
    perLabel,
  };
}

export interface AblationInputs {
  sp: EvalSplits;
  clipLabels: readonly (readonly string[])[];
  nClips: number;
  m: number;
  d: number;
  /** [nClips, m] retrieve's clip_mean, clip_coverage, clip_score. */
  mean: Float32Array;
  coverage: Float32Array;
  score: Float32Array;
  /** [nClips, d] clip mean residual vectors; [nClips] token rows per clip. */
  residMean: Float32Array;
  rows: ArrayLike<number>;
  p: number;
  C?: number;
  maxFiringShare?: number;
  seed?: number;
}

/** Every row of the ablation table. */
export function ablations(inp: AblationInputs): Ablations {
  const { nClips, m, d } = inp;
  const C = inp.C ?? 50;
  const maxFiringShare = inp.maxFiringShare ?? 0.8;
  const seed = inp.seed ?? 0;
  if (inp.mean.length !== nClips * m || inp.coverage.length !== nClips * m || inp.score.length !== nClips * m) {
    throw new ArdError(`ablation: clip statistics are not [${nClips}, ${m}]`);
  }
  if (inp.residMean.length !== nClips * d) throw new ArdError(`ablation: clip residual means are not [${nClips}, ${d}]`);
  const ctx: AblationContext = {
    sp: inp.sp,
    clipLabels: inp.clipLabels,
    v: normaliseClipVectors(inp.residMean, inp.rows, nClips, d),
    d,
    nClips,
    p: inp.p,
    C,
    maxFiringShare,
  };
  const col = (a: Float32Array) => (j: number, out: Float32Array) => {
    for (let c = 0; c < nClips; c++) out[c] = a[c * m + j]!;
  };
  const sae = (select: Float32Array | null, detector: Float32Array): AblationCandidates => ({
    n: m,
    name: (j) => j,
    select: select ? col(select) : null,
    separation: col(inp.score),
    detector: col(detector),
    fires: (j, c) => inp.coverage[c * m + j]! > 0,
    firingShareRule: true,
  });
  // neurons: candidate 2i = +x_i, 2i+1 = −x_i; s = min-max over validation clips
  const neuron = (j: number, out: Float32Array) => {
    const i = j >> 1;
    const s = j & 1 ? -1 : 1;
    for (let c = 0; c < nClips; c++) out[c] = s * inp.residMean[c * d + i]!;
  };
  const neurons: AblationCandidates = {
    n: 2 * d,
    name: (j) => `${j & 1 ? '-' : '+'}${j >> 1}`,
    select: neuron,
    separation(j, out) {
      neuron(j, out);
      let lo = Infinity;
      let hi = -Infinity;
      for (const c of inp.sp.val) if (inp.rows[c]! > 0) [lo, hi] = [Math.min(lo, out[c]!), Math.max(hi, out[c]!)];
      const w = hi > lo ? hi - lo : 1;
      for (let c = 0; c < nClips; c++) out[c] = (out[c]! - lo) / w;
    },
    detector: neuron,
    fires: (_j, c) => inp.rows[c]! > 0,
    firingShareRule: false,
  };
  const rows = {
    ard: ablationRow(ctx, sae(inp.score, inp.score), seed),
    mean: ablationRow(ctx, sae(inp.mean, inp.mean), seed),
    coverage: ablationRow(ctx, sae(inp.coverage, inp.coverage), seed),
    random: ablationRow(ctx, sae(null, inp.score), seed),
    neurons: ablationRow(ctx, neurons, seed),
  };
  return { method: ABLATION_METHOD, p: inp.p, C, maxFiringShare, seed, rows, published: PUBLISHED_ABLATIONS, comparedWith: ABLATION_PUBLISHED_ROW };
}

function r6(x: number): number {
  return Number.isFinite(x) ? Math.round(x * 1e6) / 1e6 : x;
}
