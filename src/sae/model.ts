// The Top-K sparse autoencoder: x̂ = W_dec·ReLU(TopK(W_enc(x − b_dec) + b_enc)) + b_dec, with
// W_enc [d, m], b_enc [m], W_dec [m, d] (rows = latent directions, unit norm), b_dec [d].
// Inputs are multiplied by `inputScale` first (chosen at training time so that E‖x‖² = d), so
// the parameters live in normalised units; encode/decode take and give the caller's units.
import type { Engine } from '../gpu/engine.js';
import { openSafetensors, writeSafetensors } from '../io/safetensors.js';
import { ArdError } from '../util/errors.js';
import { noGrad, param } from '../tensor/autograd.js';
import { keep } from '../tensor/scope.js';
import { Tensor, tensor } from '../tensor/tensor.js';
import { scale, zeros } from '../tensor/ops/elementwise.js';
import { reshape, slice } from '../tensor/ops/layout.js';
import { scatterAdd } from '../tensor/ops/index.js';
import { EncodeOptions, SparseCodes, batchThreshold, encodeTopK, normalizeRows, reconLoss, sparseDecode, thresholdCodes } from './ops.js';
import { Rng } from './rng.js';
import type { Sae } from './types.js';
import { SAE_FOLDER_FORMATS, saeFolderFormat } from './formats/index.js';

export const SAE_FORMAT = 'ardgpu-topk-sae-1';

/**
 * topk: k latents per row. batchtopk (Bussmann et al. 2024): in training the batch keeps its k·B
 * largest activations in all (among each row's top kMax candidates), so rows use what they need;
 * for inference one threshold θ, the mean batch threshold over the second half of training,
 * replaces the batch: z = ReLU(pre)·[pre ≥ θ] among the row's top kMax (SAELens: JumpReLU).
 */
export type SaeArch = 'topk' | 'batchtopk';
export const SAE_ARCHS: readonly SaeArch[] = ['topk', 'batchtopk'];
/** BatchTopK candidates per row: min(m, 256, this × k). */
export const BATCHTOPK_CANDIDATES = 4;

export interface SaeShape {
  d: number;
  m: number;
  k: number;
}

export interface SaeInitOptions extends SaeShape {
  seed?: number;
  /** Initial b_dec in normalised units (e.g. the data mean); zeros by default. */
  bDec?: Float32Array;
  inputScale?: number;
  layer?: number | string | null;
  provenance?: Record<string, unknown>;
  arch?: SaeArch;
}

export interface SaeLoss {
  /** mse + auxCoef·aux (scalar, differentiable) */
  loss: Tensor;
  /** mean over elements of (x − x̂)² */
  mse: Tensor;
  /** Σ(x − x̂)² (for FVU) */
  sse: Tensor;
  /** AuxK loss ‖e − ê‖² / ‖e‖² over the batch (null without AuxK) */
  aux: Tensor | null;
  codes: SparseCodes;
  xhat: Tensor;
  /** batchtopk: the batch threshold used (f32 [1], normalised units). */
  threshold?: Tensor;
}

export class SparseAutoencoder implements Sae {
  readonly d: number;
  readonly m: number;
  readonly k: number;
  inputScale: number;
  layer: number | string | null;
  provenance: Record<string, unknown>;
  W_enc: Tensor;
  b_enc: Tensor;
  W_dec: Tensor;
  b_dec: Tensor;
  /** Architecture (see SaeArch); k is the mean L0 aimed at. */
  arch: SaeArch = 'topk';
  /** batchtopk: the inference threshold θ (normalised units); null until training sets it. */
  threshold: number | null = null;

  private constructor(
    readonly engine: Engine,
    shape: SaeShape,
    t: { W_enc: Tensor; b_enc: Tensor; W_dec: Tensor; b_dec: Tensor },
    meta: { inputScale: number; layer: number | string | null; provenance: Record<string, unknown> },
  ) {
    checkShape(shape);
    this.d = shape.d;
    this.m = shape.m;
    this.k = shape.k;
    this.W_enc = keep(param(t.W_enc, 'W_enc'));
    this.b_enc = keep(param(t.b_enc, 'b_enc'));
    this.W_dec = keep(param(t.W_dec, 'W_dec'));
    this.b_dec = keep(param(t.b_dec, 'b_dec'));
    this.inputScale = meta.inputScale;
    this.layer = meta.layer;
    this.provenance = meta.provenance;
  }

  /** Random unit-norm decoder rows, W_enc = W_decᵀ, b_enc = 0, b_dec = opts.bDec or 0. */
  static init(engine: Engine, opts: SaeInitOptions): SparseAutoencoder {
    checkShape(opts);
    const { d, m } = opts;
    const rng = new Rng(opts.seed ?? 0);
    const wd = new Float32Array(m * d);
    for (let j = 0; j < m; j++) {
      let n2 = 0;
      for (let c = 0; c < d; c++) {
        const v = rng.normal();
        wd[j * d + c] = v;
        n2 += v * v;
      }
      const inv = 1 / Math.sqrt(n2);
      for (let c = 0; c < d; c++) wd[j * d + c]! *= inv;
    }
    const we = new Float32Array(d * m);
    for (let j = 0; j < m; j++) for (let c = 0; c < d; c++) we[c * m + j] = wd[j * d + c]!;
    if (opts.bDec && opts.bDec.length !== d) throw new ArdError(`sae init: bDec has ${opts.bDec.length} values, expected d = ${d}`);
    return new SparseAutoencoder(
      engine,
      opts,
      {
        W_enc: tensor(engine, we, [d, m]),
        b_enc: zeros(engine, [m]),
        W_dec: tensor(engine, wd, [m, d]),
        b_dec: opts.bDec ? tensor(engine, opts.bDec, [d]) : zeros(engine, [d]),
      },
      { inputScale: opts.inputScale ?? 1, layer: opts.layer ?? null, provenance: opts.provenance ?? {} },
    ).withArch(opts.arch ?? 'topk', null);
  }

  /** Sets the architecture and (batchtopk) inference threshold; returns this. */
  withArch(arch: SaeArch, threshold: number | null): this {
    if (!SAE_ARCHS.includes(arch)) throw new ArdError(`sae: unknown architecture '${arch}' (known: ${SAE_ARCHS.join(', ')})`);
    if (threshold !== null && !(Number.isFinite(threshold) && threshold >= 0)) throw new ArdError(`sae: threshold ${threshold} must be a non-negative number`);
    this.arch = arch;
    this.threshold = arch === 'batchtopk' ? threshold : null;
    return this;
  }

  /** Codes per row: k (topk), or the BatchTopK candidates min(m, 256, 4k). */
  get kMax(): number {
    return this.arch === 'batchtopk' ? Math.min(this.m, 256, BATCHTOPK_CANDIDATES * this.k) : this.k;
  }

  /** Build from host arrays (W_enc [d, m], b_enc [m], W_dec [m, d], b_dec [d]). */
  static fromArrays(
    engine: Engine,
    shape: SaeShape,
    a: { W_enc: Float32Array; b_enc: Float32Array; W_dec: Float32Array; b_dec: Float32Array },
    meta: { inputScale?: number; layer?: number | string | null; provenance?: Record<string, unknown> } = {},
  ): SparseAutoencoder {
    const { d, m } = shape;
    return new SparseAutoencoder(
      engine,
      shape,
      {
        W_enc: tensor(engine, a.W_enc, [d, m]),
        b_enc: tensor(engine, a.b_enc, [m]),
        W_dec: tensor(engine, a.W_dec, [m, d]),
        b_dec: tensor(engine, a.b_dec, [d]),
      },
      { inputScale: meta.inputScale ?? 1, layer: meta.layer ?? null, provenance: meta.provenance ?? {} },
    );
  }

  get parameters(): Tensor[] {
    return [this.W_enc, this.b_enc, this.W_dec, this.b_dec];
  }

  /** Rescale decoder rows to unit norm (after an optimiser step). */
  normalizeDecoder(): void {
    normalizeRows(this.W_dec);
  }

  private scaled(x: Tensor): Tensor {
    if (x.rank !== 2 || x.shape[1] !== this.d) throw new ArdError(`sae: input must be [rows, ${this.d}], got [${x.shape.join(', ')}]`);
    if (x.dtype !== 'f32') throw new ArdError(`sae: input must be f32, got ${x.dtype}`);
    return this.inputScale === 1 && x.isContiguous ? x : scale(x, this.inputScale);
  }

  /** Top-k codes of x [rows, d] (caller's units): values [rows, k] (post-ReLU) and indices (i32). */
  encode(x: Tensor): { values: Tensor; indices: Tensor } {
    return noGrad(this.engine, () => {
      const xs = this.scaled(x);
      const codes = encodeTopK(xs, this.W_enc, this.b_enc, this.b_dec, this.kMax, {}, { csr: false });
      if (xs !== x) xs.dispose();
      if (this.arch === 'batchtopk' && this.threshold !== null) {
        const theta = tensor(this.engine, Float32Array.of(this.threshold), [1]);
        thresholdCodes(codes.z, this.kMax, theta);
        theta.dispose();
      }
      return { values: codes.z, indices: codes.idx };
    });
  }

  /** W_dec[i] as [1, d] (normalised units); the caller disposes it. */
  decoderRow(i: number): Tensor {
    if (!Number.isInteger(i) || i < 0 || i >= this.m) throw new ArdError(`sae: latent ${i} is outside 0–${this.m - 1}`);
    return noGrad(this.engine, () => slice(this.W_dec, 0, i, i + 1));
  }

  /** Dense codes [rows, m] (zeros off the top k). */
  encodeDense(x: Tensor): Tensor {
    return noGrad(this.engine, () => {
      const { values, indices } = this.encode(x);
      const base = zeros(this.engine, [x.shape[0]!, this.m]);
      const out = scatterAdd(base, 1, indices, values);
      base.dispose();
      values.dispose();
      indices.dispose();
      return out;
    });
  }

  /** Reconstruction in the caller's units from codes (values, indices [rows, k']). */
  decode(codes: { values: Tensor; indices: Tensor }): Tensor {
    return noGrad(this.engine, () => {
      const sc: SparseCodes = { z: codes.values, idx: codes.indices, k: codes.values.shape[1]!, kAux: 0, m: this.m, csr: new Map() };
      const y = sparseDecode(sc, this.W_dec, this.b_dec);
      if (this.inputScale === 1) return y;
      const out = scale(y, 1 / this.inputScale);
      y.dispose();
      return out;
    });
  }

  /** x̂ for x, both in the caller's units. */
  reconstruct(x: Tensor): Tensor {
    const c = this.encode(x);
    const y = this.decode(c);
    c.values.dispose();
    c.indices.dispose();
    return y;
  }

  /**
   * Training loss on x in normalised units: mse = mean (x − x̂)², plus with AuxK
   * auxCoef·‖e − ê‖²/‖e‖² where e = x − x̂ (held constant) and ê decodes the AuxK codes (no b_dec).
   */
  loss(x: Tensor, opts: EncodeOptions & { auxCoef?: number } = {}): SaeLoss {
    const codes = encodeTopK(x, this.W_enc, this.b_enc, this.b_dec, this.kMax, opts);
    if (this.arch !== 'batchtopk') return saeLossFromCodes(x, codes, this.W_dec, this.b_dec, opts.auxCoef ?? 1 / 32);
    // the batch keeps its k·B largest candidates; the rest become 0 (inert in decode and backward)
    const B = x.shape[0]!;
    const threshold = batchThreshold(codes.z, this.kMax, Math.min(this.k * B, B * this.kMax));
    thresholdCodes(codes.z, this.kMax, threshold);
    return { ...saeLossFromCodes(x, codes, this.W_dec, this.b_dec, opts.auxCoef ?? 1 / 32), threshold };
  }

  /** safetensors: W_enc, b_enc, W_dec, b_dec (f32) + metadata (values JSON-encoded). */
  async save(file: string, extraMetadata: Record<string, unknown> = {}): Promise<void> {
    const [we, be, wd, bd] = await Promise.all(this.parameters.map((t) => t.read() as Promise<Float32Array>));
    writeSafetensors(
      file,
      {
        W_enc: { dtype: 'F32', shape: [this.d, this.m], data: we! },
        b_enc: { dtype: 'F32', shape: [this.m], data: be! },
        W_dec: { dtype: 'F32', shape: [this.m, this.d], data: wd! },
        b_dec: { dtype: 'F32', shape: [this.d], data: bd! },
      },
      this.metadata(extraMetadata),
    );
  }

  metadata(extra: Record<string, unknown> = {}): Record<string, string> {
    const meta: Record<string, unknown> = {
      format: SAE_FORMAT,
      d: this.d,
      m: this.m,
      k: this.k,
      layer: this.layer,
      input_scale: this.inputScale,
      normalisation: 'x_used = x * input_scale, input_scale chosen so that E||x_used||^2 = d on the training data',
      activation: this.arch === 'batchtopk' ? 'batchtopk_relu' : 'topk_relu',
      ...(this.arch === 'batchtopk' ? { architecture: 'batchtopk', threshold: this.threshold, k_max: this.kMax } : {}),
      provenance: this.provenance,
      ...extra,
    };
    const out: Record<string, string> = {};
    for (const [k, v] of Object.entries(meta)) out[k] = JSON.stringify(v);
    return out;
  }

  /** ardgpu's SAE file, or a SAELens or sparsify Top-K SAE folder (src/sae/formats). */
  static load(engine: Engine, file: string): SparseAutoencoder {
    const folder = saeFolderFormat(file);
    if (folder) return SAE_FOLDER_FORMATS[folder.format]!.load(engine, folder.dir);
    const f = openSafetensors(file);
    try {
      const meta: Record<string, any> = {};
      for (const [k, v] of Object.entries(f.metadata)) {
        try {
          meta[k] = JSON.parse(v);
        } catch {
          meta[k] = v;
        }
      }
      const need = (name: string) => {
        const info = f.tensors.get(name);
        if (!info) throw new ArdError(`${file}: no tensor '${name}' (not an SAE file?)`);
        return info;
      };
      const we = need('W_enc');
      if (we.shape.length !== 2) throw new ArdError(`${file}: W_enc must be 2-D, got [${we.shape.join(', ')}]`);
      const [d, m] = we.shape as [number, number];
      const expect: Record<string, number[]> = { b_enc: [m], W_dec: [m, d], b_dec: [d] };
      for (const [name, shape] of Object.entries(expect)) {
        const s = need(name).shape;
        if (s.length !== shape.length || s.some((v, i) => v !== shape[i])) {
          throw new ArdError(`${file}: ${name} has shape [${s.join(', ')}], expected [${shape.join(', ')}]`);
        }
      }
      if (meta.format !== undefined && meta.format !== SAE_FORMAT) throw new ArdError(`${file}: format '${meta.format}' is not ${SAE_FORMAT}`);
      const k = Number(meta.k);
      if (!Number.isInteger(k) || k < 1 || k > m) throw new ArdError(`${file}: metadata k = ${meta.k} is missing or out of range`);
      if (meta.d !== undefined && Number(meta.d) !== d) throw new ArdError(`${file}: metadata d = ${meta.d} does not match W_enc`);
      if (meta.m !== undefined && Number(meta.m) !== m) throw new ArdError(`${file}: metadata m = ${meta.m} does not match W_enc`);
      const inputScale = meta.input_scale === undefined ? 1 : Number(meta.input_scale);
      if (!(inputScale > 0) || !Number.isFinite(inputScale)) throw new ArdError(`${file}: metadata input_scale = ${meta.input_scale} is not a positive number`);
      return SparseAutoencoder.fromArrays(
        engine,
        { d, m, k },
        {
          W_enc: copyF32(f.readFloat32('W_enc')),
          b_enc: copyF32(f.readFloat32('b_enc')),
          W_dec: copyF32(f.readFloat32('W_dec')),
          b_dec: copyF32(f.readFloat32('b_dec')),
        },
        { inputScale, layer: meta.layer ?? null, provenance: typeof meta.provenance === 'object' && meta.provenance ? meta.provenance : {} },
      ).withArch(meta.architecture === 'batchtopk' ? 'batchtopk' : 'topk', meta.architecture === 'batchtopk' && meta.threshold !== null && meta.threshold !== undefined ? Number(meta.threshold) : null);
    } finally {
      f.close();
    }
  }

  dispose(): void {
    for (const t of this.parameters) {
      t.grad?.dispose();
      t.grad = null;
      t.dispose();
    }
  }
}

function copyF32(a: Float32Array): Float32Array {
  return a.byteOffset === 0 && a.buffer.byteLength === a.byteLength ? a : a.slice();
}

function checkShape(s: SaeShape): void {
  const ok = (v: number) => Number.isInteger(v) && v > 0;
  if (!ok(s.d) || !ok(s.m) || !ok(s.k)) throw new ArdError(`sae: d, m, k must be positive integers (got d=${s.d}, m=${s.m}, k=${s.k})`);
  if (s.d % 4) throw new ArdError(`sae: d = ${s.d} must be a multiple of 4`);
  if (s.k > s.m) throw new ArdError(`sae: k = ${s.k} exceeds m = ${s.m}`);
}

/** The loss of SparseAutoencoder.loss from codes already computed (see there). */
export function saeLossFromCodes(x: Tensor, codes: SparseCodes, W_dec: Tensor, b_dec: Tensor, auxCoef: number): SaeLoss {
  const xhat = sparseDecode(codes, W_dec, b_dec, [0, codes.k]);
  const ehat = codes.kAux > 0 ? sparseDecode(codes, W_dec, null, [codes.k, codes.k + codes.kAux]) : null;
  const { loss, stats } = reconLoss(x, xhat, ehat, auxCoef);
  const pick = (i: number) => noGrad(x.engine, () => reshape(slice(stats, 0, i, i + 1), []));
  return { loss, mse: pick(0), sse: pick(2), aux: ehat ? pick(1) : null, codes, xhat };
}
