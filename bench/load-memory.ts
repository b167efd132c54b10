// Peak host memory of streamed model loading, measured.
//
//   npx tsx bench/load-memory.ts [--layers 2] [--vocab 32768] [--shard-gb 1] [--keep DIR] [--chunk VALUES]
//
// Writes seeded checkpoints with Qwen2-Audio-7B's text shapes (hidden 4096, 32 heads of 128,
// intermediate 11008) and Whisper-large-v3's encoder width (1 encoder layer), `--layers` decoder layers
// and a `--vocab` vocabulary, once in bf16 and once in f32, each sharded (model.safetensors.index.json),
// into a temporary folder. Each is then loaded in a fresh process (bf16 as f16 weights where the
// adapter has shader-f16, f32 as f32) that reports, from /proc/self/status, its resident memory just
// before loading (VmRSS) and its high-water mark after (VmHWM), with the device bytes the weights
// took and the loader's LoadStats. On a software adapter (lavapipe) device buffers live in host memory,
// so the host overhead of loading is at most VmHWM − VmRSS before − bytes uploaded.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Engine } from '../src/gpu/engine.js';
import { TensorToWrite, writeSafetensors } from '../src/io/safetensors.js';
import { expectedTensorShapes, parseQwen2AudioConfig } from '../src/model/config.js';
import { loadAudioLLM } from '../src/model/load.js';

const SELF = fileURLToPath(import.meta.url);

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1]! : def;
}

/** VmRSS and VmHWM of this process, bytes. */
function memStatus(): { rss: number; hwm: number } {
  const s = fs.readFileSync('/proc/self/status', 'utf8');
  const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(s)![1]) * 1024;
  return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
}

function configJson(layers: number, vocab: number, torchDtype: string): Record<string, unknown> {
  return {
    architectures: ['Qwen2AudioForConditionalGeneration'],
    model_type: 'qwen2_audio',
    audio_token_index: vocab - 1,
    audio_config: {
      model_type: 'qwen2_audio_encoder', num_mel_bins: 128, d_model: 1280, encoder_layers: 1, encoder_attention_heads: 20,
      encoder_ffn_dim: 5120, max_source_positions: 1500,
    },
    text_config: {
      model_type: 'qwen2', vocab_size: vocab, hidden_size: 4096, intermediate_size: 11008, num_hidden_layers: layers,
      num_attention_heads: 32, num_key_value_heads: 32, rms_norm_eps: 1e-6, rope_theta: 10000, max_position_embeddings: 8192,
      tie_word_embeddings: false,
    },
    torch_dtype: torchDtype,
  };
}

/** Seeded values (LCG), scaled like an initialised layer. */
function values(n: number, seed: number): Float32Array {
  const x = new Float32Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    x[i] = (s / 2 ** 32 - 0.5) * 0.04;
  }
  return x;
}

/** Writes a sharded checkpoint; returns its tensor bytes. */
function writeCheckpoint(dir: string, layers: number, vocab: number, dtype: 'BF16' | 'F32', shardBytes: number): number {
  fs.mkdirSync(dir, { recursive: true });
  const cfg = configJson(layers, vocab, dtype === 'BF16' ? 'bfloat16' : 'float32');
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(cfg, null, 2));
  const shapes = expectedTensorShapes(parseQwen2AudioConfig(cfg));
  const bpe = dtype === 'BF16' ? 2 : 4;
  const shards: [string, number[]][][] = [[]];
  let inShard = 0;
  let total = 0;
  for (const entry of shapes) {
    const bytes = entry[1].reduce((a, b) => a * b, 1) * bpe;
    if (inShard > 0 && inShard + bytes > shardBytes) {
      shards.push([]);
      inShard = 0;
    }
    shards[shards.length - 1]!.push(entry);
    inShard += bytes;
    total += bytes;
  }
  const weightMap: Record<string, string> = {};
  let seed = 1;
  shards.forEach((list, i) => {
    const file = `model-${String(i + 1).padStart(5, '0')}-of-${String(shards.length).padStart(5, '0')}.safetensors`;
    const m = new Map<string, TensorToWrite>();
    for (const [name, shape] of list) {
      const s = seed++;
      const n = shape.reduce((a, b) => a * b, 1);
      // norms near 1, everything else small; made only when written (one tensor in memory at a time)
      m.set(name, { dtype, shape, data: () => (name.endsWith('norm.weight') || name.endsWith('layer_norm.weight') ? new Float32Array(n).fill(1) : values(n, s)) });
      weightMap[name] = file;
    }
    writeSafetensors(path.join(dir, file), m, { format: 'pt' });
  });
  fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }, null, 2));
  return total;
}

async function child(dir: string, dtype: 'auto' | 'f32', chunk: number | undefined): Promise<void> {
  const engine = await Engine.create({});
  const before = memStatus();
  const live0 = engine.memory().liveBytes;
  const t0 = performance.now();
  const model = await loadAudioLLM(engine, dir, { dtype, tokenizer: false, ...(chunk ? { chunkValues: chunk } : {}) });
  await engine.sync();
  const seconds = (performance.now() - t0) / 1000;
  const after = memStatus();
  const device = engine.memory().liveBytes - live0;
  process.stdout.write(JSON.stringify({ dtype: model.dtype, kvDtype: model.kvDtype, seconds, before, after, deviceBytes: device, stats: model.loadStats }) + '\n');
  model.dispose();
  engine.destroy();
}

async function main(): Promise<void> {
  if (process.argv[2] === '--child') {
    const chunk = process.argv[5] ? Number(process.argv[5]) : undefined;
    return child(process.argv[3]!, process.argv[4] as 'auto' | 'f32', chunk);
  }
  const layers = Number(arg('layers', '2'));
  const vocab = Number(arg('vocab', '32768'));
  const shardBytes = Number(arg('shard-gb', '1')) * 2 ** 30;
  const chunk = arg('chunk', '');
  const keep = arg('keep', '');
  const root = keep || fs.mkdtempSync(path.join(os.tmpdir(), 'ardgpu-load-memory-'));
  const gib = (b: number) => `${(b / 2 ** 30).toFixed(2)} GiB`;
  const mib = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB`;
  const rows: string[] = [];
  try {
    for (const dtype of ['BF16', 'F32'] as const) {
      const dir = path.join(root, dtype.toLowerCase());
      const t0 = performance.now();
      const bytes = fs.existsSync(path.join(dir, 'model.safetensors.index.json'))
        ? fs.readdirSync(dir).filter((f) => f.endsWith('.safetensors')).reduce((a, f) => a + fs.statSync(path.join(dir, f)).size, 0)
        : writeCheckpoint(dir, layers, vocab, dtype, shardBytes);
      process.stderr.write(`${dtype}: ${gib(bytes)} checkpoint in ${dir} (${((performance.now() - t0) / 1000).toFixed(0)} s)\n`);
      const r = spawnSync(process.execPath, ['--import', 'tsx', SELF, '--child', dir, dtype === 'BF16' ? 'auto' : 'f32', ...(chunk ? [chunk] : [])], {
        encoding: 'utf8',
        maxBuffer: 1 << 20,
      });
      if (r.status !== 0) throw new Error(`loader failed: ${r.stderr.trim().split('\n').slice(-3).join(' | ')}`);
      const j = JSON.parse(r.stdout.trim().split('\n').pop()!);
      // conservative: the pages the uploads wrote (the pool's rounding may never be touched)
      const overhead = j.after.hwm - j.before.rss - j.stats.bytesUploaded;
      // lavapipe's buffers are host memory; the pool rounds sizes up by ≤ 1/8, pages Dawn may zero
      const overDevice = j.after.hwm - j.before.rss - j.deviceBytes;
      process.stderr.write(`  ${JSON.stringify(j)}\n`);
      rows.push(
        `| ${dtype} → ${j.dtype} | ${gib(bytes)} | ${j.seconds.toFixed(1)} s | ${mib(j.before.rss)} | ${gib(j.after.hwm)} | ${gib(j.stats.bytesUploaded)} (${gib(j.deviceBytes)}) | ${mib(overhead)} | ${mib(overDevice)} | ${mib(j.stats.peakStagingBytes)} | ${gib(j.stats.bytesRead)} |`,
      );
    }
  } finally {
    if (!keep) fs.rmSync(root, { recursive: true, force: true });
  }
  process.stdout.write(
    [
      `checkpoint: Qwen2-Audio-7B text shapes, ${layers} decoder layers, vocabulary ${vocab}, 1 encoder layer (width 1280), shards of ≤ ${arg('shard-gb', '1')} GiB`,
      '',
      '| checkpoint → weights | size | load | VmRSS before | VmHWM after | uploaded (device buffers) | HWM − before − uploaded | HWM − before − device buffers | peak staging (LoadStats) | bytes read |',
      '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
      ...rows,
    ].join('\n') + '\n',
  );
}

await main();
