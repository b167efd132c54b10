// Split-K (flash-decoding) attention: kernels/attention.wgsl with SPLIT (partials per key chunk) and
// kernels/attention_combine.wgsl (log-sum-exp merge), forced with variant 'split' and a chunk count
// whatever the profile says. Against the f64 reference (reference/attention.ts, its bound with the
// split-K terms) on seeded inputs: queries 1, 2, 5; keys 1, 7, 33, 300, 1000 (not chunk or tile
// multiples); 1, 2, 3 and 7 chunks; GQA and not; causal with the KV-cache offset, other offsets, rows
// and chunks that see no key (empty and fully masked chunks), partially masked chunks; 8, 16 and 32
// lanes per query row; f16 K/V (and f16 queries/output); strided views as the decoder passes them.
// Also the profile's rule (flashSplitPlan: a 7B decode step splits on a GPU profile, an encoder window
// does not), and the tiny model with split-K on everywhere: greedy tokens identical to the reference's
// (which flash and chunked give), logits within the flash test's bound of the one-pass flash kernel's.
import { Float16Array } from '@petamoriken/float16';
import { describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Engine } from '../src/gpu/engine.js';
import { buildProfile, describeVariants, flashSplitPlan, flashTile, type DeviceFacts, type NnProfile } from '../src/gpu/profile.js';
import { generate } from '../src/model/generate.js';
import { loadAudioLLM } from '../src/model/load.js';
import { openSafetensors } from '../src/io/safetensors.js';
import { scaledDotProductAttention } from '../src/tensor/ops/nn.js';
import * as T from '../src/tensor/index.js';
import { attentionBoundRef, type AttentionDims } from '../reference/attention.js';
import { expectWithinBound as expectWithin, getEngine, itF16, promptAndCacheLogits, randn, relErr } from './helpers.js';

const engine = await getEngine();
const f16round = (x: Float32Array) => Float32Array.from(Float16Array.from(x));

/** Runs fn with some of the engine's nn profile values replaced (restored after). */
async function withNn<R>(e: Engine, patch: Partial<NnProfile>, fn: () => Promise<R>): Promise<R> {
  const nn = e.profile.nn as NnProfile;
  const was = { ...nn };
  Object.assign(nn, patch);
  try {
    return await fn();
  } finally {
    Object.assign(nn, was);
  }
}

interface Case extends AttentionDims {
  causal: boolean;
  offset?: number;
  splits: number;
}

/** q, k, v for case c (f16 ones rounded), the split kernel's output and the reference. */
async function runCase(e: Engine, c: Case, kvDtype: 'f32' | 'f16', qDtype: 'f32' | 'f16', seed: number) {
  const { B, H, Hkv, Tq, Tk, D, Dv } = c;
  const round = (x: Float32Array, dt: string) => (dt === 'f16' ? f16round(x) : x);
  const q = round(randn(B * H * Tq * D, seed), qDtype);
  const k = round(randn(B * Hkv * Tk * D, seed + 1), kvDtype);
  const v = round(randn(B * Hkv * Tk * Dv, seed + 2), kvDtype);
  const lead = B > 1 ? [B] : [];
  const qt = T.tensor(e, q, [...lead, H, Tq, D], qDtype);
  const kt = T.tensor(e, k, [...lead, Hkv, Tk, D], kvDtype);
  const vt = T.tensor(e, v, [...lead, Hkv, Tk, Dv], kvDtype);
  const opts = { causal: c.causal, causalOffset: c.offset };
  const d0 = e.dispatchCount;
  const y = scaledDotProductAttention(qt, kt, vt, { ...opts, variant: 'split', splits: c.splits });
  expect(e.dispatchCount - d0, 'a split pass and a combine pass').toBe(2);
  expect(y.shape).toEqual([...lead, H, Tq, Dv]);
  expect(y.dtype).toBe(qDtype);
  const got = await y.toFloat32();
  for (const t of [qt, kt, vt, y]) t.dispose();
  return { got, ref: attentionBoundRef(q, k, v, c, { ...opts, splits: c.splits }, qDtype) };
}

const label = (c: Case) =>
  `H ${c.H}/${c.Hkv}, Tq ${c.Tq}, Tk ${c.Tk}, D ${c.D}${c.Dv !== c.D ? `/${c.Dv}` : ''}, S ${c.splits}${c.causal ? `, causal${c.offset !== undefined ? ` offset ${c.offset}` : ''}` : ''}`;

// Every (queries, keys, chunks) triple, causal alternating, at one GQA shape and head dim: each distinct
// kernel specialisation costs seconds of lavapipe compile time (a head dim of 32 ~19 s of CPU, 16 ~5 s,
// 64 and up ~2.5 s: LLVM unrolls the score loop fully below 64), so the cases share a few of them.
const TQ = [1, 2, 5];
const TK = [1, 7, 33, 300, 1000];
const SPLITS = [1, 2, 3, 7];
const grid: Case[] = TQ.flatMap((Tq, i) =>
  TK.flatMap((Tk, j) => SPLITS.map((splits, n) => ({ B: 1, H: 4, Hkv: 2, Tq, Tk, D: 64, Dv: 64, splits, causal: (i + j + n) % 2 === 0 }))),
);

describe('split-K attention against the f64 reference', () => {
  it(`f32: queries 1, 2, 5 × keys 1, 7, 33, 300, 1000 × 1, 2, 3, 7 chunks (${grid.length} cases; causal with the KV-cache offset alternating)`, async () => {
    for (const [n, c] of grid.entries()) {
      const { got, ref } = await runCase(engine, c, 'f32', 'f32', 100 * n + 1);
      expectWithin(got, ref.out, ref.bound, label(c));
    }
  });

  it('f32: causal offsets, rows and chunks that see no key, partially masked chunks, lead batch dim, Dv ≠ D', async () => {
    const cases: Case[] = [
      // rows see 4…8 keys in chunks of 2: the last chunks are partly or fully masked for the early rows
      { B: 1, H: 4, Hkv: 2, Tq: 5, Tk: 33, D: 64, Dv: 64, causal: true, offset: 3, splits: 7 },
      // row 0 sees no key (0), row 1 one key: with 3 chunks of 1 key, two are empty for both
      { B: 1, H: 2, Hkv: 1, Tq: 2, Tk: 7, D: 64, Dv: 64, causal: true, offset: -1, splits: 3 },
      // the default offset −4: 4 of 5 rows see nothing; one key in 7 chunks (6 empty)
      { B: 1, H: 4, Hkv: 2, Tq: 5, Tk: 1, D: 64, Dv: 64, causal: true, splits: 7 },
      // past the cache's end (every key visible), keys not a multiple of the chunk; 3 query heads per kv head
      { B: 1, H: 6, Hkv: 2, Tq: 5, Tk: 300, D: 64, Dv: 64, causal: true, offset: 1000, splits: 7 },
      // the last row sees 2 keys of 300: chunks of 1, all beyond key 1 empty for every row
      { B: 1, H: 4, Hkv: 2, Tq: 5, Tk: 300, D: 64, Dv: 64, causal: true, offset: -3, splits: 2 },
      // no GQA; 10 keys in 7 chunks of 2: chunks 5 and 6 empty
      { B: 1, H: 2, Hkv: 2, Tq: 2, Tk: 10, D: 64, Dv: 64, causal: false, splits: 7 },
      // a lead batch dim, Dv ≠ D
      { B: 2, H: 4, Hkv: 2, Tq: 2, Tk: 41, D: 64, Dv: 48, causal: true, splits: 3 },
    ];
    for (const [n, c] of cases.entries()) {
      const { got, ref } = await runCase(engine, c, 'f32', 'f32', 5000 + 10 * n);
      expectWithin(got, ref.out, ref.bound, label(c));
      if (n === 1) expect(Array.from(got.subarray(0, 64)).every((x) => x === 0), 'a row that sees no key is exactly 0 (head 0, row 0)').toBe(true);
      if (n === 2) expect([0, 1, 2, 3].every((t) => got.subarray(t * 64, (t + 1) * 64).every((x) => x === 0)), 'rows that see no key are exactly 0').toBe(true);
    }
  });

  it('8, 16 and 32 lanes per query row (the profile picks one; the others forced here)', async () => {
    const cases: Case[] = [
      { B: 1, H: 4, Hkv: 2, Tq: 1, Tk: 1000, D: 64, Dv: 64, causal: true, splits: 7 },
      { B: 1, H: 2, Hkv: 2, Tq: 2, Tk: 33, D: 64, Dv: 64, causal: false, splits: 3 },
    ];
    for (const lanes of [8, 16, 32]) {
      await withNn(engine, { flashSplitLanes: lanes }, async () => {
        for (const [n, c] of cases.entries()) {
          const plan = flashSplitPlan(engine.profile, { batchHeads: c.Hkv, rows: (c.H / c.Hkv) * c.Tq, keys: c.Tk, D: c.D, Dv: c.Dv, splits: c.splits })!;
          expect(plan.lanes, `lanes for ${label(c)}`).toBe(Math.min(lanes, flashTile(engine.profile, c.D, c.Dv)!.keys));
          const { got, ref } = await runCase(engine, c, 'f32', 'f32', 7000 + 10 * n + lanes);
          expectWithin(got, ref.out, ref.bound, `${label(c)}, ${lanes} lanes`);
        }
      });
    }
  });

  it('strided views as the decoder passes them: q [L, H, D] transposed, K/V slices of a cache (a decode step and 3 new rows)', async () => {
    const [H, Hkv, D, cap] = [4, 2, 64, 1100];
    for (const [past, L, splits] of [[999, 1, 7], [40, 2, 3]] as const) {
      const S = past + L;
      const qThd = randn(L * H * D, 41 + past);
      const cacheK = randn(Hkv * cap * D, 42);
      const cacheV = randn(Hkv * cap * D, 43);
      const q = T.transpose(T.tensor(engine, qThd, [L, H, D]), 0, 1);
      const kc = T.tensor(engine, cacheK, [Hkv, cap, D]);
      const vc = T.tensor(engine, cacheV, [Hkv, cap, D]);
      const d0 = engine.dispatchCount;
      const y = scaledDotProductAttention(q, T.slice(kc, 1, 0, S), T.slice(vc, 1, 0, S), { causal: true, causalOffset: past, variant: 'split', splits });
      expect(engine.dispatchCount - d0, 'strided views are read in place').toBe(2);
      const qd = new Float32Array(H * L * D);
      for (let h = 0; h < H; h++) for (let t = 0; t < L; t++) for (let d = 0; d < D; d++) qd[(h * L + t) * D + d] = qThd[(t * H + h) * D + d]!;
      const dense = (c: Float32Array) => {
        const o = new Float32Array(Hkv * S * D);
        for (let h = 0; h < Hkv; h++) o.set(c.subarray(h * cap * D, h * cap * D + S * D), h * S * D);
        return o;
      };
      const ref = attentionBoundRef(qd, dense(cacheK), dense(cacheV), { B: 1, H, Hkv, Tq: L, Tk: S, D, Dv: D }, { causal: true, causalOffset: past, splits });
      expectWithin(await y.read(), ref.out, ref.bound, `decoder layout, ${past} cached + ${L}`);
      for (const t of [q, kc, vc, y]) t.dispose();
    }
  });

  for (const qDtype of ['f32', 'f16'] as const) {
    itF16(`f16 K/V, ${qDtype} queries (output ${qDtype}): queries 1 and 2 × every key count, chunks and causal cycling`, async (e) => {
      let n = 0;
      for (const Tq of [1, 2])
        for (const Tk of TK) {
          const c: Case = { B: 1, H: 4, Hkv: 2, Tq, Tk, D: 64, Dv: 64, splits: SPLITS[n % 4]!, causal: n % 2 === 1 };
          const { got, ref } = await runCase(e, c, 'f16', qDtype, 9000 + 100 * n++);
          expectWithin(got, ref.out, ref.bound, `${label(c)} f16 K/V, ${qDtype} q`);
        }
    });
  }
});

describe("the profile's split-K rule", () => {
  const LIMITS = { maxComputeWorkgroupStorageSize: 49152, maxComputeInvocationsPerWorkgroup: 1024, maxStorageBufferBindingSize: 128 << 20, maxBufferSize: 1 << 30, maxStorageBuffersPerShaderStage: 16 };
  const H100: DeviceFacts = {
    info: { vendor: 'nvidia', architecture: 'hopper', description: 'NVIDIA H100 80GB HBM3', subgroupMinSize: 32, subgroupMaxSize: 32 },
    features: ['shader-f16', 'subgroups'],
    limits: LIMITS,
  };
  const LAVAPIPE: DeviceFacts = { ...H100, info: { vendor: 'mesa', architecture: 'software', description: 'llvmpipe: Mesa 25.0.7 (LLVM 15.0.6)', subgroupMinSize: 8, subgroupMaxSize: 8 }, limits: { ...LIMITS, maxComputeWorkgroupStorageSize: 32768 } };

  it('a GPU profile splits a 7B decode step (32 kv heads, 1 row) over 30 s of keys, not an encoder window; the CPU profile never on its own', () => {
    const gpu = buildProfile(H100, { env: {} });
    const p = flashSplitPlan(gpu, { batchHeads: 32, rows: 1, keys: 800, D: 128, Dv: 128 })!;
    // 1024 workgroups wanted / 32 → 32 chunks, at most 800 / 64 = 12, rounded to whole tiles of 32 keys: 9 of 96
    expect(p).toEqual({ rows: 1, keys: 32, lanes: 32, splits: 9, chunk: 96, groups: 288 });
    // GQA decode (8 kv heads of 4 query heads): 4 rows per workgroup, 32 lanes each
    expect(flashSplitPlan(gpu, { batchHeads: 8, rows: 4, keys: 800, D: 128, Dv: 128 })).toMatchObject({ rows: 4, lanes: 32, splits: 9, groups: 72 });
    // Whisper's encoder, 30 s: 20 heads × 1500 rows fill the GPU already
    expect(flashSplitPlan(gpu, { batchHeads: 20, rows: 1500, keys: 1500, D: 64, Dv: 64 })!.splits).toBe(1);
    // few keys: chunks of ≥ 64 keys
    expect(flashSplitPlan(gpu, { batchHeads: 32, rows: 1, keys: 100, D: 128, Dv: 128 })!.splits).toBe(1);
    expect(flashSplitPlan(gpu, { batchHeads: 32, rows: 1, keys: 200, D: 128, Dv: 128 })).toMatchObject({ splits: 3, chunk: 96 });
    // the split tile fits where the flash tile fits
    for (const [D, rows] of [[64, 1], [128, 3], [128, 40], [256, 2]] as const) {
      const t = flashSplitPlan(gpu, { batchHeads: 4, rows, keys: 1000, D, Dv: D })!;
      expect(t.keys % t.lanes).toBe(0);
      expect(t.rows * t.lanes).toBeLessThanOrEqual(LIMITS.maxComputeInvocationsPerWorkgroup);
      expect(4 * (t.rows * D + t.keys * (D + 1) + t.rows * t.keys + 2 * t.lanes * t.rows)).toBeLessThanOrEqual(LIMITS.maxComputeWorkgroupStorageSize);
      expect(t.chunk % t.keys).toBe(0);
      expect(t.splits * t.chunk).toBeGreaterThanOrEqual(1000);
      expect(t.splits).toBeLessThanOrEqual(gpu.nn.flashSplitMax);
    }
    const cpu = buildProfile(LAVAPIPE, { env: {} });
    expect([cpu.nn.attention, cpu.nn.flashSplitGroups, cpu.nn.flashSplitLanes]).toEqual(['chunked', 0, 8]);
    expect(flashSplitPlan(cpu, { batchHeads: 32, rows: 1, keys: 800, D: 128, Dv: 128 })!.splits).toBe(1);
    // forced chunks: ⌈keys / S⌉ each, trailing ones may be empty
    expect(flashSplitPlan(cpu, { batchHeads: 2, rows: 1, keys: 10, D: 16, Dv: 16, splits: 7 })).toMatchObject({ splits: 7, chunk: 2 });
    expect(describeVariants(gpu).attentionDecode).toMatch(/^split-K .*9 chunks of 96 keys, 288 workgroups of 32 invocations/);
    expect(describeVariants(cpu).attentionDecode).toMatch(/^chunked/);
  });

  it("the profile's flash attention takes split-K where the rule says (two dispatches), the one-pass kernel elsewhere", async () => {
    const q = T.tensor(engine, randn(4 * 64, 1), [4, 1, 64]);
    const k = T.tensor(engine, randn(2 * 300 * 64, 2), [2, 300, 64]);
    const v = T.tensor(engine, randn(2 * 300 * 64, 3), [2, 300, 64]);
    const ref = attentionBoundRef(await q.read(), await k.read(), await v.read(), { B: 1, H: 4, Hkv: 2, Tq: 1, Tk: 300, D: 64, Dv: 64 }, { causal: true, splits: 4 });
    const count = async (patch: Partial<NnProfile>, variant?: 'flash') =>
      withNn(engine, { attention: 'flash', ...patch }, async () => {
        const d0 = engine.dispatchCount;
        const y = scaledDotProductAttention(q, k, v, { causal: true, variant });
        const n = engine.dispatchCount - d0;
        expectWithin(await y.read(), ref.out, ref.bound, `${JSON.stringify(patch)} ${variant ?? ''}`);
        y.dispose();
        return n;
      });
    // 2 kv heads, one tile each: 2 workgroups, below 64 wanted → ⌊300 / 64⌋ = 4 chunks, of 96 keys (3 tiles)
    expect(await count({ flashSplitGroups: 64, flashSplitMinKeys: 64 })).toBe(2);
    await withNn(engine, { flashSplitGroups: 64, flashSplitMinKeys: 64 }, async () =>
      expect(flashSplitPlan(engine.profile, { batchHeads: 2, rows: 2, keys: 300, D: 64, Dv: 64 })).toMatchObject({ splits: 4, chunk: 96 }),
    );
    expect(await count({ flashSplitGroups: 0 })).toBe(1);
    expect(await count({ flashSplitGroups: 2 })).toBe(1); // 2 workgroups are not fewer than 2
    expect(await count({ flashSplitGroups: 64, flashSplitMinKeys: 301 })).toBe(1); // too few keys for 2 chunks
    expect(await count({ flashSplitGroups: 64 }, 'flash')).toBe(1); // 'flash' given: one pass
    // the partials must fit one binding: 4 rows × (64 + 2) f32 = 1056 bytes per chunk
    const lim = engine.profile.limits as { maxStorageBufferBindingSize: number };
    const was = lim.maxStorageBufferBindingSize;
    try {
      lim.maxStorageBufferBindingSize = 1056 * 1.5; // one chunk fits: the profile's rule runs one pass
      expect(await count({ flashSplitGroups: 64, flashSplitMinKeys: 64 })).toBe(1);
      lim.maxStorageBufferBindingSize = 1056 * 3; // 7 chunks asked, 3 fit
      const y = scaledDotProductAttention(q, k, v, { causal: true, variant: 'split', splits: 7 });
      const ref3 = attentionBoundRef(await q.read(), await k.read(), await v.read(), { B: 1, H: 4, Hkv: 2, Tq: 1, Tk: 300, D: 64, Dv: 64 }, { causal: true, splits: 3 });
      expectWithin(await y.read(), ref3.out, ref3.bound, 'split into the chunks that fit');
      y.dispose();
    } finally {
      lim.maxStorageBufferBindingSize = was;
    }
    for (const t of [q, k, v]) t.dispose();
  });
});

describe('the tiny model with split-K on everywhere: the same greedy tokens as flash, chunked and the reference; logits within the flash test bound', () => {
  const DIR = path.join(import.meta.dirname, 'fixtures', 'tiny-audiollm');
  const fj = JSON.parse(fs.readFileSync(path.join(DIR, 'fixtures.json'), 'utf8')) as { prompt_ids: number[]; logits_positions: number[]; greedy: number[] };
  // every attention call splits: any workgroup count is "few", chunks of whole key tiles (83 prompt keys: 3 chunks)
  const SPLIT: Partial<NnProfile> = { attention: 'flash', flashSplitGroups: 1e9, flashSplitMinKeys: 1 };
  const FLASH: Partial<NnProfile> = { attention: 'flash', flashSplitGroups: 0 };

  /** Per variant: logits at the fixture positions, of a prefill and 3 KV-cache steps, 12 greedy tokens, dispatches. */
  async function run(variants: Record<string, Partial<NnProfile>>) {
    const e = engine;
    const fx = openSafetensors(path.join(DIR, 'fixtures.safetensors'));
    const audio = fx.readFloat32('audio');
    const want = fx.readFloat32('logits');
    fx.close();
    const model = await loadAudioLLM(e, DIR);
    const out: Record<string, { forward: Float32Array; steps: Float32Array[]; tokens: number[]; dispatches: number }> = {};
    try {
      for (const [name, patch] of Object.entries(variants)) {
        out[name] = await withNn(e, patch, async () => {
          const d0 = e.dispatchCount;
          const feats = model.encodeAudio(audio);
          const { forward, steps } = await promptAndCacheLogits(model, fj.prompt_ids, fj.logits_positions, feats);
          const dispatches = e.dispatchCount - d0;
          const g = await generate(model, { ids: fj.prompt_ids, audio: feats }, { maxNewTokens: 12, stopTokens: [] });
          feats.dispose();
          return { forward, steps, tokens: g.tokens, dispatches };
        });
      }
    } finally {
      model.dispose();
    }
    return { out, want };
  }

  it('f32: greedy tokens identical; logits equal to f32 rounding (the flash test bound); near the f64 reference', async () => {
    const { out, want } = await run({ flash: FLASH, split: SPLIT });
    const [flash, split] = [out.flash!, out.split!];
    // the reference's tokens, which the chunked kernel gives too (model.test.ts)
    expect(split.tokens).toEqual(fj.greedy);
    expect(flash.tokens).toEqual(fj.greedy);
    // every attention call is a split and a combine pass: 2 encoder layers, then 2 decoder layers in the
    // full forward, the prefill and 3 steps: 12 calls, one more dispatch each
    expect(split.dispatches).toBe(flash.dispatches + 12);
    expect(relErr(split.forward, flash.forward).rel, 'logits at the fixture positions').toBeLessThan(1e-5);
    split.steps.forEach((s, i) => expect(relErr(s, flash.steps[i]!).rel, `KV-cache step ${i}`).toBeLessThan(1e-5));
    expect(relErr(split.forward, want).rel, 'split vs f64 reference').toBeLessThan(1e-3);
  });
});
