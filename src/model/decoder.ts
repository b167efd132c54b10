// The Qwen2 text decoder of Qwen2-Audio, with a preallocated KV cache:
//
//   x = inputs_embeds [L, D] (audio features already spliced in)
//   for each layer:  h = RMSNorm(x)
//                    q, k, v = h·Wqkvᵀ + b           (one fused matmul; q|k|v with biases)
//                    q, k = RoPE(q, k)                (rotate_half pairs (i, i + hd/2))
//                    cache[past : past+L] = k, v      (the cache stores k after rotation)
//                    x += o_proj(softmax(q·kᵀ/√hd + causal) · v)   (GQA: head j uses kv head j / rep)
//                    h = RMSNorm(x)
//                    x += down(silu(gate(h)) · up(h)) (gate|up: one fused matmul)
//                    x = hooks(x)                     (capture / steering)
//   logits = lm_head(RMSNorm(x))   (only at the rows asked for)
import type { Engine } from '../gpu/engine.js';
import { keep } from '../tensor/scope.js';
import { Tensor, empty, tensor } from '../tensor/tensor.js';
import type { Weight } from '../tensor/blocked.js';
import { add, map } from '../tensor/ops/elementwise.js';
import { concat, copyInto, reshape, slice, transpose } from '../tensor/ops/layout.js';
import { rmsNorm, rope, scaledDotProductAttention } from '../tensor/ops/nn.js';
import { indexSelect } from '../tensor/ops/index.js';
import { linear } from '../tensor/ops/matmul.js';
import { ArdError } from '../util/errors.js';
import type { Qwen2TextConfig } from './config.js';
import type { Hooks } from './hooks.js';

export interface DecoderLayerWeights {
  ln1W: Tensor; // input_layernorm
  qkvW: Weight; // [(H + 2·KVH)·hd, D]: q_proj | k_proj | v_proj
  qkvB: Tensor;
  oW: Weight; // [D, H·hd], no bias
  ln2W: Tensor; // post_attention_layernorm
  gateUpW: Weight; // [2·I, D]: gate_proj | up_proj
  downW: Weight; // [D, I]
}

export interface DecoderWeights {
  embed: Weight; // [V, D] (row blocks when larger than one binding, as may be any Weight here)
  layers: DecoderLayerWeights[];
  norm: Tensor;
  lmHead: Weight; // [V, D] (the same tensor as embed when tied)
}

/**
 * Keys (after RoPE) and values of every layer for one sequence: [KVH, capacity, hd] each,
 * allocated once; `length` positions are filled. In f16 the f32 keys and values are rounded when
 * stored (attention reads them with f32 accumulation).
 */
export class KVCache {
  readonly k: Tensor[] = [];
  readonly v: Tensor[] = [];
  length = 0;
  private disposed = false;

  constructor(engine: Engine, cfg: Qwen2TextConfig, readonly capacity: number, readonly dtype: 'f32' | 'f16' = 'f32') {
    if (!Number.isInteger(capacity) || capacity < 1) throw new ArdError(`KV cache: capacity ${capacity} must be a positive integer`);
    if (dtype !== 'f32' && dtype !== 'f16') throw new ArdError(`KV cache: dtype must be f32 or f16, got ${JSON.stringify(dtype)}`);
    for (let i = 0; i < cfg.num_hidden_layers; i++) {
      this.k.push(keep(empty(engine, [cfg.num_key_value_heads, capacity, cfg.head_dim], dtype)));
      this.v.push(keep(empty(engine, [cfg.num_key_value_heads, capacity, cfg.head_dim], dtype)));
    }
  }

  /** Bytes of device memory the cache holds. */
  get bytes(): number {
    return this.k.length * 2 * this.k[0]!.size * (this.dtype === 'f16' ? 2 : 4);
  }

  /** Forget the contents (the memory is kept for the next sequence). */
  reset(): void {
    this.length = 0;
  }

  /** Drop positions from `length` on (e.g. to reuse a cached prompt prefix). */
  truncate(length: number): void {
    if (!Number.isInteger(length) || length < 0 || length > this.length) throw new ArdError(`KV cache: cannot truncate ${this.length} positions to ${length}`);
    this.length = length;
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const t of [...this.k, ...this.v]) t.dispose();
  }
}

export interface DecoderStepOptions {
  cache: KVCache;
  hooks?: Hooks;
  /** Passed to hooks: 0 for the prompt, k for the k-th generated token. */
  step?: number;
  /**
   * Rows (0-based within this call) whose logits are wanted: 'last' (default), 'all', 'none' or
   * a list. Computing the vocabulary projection only where needed saves most of its cost.
   */
  logits?: 'last' | 'all' | 'none' | number[];
  /**
   * Stop after this layer (capture needs nothing above the layer it reads). Needs logits 'none';
   * the cache then holds keys and values of layers ≤ lastLayer only.
   */
  lastLayer?: number;
  /** Passed to hooks: which sequence of a batch this is (decoderStepBatch; default 0). */
  sequence?: number;
}

export interface DecoderStepResult {
  /** [rows, V] f32 logits at the requested rows (absent for 'none'). */
  logits?: Tensor;
}

/** Columns [col0, col0 + n·hd) of a dense [L, C] matrix as an [L, n, hd] view. */
function headsView(m: Tensor, col0: number, n: number, hd: number): Tensor {
  const [L, C] = m.shape as [number, number];
  return m.view([L, n, hd], [C, hd, 1], m.offset + col0);
}

/**
 * Self-attention of rows [L, ·] of one sequence whose fused q|k|v projection is `qkv` [L, C], at
 * positions past … past + L − 1: RoPE, append to the cache, attend → [L, H·hd] before o_proj.
 */
function attendRows(qkv: Tensor, cfg: Qwen2TextConfig, kCache: Tensor, vCache: Tensor, past: number): Tensor {
  const L = qkv.shape[0]!;
  const H = cfg.num_attention_heads;
  const KVH = cfg.num_key_value_heads;
  const hd = cfg.head_dim;
  const S = past + L;
  // RoPE on q and k together: they are adjacent columns, (H + KVH) heads of hd
  const qk = rope(headsView(qkv, 0, H + KVH, hd), past, { theta: cfg.rope_theta }); // dense [L, H + KVH, hd]
  const q = slice(qk, 1, 0, H); // [L, H, hd]
  const k = slice(qk, 1, H, H + KVH); // [L, KVH, hd]
  const v = headsView(qkv, (H + KVH) * hd, KVH, hd);
  copyInto(slice(kCache, 1, past, S), transpose(k, 0, 1));
  copyInto(slice(vCache, 1, past, S), transpose(v, 0, 1));
  const keys = slice(kCache, 1, 0, S); // [KVH, S, hd]
  const values = slice(vCache, 1, 0, S);
  // GQA without copying k/v: query head j reads kv head j / (H / KVH)
  const o = scaledDotProductAttention(transpose(q, 0, 1), keys, values, { causal: true, causalOffset: past }); // [H, L, hd]
  return reshape(transpose(o, 0, 1), [L, H * hd]); // a view when L = 1
}

function attention(
  h: Tensor,
  w: DecoderLayerWeights,
  cfg: Qwen2TextConfig,
  kCache: Tensor,
  vCache: Tensor,
  past: number,
): Tensor {
  const qkv = linear(h, w.qkvW, w.qkvB); // [L, (H + 2·KVH)·hd]
  return linear(attendRows(qkv, cfg, kCache, vCache, past), w.oW);
}

function mlp(h: Tensor, w: DecoderLayerWeights, I: number): Tensor {
  const gu = linear(h, w.gateUpW); // [L, 2I]
  const a = map([slice(gu, 1, 0, I), slice(gu, 1, I, 2 * I)], 'silu_(a) * b', { name: 'swiglu' });
  return linear(a, w.downW);
}

/**
 * Runs `x` [L, D] (positions cache.length … cache.length + L − 1) through the decoder, appending
 * to the cache. Call inside tidy(); the returned logits belong to the caller.
 */
export function decoderStep(w: DecoderWeights, cfg: Qwen2TextConfig, x: Tensor, opts: DecoderStepOptions): DecoderStepResult {
  const cache = opts.cache;
  const L = x.shape[0]!;
  if (x.rank !== 2 || x.shape[1] !== cfg.hidden_size) throw new ArdError(`decoder: input must be [L, ${cfg.hidden_size}], got [${x.shape.join(', ')}]`);
  const past = cache.length;
  if (past + L > cache.capacity) throw new ArdError(`decoder: ${past} cached + ${L} new positions exceed the KV cache capacity ${cache.capacity}`);
  const eps = cfg.rms_norm_eps;
  const which = opts.logits ?? 'last';
  const last = opts.lastLayer ?? w.layers.length - 1;
  if (!Number.isInteger(last) || last < 0 || last >= w.layers.length) throw new ArdError(`decoder: lastLayer ${last} outside 0..${w.layers.length - 1}`);
  if (last < w.layers.length - 1 && which !== 'none') throw new ArdError(`decoder: logits need every layer (lastLayer ${last} < ${w.layers.length - 1})`);
  for (let i = 0; i <= last; i++) {
    const lw = w.layers[i]!;
    x = add(x, attention(rmsNorm(x, lw.ln1W, eps), lw, cfg, cache.k[i]!, cache.v[i]!, past));
    x = add(x, mlp(rmsNorm(x, lw.ln2W, eps), lw, cfg.intermediate_size));
    if (opts.hooks?.has('decoder', i)) {
      x = opts.hooks.run(x, { where: 'decoder', layer: i, start: past, rows: L, step: opts.step ?? 0, window: 0, sequence: opts.sequence ?? 0 });
    }
  }
  cache.length = past + L;
  if (which === 'none') return {};
  let rows = x;
  if (which === 'last') rows = slice(x, 0, L - 1, L);
  else if (Array.isArray(which)) {
    for (const r of which) if (!Number.isInteger(r) || r < 0 || r >= L) throw new ArdError(`decoder: logits row ${r} outside 0..${L - 1}`);
    rows = indexSelect(x, 0, tensor(x.engine, which, [which.length], 'i32'));
  }
  const logits = linear(rmsNorm(rows, w.norm, eps), w.lmHead);
  return { logits };
}

export interface DecoderBatchStepOptions {
  /** One cache per row of x: row b continues the sequence of caches[b]. */
  caches: KVCache[];
  hooks?: Hooks;
  /** Per row: passed to hooks as ctx.step. */
  steps?: number[];
  /** Per row: passed to hooks as ctx.sequence (default: the row index). */
  sequences?: number[];
}

/**
 * One new position for each of B sequences at once: x [B, D], row b at position caches[b].length.
 * The row-wise work (projections, MLP, norms, lm_head) runs once on all B rows — each weight is read
 * once per step instead of B times — and attention runs per row against that sequence's own cache,
 * so sequences of different lengths need neither padding nor masks and each row computes what
 * decoderStep computes for it alone (up to the matmul's rounding for B rows instead of 1). Hooks run
 * per row, with that sequence's position, step and index. Returns the logits [B, V].
 */
export function decoderStepBatch(w: DecoderWeights, cfg: Qwen2TextConfig, x: Tensor, opts: DecoderBatchStepOptions): Tensor {
  const B = x.shape[0]!;
  const caches = opts.caches;
  if (x.rank !== 2 || x.shape[1] !== cfg.hidden_size) throw new ArdError(`decoder: input must be [B, ${cfg.hidden_size}], got [${x.shape.join(', ')}]`);
  if (caches.length !== B) throw new ArdError(`decoder: ${B} rows but ${caches.length} KV caches`);
  if (new Set(caches).size !== B) throw new ArdError('decoder: a KV cache appears twice in one batch');
  for (const c of caches) if (c.length + 1 > c.capacity) throw new ArdError(`decoder: ${c.length} cached + 1 new position exceed the KV cache capacity ${c.capacity}`);
  const eps = cfg.rms_norm_eps;
  const past = caches.map((c) => c.length);
  const rowsOf = (t: Tensor) => Array.from({ length: B }, (_, b) => slice(t, 0, b, b + 1));
  for (let i = 0; i < w.layers.length; i++) {
    const lw = w.layers[i]!;
    const qkv = linear(rmsNorm(x, lw.ln1W, eps), lw.qkvW, lw.qkvB); // [B, C]
    const merged = rowsOf(qkv).map((row, b) => attendRows(row, cfg, caches[b]!.k[i]!, caches[b]!.v[i]!, past[b]!));
    x = add(x, linear(B === 1 ? merged[0]! : concat(merged, 0), lw.oW));
    x = add(x, mlp(rmsNorm(x, lw.ln2W, eps), lw, cfg.intermediate_size));
    if (opts.hooks?.has('decoder', i)) {
      const hooks = opts.hooks;
      const out = rowsOf(x).map((row, b) =>
        hooks.run(row, { where: 'decoder', layer: i, start: past[b]!, rows: 1, step: opts.steps?.[b] ?? 0, window: 0, sequence: opts.sequences?.[b] ?? b }),
      );
      x = B === 1 ? out[0]! : concat(out, 0);
    }
  }
  for (const c of caches) c.length += 1;
  return linear(rmsNorm(x, w.norm, eps), w.lmHead);
}
