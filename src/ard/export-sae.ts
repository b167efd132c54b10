// Exporting a run's SAE (RUN/sae-L.safetensors) as a SAELens or sparsify folder. SAELens's folder
// also carries each latent's firing density (sparsity.safetensors); ardgpu stores no such count,
// so it is measured here by streaming the layer's capture through the SAE (the tokens the SAE was
// trained on, as SAELens counts over its training tokens).
import * as fs from 'node:fs';
import type { Engine } from '../gpu/engine.js';
import { captureShardReader, readCaptureManifest, runPaths } from './run.js';
import { uploadRows } from './retrieve.js';
import type { ShardReader } from '../io/shards.js';
import type { Tensor } from '../tensor/tensor.js';
import { ArdError } from '../util/errors.js';
import { SparseAutoencoder } from '../sae/model.js';
import type { SparseEncoder } from '../sae/types.js';
import { readSaeArrays } from '../sae/formats/common.js';
import { writeSaelens } from '../sae/formats/saelens.js';
import { writeSparsify } from '../sae/formats/sparsify.js';

export const SAE_EXPORT_FORMATS = ['saelens', 'sparsify'] as const;
export type SaeExportFormat = (typeof SAE_EXPORT_FORMATS)[number];

/**
 * Fraction of the reader's rows on which each latent fires (z > 0). `onBatch` sees each batch of
 * rows and its codes before they are freed, so other measures over the same pass (quality.ts)
 * need no second read of the shards.
 */
export async function featureDensity(
  engine: Engine,
  sae: SparseEncoder,
  reader: ShardReader,
  o: {
    batchRows?: number;
    onProgress?: (done: number, total: number) => void;
    onBatch?: (x: Tensor, codes: { values: Tensor; indices: Tensor }) => void | Promise<void>;
  } = {},
): Promise<{ density: Float32Array; rows: number }> {
  const counts = new Float64Array(sae.m);
  const total = reader.totalRows;
  const B = o.batchRows ?? 4096;
  for (let r = 0; r < total; r += B) {
    const n = Math.min(B, total - r);
    const x = uploadRows(engine, reader, r, n);
    const { values, indices } = engine.noGradScope(() => sae.encode(x));
    let v: Float32Array;
    let idx: Int32Array;
    try {
      await o.onBatch?.(x, { values, indices });
      [v, idx] = await Promise.all([values.read() as Promise<Float32Array>, indices.read() as Promise<Int32Array>]);
    } finally {
      x.dispose();
      values.dispose();
      indices.dispose();
    }
    for (let i = 0; i < v.length; i++) if (v[i]! > 0) counts[idx[i]!]! += 1;
    o.onProgress?.(r + n, total);
  }
  return { density: Float32Array.from(counts, (c) => (total ? c / total : 0)), rows: total };
}

export interface ExportSaeOptions {
  engine: Engine;
  run: string;
  layer: number;
  format: SaeExportFormat;
  /** SAELens: the SAE's folder; sparsify: the root that gets one folder per hookpoint. */
  out: string;
  /** The SAE to write (a file or a SAELens / sparsify folder) instead of RUN/sae-L.safetensors. */
  saeFile?: string;
  onProgress?: (done: number, total: number) => void;
}

export interface ExportSaeResult {
  format: SaeExportFormat;
  /** The folder holding cfg.json and the weights. */
  dir: string;
  d: number;
  m: number;
  k: number;
  /** The input scale folded into the exported weights. */
  inputScale: number;
  /** Capture rows the densities were measured on (SAELens only; null otherwise). */
  densityRows: number | null;
}

export async function exportSae(o: ExportSaeOptions): Promise<ExportSaeResult> {
  if (!(SAE_EXPORT_FORMATS as readonly string[]).includes(o.format)) throw new ArdError(`export-sae: unknown format '${o.format}' (known: ${SAE_EXPORT_FORMATS.join(', ')})`);
  const paths = runPaths(o.run, o.layer);
  const saeFile = o.saeFile ?? paths.sae;
  if (o.saeFile === undefined && !fs.existsSync(paths.sae)) throw new ArdError(`${paths.sae}: no SAE for layer ${o.layer} (run \`ardgpu train-sae --run ${o.run} --layer ${o.layer}\` first)`);
  const manifest = fs.existsSync(paths.manifest) ? readCaptureManifest(o.run) : null;
  const sae = SparseAutoencoder.load(o.engine, saeFile);
  try {
    if (sae.arch === 'batchtopk' && o.format !== 'saelens') throw new ArdError(`${saeFile}: a BatchTopK SAE exports to SAELens (as JumpReLU) only; sparsify has no thresholds`);
    if (sae.arch === 'batchtopk' && sae.threshold === null) throw new ArdError(`${saeFile}: BatchTopK SAE without an inference threshold (training did not reach its second half)`);
    const a = await readSaeArrays(sae);
    if (o.format === 'sparsify') {
      const dir = writeSparsify(o.out, a, sae.inputScale, { layer: o.layer });
      return { format: o.format, dir, d: a.d, m: a.m, k: a.k, inputScale: sae.inputScale, densityRows: null };
    }
    if (!manifest) throw new ArdError(`${paths.manifest}: no capture, which the feature densities of sparsity.safetensors are measured on`);
    const { density, rows } = await featureDensity(o.engine, sae, captureShardReader(o.run, manifest, o.layer), { onProgress: o.onProgress });
    writeSaelens(o.out, a, sae.inputScale, {
      layer: o.layer,
      modelName: manifest.model ?? null,
      datasetPath: manifest.corpus ?? null,
      density,
      threshold: sae.arch === 'batchtopk' ? sae.threshold : null,
      extraMetadata: { ardgpu: { ...(sae.arch === 'batchtopk' ? { architecture: 'batchtopk', k: sae.k, k_max: sae.kMax } : {}), run_sae: saeFile, layer: o.layer, input_scale: sae.inputScale, prompt: manifest.prompt ?? null, positions: manifest.positions ?? null, capture: manifest.inputsHash ?? null, density_rows: rows } },
    });
    return { format: o.format, dir: o.out, d: a.d, m: a.m, k: a.k, inputScale: sae.inputScale, densityRows: rows };
  } finally {
    sae.dispose();
  }
}
