// `ardgpu bench` / `npm run bench`: kernel microbenchmarks on tinybench, each next to the device's
// measured peak (vec4 FMA throughput, copy bandwidth) from the same run, so figures from noisy
// software adapters can be compared as ratios.
import { Bench } from 'tinybench';
import type { Engine } from '../src/gpu/engine.js';
import { measureCopyBandwidth, measurePeakFma } from '../src/tensor/ops/peak.js';
import { linear, matmul } from '../src/tensor/ops/matmul.js';
import { conv1d, layerNorm, softmax, unfold1d } from '../src/tensor/ops/nn.js';
import { reshape } from '../src/tensor/ops/layout.js';
import { resample } from '../src/audio/resample.js';
import { topk } from '../src/tensor/ops/index.js';
import { tensor, tidy, Tensor } from '../src/tensor/index.js';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { benchSaeTrain } from './sae.js';
import { loadAudioLLM } from '../src/model/load.js';
import { generate, generateBatch } from '../src/model/generate.js';
import { buildChatPrompt } from '../src/model/chat.js';

/** Encoder on 10 s of audio and decoder tokens/s, for the model in `dir` (the embedded weights/). */
export function modelTasks(dir: string): ExtraTask[] {
  const has = () => {
    if (!fs.existsSync(path.join(dir, 'config.json'))) throw new Error(`${dir}: no model (config.json missing)`);
  };
  const noise = (n: number) => {
    const x = new Float32Array(n);
    let s = 12345;
    for (let i = 0; i < n; i++) {
      s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
      x[i] = (s / 2 ** 32 - 0.5) * 0.2;
    }
    return x;
  };
  return [
    {
      name: 'model: encoder forward, 10 s of audio',
      run: async (engine) => {
        has();
        const model = await loadAudioLLM(engine, dir, { dtype: engine.f16 ? 'f16' : 'f32' });
        try {
          const audio = noise(160000);
          const ms = await timeTask(engine, 'encoder', () => void model.encodeAudio(audio), 2);
          return { value: ms, unit: 'ms', key: 'encoder_10s_ms', ms };
        } finally {
          model.dispose();
        }
      },
    },
    {
      name: 'model: decoder greedy generation',
      run: async (engine) => {
        has();
        const model = await loadAudioLLM(engine, dir, { dtype: engine.f16 ? 'f16' : 'f32' });
        try {
          const samples = noise(48000);
          const ids = buildChatPrompt(model.tokenizer!, [model.audioTokens(samples.length)], 'Describe the sound.', { audioTokenIndex: model.audioTokenIndex });
          const audio = model.encodeAudio(samples);
          let best = Infinity;
          let tokens = 0;
          for (let rep = 0; rep < 3; rep++) {
            // fixed length: stop tokens disabled so every run decodes the same number of tokens
            const r = await generate(model, { ids, audio }, { maxNewTokens: 32, stopTokens: [] });
            const per = r.decodeMs / Math.max(1, r.tokens.length);
            if (per < best) [best, tokens] = [per, r.tokens.length];
          }
          audio.dispose();
          return { value: 1000 / best, unit: `tokens/s (${tokens} tokens after a ${ids.length}-token prompt)`, key: 'decoder_tokens_per_s', ms: best };
        } finally {
          model.dispose();
        }
      },
    },
    ...[1, 8, 32].map((B) => ({
      name: `model: batched greedy decode, batch ${B}`,
      run: async (engine: Engine) => {
        has();
        const model = await loadAudioLLM(engine, dir, { dtype: 'auto' });
        const feats: Tensor[] = [];
        try {
          // B different 3 s clips (one prompt each, same length), 32 tokens each, stop tokens disabled
          const all = noise(48000 * B);
          const prompts = Array.from({ length: B }, (_, b) => {
            const audio = model.encodeAudio(all.subarray(48000 * b, 48000 * (b + 1)));
            feats.push(audio);
            return { ids: buildChatPrompt(model.tokenizer!, [model.audioTokens(48000)], 'Describe the sound.', { audioTokenIndex: model.audioTokenIndex }), audio };
          });
          let best = Infinity;
          for (let rep = 0; rep < 2; rep++) {
            const r = await generateBatch(model, prompts, { maxNewTokens: 32, stopTokens: [], maxBatch: B });
            // the first token of each comes from its prefill; the decode steps make the rest
            const steps = r.reduce((a, x) => a + x.tokens.length - 1, 0);
            best = Math.min(best, r[0]!.decodeMs / steps);
          }
          return { value: 1000 / best, unit: `tokens/s (${B} sequences × 31 decode steps, ${model.dtype} weights, ${model.kvDtype} KV cache)`, key: `decode_tokens_per_s_batch${B}`, ms: best * B };
        } finally {
          for (const f of feats) f.dispose();
          model.dispose();
        }
      },
    })),
  ];
}

/** The Top-K SAE training step (d=256, m=4096, k=32, batch 4096), ardgpu then PyTorch CPU if present. */
export const SAE_TASKS: ExtraTask[] = [
  {
    name: 'sae train step d=256 m=4096 k=32 batch 4096',
    run: async (engine) => {
      const r = await benchSaeTrain(engine, { steps: 4, warmup: 1 });
      return { value: r.tokensPerS, unit: 'tokens/s', key: 'sae_train_tokens_per_s', ms: r.msPerStep };
    },
  },
  {
    name: 'sae train step, PyTorch CPU baseline (bench/sae-pytorch.py)',
    run: async () => {
      const script = path.join(path.dirname(fileURLToPath(import.meta.url)), 'sae-pytorch.py');
      const py = '/usr/bin/python3';
      const src = fs.existsSync(script) ? script : path.join(process.cwd(), 'bench', 'sae-pytorch.py');
      const r = spawnSync(py, [src, '--steps', '4', '--warmup', '1'], { encoding: 'utf8', timeout: 600_000 });
      const line = r.stdout?.trim().split('\n').pop();
      if (r.status !== 0 || !line) throw new Error(`PyTorch baseline unavailable (${(r.stderr || r.error?.message || '').split('\n').filter(Boolean).pop() ?? 'no output'}); install with tools/setup.sh --with-reference`);
      const j = JSON.parse(line);
      return { value: j.tokens_per_s, unit: 'tokens/s', key: 'sae_train_tokens_per_s_pytorch', ms: j.ms_per_step ?? 0 };
    },
  },
];

export interface BenchEntry {
  name: string;
  value: number;
  unit: string;
  /** value / measured peak of the same kind (FMA for GFLOP/s, copy for GB/s). */
  ofPeak?: number;
  ms: number;
}

export interface BenchOptions {
  /** Seconds of timing per task (tinybench `time`). */
  seconds?: number;
  /** Substring filter on task names. */
  only?: string;
  /** Extra tasks (model and SAE benchmarks register here). */
  extra?: ExtraTask[];
  onProgress?: (name: string) => void;
}

export interface ExtraTask {
  name: string;
  run: (engine: Engine) => Promise<{ value: number; unit: string; key: string; ms: number }>;
}

function randomTensor(engine: Engine, shape: number[], seed: number): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const data = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    data[i] = s / 2 ** 32 - 0.5;
  }
  return tensor(engine, data, shape);
}

/** Time `once` with tinybench, syncing the GPU each iteration (CPU-only work pays one empty sync). Returns ms. */
async function timeTask(engine: Engine, name: string, once: () => void, seconds: number): Promise<number> {
  const bench = new Bench({ time: seconds * 1000, iterations: 3, warmup: true, warmupIterations: 1, warmupTime: 0 });
  bench.add(name, async () => {
    tidy(once);
    await engine.sync();
  });
  await bench.run();
  const r: any = bench.tasks[0]!.result;
  if (!r || r.error) throw r?.error ?? new Error(`bench ${name}: no result`);
  return r.latency?.mean ?? r.mean;
}

export async function runBench(engine: Engine, opts: BenchOptions = {}): Promise<{ entries: BenchEntry[]; json: Record<string, number> }> {
  const seconds = opts.seconds ?? 1;
  const want = (n: string) => !opts.only || n.includes(opts.only);
  const entries: BenchEntry[] = [];
  const json: Record<string, number> = {};
  const step = (n: string) => opts.onProgress?.(n);

  step('fma peak');
  const fma = await measurePeakFma(engine, { minSeconds: Math.max(0.3, seconds / 2) });
  step('copy bandwidth');
  const copy = await measureCopyBandwidth(engine, { minSeconds: Math.max(0.3, seconds / 2) });
  entries.push({ name: 'fma peak (vec4, 5 chains)', value: fma, unit: 'GFLOP/s', ofPeak: 1, ms: 0 });
  entries.push({ name: 'copy bandwidth (vec4)', value: copy, unit: 'GB/s', ofPeak: 1, ms: 0 });
  json.fma_peak_gflops = fma;
  json.copy_gbps = copy;

  for (const n of [256, 512, 1024, 2048]) {
    const name = `matmul ${n}³ f32`;
    if (!want(name)) continue;
    step(name);
    const a = randomTensor(engine, [n, n], 1);
    const b = randomTensor(engine, [n, n], 2);
    const ms = await timeTask(engine, name, () => void matmul(a, b), n >= 2048 ? Math.min(seconds, 2) : seconds);
    const gflops = (2 * n * n * n) / (ms / 1e3) / 1e9;
    entries.push({ name, value: gflops, unit: 'GFLOP/s', ofPeak: gflops / fma, ms });
    json[`matmul_${n}_gflops`] = gflops;
    a.dispose();
    b.dispose();
  }

  const rows = 4096;
  const width = 1024;
  const bytes = rows * width * 4 * 2; // read + write
  const x = randomTensor(engine, [rows, width], 3);
  if (want('softmax')) {
    step('softmax');
    const ms = await timeTask(engine, 'softmax', () => void softmax(x), seconds);
    const gbps = bytes / (ms / 1e3) / 1e9;
    entries.push({ name: `softmax ${rows}×${width}`, value: gbps, unit: 'GB/s', ofPeak: gbps / copy, ms });
    json.softmax_gbps = gbps;
  }
  if (want('layernorm')) {
    step('layernorm');
    const w = randomTensor(engine, [width], 4);
    const bias = randomTensor(engine, [width], 5);
    const ms = await timeTask(engine, 'layernorm', () => void layerNorm(x, w, bias, 1e-5), seconds);
    const gbps = bytes / (ms / 1e3) / 1e9;
    entries.push({ name: `layernorm ${rows}×${width}`, value: gbps, unit: 'GB/s', ofPeak: gbps / copy, ms });
    json.layernorm_gbps = gbps;
    w.dispose();
    bias.dispose();
  }
  x.dispose();
  if (want('topk')) {
    step('topk');
    const s = randomTensor(engine, [4096, 4096], 6);
    const ms = await timeTask(engine, 'topk', () => void topk(s, 32), seconds);
    const gbps = (4096 * 4096 * 4) / (ms / 1e3) / 1e9;
    entries.push({ name: 'topk k=32 of 4096×4096', value: gbps, unit: 'GB/s', ofPeak: gbps / copy, ms });
    json.topk_4096x4096_k32_ms = ms;
    s.dispose();
  }
  if (want('conv1d')) {
    // the audio encoder's first convolution (80 mel bins → 128 channels, K = 3) over a 4-s window:
    // the direct kernel (inference) against unfold + matmul (training's encoder)
    step('conv1d');
    const [cin, frames, cout] = [80, 400, 128];
    const xs = randomTensor(engine, [cin, frames], 7);
    const ws = randomTensor(engine, [cout, cin, 3], 8);
    const bs = randomTensor(engine, [cout], 9);
    const w2 = reshape(ws, [cout, cin * 3]);
    const gflop = (2 * cout * cin * 3 * frames) / 1e9;
    const direct = await timeTask(engine, 'conv1d direct', () => void conv1d(xs, ws, bs, { padding: 1 }), seconds);
    const unfolded = await timeTask(engine, 'conv1d unfold', () => void linear(unfold1d(xs, 3, { padding: 1 }), w2, bs), seconds);
    entries.push({ name: `conv1d ${cin}→${cout}, K 3, ${frames} frames: direct kernel`, value: gflop / (direct / 1e3), unit: 'GFLOP/s', ofPeak: gflop / (direct / 1e3) / fma, ms: direct });
    entries.push({ name: `conv1d ${cin}→${cout}, K 3, ${frames} frames: unfold + matmul`, value: gflop / (unfolded / 1e3), unit: 'GFLOP/s', ofPeak: gflop / (unfolded / 1e3) / fma, ms: unfolded });
    json.conv1d_direct_gflops = gflop / (direct / 1e3);
    json.conv1d_unfold_gflops = gflop / (unfolded / 1e3);
    for (const t of [xs, ws, bs, w2]) t.dispose();
  }
  if (want('resample')) {
    // the CPU resampler every non-16 kHz WAV goes through (TypeScript, not a kernel): 30 s of
    // 44.1 kHz audio, in seconds of audio per second
    step('resample');
    const n = 44100 * 30;
    const wave = Float32Array.from({ length: n }, (_, i) => 0.5 * Math.sin((2 * Math.PI * 1000 * i) / 44100));
    const ms = await timeTask(engine, 'resample', () => void resample(wave, 44100, 16000), seconds);
    entries.push({ name: 'resample 30 s of 44.1 kHz audio to 16 kHz (CPU)', value: 30 / (ms / 1e3), unit: '× real time', ms });
    json.resample_realtime_factor = 30 / (ms / 1e3);
  }
  for (const t of opts.extra ?? []) {
    if (!want(t.name)) continue;
    step(t.name);
    try {
      const r = await t.run(engine);
      entries.push({ name: t.name, value: r.value, unit: r.unit, ms: r.ms });
      json[r.key] = r.value;
    } catch (e) {
      // an optional baseline (e.g. PyTorch not installed) must not sink the whole run
      entries.push({ name: `${t.name}: skipped — ${(e as Error).message.split('\n')[0]}`, value: NaN, unit: '', ms: 0 });
    }
  }
  return { entries, json };
}

export function formatBench(entries: BenchEntry[], adapter: string): string {
  const lines = [`ardgpu bench on ${adapter}`, '', '| benchmark | result | of measured peak | ms/iter |', '| --- | ---: | ---: | ---: |'];
  for (const e of entries) {
    if (Number.isNaN(e.value)) {
      lines.push(`| ${e.name} | – | – | – |`);
      continue;
    }
    lines.push(`| ${e.name} | ${e.value.toFixed(e.value >= 100 ? 0 : 2)} ${e.unit} | ${e.ofPeak !== undefined ? `${(e.ofPeak * 100).toFixed(0)}%` : '–'} | ${e.ms ? e.ms.toFixed(2) : '–'} |`);
  }
  return lines.join('\n');
}
