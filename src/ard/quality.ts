// SAE quality as the field reports it, per layer, measured over the layer's capture (every stored
// token row of every clip: the tokens the SAE was trained on):
//   FVU        = Σ_t ‖x_t − x̂_t‖² / Σ_t ‖x_t − x̄‖²   (x̄ = mean row over the capture)
//   explained variance = 1 − FVU
//   L0         = mean over tokens of the number of latents with z > 0 (a Top-K SAE gives at most k;
//                fewer where some of the top k are not positive, so it is counted, not assumed)
//   density_j  = fraction of tokens on which latent j fires (z_j > 0)
//   dead       = latents with density 0 (never fired on the capture)
//   dense      = latents firing on more than 10 % of the tokens
//   histogram  = counts of log10(density_j) in 20 bins of width 0.5 over [−10, 0] (density 1 falls
//                in the last bin), dead latents counted apart (log10 0 is −∞).
// FVU is measured in the capture's units; the SAE's input scale is one scalar, which cancels in the
// ratio, so the figure is the same on the scale the SAE sees. The spliced-in loss (next-token loss
// with x̂ in place of x) is not measured here.
// One pass over the shards: the densities come from featureDensity (export-sae.ts), which hands
// each batch and its codes to the FVU sums below before freeing them.
import type { Engine } from '../gpu/engine.js';
import type { ShardReader } from '../io/shards.js';
import type { SparseAutoencoder } from '../sae/model.js';
import { ArdError } from '../util/errors.js';
import { scale, square, sub } from '../tensor/ops/elementwise.js';
import { sum } from '../tensor/ops/reduce.js';
import type { Tensor } from '../tensor/tensor.js';
import { featureDensity } from './export-sae.js';
import { captureShardReader, readCaptureManifest } from './run.js';

/** A latent firing on more than this share of tokens is dense. */
export const DENSE_SHARE = 0.1;
/** The density histogram: log10 density from LO to HI in BINS bins. */
export const DENSITY_LOG10_LO = -10;
export const DENSITY_LOG10_HI = 0;
export const DENSITY_BINS = 20;

export const QUALITY_METHOD =
  'over the capture rows (every stored token): FVU = Σ‖x − x̂‖² / Σ‖x − mean(x)‖² (capture units; the SAE input scale cancels), ' +
  'explained variance = 1 − FVU, L0 = mean number of latents with z > 0 per token, density = share of tokens a latent fires on, ' +
  `dead = density 0, dense = density > ${DENSE_SHARE}; histogram of log10 density, ${DENSITY_BINS} bins over [${DENSITY_LOG10_LO}, ${DENSITY_LOG10_HI}], dead latents apart`;

export interface DensityHistogram {
  log10Lo: number;
  log10Hi: number;
  /** counts[i]: latents with log10 density in [lo + i·w, lo + (i+1)·w), w = (hi − lo) / counts.length; the last bin includes hi. */
  counts: number[];
  /** Latents that never fired (not in counts). */
  dead: number;
}

/** The SAE's architecture (and BatchTopK's inference threshold) beside its figures. */
function withArch(q: SaeQuality, sae: SparseAutoencoder): SaeQuality {
  return { ...q, architecture: sae.arch, ...(sae.arch === 'batchtopk' ? { threshold: sae.threshold } : {}) };
}

export interface SaeQuality {
  /** topk or batchtopk (k: the L0 aimed at); absent in files from before BatchTopK. */
  architecture?: string;
  /** batchtopk: the inference threshold (normalised units). */
  threshold?: number | null;
  /** Tokens (capture rows) measured. */
  rows: number;
  d: number;
  m: number;
  k: number;
  fvu: number;
  explainedVariance: number;
  l0: number;
  dead: number;
  deadShare: number;
  dense: number;
  denseShare: number;
  denseThreshold: number;
  histogram: DensityHistogram;
  method: string;
}

/**
 * Histogram of log10 firing counts / rows. Takes counts (integers) so that a density on a bin edge
 * or at the dense threshold is not moved by float rounding.
 */
export function densityHistogram(counts: ArrayLike<number>, rows: number, o: { lo?: number; hi?: number; bins?: number } = {}): DensityHistogram {
  const lo = o.lo ?? DENSITY_LOG10_LO;
  const hi = o.hi ?? DENSITY_LOG10_HI;
  const bins = o.bins ?? DENSITY_BINS;
  if (!(hi > lo) || !Number.isInteger(bins) || bins < 1) throw new ArdError(`density histogram: needs lo < hi and a positive whole number of bins (got ${lo}, ${hi}, ${bins})`);
  const out = new Array<number>(bins).fill(0);
  let dead = 0;
  const w = (hi - lo) / bins;
  for (let j = 0; j < counts.length; j++) {
    const c = counts[j]!;
    if (!(c > 0)) {
      dead++;
      continue;
    }
    const b = Math.floor((Math.log10(c / rows) - lo) / w);
    out[Math.max(0, Math.min(bins - 1, b))]! += 1;
  }
  return { log10Lo: lo, log10Hi: hi, counts: out, dead };
}

/** Quality figures from per-latent firing counts over `rows` tokens and the FVU sums. */
export function qualityFromCounts(counts: ArrayLike<number>, rows: number, sse: number, sst: number, shape: { d: number; k: number }): SaeQuality {
  const m = counts.length;
  let fired = 0;
  let dead = 0;
  let dense = 0;
  for (let j = 0; j < m; j++) {
    const c = counts[j]!;
    fired += c;
    if (c === 0) dead++;
    if (c > DENSE_SHARE * rows) dense++;
  }
  const fvu = sst > 0 ? sse / sst : NaN;
  return {
    rows,
    d: shape.d,
    m,
    k: shape.k,
    fvu,
    explainedVariance: 1 - fvu,
    l0: rows ? fired / rows : 0,
    dead,
    deadShare: m ? dead / m : 0,
    dense,
    denseShare: m ? dense / m : 0,
    denseThreshold: DENSE_SHARE,
    histogram: densityHistogram(counts, rows),
    method: QUALITY_METHOD,
  };
}

/** Measures the SAE's quality over the reader's rows (one streamed pass). */
export async function saeQuality(
  engine: Engine,
  sae: SparseAutoencoder,
  reader: ShardReader,
  o: { batchRows?: number; onProgress?: (done: number, total: number) => void } = {},
): Promise<SaeQuality> {
  if (reader.d !== sae.d) throw new ArdError(`sae quality: the rows have width ${reader.d}, the SAE reads ${sae.d}`);
  const d = sae.d;
  // Σ‖x − x̂‖², and the total sum of squares about the overall mean merged batch by batch
  // (Chan et al.'s pairwise update: no cancellation from large means)
  let sse = 0;
  let n = 0;
  const mean = new Float64Array(d);
  let m2 = 0;
  const onBatch = async (x: Tensor, codes: { values: Tensor; indices: Tensor }) => {
    const nb = x.shape[0]!;
    const t = engine.noGradScope(() => {
      const xhat = sae.decode(codes);
      const e = sub(x, xhat);
      xhat.dispose();
      const e2 = square(e);
      e.dispose();
      const sseB = sum(e2);
      e2.dispose();
      const colSum = sum(x, 0);
      const mu = scale(colSum, 1 / nb);
      const c = sub(x, mu);
      mu.dispose();
      const c2 = square(c);
      c.dispose();
      const ssB = sum(c2);
      c2.dispose();
      return { sseB, colSum, ssB };
    });
    try {
      const [a, s, b] = (await Promise.all([t.sseB.read(), t.colSum.read(), t.ssB.read()])) as Float32Array[];
      sse += a![0]!;
      let delta2 = 0;
      const na = n;
      n += nb;
      for (let j = 0; j < d; j++) {
        const dj = s![j]! / nb - mean[j]!;
        delta2 += dj * dj;
        mean[j]! += (dj * nb) / n;
      }
      m2 += b![0]! + (delta2 * na * nb) / n;
    } finally {
      t.sseB.dispose();
      t.colSum.dispose();
      t.ssB.dispose();
    }
  };
  const { density, rows } = await featureDensity(engine, sae, reader, { batchRows: o.batchRows, onProgress: o.onProgress, onBatch });
  // featureDensity's shares are count / rows in f32: recover the integer counts
  const counts = Array.from(density, (p) => Math.round(p * rows));
  return withArch(qualityFromCounts(counts, rows, sse, m2, { d, k: sae.k }), sae);
}

/** The quality of an SAE over a run's capture of `layer`. */
export async function runSaeQuality(o: {
  engine: Engine;
  run: string;
  layer: number;
  sae: SparseAutoencoder;
  batchRows?: number;
  onProgress?: (done: number, total: number) => void;
}): Promise<SaeQuality> {
  const manifest = readCaptureManifest(o.run);
  return saeQuality(o.engine, o.sae, captureShardReader(o.run, manifest, o.layer), { batchRows: o.batchRows, onProgress: o.onProgress });
}
