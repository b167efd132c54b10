import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeWav } from '../src/audio/wav.js';
import { capture } from '../src/ard/capture.js';
import { trainSaeStage } from '../src/ard/train-sae.js';
import { readCaptureManifest } from '../src/ard/run.js';
import { loadAudioLLM } from '../src/model/load.js';
import type { AudioLLM } from '../src/model/audiollm.js';
import { buildChatPrompt } from '../src/model/chat.js';
import { openSafetensors, toFloat32 } from '../src/io/safetensors.js';
import { contiguous, keep } from '../src/tensor/index.js';
import type { Tensor } from '../src/tensor/index.js';
import { getEngine, randn } from './helpers.js';
import { tinyModelDir } from './tiny-model.js';

let model: AudioLLM;
let tmp: string;
let corpus: string;

function readShardRows(run: string, layer: number): Float32Array {
  const m = readCaptureManifest(run);
  const parts = m.shards[String(layer)]!.map((s) => {
    const st = openSafetensors(path.join(run, 'capture', s.file));
    const info = st.tensors.get('acts')!;
    const v = toFloat32(st.read('acts'), info.dtype).slice();
    st.close();
    return v;
  });
  const out = new Float32Array(parts.reduce((a, p) => a + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

beforeAll(async () => {
  const engine = await getEngine();
  model = await loadAudioLLM(engine, tinyModelDir());
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ardgpu-capture-'));
  corpus = path.join(tmp, 'corpus');
  fs.mkdirSync(path.join(corpus, 'clips'), { recursive: true });
  const lines: string[] = [];
  const lengths = [16000, 9000, 24000, 12345];
  lengths.forEach((n, i) => {
    const file = `clips/c${i}.wav`;
    writeWav(path.join(corpus, file), randn(n, 10 + i, 0.2));
    lines.push(JSON.stringify({ file, labels: [i % 2 ? 'noise' : 'tone'], caption: 'x', gender: null, speech: false, split: i < 3 ? 'train' : 'test', augment: [], duration: n / 16000, voice: null, sentence: null, seed: i }));
  });
  // a broken clip in the middle: reported and skipped, the rest processed
  fs.writeFileSync(path.join(corpus, 'clips', 'bad.wav'), 'RIFF....WAVEjunk');
  lines.splice(2, 0, JSON.stringify({ file: 'clips/bad.wav', labels: ['tone'], caption: 'x', gender: null, speech: false, split: 'train', augment: [], duration: 1, voice: null, sentence: null, seed: 99 }));
  fs.writeFileSync(path.join(corpus, 'manifest.jsonl'), lines.join('\n') + '\n');
});

afterAll(() => {
  model?.dispose();
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

describe('capture', () => {
  it('stores each clip\'s audio-position residuals after the chosen layers, reports bad clips', async () => {
    const run = path.join(tmp, 'run-a');
    const bad: string[] = [];
    const r = await capture({ model, corpus, run, layers: [1, 0], dtype: 'f32', shardRows: 60, onBadClip: (f) => bad.push(f) });
    expect(r.skipped).toBe(false);
    expect(r.clips).toBe(4);
    expect(bad).toHaveLength(1);
    expect(r.bad[0]!.file).toMatch(/bad\.wav$/);
    expect(r.bad[0]!.error).toMatch(/bad\.wav/);
    const m = readCaptureManifest(run);
    expect(m.layers).toEqual([0, 1]);
    expect(m.d).toBe(model.config.text_config.hidden_size);
    // rows: one per audio token, clips back to back
    let at = 0;
    for (const c of m.clips) {
      const n = Math.round(c.duration * 16000);
      expect(c.rowCount).toBe(model.audioTokens(n));
      expect(c.rowStart).toBe(at);
      at += c.rowCount;
    }
    expect(m.shards['0']!.length).toBeGreaterThan(1); // shardRows forced several shards
    // the rows are the residual stream at the audio placeholder positions of the prompt
    const clip = m.clips[2]!;
    const samples = (await import('../src/audio/wav.js')).readWav(clip.file).samples;
    const ids = buildChatPrompt(model.tokenizer!, [model.audioTokens(samples.length)], 'Describe the sound.');
    const first = ids.indexOf(model.audioTokenIndex);
    let full: Tensor | null = null;
    const h = model.hooks.add({ layer: 1, fn: (resid, ctx) => void (ctx.step === 0 && (full = keep(contiguous(resid)))) });
    const audio = model.encodeAudio(samples);
    model.forward(ids, audio, { logits: 'none' });
    audio.dispose();
    h.remove();
    const all = (await full!.read()) as Float32Array;
    (full as Tensor | null)?.dispose();
    const d = m.d;
    const expected = all.slice(first * d, (first + clip.rowCount) * d);
    const got = readShardRows(run, 1).slice(clip.rowStart * d, (clip.rowStart + clip.rowCount) * d);
    expect(Array.from(got)).toEqual(Array.from(expected));
  });

  it('lists a label-file corpus: its labels and splits in the manifest, with the split rule and the rows left out', async () => {
    const dir = path.join(tmp, 'labelled');
    writeWav(path.join(dir, 'x.wav'), randn(8000, 40, 0.2));
    writeWav(path.join(dir, 'y.wav'), randn(6000, 41, 0.2));
    const labels = path.join(dir, 'meta.tsv');
    fs.writeFileSync(labels, [['name', 'tags'], ['x.wav', 'dog;bark'], ['y.wav', 'rain'], ['gone.wav', 'dog']].map((r) => r.join('\t')).join('\n') + '\n');
    const run = path.join(tmp, 'run-labels');
    const left: string[] = [];
    const r = await capture({
      model, corpus: dir, run, layers: [0], dtype: 'f32',
      corpusOptions: { labels, fileColumn: 'name', labelsColumn: 'tags', splitSeed: 3 }, onSkippedRow: (l) => left.push(l),
    });
    expect(left).toEqual([`${labels}:4: gone.wav not found`]);
    expect(r.skippedRows).toEqual(left);
    expect(r.clips).toBe(2);
    const m = readCaptureManifest(run);
    expect(m.clips.map((c) => [c.id, c.labels])).toEqual([['x', ['dog', 'bark']], ['y', ['rain']]]);
    expect(m.source).toEqual({ layout: 'labels-file', origin: labels, split: r.split, skippedRows: left });
    expect(m.source!.split).toMatchObject({ method: 'hash', seed: 3 });
    for (const c of m.clips) expect(['train', 'val', 'test']).toContain(c.split);
  });

  it('skips when nothing changed and resumes after an interruption with identical shards', async () => {
    const ref = path.join(tmp, 'run-ref');
    await capture({ model, corpus, run: ref, layers: [0], dtype: 'f16', shardRows: 40 });
    const again = await capture({ model, corpus, run: ref, layers: [0], dtype: 'f16', shardRows: 40 });
    expect(again.skipped).toBe(true);

    const run = path.join(tmp, 'run-b');
    let calls = 0;
    await expect(
      capture({
        model, corpus, run, layers: [0], dtype: 'f16', shardRows: 40,
        onProgress: (done) => {
          if (done >= 4 && ++calls === 1) throw new Error('interrupted');
        },
      }),
    ).rejects.toThrow('interrupted');
    expect(fs.existsSync(path.join(run, 'capture', 'manifest.json'))).toBe(false);
    expect(fs.existsSync(path.join(run, 'capture', 'progress.json'))).toBe(true);
    const partial = JSON.parse(fs.readFileSync(path.join(run, 'capture', 'progress.json'), 'utf8'));
    expect(partial.next).toBeGreaterThan(0);
    // no temporary files left next to shards
    const leftovers = fs.readdirSync(path.join(run, 'capture', 'layer-0')).filter((f) => f.endsWith('.tmp'));
    expect(leftovers).toEqual([]);
    const resumed = await capture({ model, corpus, run, layers: [0], dtype: 'f16', shardRows: 40 });
    expect(resumed.skipped).toBe(false);
    expect(readCaptureManifest(run).clips).toEqual(readCaptureManifest(ref).clips);
    expect(Array.from(readShardRows(run, 0))).toEqual(Array.from(readShardRows(ref, 0)));
  });

  it('train-sae on the capture: an interrupted run resumes from its checkpoint to the same SAE; unchanged runs skip', async () => {
    const engine = await getEngine();
    const ref = path.join(tmp, 'run-ref');
    const opts = { engine, layer: 0, m: 128, k: 8, steps: 60, batchSize: 32, checkpointEvery: 20, seed: 3 };
    const a = await trainSaeStage({ ...opts, run: ref });
    expect(a.skipped).toBe(false);
    expect(a.metrics!.fvu).toBeLessThan(1);
    expect((await trainSaeStage({ ...opts, run: ref })).skipped).toBe(true);
    const run = path.join(tmp, 'run-sae-b');
    fs.cpSync(path.join(ref, 'capture'), path.join(run, 'capture'), { recursive: true });
    await expect(
      trainSaeStage({ ...opts, run, onLog: (l) => { if (l.step >= 45) throw new Error('interrupted'); } }),
    ).rejects.toThrow('interrupted');
    expect(fs.existsSync(path.join(run, 'sae-0.ckpt.safetensors'))).toBe(true);
    expect(fs.existsSync(path.join(run, 'sae-0.safetensors'))).toBe(false);
    const b = await trainSaeStage({ ...opts, run });
    expect(b.metrics!.resumedFrom).toBeGreaterThan(0);
    const read = (f: string) => {
      const st = openSafetensors(f);
      const out = ['W_enc', 'b_enc', 'W_dec', 'b_dec'].map((n) => Array.from(toFloat32(st.read(n), 'F32')));
      st.close();
      return out;
    };
    expect(read(path.join(run, 'sae-0.safetensors'))).toEqual(read(path.join(ref, 'sae-0.safetensors')));
    expect(fs.existsSync(path.join(run, 'sae-0.ckpt.safetensors'))).toBe(false);
  });
});
