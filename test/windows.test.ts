// Long clips, window by window, on the tiny Qwen2-Audio fixture (a 2 s audio window, 50 audio
// tokens per window): a prompt carries one window; ask answers the first (or each, askWindows),
// capture stores every window's rows with their times (split between shards, GPU memory flat in the
// clip's length), explain and the timelines continue in time across windows, steering takes the
// first window (or the one asked for), and the CLI notes on stderr when a clip was longer.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readWav, writeWav } from '../src/audio/wav.js';
import { capture, windowResiduals } from '../src/ard/capture.js';
import { explain } from '../src/ard/explain.js';
import { computeTimelines, encodeFeatureActivations, uploadRows } from '../src/ard/retrieve.js';
import { captureShardReader, readCaptureManifest } from '../src/ard/run.js';
import { clipResiduals } from '../src/ard/stages.js';
import { steerSweep } from '../src/ard/steer.js';
import type { Engine } from '../src/gpu/engine.js';
import type { AudioLLM } from '../src/model/audiollm.js';
import { askDetailed, askWindows } from '../src/model/chat.js';
import { loadAudioLLM } from '../src/model/load.js';
import { SparseAutoencoder } from '../src/sae/model.js';
import { expectClose, getEngine, randn, runCli } from './helpers.js';
import { tinyModelDir } from './tiny-model.js';

const LAYER = 1;
const Q = 'What is it?';

let engine: Engine;
let model: AudioLLM;
let modelDir: string;
let tmp: string;
let sae: SparseAutoencoder;
// two full 2 s windows and a 1.25 s tail: 50 + 50 + 31 audio tokens; as read back from a WAV
// (16-bit), so that what capture and the CLI read from the file is the same audio
let long: Float32Array;
let longWav: string;

beforeAll(async () => {
  engine = await getEngine();
  modelDir = tinyModelDir();
  model = await loadAudioLLM(engine, modelDir);
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ardgpu-windows-'));
  longWav = path.join(tmp, 'long.wav');
  writeWav(longWav, randn(84000, 21, 0.2));
  long = readWav(longWav).samples;
  sae = SparseAutoencoder.init(engine, { d: model.config.text_config.hidden_size, m: 128, k: 8, seed: 4, inputScale: 1 });
});

afterAll(() => {
  sae?.dispose();
  model?.dispose();
  for (const d of [tmp, modelDir]) if (d) fs.rmSync(d, { recursive: true, force: true });
});

async function rowsOf(t: { read(): Promise<ArrayLike<number>>; dispose(): void }): Promise<Float32Array> {
  const v = Float32Array.from(await t.read());
  t.dispose();
  return v;
}

describe('windows', () => {
  it("cut a clip into the model's windows; a full window's tokens fill its seconds exactly", () => {
    expect(model.windowSamples).toBe(32000);
    expect(model.windowSeconds).toBe(2);
    const ws = model.windows(long.length);
    expect(ws.map((w) => [w.index, w.from, w.to, w.start, w.end, w.tokens])).toEqual([
      [0, 0, 32000, 0, 2, 50],
      [1, 32000, 64000, 2, 4, 50],
      [2, 64000, 84000, 4, 5.25, 31],
    ]);
    expect(ws[0]!.tokens * model.frameSeconds).toBeCloseTo(model.windowSeconds, 12);
    expect(model.audioTokenCounts(long.length)).toEqual([50, 50, 31]);
    // a tail under three mel frames gives no token and no window
    expect(model.windows(32000 + 300).length).toBe(1);
    expect(model.windows(0)).toEqual([]);
  });
});

describe('ask', () => {
  it('answers the first window of a long clip, exactly as asking that window alone', async () => {
    const r = await askDetailed(model, long, Q, { maxNewTokens: 6 });
    const alone = await askDetailed(model, long.slice(0, 32000), Q, { maxNewTokens: 6 });
    expect(r.text).toBe(alone.text);
    expect(r.tokens).toEqual(alone.tokens);
    expect(r.promptIds).toEqual(alone.promptIds);
    expect(r.promptIds.filter((id) => id === model.audioTokenIndex)).toHaveLength(50);
    expect(r.clips).toHaveLength(1);
    expect(r.clips[0]!.duration).toBe(5.25);
    expect(r.clips[0]!.windows).toBe(3);
    expect([r.clips[0]!.window.start, r.clips[0]!.window.end]).toEqual([0, 2]);
    expect(alone.clips[0]!.windows).toBe(1);
  });

  it('askWindows answers each window, each as asking that window alone', async () => {
    const seen: number[] = [];
    const rs = await askWindows(model, long, Q, { maxNewTokens: 6, onWindow: (w, n) => void seen.push(w.index, n) });
    expect(seen).toEqual([0, 3, 1, 3, 2, 3]);
    expect(rs.map((r) => [r.window.start, r.window.end])).toEqual([[0, 2], [2, 4], [4, 5.25]]);
    for (const r of rs) {
      const alone = await askDetailed(model, long.slice(r.window.from, r.window.to), Q, { maxNewTokens: 6 });
      expect(r.text).toBe(alone.text);
      expect(r.tokens).toEqual(alone.tokens);
    }
    expect(rs.map((r) => r.promptIds.filter((id) => id === model.audioTokenIndex).length)).toEqual([50, 50, 31]);
  });

  it('a prompt and new tokens beyond the decoder positions: a one-line error saying so', async () => {
    await expect(askDetailed(model, long, Q, { maxNewTokens: 500 })).rejects.toThrow(
      /^generate: a prompt of \d+ positions and up to 500 new tokens need \d+ positions, more than the model's max_position_embeddings 512$/,
    );
  });
});

describe('capture, timelines and explain', () => {
  let run: string;
  let corpus: string;

  beforeAll(async () => {
    corpus = path.join(tmp, 'corpus');
    fs.mkdirSync(corpus, { recursive: true });
    writeWav(path.join(corpus, 'a-short.wav'), randn(20000, 22, 0.2)); // one window: 31 rows
    fs.copyFileSync(longWav, path.join(corpus, 'b-long.wav')); // three windows: 131 rows
    run = path.join(tmp, 'run');
    await capture({ model, corpus, run, layers: [LAYER], dtype: 'f32', shardRows: 60 });
  });

  it("stores every window's rows with their times, split between shards where a clip is long", async () => {
    const m = readCaptureManifest(run);
    expect(m.clips.map((c) => [path.basename(c.file), c.rowStart, c.rowCount])).toEqual([['a-short.wav', 0, 31], ['b-long.wav', 31, 131]]);
    const [short, lng] = m.clips as [typeof m.clips[0], typeof m.clips[0]];
    expect(short.windows).toBeUndefined(); // one window: stored as before
    expect(lng.duration).toBe(5.25);
    expect(lng.windows).toEqual([
      { index: 0, start: 0, end: 2, rowStart: 31, rowCount: 50 },
      { index: 1, start: 2, end: 4, rowStart: 81, rowCount: 50 },
      { index: 2, start: 4, end: 5.25, rowStart: 131, rowCount: 31 },
    ]);
    // shards: 31 + 50 rows (written inside the long clip), 50 + 31 (at its end); no shard exceeds shardRows + one window
    const shards = m.shards[String(LAYER)]!;
    expect(shards.map((s) => [s.rowStart, s.rowCount])).toEqual([[0, 81], [81, 81]]);
    // each window's rows are what that window gives alone in the capture prompt
    const reader = captureShardReader(run, m, LAYER);
    for (const w of lng.windows!) {
      const got = await rowsOf(uploadRows(engine, reader, w.rowStart, w.rowCount));
      const ref = windowResiduals(model, long.subarray(w.index * 32000, Math.min(long.length, (w.index + 1) * 32000)), [LAYER]);
      const want = await rowsOf(ref.get(LAYER)!);
      expect(Array.from(got)).toEqual(Array.from(want));
    }
  });

  it('timelines and explain continue in time across windows', async () => {
    const m = readCaptureManifest(run);
    const longIdx = 1;
    const acts = clipResiduals(model, long, LAYER);
    expect(acts.shape).toEqual([131, model.config.text_config.hidden_size]);
    // explain's rows are the captured rows (the same prompt, window by window)
    const captured = await rowsOf(uploadRows(engine, captureShardReader(run, m, LAYER), 31, 131));
    expect(Array.from(await acts.toFloat32())).toEqual(Array.from(captured));
    // two features that fire in the last window: their timelines cover the whole clip
    const all = Array.from({ length: 128 }, (_, id) => id);
    const perToken = await encodeFeatureActivations(engine, sae, acts, all);
    const late = all.filter((f) => perToken[f]!.subarray(100).some((v) => v > 0) && perToken[f]!.subarray(0, 50).some((v) => v > 0)).slice(0, 2);
    expect(late).toHaveLength(2);
    const tl = await computeTimelines({ engine, run, layer: LAYER, sae, want: late.map((feature) => ({ feature, clips: [longIdx] })) });
    for (const f of late) {
      const line = tl.features[f]![longIdx]!;
      expect(line).toHaveLength(131);
      expectClose(line, perToken[f]!, 1e-3, 1e-3, `timeline of feature ${f}`);
    }
    expect(tl.frameSeconds[longIdx]).toBe(model.frameSeconds);
    // every feature the SAE has: the segments reach past the first window
    const features = Array.from({ length: 128 }, (_, id) => ({ id, name: `f${id}`, scores: { maxMean: 0 } as any }));
    const ex = await explain({ engine, sae, acts, frameSeconds: model.frameSeconds, features });
    acts.dispose();
    expect(ex.duration).toBeCloseTo(5.24, 6);
    const lastEnd = Math.max(...ex.features.flatMap((f) => f.segments.map((s) => s.end)));
    expect(lastEnd).toBeGreaterThan(4);
    expect(lastEnd).toBeLessThanOrEqual(5.24);
  });

  it('a 60 s clip: GPU memory at each window is the same, shards stay bounded', async () => {
    const c2 = path.join(tmp, 'corpus-60s');
    fs.mkdirSync(c2, { recursive: true });
    writeWav(path.join(c2, 'minute.wav'), randn(60 * 16000, 23, 0.2));
    const live: number[] = [];
    const h = model.hooks.add({ layer: 0, fn: (_r, ctx) => void (ctx.step === 0 && live.push(engine.memory().liveBytes)) });
    let r;
    try {
      r = await capture({ model, corpus: c2, run: path.join(tmp, 'run-60s'), layers: [LAYER], dtype: 'f16', shardRows: 200 });
    } finally {
      h.remove();
    }
    expect(r.rows).toBe(30 * 50);
    expect(live).toHaveLength(30);
    // nothing of an earlier window is still held on the GPU when the next one runs
    for (const b of live) expect(b).toBe(live[0]);
    const m = readCaptureManifest(path.join(tmp, 'run-60s'));
    expect(m.clips[0]!.windows).toHaveLength(30);
    expect(m.clips[0]!.windows!.at(-1)).toMatchObject({ start: 58, end: 60, rowStart: 1450, rowCount: 50 });
    const shards = m.shards[String(LAYER)]!;
    expect(shards.length).toBeGreaterThan(5);
    for (const s of shards) expect(s.rowCount).toBeLessThanOrEqual(200 + 50);
  });
});

describe('steering', () => {
  it('sweeps the first window by default, or the window asked for', async () => {
    const F = 3;
    const o = { model, sae, layer: LAYER, feature: F, values: [0, 40], question: Q, maxNewTokens: 5 };
    const first = await steerSweep({ ...o, audio: long });
    const alone = await steerSweep({ ...o, audio: long.slice(0, 32000) });
    expect(first.values).toEqual(alone.values);
    expect(first.baseline).toBe(alone.baseline);
    expect(first.window).toEqual({ index: 0, start: 0, end: 2, of: 3, clipSeconds: 5.25 });
    expect(alone.window).toBeUndefined();
    const last = await steerSweep({ ...o, audio: long, window: 2 });
    const lastAlone = await steerSweep({ ...o, audio: long.slice(64000) });
    expect(last.values).toEqual(lastAlone.values);
    expect(last.window).toMatchObject({ index: 2, start: 4, end: 5.25 });
    await expect(steerSweep({ ...o, audio: long, window: 3 })).rejects.toThrow(/window 3 does not exist \(the clip has 3\)/);
  });
});

describe('CLI with a long WAV', () => {

  it('ask: the first window and one note line; --windows all: each window with its time range', async () => {
    const wav = longWav;
    const first = await askDetailed(model, long, Q, { maxNewTokens: 4 });
    const r = runCli(['ask', wav, '--model', modelDir, '--prompt', Q, '--max-tokens', '4']);
    expect(r.code, r.stderr.join('\n')).toBe(0);
    expect(r.stdout).toBe(`${first.text}\n`);
    expect(r.stderr).toEqual(['note: long.wav is 5.3 s; answered its first 2.0 s window (--windows all answers each)']);
    const j = runCli(['ask', wav, '--model', modelDir, '--prompt', Q, '--max-tokens', '4', '--json']);
    expect(j.code).toBe(0);
    expect(JSON.parse(j.stdout)).toMatchObject({ answer: first.text, duration: 5.25, windows: 3, window: { start: 0, end: 2 } });
    expect(j.stderr).toHaveLength(1);

    const each = await askWindows(model, long, Q, { maxNewTokens: 4 });
    const all = runCli(['ask', wav, '--model', modelDir, '--prompt', Q, '--max-tokens', '4', '--windows', 'all']);
    expect(all.code).toBe(0);
    expect(all.stderr).toEqual([]);
    expect(all.stdout).toBe(`[0.0–2.0 s] ${each[0]!.text}\n[2.0–4.0 s] ${each[1]!.text}\n[4.0–5.3 s] ${each[2]!.text}\n`);
    const allJson = runCli(['ask', wav, '--model', modelDir, '--prompt', Q, '--max-tokens', '4', '--windows', 'all', '--json']);
    expect(allJson.code).toBe(0);
    expect(JSON.parse(allJson.stdout).map((x: any) => [x.start, x.end, x.answer])).toEqual(each.map((x) => [x.window.start, x.window.end, x.text]));

    const bad = runCli(['ask', wav, '--model', modelDir, '--windows', 'some']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toEqual(["error: --windows: expected first or all, got 'some'"]);
  });

  it('a clip of one window: no note', () => {
    const wav = path.join(tmp, 'short.wav');
    writeWav(wav, long.slice(0, 30000));
    const r = runCli(['ask', wav, '--model', modelDir, '--max-tokens', '2']);
    expect(r.code).toBe(0);
    expect(r.stderr).toEqual([]);
  });
});
