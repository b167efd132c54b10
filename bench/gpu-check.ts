// The measuring half of bench/gpu-check.sh: one JSON on stdout with matmul f32/f16 GFLOP/s at
// M = 1, 4, 64, 512, 4096 (N = K = 4096) next to the FMA peak and copy bandwidth measured in the
// same run, attention for a 30 s Whisper window and for a decode step over 30 s of keys (the 7B head
// shape: one-pass flash against split-K), the SAE training step, and the demo's stage
// timings. Progress on stderr. Refuses a software adapter unless --allow-software.
// Run as `node dist/bench/gpu-check.js [options]` (the shell script does that, packed or not).
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Engine } from '../src/gpu/engine.js';
import { describeVariants, flashSplitPlan } from '../src/gpu/profile.js';
import { tensor, tidy } from '../src/tensor/index.js';
import { matmul } from '../src/tensor/ops/matmul.js';
import { scaledDotProductAttention } from '../src/tensor/ops/nn.js';
import { measureCopyBandwidth, measurePeakFma, timeRepeated } from '../src/tensor/ops/peak.js';
import { ArdError } from '../src/util/errors.js';
import { benchSaeTrain } from './sae.js';

export interface GpuCheckOptions {
  allowSoftware: boolean;
  /** Matmul rows to time; N = K = nk. */
  ms: number[];
  nk: number;
  /** Attention: heads, frames (1500 = 30 s of Whisper encoder), head dim. */
  attn: [number, number, number];
  /** Decode attention (one query row per head): query heads, kv heads, keys (750 = 30 s of audio), head dim. */
  decode: [number, number, number, number];
  /** SAE step: d, m, k, batch. */
  sae: [number, number, number, number];
  /** Demo corpus clips; 0 skips the demo. */
  demoSize: number;
  /** Timed seconds per measurement. */
  seconds: number;
}

function parseArgs(argv: string[]): GpuCheckOptions {
  const o: GpuCheckOptions = { allowSoftware: false, ms: [1, 4, 64, 512, 4096], nk: 4096, attn: [20, 1500, 64], decode: [32, 32, 750, 128], sae: [4096, 32768, 32, 4096], demoSize: 1200, seconds: 0.5 };
  const ints = (flag: string, v: string | undefined, n: number): number[] => {
    const xs = (v ?? '').split(',').map(Number);
    if (xs.length !== n || xs.some((x) => !Number.isInteger(x) || x < 0)) throw new ArdError(`gpu-check: ${flag} wants ${n} comma-separated integers, got '${v ?? ''}'`);
    return xs;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const v = () => argv[++i];
    if (a === '--allow-software') o.allowSoftware = true;
    else if (a === '--m') o.ms = (v() ?? '').split(',').map(Number);
    else if (a === '--nk') o.nk = ints(a, v(), 1)[0]!;
    else if (a === '--attn') o.attn = ints(a, v(), 3) as GpuCheckOptions['attn'];
    else if (a === '--decode') o.decode = ints(a, v(), 4) as GpuCheckOptions['decode'];
    else if (a === '--sae') o.sae = ints(a, v(), 4) as GpuCheckOptions['sae'];
    else if (a === '--demo-size') o.demoSize = ints(a, v(), 1)[0]!;
    else if (a === '--seconds') o.seconds = Number(v());
    else throw new ArdError(`gpu-check: unknown option '${a}'`);
  }
  if (o.ms.some((m) => !Number.isInteger(m) || m < 1) || !(o.nk >= 1)) throw new ArdError('gpu-check: --m wants positive integers');
  const [dh, dkv, dk, dd] = o.decode;
  if (!(dh >= 1 && dkv >= 1 && dh % dkv === 0 && dk >= 1 && dd >= 1)) throw new ArdError(`gpu-check: --decode wants heads, kv heads dividing them, keys ≥ 1, head dim ≥ 1, got '${o.decode.join(',')}'`);
  if (!(o.seconds > 0)) throw new ArdError('gpu-check: --seconds must be positive');
  return o;
}

const say = (s: string) => process.stderr.write(`gpu-check: ${s}\n`);
const round = (x: number, d = 1) => Math.round(x * 10 ** d) / 10 ** d;
/** 4 significant digits (rates span 1e-3 on a CPU at tiny sizes to 1e5 on a GPU). */
const sig = (x: number) => Number(x.toPrecision(4));

function randData(n: number, seed: number): Float32Array {
  const x = new Float32Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    x[i] = s / 2 ** 31 - 1;
  }
  return x;
}

export async function gpuCheck(engine: Engine, o: GpuCheckOptions): Promise<Record<string, unknown>> {
  const a = engine.adapter;
  if (a.isSoftware && !o.allowSoftware) {
    throw new ArdError(`gpu-check: the adapter "${a.name}" is a software rasteriser on the CPU, not a GPU (pass --allow-software to measure it anyway)`);
  }
  const t0 = performance.now();
  say(`adapter ${a.name} (${a.backend}), profile ${engine.profile.kind}`);
  const peakFma = await measurePeakFma(engine, { minSeconds: o.seconds });
  const copyGBs = await measureCopyBandwidth(engine, { minSeconds: o.seconds });
  say(`peak ${round(peakFma)} GFLOP/s vec4 FMA, copy ${round(copyGBs)} GB/s`);

  // matmul: x [M, K] · Wᵀ with W [N, K] (nn weights), as the models run it
  const matmuls: Record<string, unknown>[] = [];
  const { nk } = o;
  for (const dtype of engine.f16 ? (['f32', 'f16'] as const) : (['f32'] as const)) {
    const w = tensor(engine, randData(nk * nk, 7), [nk, nk], dtype);
    for (const M of o.ms) {
      const x = tensor(engine, randData(M * nk, M), [M, nk], dtype);
      const s = await timeRepeated(engine, () => matmul(x, w, { transB: true }).dispose(), o.seconds);
      const gflops = (2 * M * nk * nk) / s / 1e9;
      const bytes = (nk * nk + M * nk + M * nk) * (dtype === 'f16' ? 2 : 4);
      matmuls.push({ dtype, M, N: nk, K: nk, ms: sig(s * 1e3), gflops: sig(gflops), ofPeak: sig(gflops / peakFma), GBs: sig(bytes / s / 1e9), ofCopyBandwidth: sig(bytes / s / 1e9 / copyGBs) });
      say(`matmul ${dtype} M=${M}: ${sig(gflops)} GFLOP/s (${sig((100 * gflops) / peakFma)} % of peak)`);
      x.dispose();
    }
    w.dispose();
  }

  // attention over one window: [H, T, D] queries, keys and values (30 s of Whisper encoder at the 7B
  // shapes: 20 heads, 1500 frames, head dim 64), non-causal as in the encoder. Both kernels are timed:
  // the profile's (`ms`), the fused flash kernel and the chunked matmul + softmax; where the device has
  // f16, the flash kernel with f16 K/V too (an f16 checkpoint's encoder, or decoder with an f16 cache)
  const [H, T, D] = o.attn;
  const q = tensor(engine, randData(H * T * D, 1), [H, T, D]);
  const k = tensor(engine, randData(H * T * D, 2), [H, T, D]);
  const v = tensor(engine, randData(H * T * D, 3), [H, T, D]);
  const flops = 4 * H * T * T * D;
  const timeAttn = async (kk: typeof k, vv: typeof v, variant?: 'flash' | 'chunked') =>
    timeRepeated(engine, () => tidy(() => void scaledDotProductAttention(q, kk, vv, variant ? { variant } : {})), o.seconds);
  const sAttn = await timeAttn(k, v);
  const sFlash = await timeAttn(k, v, 'flash');
  const sChunked = await timeAttn(k, v, 'chunked');
  let sFlashF16: number | null = null;
  if (engine.f16) {
    const k16 = tensor(engine, randData(H * T * D, 2), [H, T, D], 'f16');
    const v16 = tensor(engine, randData(H * T * D, 3), [H, T, D], 'f16');
    sFlashF16 = await timeAttn(k16, v16, 'flash');
    k16.dispose();
    v16.dispose();
  }
  for (const t of [q, k, v]) t.dispose();
  const attention = {
    heads: H,
    frames: T,
    headDim: D,
    variant: engine.profile.nn.attention,
    ms: sig(sAttn * 1e3),
    gflops: sig(flops / sAttn / 1e9),
    flashMs: sig(sFlash * 1e3),
    flashGflops: sig(flops / sFlash / 1e9),
    chunkedMs: sig(sChunked * 1e3),
    flashF16KvMs: sFlashF16 === null ? null : sig(sFlashF16 * 1e3),
  };
  say(`attention [${H}, ${T}, ${D}] (${attention.variant}): ${attention.ms} ms; flash ${attention.flashMs} ms${sFlashF16 === null ? '' : ` (f16 K/V ${attention.flashF16KvMs} ms)`}, chunked ${attention.chunkedMs} ms`);
  const attentionDecode = await timeDecodeAttention(engine, o);

  const [d, m, kk, batch] = o.sae;
  const sae = await benchSaeTrain(engine, { d, m, k: kk, batch, steps: 3, warmup: 1 });
  say(`SAE step d=${d} m=${m} k=${kk} batch=${batch}: ${round(sae.tokensPerS, 0)} tokens/s`);

  let demo: unknown = null;
  if (o.demoSize > 0) demo = runDemo(o.demoSize);

  return {
    adapter: a.name,
    backend: a.backend,
    isSoftware: a.isSoftware,
    profile: engine.profile.kind,
    variants: describeVariants(engine.profile),
    peak: { fmaGflops: sig(peakFma), copyGBs: sig(copyGBs) },
    matmul: matmuls,
    attention,
    attentionDecode,
    sae: { d, m, k: kk, batch, msPerStep: sig(sae.msPerStep), tokensPerS: sig(sae.tokensPerS) },
    demo,
    seconds: round((performance.now() - t0) / 1e3),
  };
}

/**
 * A decode step's attention: one query row per head against `keys` cached keys (causal, as the decoder
 * calls it), the profile's choice (`ms`), the one-pass flash kernel, split-K with the profile's chunks,
 * the chunked ops and, with f16, flash and split-K over f16 K/V (an f16 model's KV cache).
 */
async function timeDecodeAttention(engine: Engine, o: GpuCheckOptions): Promise<Record<string, unknown>> {
  const [H, Hkv, Tk, D] = o.decode;
  const q = tensor(engine, randData(H * D, 11), [H, 1, D]);
  const kv = (dtype: 'f32' | 'f16', seed: number) => tensor(engine, randData(Hkv * Tk * D, seed), [Hkv, Tk, D], dtype);
  const [k, v] = [kv('f32', 12), kv('f32', 13)];
  const p = engine.profile;
  const plan = flashSplitPlan(p, { batchHeads: Hkv, rows: H / Hkv, keys: Tk, D, Dv: D });
  const variant = p.nn.attention === 'chunked' || !plan ? 'chunked' : plan.splits > 1 ? 'split' : 'flash';
  const time = async (kk: typeof k, vv: typeof v, variant?: 'flash' | 'split' | 'chunked') =>
    sig(1e3 * (await timeRepeated(engine, () => tidy(() => void scaledDotProductAttention(q, kk, vv, { causal: true, ...(variant ? { variant } : {}) })), o.seconds)));
  const r: Record<string, unknown> = { heads: H, kvHeads: Hkv, keys: Tk, headDim: D, variant, splits: plan?.splits ?? null, chunk: plan?.chunk ?? null };
  r.ms = await time(k, v);
  r.flashMs = await time(k, v, 'flash');
  r.splitMs = await time(k, v, 'split');
  r.chunkedMs = await time(k, v, 'chunked');
  r.flashF16KvMs = null;
  r.splitF16KvMs = null;
  if (engine.f16) {
    const [k16, v16] = [kv('f16', 12), kv('f16', 13)];
    r.flashF16KvMs = await time(k16, v16, 'flash');
    r.splitF16KvMs = await time(k16, v16, 'split');
    k16.dispose();
    v16.dispose();
  }
  for (const t of [q, k, v]) t.dispose();
  say(`decode attention ${H}/${Hkv} heads × ${Tk} keys × ${D} (${variant}${plan && plan.splits > 1 ? `, ${plan.splits} chunks of ${plan.chunk}` : ''}): ${r.ms} ms; flash ${r.flashMs} ms, split-K ${r.splitMs} ms, chunked ${r.chunkedMs} ms${engine.f16 ? `; f16 K/V: flash ${r.flashF16KvMs} ms, split-K ${r.splitF16KvMs} ms` : ''}`);
  return r;
}

/** The demo in a fresh folder through the CLI (its own process, engine and model), its stage timings. */
function runDemo(size: number): unknown {
  const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'ardgpu-gpu-check-'));
  say(`demo (${size} clips) in ${out}`);
  try {
    const r = spawnSync(process.execPath, [path.join(root, 'bin', 'ardgpu.mjs'), 'demo', '--json', '--quiet', '--out', out, '--size', String(size)], { encoding: 'utf8', maxBuffer: 64 << 20 });
    if (r.status !== 0) return { error: `demo exited with ${r.status ?? r.signal}: ${(r.stderr || '').trim().split('\n').slice(-3).join(' | ')}` };
    const j = JSON.parse(r.stdout) as { seconds: number; stages: Record<string, { seconds: number }> };
    return { size, seconds: j.seconds, stages: Object.fromEntries(Object.entries(j.stages).map(([k, v]) => [k, v.seconds])) };
  } finally {
    fs.rmSync(out, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  const engine = await Engine.create();
  try {
    process.stdout.write(`${JSON.stringify(await gpuCheck(engine, o), null, 2)}\n`);
  } finally {
    engine.destroy();
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((e: unknown) => {
    process.stderr.write(`${e instanceof ArdError ? e.message : e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exit(1);
  });
}
