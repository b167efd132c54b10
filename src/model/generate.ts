// Autoregressive generation with the KV cache: one prefill pass over the prompt, then one decoder
// step per new token. Greedy picks the argmax on the GPU (4 bytes come back per token); sampling
// (temperature, top-k, top-p) reads the last logits row and draws with a seeded generator, so a
// run reproduces. Every tensor a step creates is freed with it; the cache is allocated once.
import { mulberry32 } from '../util/random.js';
import { tidy } from '../tensor/scope.js';
import { Tensor, tensor } from '../tensor/tensor.js';
import { concat } from '../tensor/ops/layout.js';
import { argmax } from '../tensor/ops/reduce.js';
import { ArdError } from '../util/errors.js';
import type { AudioLLM } from './audiollm.js';
import type { KVCache } from './decoder.js';

export interface SamplingOptions {
  /** 0 or absent: greedy. Otherwise logits are divided by it before sampling. */
  temperature?: number;
  /** Keep the smallest set of most likely tokens whose probability reaches topP (0 < p ≤ 1). */
  topP?: number;
  /** Keep only the topK most likely tokens (0 or absent: no limit). */
  topK?: number;
  /** Seed of the sampler (default 0). */
  seed?: number;
}

export interface GenerateOptions extends SamplingOptions {
  /** Default 128. */
  maxNewTokens?: number;
  /** Tokens that end generation (not included in the output). Default: the model's eos ids. */
  stopTokens?: readonly number[];
  /** Called with each new token as soon as it is known; return false to stop after it. */
  onToken?: (token: number, index: number) => void | boolean;
}

export interface GenerateResult {
  /** The new tokens, without the stop token. */
  tokens: number[];
  stopReason: 'stop' | 'length' | 'callback';
  /** The stop token that ended generation, if any. */
  stopToken?: number;
  promptLength: number;
  /** Wall time of the prompt pass (to the first token) and of the token-by-token steps. */
  prefillMs: number;
  decodeMs: number;
}

/** The prompt: token ids, with audio features for its audio_token_index placeholders. */
export interface Prompt {
  ids: readonly number[];
  audio?: Tensor | null;
}


/** Draws a token from logits with temperature, top-k and top-p (host side, f64). */
export function sampleToken(logits: Float32Array, opts: SamplingOptions, random: () => number): number {
  const T = opts.temperature ?? 0;
  if (!(T > 0)) {
    let best = 0;
    for (let i = 1; i < logits.length; i++) if (logits[i]! > logits[best]!) best = i;
    return best;
  }
  const order = Array.from(logits.keys()).filter((i) => !Number.isNaN(logits[i]!));
  order.sort((a, b) => logits[b]! - logits[a]! || a - b);
  const k = opts.topK && opts.topK > 0 ? Math.min(opts.topK, order.length) : order.length;
  const top = order.slice(0, k);
  const m = logits[top[0]!]! / T;
  const p = top.map((i) => Math.exp(logits[i]! / T - m));
  const total = p.reduce((a, b) => a + b, 0);
  let keep = top.length;
  const topP = opts.topP ?? 1;
  if (topP < 1) {
    let acc = 0;
    for (let j = 0; j < top.length; j++) {
      acc += p[j]! / total;
      if (acc >= topP) {
        keep = j + 1;
        break;
      }
    }
  }
  const mass = p.slice(0, keep).reduce((a, b) => a + b, 0);
  let u = random() * mass;
  for (let j = 0; j < keep; j++) {
    u -= p[j]!;
    if (u < 0) return top[j]!;
  }
  return top[keep - 1]!;
}

function checkOptions(opts: SamplingOptions & { maxNewTokens?: number }): void {
  const n = opts.maxNewTokens ?? 128;
  if (!Number.isInteger(n) || n < 0) throw new ArdError(`generate: maxNewTokens ${n} must be a non-negative integer`);
  if (opts.temperature !== undefined && !(opts.temperature >= 0)) throw new ArdError(`generate: temperature ${opts.temperature} must be ≥ 0`);
  if (opts.topP !== undefined && !(opts.topP > 0 && opts.topP <= 1)) throw new ArdError(`generate: topP ${opts.topP} must be in (0, 1]`);
  if (opts.topK !== undefined && !(Number.isInteger(opts.topK) && opts.topK >= 0)) throw new ArdError(`generate: topK ${opts.topK} must be a non-negative integer`);
}

/**
 * Continues `prompt` by up to maxNewTokens tokens. Hooks registered on the model run during the
 * prompt pass (step 0) and each token's step (step k for the k-th new token fed back).
 */
export async function generate(model: AudioLLM, prompt: Prompt, opts: GenerateOptions = {}): Promise<GenerateResult> {
  checkOptions(opts);
  const maxNew = opts.maxNewTokens ?? 128;
  const stop = new Set(opts.stopTokens ?? model.generation.eosTokenIds);
  const greedy = !((opts.temperature ?? 0) > 0);
  const random = mulberry32(opts.seed ?? 0);
  const engine = model.engine;
  const tokens: number[] = [];
  const t0 = performance.now();
  const result = (stopReason: GenerateResult['stopReason'], prefillMs: number, stopToken?: number): GenerateResult => ({
    tokens,
    stopReason,
    ...(stopToken !== undefined ? { stopToken } : {}),
    promptLength: prompt.ids.length,
    prefillMs,
    decodeMs: performance.now() - t0 - prefillMs,
  });
  if (maxNew === 0) return result('length', 0);
  // the last new token is never fed back: the cache needs prompt + maxNew − 1 positions
  const positions = prompt.ids.length + maxNew - 1;
  const maxPositions = model.config.text_config.max_position_embeddings;
  if (positions > maxPositions) {
    // a prompt carries one audio window (chat.ts), so this is a long question or a large maxNewTokens
    throw new ArdError(`generate: a prompt of ${prompt.ids.length} positions and up to ${maxNew} new tokens need ${positions} positions, more than the model's max_position_embeddings ${maxPositions}`);
  }
  const cache: KVCache = model.newCache(positions);
  try {
    const embeds = model.embed(prompt.ids, prompt.audio ?? null);
    let logits: Tensor;
    try {
      logits = model.step(embeds, cache, { logits: 'last', step: 0 })!;
    } finally {
      embeds.dispose();
    }
    if (greedy) return await greedyLoop(logits);
    let tok = sampleToken(await readAndFree(logits), opts, random);
    const prefillMs = performance.now() - t0;
    for (let i = 0; ; i++) {
      if (stop.has(tok)) return result('stop', prefillMs, tok);
      tokens.push(tok);
      if (opts.onToken?.(tok, i) === false) return result('callback', prefillMs);
      if (tokens.length >= maxNew) return result('length', prefillMs);
      const x = model.embed([tok], null, { splice: false });
      try {
        logits = model.step(x, cache, { logits: 'last', step: tokens.length })!;
      } finally {
        x.dispose();
      }
      tok = sampleToken(await readAndFree(logits), opts, random);
    }
  } finally {
    cache.dispose();
    await engine.checkErrors();
  }

  async function readAndFree(logits: Tensor): Promise<Float32Array> {
    try {
      return await logits.toFloat32();
    } finally {
      logits.dispose();
    }
  }

  /**
   * Greedy decoding with the chosen token kept on the GPU: the argmax feeds the next step's
   * embedding directly, and that step is recorded before the token is read back, so the GPU
   * never waits for the host. The step after a stop token has then already run (hooks
   * included); it is dropped from the cache.
   */
  async function greedyLoop(first: Tensor): Promise<GenerateResult> {
    let id: Tensor = tidy(() => argmax(first, -1));
    first.dispose();
    let prefillMs = -1;
    try {
      for (let i = 0; ; i++) {
        const pending = engine.read(id.buffer, id.offset * 4, 4); // recorded and submitted now
        pending.catch(() => {}); // (awaited below; this only keeps an early exit from leaving it unhandled)
        let next: Tensor | null = null;
        if (tokens.length + 1 < maxNew) {
          const cur = id;
          next = tidy(() => {
            const x = model.embedTokens(cur);
            const l = model.step(x, cache, { logits: 'last', step: tokens.length + 1 })!;
            return argmax(l, -1);
          });
          engine.flush(); // submit it now, so that it runs while we wait for the token
        }
        const tok = new Int32Array(await pending)[0]!;
        if (prefillMs < 0) prefillMs = performance.now() - t0;
        const drop = (): void => {
          if (next) {
            next.dispose();
            cache.truncate(cache.length - 1);
          }
        };
        if (stop.has(tok)) {
          drop();
          return result('stop', prefillMs, tok);
        }
        tokens.push(tok);
        if (opts.onToken?.(tok, i) === false) {
          drop();
          return result('callback', prefillMs);
        }
        if (!next) return result('length', prefillMs);
        id.dispose();
        id = next;
      }
    } finally {
      id.dispose();
    }
  }
}

export interface BatchGenerateOptions extends SamplingOptions {
  /** Default 128. */
  maxNewTokens?: number;
  /** Tokens that end a sequence (not included in its output). Default: the model's eos ids. */
  stopTokens?: readonly number[];
  /** Sequences decoded together at most (default 32); more prompts are taken in groups of this size. */
  maxBatch?: number;
  /** Called with each sequence's new token as soon as it is known; return false to stop that sequence. */
  onToken?: (sequence: number, token: number, index: number) => void | boolean;
}

/**
 * Continues every prompt (clips and questions of any lengths) by up to maxNewTokens tokens, decoding
 * the sequences together: each prompt's prefill runs on its own, then every step feeds the last
 * token of each unfinished sequence through one batched decoder step (decoderStepBatch: the
 * projections read each weight once for all rows; attention runs per sequence on its own KV cache,
 * so there is no padding and no mask). A sequence stops on its own stop token, length or callback
 * and leaves the batch. Each result is what generate() gives for that prompt alone: the same tokens
 * (greedy, or sampling with the same seed — each sequence has its own generator seeded `seed`),
 * logits equal up to the matmul's f32 rounding for B rows instead of one. Hooks see ctx.sequence =
 * the prompt's index. Timings are those of the prompt's group.
 */
export async function generateBatch(model: AudioLLM, prompts: readonly Prompt[], opts: BatchGenerateOptions = {}): Promise<GenerateResult[]> {
  checkOptions(opts);
  const maxBatch = opts.maxBatch ?? 32;
  if (!Number.isInteger(maxBatch) || maxBatch < 1) throw new ArdError(`generateBatch: maxBatch ${maxBatch} must be a positive integer`);
  const maxNew = opts.maxNewTokens ?? 128;
  const maxPositions = model.config.text_config.max_position_embeddings;
  prompts.forEach((p, i) => {
    const positions = p.ids.length + maxNew - 1;
    if (positions > maxPositions) {
      throw new ArdError(`generateBatch: prompt ${i} of ${p.ids.length} positions and up to ${maxNew} new tokens need ${positions} positions, more than the model's max_position_embeddings ${maxPositions}`);
    }
  });
  if (prompts.length === 1) {
    // one sequence: generate()'s pipelined loop (the GPU never waits for the host), same tokens
    const { onToken, maxBatch: _m, ...rest } = opts;
    return [await generate(model, prompts[0]!, { ...rest, ...(onToken ? { onToken: (t, i) => onToken(0, t, i) } : {}) })];
  }
  const out: GenerateResult[] = new Array(prompts.length);
  for (let g0 = 0; g0 < prompts.length; g0 += maxBatch) {
    const idx = Array.from({ length: Math.min(maxBatch, prompts.length - g0) }, (_, j) => g0 + j);
    const group = await generateGroup(model, idx.map((i) => prompts[i]!), idx, maxNew, opts);
    group.forEach((r, j) => (out[idx[j]!] = r));
  }
  return out;
}

async function generateGroup(model: AudioLLM, prompts: Prompt[], index: number[], maxNew: number, opts: BatchGenerateOptions): Promise<GenerateResult[]> {
  const engine = model.engine;
  const stop = new Set(opts.stopTokens ?? model.generation.eosTokenIds);
  const greedy = !((opts.temperature ?? 0) > 0);
  const n = prompts.length;
  const t0 = performance.now();
  const tokens: number[][] = prompts.map(() => []);
  const done: (GenerateResult | null)[] = prompts.map(() => null);
  let prefillMs = 0;
  const finish = (b: number, stopReason: GenerateResult['stopReason'], stopToken?: number): void => {
    done[b] = {
      tokens: tokens[b]!,
      stopReason,
      ...(stopToken !== undefined ? { stopToken } : {}),
      promptLength: prompts[b]!.ids.length,
      prefillMs,
      decodeMs: 0,
    };
    caches[b]?.dispose();
  };
  if (maxNew === 0) {
    return prompts.map((p) => ({ tokens: [], stopReason: 'length', promptLength: p.ids.length, prefillMs: 0, decodeMs: 0 }));
  }
  const randoms = prompts.map(() => mulberry32(opts.seed ?? 0));
  const caches: KVCache[] = [];
  try {
    for (const p of prompts) caches.push(model.newCache(p.ids.length + maxNew - 1));
    // prefill, one prompt at a time (their lengths differ): the last row's logits of each
    const firstLogits: Tensor[] = [];
    let next: number[];
    try {
      prompts.forEach((p, b) => {
        const embeds = model.embed(p.ids, p.audio ?? null);
        try {
          firstLogits.push(model.step(embeds, caches[b]!, { logits: 'last', step: 0, sequence: index[b] })!);
        } finally {
          embeds.dispose();
        }
      });
      next = await pick(firstLogits.length === 1 ? firstLogits[0]! : tidy(() => concat(firstLogits, 0)), firstLogits.length > 1);
    } finally {
      for (const l of firstLogits) l.dispose();
    }
    prefillMs = performance.now() - t0;
    let active = Array.from({ length: n }, (_, b) => b);
    for (;;) {
      const still: number[] = [];
      active.forEach((b, j) => {
        const tok = next[j]!;
        if (stop.has(tok)) return finish(b, 'stop', tok);
        tokens[b]!.push(tok);
        if (opts.onToken?.(index[b]!, tok, tokens[b]!.length - 1) === false) return finish(b, 'callback');
        if (tokens[b]!.length >= maxNew) return finish(b, 'length');
        still.push(b);
      });
      active = still;
      if (!active.length) break;
      const ids = tensor(engine, active.map((b) => tokens[b]!.at(-1)!), [active.length], 'i32');
      let logits: Tensor;
      try {
        const x = model.embedTokens(ids);
        try {
          logits = model.stepBatch(x, active.map((b) => caches[b]!), { steps: active.map((b) => tokens[b]!.length), sequences: active.map((b) => index[b]!) });
        } finally {
          x.dispose();
        }
      } finally {
        ids.dispose();
      }
      next = await pick(logits, true, active);
    }
  } finally {
    for (const c of caches) c.dispose();
    await engine.checkErrors();
  }
  const decodeMs = performance.now() - t0 - prefillMs;
  return done.map((r) => ({ ...r!, decodeMs }));

  /** The next token of each row of logits [rows, V] (freed here); `rows` maps rows to sequences for sampling. */
  async function pick(logits: Tensor, owned: boolean, rows: number[] = Array.from({ length: n }, (_, b) => b)): Promise<number[]> {
    try {
      if (greedy) {
        const ids = tidy(() => argmax(logits, -1));
        try {
          return Array.from(new Int32Array(await engine.read(ids.buffer, ids.offset * 4, rows.length * 4)));
        } finally {
          ids.dispose();
        }
      }
      const all = await logits.toFloat32();
      const V = logits.shape[1]!;
      return rows.map((b, j) => sampleToken(all.subarray(j * V, (j + 1) * V), opts, randoms[b]!));
    } finally {
      if (owned) logits.dispose();
    }
  }
}
