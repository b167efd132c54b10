// What the SAELens and sparsify folder formats share: the SAE's parameters as host arrays, folding
// ardgpu's input scale into them (and back), reading a folder's cfg.json, checking tensor shapes,
// and writing a folder atomically.
//
// Folding: ardgpu's SAE computes on x·s (s = inputScale) and gives reconstructions back in the
// caller's units:
//   z = TopK(ReLU((s·x − b_dec)·W_enc + b_enc)),   x̂ = (z·W_dec + b_dec) / s.
// SAELens and sparsify have no input scale, so the export writes
//   W_enc' = s·W_enc,   b_enc' = b_enc,   W_dec' = W_dec / s,   b_dec' = b_dec / s,
// which computes the same z and x̂ on raw activations. It is exactly SAELens's own
// SAE.fold_activation_norm_scaling_factor (sae_lens/saes/sae.py), so the codes stay those of the
// ardgpu SAE. The export records s in the weights file's metadata; loading such a file unfolds it
// again, giving back the original parameters (to f32 rounding) with unit-norm decoder rows.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { SafetensorsFile, TensorInfo } from '../../io/safetensors.js';
import { ArdError } from '../../util/errors.js';
import { readJson } from '../../util/fs.js';
import { SparseAutoencoder } from '../model.js';
import type { Engine } from '../../gpu/engine.js';

/** The parameters of a Top-K SAE on the host, in ardgpu's layout (W_enc [d, m], W_dec [m, d]). */
export interface SaeArrays {
  d: number;
  m: number;
  k: number;
  W_enc: Float32Array;
  b_enc: Float32Array;
  W_dec: Float32Array;
  b_dec: Float32Array;
}

/** Metadata key (in the exported weights file) holding the input scale folded into the weights. */
export const FOLDED_SCALE_KEY = 'ardgpu_input_scale';
/** Metadata key holding the decoder layer the SAE reads. */
export const LAYER_KEY = 'ardgpu_layer';

export async function readSaeArrays(sae: SparseAutoencoder): Promise<SaeArrays> {
  const [W_enc, b_enc, W_dec, b_dec] = (await Promise.all(sae.parameters.map((t) => t.read()))) as Float32Array[];
  return { d: sae.d, m: sae.m, k: sae.k, W_enc: W_enc!, b_enc: b_enc!, W_dec: W_dec!, b_dec: b_dec! };
}

/** The parameters that compute, on raw x, what the SAE computes on x·s (see the file comment). */
export function foldInputScale(a: SaeArrays, s: number): SaeArrays {
  return {
    ...a,
    W_enc: Float32Array.from(a.W_enc, (v) => v * s),
    b_enc: a.b_enc.slice(),
    W_dec: Float32Array.from(a.W_dec, (v) => v / s),
    b_dec: Float32Array.from(a.b_dec, (v) => v / s),
  };
}

/** W [rows, cols] row-major → Wᵀ [cols, rows]. */
export function transpose2d(w: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(w.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = w[r * cols + c]!;
  return out;
}

/** cfg.json of a folder as an object, or a one-line error naming the file. */
export function readCfg(dir: string): Record<string, any> {
  const file = path.join(dir, 'cfg.json');
  const cfg = readJson(file);
  if (!cfg || typeof cfg !== 'object' || Array.isArray(cfg)) throw new ArdError(`${file}: not a JSON object`);
  return cfg;
}

export function positiveInt(file: string, key: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) throw new ArdError(`${file}: '${key}' must be a positive integer, got ${JSON.stringify(v)}`);
  return v;
}

/** The tensor `name` with exactly `shape`, or a one-line error naming the file. */
export function needTensor(f: SafetensorsFile, name: string, shape: number[]): TensorInfo {
  const t = f.tensors.get(name);
  if (!t) throw new ArdError(`${f.file}: no tensor '${name}' (has ${[...f.tensors.keys()].join(', ') || 'none'})`);
  if (t.shape.length !== shape.length || t.shape.some((v, i) => v !== shape[i])) {
    throw new ArdError(`${f.file}: ${name} has shape [${t.shape.join(', ')}], expected [${shape.join(', ')}]`);
  }
  return t;
}

/**
 * The ardgpu SAE for parameters read from a folder format: unfolds an input scale the export
 * recorded in the weights file's metadata, and checks what SparseAutoencoder itself would refuse
 * (so the error names the file).
 */
export function saeFromArrays(engine: Engine, file: string, a: SaeArrays, meta: Record<string, string>, layer: number | string | null): SparseAutoencoder {
  if (a.d % 4) throw new ArdError(`${file}: d_in = ${a.d} is not a multiple of 4, which ardgpu's SAE kernels need`);
  if (a.k > a.m) throw new ArdError(`${file}: k = ${a.k} exceeds the number of latents ${a.m}`);
  let s = 1;
  if (meta[FOLDED_SCALE_KEY] !== undefined) {
    s = Number(meta[FOLDED_SCALE_KEY]);
    if (!(s > 0) || !Number.isFinite(s)) throw new ArdError(`${file}: metadata ${FOLDED_SCALE_KEY} = ${meta[FOLDED_SCALE_KEY]} is not a positive number`);
  }
  const p = s === 1 ? a : foldInputScale(a, 1 / s);
  let metaLayer: number | string | null = layer;
  if (meta[LAYER_KEY] !== undefined) {
    const n = Number(meta[LAYER_KEY]);
    metaLayer = Number.isInteger(n) ? n : meta[LAYER_KEY]!;
  }
  return SparseAutoencoder.fromArrays(engine, { d: a.d, m: a.m, k: a.k }, p, {
    inputScale: s,
    layer: metaLayer,
    provenance: { source: path.resolve(path.dirname(file)) },
  });
}

/**
 * Writes a folder's files (name → writer of that file's path) into a temporary sibling folder,
 * then renames it to `dir`. An existing `dir` is replaced only when it looks like an earlier
 * export of the same kind (holds `marker`); anything else there is refused rather than deleted.
 */
export function writeFolderAtomic(dir: string, marker: string, files: Record<string, (file: string) => void>): void {
  const target = path.resolve(dir);
  if (fs.existsSync(target)) {
    const st = fs.statSync(target);
    if (!st.isDirectory()) throw new ArdError(`${dir}: exists and is not a folder`);
    const entries = fs.readdirSync(target);
    if (entries.length && !entries.includes(marker)) throw new ArdError(`${dir}: folder is not empty and holds no ${marker} (refusing to replace it)`);
  }
  fs.mkdirSync(path.dirname(target), { recursive: true });
  const tmp = `${target}.${process.pid}.tmp`;
  fs.rmSync(tmp, { recursive: true, force: true });
  fs.mkdirSync(tmp);
  try {
    for (const [name, write] of Object.entries(files)) write(path.join(tmp, name));
    const old = `${target}.${process.pid}.old`;
    const had = fs.existsSync(target);
    if (had) fs.renameSync(target, old);
    fs.renameSync(tmp, target);
    if (had) fs.rmSync(old, { recursive: true, force: true });
  } catch (e) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
}
