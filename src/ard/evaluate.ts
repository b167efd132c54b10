// AR&D evaluation against the corpus labels, in the style of the paper's FSD50K table.
//
// For each ground-truth label and each method (SAE features, raw neurons, random directions):
//   1. selection (VALIDATION split): the candidate whose clip-level score has the highest
//      average precision for the label;
//   2. threshold (VALIDATION split): the one maximising F1 when predicting "label" for
//      score ≥ threshold; candidates are midpoints between consecutive distinct scores (and the
//      lowest score itself), so the threshold does not sit on a validation clip's exact value;
//   3. test (TEST split): AP, precision, recall and F1 at that threshold.
// Method figures are macro means over labels; mAP = mean test AP. Labels without positives in
// either split are skipped (listed).
// Clip-level scores: SAE feature = clip mean activation (retrieve's clip_mean: the same quantity
// that drives retrieval; coverage alone ignores strength). Neurons: the clip mean of each residual
// dimension, both signs (d·2 candidates). Random: m seeded unit directions r; the score is the clip
// mean of x·r, which equals (clip mean of x)·r, so the per-clip residual means are all it needs.
// AP is the non-interpolated average precision (as sklearn's average_precision_score): the sum
// over distinct score thresholds of (recall step) × precision, ties counted together.
import { mulberry32 } from '../util/random.js';
import * as fs from 'node:fs';
import { ArdError } from '../util/errors.js';
import { readJson, writeJsonAtomic } from '../util/fs.js';
import type { FeaturesFile } from './rank.js';
import { readFeatures } from './rank.js';
import { readRetrieve } from './retrieve.js';
import type { CaptureClip } from './run.js';
import { readCaptureManifest, runPaths } from './run.js';
import { namesAgree } from './describe.js';
import type { SaeQuality } from './quality.js';
import type { Ablations } from './ablation.js';
import { ablations } from './ablation.js';
import type { SpliceFile } from './splice.js';
import { readSplice } from './splice.js';

// ---- metrics -------------------------------------------------------------------------------------

/** Non-interpolated average precision; NaN without positives. Ties are one threshold step. */
export function averagePrecision(scores: ArrayLike<number>, positive: ArrayLike<boolean | number>): number {
  const n = scores.length;
  const order = sortDesc(scores);
  let P = 0;
  for (let i = 0; i < n; i++) if (positive[i]) P++;
  if (P === 0) return NaN;
  let tp = 0;
  let seen = 0;
  let ap = 0;
  let i = 0;
  while (i < n) {
    const s = scores[order[i]!]!;
    let gtp = 0;
    let j = i;
    while (j < n && scores[order[j]!]! === s) {
      if (positive[order[j]!]) gtp++;
      j++;
    }
    tp += gtp;
    seen = j;
    if (gtp) ap += (gtp / P) * (tp / seen);
    i = j;
  }
  return ap;
}

function sortDesc(scores: ArrayLike<number>): Int32Array {
  const idx = new Int32Array(scores.length);
  for (let i = 0; i < idx.length; i++) idx[i] = i;
  idx.sort((a, b) => scores[b]! - scores[a]! || a - b);
  return idx;
}

export interface Prf {
  precision: number;
  recall: number;
  f1: number;
}

/** Precision/recall/F1 of "score ≥ threshold" (precision 0 when nothing is predicted). */
export function prf(scores: ArrayLike<number>, positive: ArrayLike<boolean | number>, threshold: number): Prf {
  let tp = 0;
  let fp = 0;
  let fn = 0;
  for (let i = 0; i < scores.length; i++) {
    const pred = scores[i]! >= threshold;
    if (pred && positive[i]) tp++;
    else if (pred) fp++;
    else if (positive[i]) fn++;
  }
  const precision = tp + fp ? tp / (tp + fp) : 0;
  const recall = tp + fn ? tp / (tp + fn) : 0;
  const f1 = precision + recall ? (2 * precision * recall) / (precision + recall) : 0;
  return { precision, recall, f1 };
}

/**
 * The threshold maximising F1 of "score ≥ t": candidates are the lowest score and midpoints between
 * consecutive distinct scores. Ties in F1 keep the higher threshold (fewer positive predictions).
 */
export function bestF1Threshold(scores: ArrayLike<number>, positive: ArrayLike<boolean | number>): { threshold: number; f1: number } {
  const n = scores.length;
  if (n === 0) return { threshold: 0, f1: 0 };
  const order = sortDesc(scores);
  let P = 0;
  for (let i = 0; i < n; i++) if (positive[i]) P++;
  let best = { threshold: scores[order[0]!]!, f1: -1 };
  let tp = 0;
  let i = 0;
  while (i < n) {
    const s = scores[order[i]!]!;
    let j = i;
    while (j < n && scores[order[j]!]! === s) {
      if (positive[order[j]!]) tp++;
      j++;
    }
    // predicting the first j clips: threshold between s and the next lower score
    const t = j < n ? (s + scores[order[j]!]!) / 2 : s;
    const f1 = P + j ? (2 * tp) / (P + j) : 0;
    if (f1 > best.f1) best = { threshold: t, f1 };
    i = j;
  }
  return best;
}

// ---- selection over many candidates --------------------------------------------------------------

/** Column accessor over a candidate score matrix restricted to some clips. */
export interface CandidateScores {
  /** Number of candidates (columns). */
  n: number;
  /** Fill `out[i]` with candidate j's score on the i-th clip of the subset. */
  column(j: number, out: Float32Array): void;
}

/** Dense row-major [clips, n] matrix as candidates (rows already restricted). */
export function denseCandidates(matrix: Float32Array, rows: number, n: number): CandidateScores {
  return {
    n,
    column(j, out) {
      for (let i = 0; i < rows; i++) out[i] = matrix[i * n + j]!;
    },
  };
}

/** For every label: AP of every candidate (streamed), returning the best candidate and its AP. */
export function bestCandidates(cands: CandidateScores, positives: Uint8Array[], rows: number): { best: Int32Array; ap: Float64Array } {
  const L = positives.length;
  const best = new Int32Array(L).fill(-1);
  const bestAp = new Float64Array(L).fill(-Infinity);
  const col = new Float32Array(rows);
  const P = positives.map((pos) => pos.reduce((a, b) => a + b, 0));
  const tp = new Float64Array(L);
  const ap = new Float64Array(L);
  const gtp = new Float64Array(L);
  for (let j = 0; j < cands.n; j++) {
    cands.column(j, col);
    const order = sortDesc(col);
    tp.fill(0);
    ap.fill(0);
    let i = 0;
    while (i < rows) {
      const s = col[order[i]!]!;
      let e = i;
      gtp.fill(0);
      while (e < rows && col[order[e]!] === s) {
        const c = order[e]!;
        for (let l = 0; l < L; l++) if (positives[l]![c]) gtp[l]!++;
        e++;
      }
      for (let l = 0; l < L; l++) {
        if (!gtp[l]) continue;
        tp[l]! += gtp[l]!;
        ap[l]! += (gtp[l]! / P[l]!) * (tp[l]! / e);
      }
      i = e;
    }
    for (let l = 0; l < L; l++) {
      if (P[l] && ap[l]! > bestAp[l]!) {
        bestAp[l] = ap[l]!;
        best[l] = j;
      }
    }
  }
  return { best, ap: bestAp };
}

export interface LabelResult {
  /** Chosen candidate (feature id, neuron "+j"/"-j", or random direction index). */
  feature: number | string;
  /** AP on the validation split (selection criterion). */
  valAp: number;
  ap: number;
  precision: number;
  recall: number;
  f1: number;
  threshold: number;
}

export interface MethodResult {
  precision: number;
  recall: number;
  f1: number;
  map: number;
  perLabel: Record<string, LabelResult>;
}

export interface EvalSplits {
  labels: string[];
  /** Clip indices of the validation and test splits. */
  val: number[];
  test: number[];
  /** positives[split][label] = Uint8Array over that split's clips. */
  valPos: Uint8Array[];
  testPos: Uint8Array[];
  skipped: string[];
}

export function evalSplits(clips: readonly Pick<CaptureClip, 'labels' | 'split'>[], valName = 'val', testName = 'test'): EvalSplits {
  const val: number[] = [];
  const test: number[] = [];
  clips.forEach((c, i) => {
    if (c.split === valName) val.push(i);
    else if (c.split === testName) test.push(i);
  });
  if (!val.length) throw new ArdError(`evaluate: no clips in the '${valName}' split`);
  if (!test.length) throw new ArdError(`evaluate: no clips in the '${testName}' split`);
  const all = [...new Set(clips.flatMap((c) => c.labels))].sort();
  const pos = (idx: number[], label: string) => Uint8Array.from(idx, (i) => (clips[i]!.labels.includes(label) ? 1 : 0));
  const labels: string[] = [];
  const skipped: string[] = [];
  for (const l of all) {
    const v = pos(val, l);
    const t = pos(test, l);
    if (v.some(Boolean) && t.some(Boolean)) labels.push(l);
    else skipped.push(l);
  }
  return { labels, val, test, valPos: labels.map((l) => pos(val, l)), testPos: labels.map((l) => pos(test, l)), skipped };
}

/**
 * One method: candidates scored on the validation clips pick a candidate per label (max AP), the
 * threshold comes from validation too, and the test clips give the reported figures.
 */
export function evaluateMethod(
  valCands: CandidateScores,
  testCands: CandidateScores,
  sp: EvalSplits,
  nameOf: (j: number) => number | string = (j) => j,
): MethodResult {
  const nv = sp.val.length;
  const nt = sp.test.length;
  const { best, ap: valAp } = bestCandidates(valCands, sp.valPos, nv);
  const perLabel: Record<string, LabelResult> = {};
  const vcol = new Float32Array(nv);
  const tcol = new Float32Array(nt);
  let sp_ = 0;
  let sr = 0;
  let sf = 0;
  let sap = 0;
  sp.labels.forEach((label, l) => {
    const j = best[l]!;
    valCands.column(j, vcol);
    testCands.column(j, tcol);
    const { threshold } = bestF1Threshold(vcol, sp.valPos[l]!);
    const r = prf(tcol, sp.testPos[l]!, threshold);
    const ap = averagePrecision(tcol, sp.testPos[l]!);
    perLabel[label] = { feature: nameOf(j), valAp: r6(valAp[l]!), ap: r6(ap), precision: r6(r.precision), recall: r6(r.recall), f1: r6(r.f1), threshold: r6(threshold) };
    sp_ += r.precision;
    sr += r.recall;
    sf += r.f1;
    sap += ap;
  });
  const n = Math.max(1, sp.labels.length);
  return { precision: r6(sp_ / n), recall: r6(sr / n), f1: r6(sf / n), map: r6(sap / n), perLabel };
}

function r6(x: number): number {
  return Number.isFinite(x) ? Math.round(x * 1e6) / 1e6 : x;
}

/** Rows `idx` of a row-major [nClips, n] matrix. */
function pickRows(matrix: Float32Array, n: number, idx: number[]): Float32Array {
  const out = new Float32Array(idx.length * n);
  idx.forEach((c, i) => out.set(matrix.subarray(c * n, (c + 1) * n), i * n));
  return out;
}

/** Neurons, both signs: candidate 2j = +x_j, 2j+1 = −x_j. */
export function neuronCandidates(resid: Float32Array, rows: number, d: number): CandidateScores {
  return {
    n: 2 * d,
    column(j, out) {
      const c = j >> 1;
      const s = j & 1 ? -1 : 1;
      for (let i = 0; i < rows; i++) out[i] = s * resid[i * d + c]!;
    },
  };
}

/** m seeded random unit directions [d, m] (Gaussian, normalised per direction). */
export function randomDirections(d: number, m: number, seed: number): Float32Array {
  const u = mulberry32(seed);
  const R = new Float32Array(d * m);
  for (let j = 0; j < m; j++) {
    let norm = 0;
    const col = new Float64Array(d);
    for (let i = 0; i < d; i++) {
      const g = Math.sqrt(-2 * Math.log(Math.max(u(), 1e-12))) * Math.cos(2 * Math.PI * u());
      col[i] = g;
      norm += g * g;
    }
    const inv = 1 / Math.sqrt(norm);
    for (let i = 0; i < d; i++) R[i * m + j] = col[i]! * inv;
  }
  return R;
}

/** Projections [rows, m] = resid [rows, d] · R [d, m]. */
export function project(resid: Float32Array, rows: number, d: number, R: Float32Array, m: number): Float32Array {
  const out = new Float32Array(rows * m);
  const acc = new Float64Array(m);
  for (let i = 0; i < rows; i++) {
    acc.fill(0);
    for (let c = 0; c < d; c++) {
      const x = resid[i * d + c]!;
      if (x === 0) continue;
      const base = c * m;
      for (let j = 0; j < m; j++) acc[j]! += x * R[base + j]!;
    }
    for (let j = 0; j < m; j++) out[i * m + j] = acc[j]!;
  }
  return out;
}

// ---- the evaluate stage --------------------------------------------------------------------------

export interface NameMismatch {
  feature: number;
  name: string;
  /** The label the feature detects best (validation AP). */
  label: string;
  ap: number;
}

export interface EvalFile {
  layer: number;
  method: string;
  labels: string[];
  skippedLabels: string[];
  nVal: number;
  nTest: number;
  sae: MethodResult;
  neurons: MethodResult;
  random: MethodResult & { seed: number; directions: number };
  name_accuracy: number | null;
  named: number;
  name_mismatches: NameMismatch[];
  /** The SAE's architecture (sae-L.train.json; topk when it does not say). */
  architecture?: string;
  /** The SAE's quality over the capture (quality.ts), copied from sae-L.train.json; null when it has none. */
  quality?: SaeQuality | null;
  /** The spliced-in loss (splice.ts), copied from RUN/splice-L.json; null when it was not measured. */
  splice?: SpliceFile | null;
  /** The AR&D ablation table (ablation.ts); absent when the inputs lack coverage and scores. */
  ablations?: Ablations;
}

export const EVAL_METHOD =
  'per label: candidate with max AP on validation; threshold maximising F1 on validation; AP/P/R/F1 on test; ' +
  'SAE score = clip mean activation; neurons = clip mean of each residual dimension, both signs; ' +
  'random = clip mean projection on m seeded unit directions; figures are macro means over labels';

export interface EvaluateInputs {
  clips: readonly Pick<CaptureClip, 'labels' | 'split'>[];
  /** [nClips, m] clip mean activation per SAE feature. */
  clipMean: Float32Array;
  m: number;
  /** [nClips, d] clip mean residual vectors. */
  residMean: Float32Array;
  d: number;
  features?: FeaturesFile | null;
  seed?: number;
  layer?: number;
  /** Retrieval's coverage and scores (and H/L size p, kept features C): enable the ablation table. */
  ablation?: { coverage: Float32Array; score: Float32Array; rows: ArrayLike<number>; p: number; C?: number; maxFiringShare?: number };
}

/** Pure evaluation (no files). */
export function evaluateAll(inp: EvaluateInputs): EvalFile {
  const sp = evalSplits(inp.clips);
  const { m, d } = inp;
  const seed = inp.seed ?? 0;
  const vMean = pickRows(inp.clipMean, m, sp.val);
  const tMean = pickRows(inp.clipMean, m, sp.test);
  const sae = evaluateMethod(denseCandidates(vMean, sp.val.length, m), denseCandidates(tMean, sp.test.length, m), sp);
  const vRes = pickRows(inp.residMean, d, sp.val);
  const tRes = pickRows(inp.residMean, d, sp.test);
  const neurons = evaluateMethod(neuronCandidates(vRes, sp.val.length, d), neuronCandidates(tRes, sp.test.length, d), sp, (j) => `${j & 1 ? '-' : '+'}${j >> 1}`);
  const R = randomDirections(d, m, seed);
  const vProj = project(vRes, sp.val.length, d, R, m);
  const tProj = project(tRes, sp.test.length, d, R, m);
  const random = evaluateMethod(denseCandidates(vProj, sp.val.length, m), denseCandidates(tProj, sp.test.length, m), sp);

  // name accuracy: each named kept feature vs the label it detects best on validation
  const mismatches: NameMismatch[] = [];
  let named = 0;
  let agree = 0;
  const col = new Float32Array(sp.val.length);
  for (const f of inp.features?.features ?? []) {
    if (!f.name) continue;
    if (f.id < 0 || f.id >= m) throw new ArdError(`evaluate: feature ${f.id} outside the SAE's ${m} features`);
    named++;
    for (let i = 0; i < sp.val.length; i++) col[i] = vMean[i * m + f.id]!;
    let bestL = -1;
    let bestAp = -Infinity;
    sp.labels.forEach((_, l) => {
      const ap = averagePrecision(col, sp.valPos[l]!);
      if (ap > bestAp) [bestAp, bestL] = [ap, l];
    });
    const label = sp.labels[bestL] ?? '';
    if (bestL >= 0 && namesAgree(f.name, label)) agree++;
    else mismatches.push({ feature: f.id, name: f.name, label, ap: r6(bestAp) });
  }
  return {
    layer: inp.layer ?? -1,
    method: EVAL_METHOD,
    labels: sp.labels,
    skippedLabels: sp.skipped,
    nVal: sp.val.length,
    nTest: sp.test.length,
    sae,
    neurons,
    random: { ...random, seed, directions: m },
    name_accuracy: named ? r6(agree / named) : null,
    named,
    name_mismatches: mismatches,
    ...(inp.ablation
      ? {
          ablations: ablations({
            sp,
            clipLabels: inp.clips.map((c) => c.labels),
            nClips: inp.clips.length,
            m,
            d,
            mean: inp.clipMean,
            coverage: inp.ablation.coverage,
            score: inp.ablation.score,
            residMean: inp.residMean,
            rows: inp.ablation.rows,
            p: inp.ablation.p,
            C: inp.ablation.C,
            maxFiringShare: inp.ablation.maxFiringShare,
            seed,
          }),
        }
      : {}),
  };
}

export interface EvaluateOptions {
  run: string;
  layer: number;
  seed?: number;
}

/** The evaluate stage: retrieve-L + manifest (+ features-L for names) → RUN/eval.json. */
export function evaluate(o: EvaluateOptions): EvalFile {
  const paths = runPaths(o.run, o.layer);
  const manifest = readCaptureManifest(o.run);
  const stats = readRetrieve(paths.retrieve);
  if (stats.nClips !== manifest.clips.length) throw new ArdError(`${paths.retrieve}: ${stats.nClips} clips, capture manifest has ${manifest.clips.length} (re-run retrieve)`);
  if (!stats.residMean) throw new ArdError(`${paths.retrieve}: no clip_resid_mean (re-run retrieve)`);
  const features = fs.existsSync(paths.features) ? readFeatures(paths.features) : null;
  const out: EvalFile = evaluateAll({ clips: manifest.clips, clipMean: stats.mean, m: stats.m, residMean: stats.residMean, d: stats.d, features, seed: o.seed, layer: o.layer,
    ablation: { coverage: stats.coverage, score: stats.score, rows: stats.rows, p: stats.p, C: features?.C || undefined },
  });
  // the SAE's quality is measured when it is trained (train-sae, under the SAE's inputs key); eval.json
  // repeats it so one file holds the layer's figures
  const train = fs.existsSync(paths.saeTrain) ? readJson<{ quality?: SaeQuality; architecture?: string }>(paths.saeTrain) : null;
  out.architecture = train?.architecture ?? train?.quality?.architecture ?? 'topk';
  out.quality = train?.quality ?? null;
  // likewise the spliced-in loss (its own stage, which needs the model)
  out.splice = readSplice(o.run, o.layer);
  writeJsonAtomic(paths.eval, out);
  return out;
}
