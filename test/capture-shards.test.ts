// Capture sharded across processes: part I of N takes a contiguous block of the clip list into
// RUN/capture/parts/I-of-N; merge-capture joins the parts into the manifest every stage reads.
// Two part processes run at the same time (one told its index by --shard, the other by a
// Kubernetes-style JOB_COMPLETION_INDEX), and the merge must give bit for bit the rows and manifest
// of one process. Also: the part index from SLURM and Kubernetes variables, a merge that refuses
// unfinished or mismatched parts, and a part that resumes after an interruption.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeWav } from '../src/audio/wav.js';
import { capture, partRange, shardFromFlags } from '../src/ard/capture.js';
import { mergeCapture } from '../src/ard/merge-capture.js';
import { captureShardReader, readCaptureManifest, type CaptureManifest } from '../src/ard/run.js';
import { loadAudioLLM } from '../src/model/load.js';
import type { AudioLLM } from '../src/model/audiollm.js';
import { CLI_BIN, getEngine, ownTimeout, randn, runCli } from './helpers.js';
import { tinyModelDir } from './tiny-model.js';

let tmp: string;
let modelDir: string;
let corpus: string;
let labels: string;

/** The CLI as a separate process, asynchronously (so that two can run at once). */
function cliAsync(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [CLI_BIN, ...args], {
      env: { ...process.env, ARDGPU_FROM_SOURCE: '1', XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? '/tmp', ...env },
    });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (b) => (stdout += b));
    p.stderr.on('data', (b) => (stderr += b));
    p.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** Every row of every captured layer, as stored (f16 or f32 bytes). */
function rowBytes(run: string): Record<string, Buffer> {
  const m = readCaptureManifest(run);
  const rows = m.clips.reduce((a, c) => a + c.rowCount, 0);
  return Object.fromEntries(m.layers.map((l) => [l, Buffer.concat(captureShardReader(run, m, l).rowBytes(0, rows).map((p) => p.bytes))]));
}

/** The manifest without what may differ between one process and merged parts (shard files, time). */
function comparable(m: CaptureManifest) {
  const { shards: _s, createdAt: _c, ...rest } = m;
  return rest;
}

function captureArgs(run: string): string[] {
  return ['capture', '--labels', labels, '--layers', '0,1', '--run', run, '--model', modelDir, '--quiet'];
}

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ardgpu-shards-'));
  modelDir = tinyModelDir();
  corpus = path.join(tmp, 'corpus');
  fs.mkdirSync(corpus, { recursive: true });
  // 7 clips of different lengths, one longer than the tiny model's 2 s window, one broken
  const lengths = [16000, 9000, 48000, 12345, 0, 20000, 7000];
  const rows = ['file,labels,split'];
  lengths.forEach((n, i) => {
    const file = `c${i}.wav`;
    if (n === 0) fs.writeFileSync(path.join(corpus, file), 'RIFF....WAVEjunk');
    else writeWav(path.join(corpus, file), randn(n, 30 + i, 0.2));
    rows.push(`${file},${i % 2 ? 'noise' : 'tone'},${i % 3 ? 'train' : 'test'}`);
  });
  labels = path.join(corpus, 'labels.csv');
  fs.writeFileSync(labels, rows.join('\n') + '\n');
});

afterAll(() => {
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  if (modelDir) fs.rmSync(modelDir, { recursive: true, force: true });
});

describe('sharded capture', () => {
  it('takes the part index from --shard, JOB_COMPLETION_INDEX or a SLURM array task; refuses what does not fit', () => {
    expect(shardFromFlags(undefined, undefined, {})).toBeUndefined();
    expect(shardFromFlags('2/5', undefined, {})).toEqual({ index: 2, count: 5 });
    expect(shardFromFlags(undefined, 4, { JOB_COMPLETION_INDEX: '3' })).toEqual({ index: 3, count: 4 });
    expect(shardFromFlags(undefined, '4', { SLURM_ARRAY_TASK_ID: '2' })).toEqual({ index: 2, count: 4 });
    // an array 1-8 (SLURM_ARRAY_TASK_MIN 1), and one with a step (0-14:2)
    expect(shardFromFlags(undefined, 8, { SLURM_ARRAY_TASK_ID: '8', SLURM_ARRAY_TASK_MIN: '1', SLURM_ARRAY_TASK_COUNT: '8' })).toEqual({ index: 7, count: 8 });
    expect(shardFromFlags(undefined, 8, { SLURM_ARRAY_TASK_ID: '6', SLURM_ARRAY_TASK_MIN: '0', SLURM_ARRAY_TASK_STEP: '2' })).toEqual({ index: 3, count: 8 });
    expect(() => shardFromFlags('4/4', undefined, {})).toThrow(/I must be 0 … N-1/);
    expect(() => shardFromFlags('1-4', undefined, {})).toThrow(/expected I\/N/);
    expect(() => shardFromFlags('0/2', 2, {})).toThrow(/not both/);
    expect(() => shardFromFlags(undefined, 4, {})).toThrow(/no part index in the environment/);
    expect(() => shardFromFlags(undefined, 4, { SLURM_ARRAY_TASK_ID: '3', SLURM_ARRAY_TASK_COUNT: '6' })).toThrow(/6 tasks/);
    expect(() => shardFromFlags(undefined, 4, { JOB_COMPLETION_INDEX: '4' })).toThrow(/beyond 3/);
    // the parts cover every clip once, in order, sizes within one
    for (const [total, n] of [[7, 2], [7, 3], [2, 5], [100, 7]] as const) {
      const ranges = Array.from({ length: n }, (_, i) => partRange(total, i, n));
      expect(ranges[0]!.start).toBe(0);
      expect(ranges[n - 1]!.end).toBe(total);
      for (let i = 1; i < n; i++) expect(ranges[i]!.start).toBe(ranges[i - 1]!.end);
      const sizes = ranges.map((r) => r.end - r.start);
      expect(Math.max(...sizes) - Math.min(...sizes)).toBeLessThanOrEqual(1);
    }
  });

  it('two part processes at the same time, merged, give bit for bit the rows and manifest of one process', async () => {
    const ref = path.join(tmp, 'run-one');
    const one = runCli(captureArgs(ref));
    expect(one.code, one.stderr.join('\n')).toBe(0);

    const run = path.join(tmp, 'run-two');
    const [a, b] = await Promise.all([
      cliAsync([...captureArgs(run), '--shard', '0/2']),
      cliAsync([...captureArgs(run), '--shards', '2'], { JOB_COMPLETION_INDEX: '1' }),
    ]);
    expect(a.code, a.stderr).toBe(0);
    expect(b.code, b.stderr).toBe(0);
    expect(a.stdout).toMatch(/part 0 of 2: clips 0–2 of 7; when every part is done: ardgpu merge-capture/);
    expect(b.stdout).toMatch(/part 1 of 2: clips 3–6 of 7/);
    expect(fs.existsSync(path.join(run, 'capture', 'manifest.json'))).toBe(false);
    for (const p of ['0-of-2', '1-of-2']) expect(fs.existsSync(path.join(run, 'capture', 'parts', p, 'manifest.json'))).toBe(true);

    const merged = runCli(['merge-capture', '--run', run]);
    expect(merged.code, merged.stderr.join('\n')).toBe(0);
    expect(merged.stdout).toMatch(/merge-capture: 2 parts, 6 clips, \d+ rows → .*manifest\.json \(1 bad clips skipped\)/);

    const mRef = readCaptureManifest(ref);
    const m = readCaptureManifest(run);
    expect(comparable(m)).toEqual(comparable(mRef));
    expect(m.clips.some((c) => c.windows && c.windows.length === 2)).toBe(true); // the long clip's windows moved too
    expect(m.shards['0']!.map((s) => s.file)).toEqual(['parts/0-of-2/layer-0/shard-00000.safetensors', 'parts/1-of-2/layer-0/shard-00000.safetensors']);
    const want = rowBytes(ref);
    const got = rowBytes(run);
    expect(Object.keys(got)).toEqual(['0', '1']);
    for (const l of ['0', '1']) {
      expect(got[l]!.length).toBe(want[l]!.length);
      expect(got[l]!.equals(want[l]!)).toBe(true);
    }

    // merging again changes nothing; a one-process capture with the same options finds it up to date
    const before = fs.readFileSync(path.join(run, 'capture', 'manifest.json'));
    expect(runCli(['merge-capture', '--run', run]).stdout).toMatch(/\(unchanged\)/);
    expect(fs.readFileSync(path.join(run, 'capture', 'manifest.json')).equals(before)).toBe(true);
    const again = runCli(captureArgs(run));
    expect(again.code).toBe(0);
    expect(again.stdout).toMatch(/capture: unchanged/);
  }, ownTimeout(300_000));

  it('a merge refuses unfinished and mismatched parts; an interrupted part resumes', async () => {
    const engine = await getEngine();
    const model: AudioLLM = await loadAudioLLM(engine, modelDir);
    try {
      const run = path.join(tmp, 'run-three');
      const base = { model, corpus, corpusOptions: { labels }, run, layers: [0, 1], shardRows: 30 };
      const r0 = await capture({ ...base, shard: { index: 0, count: 3 } });
      expect(r0.part).toEqual({ index: 0, count: 3, clipStart: 0, clipEnd: 2, totalClips: 7 });
      expect((await capture({ ...base, shard: { index: 0, count: 3 } })).skipped).toBe(true);
      // part 1 dies after its first clip: merge names it as under way, part 2 as not started
      await expect(
        capture({ ...base, shard: { index: 1, count: 3 }, onProgress: (done) => { if (done >= 1) throw new Error('interrupted'); } }),
      ).rejects.toThrow('interrupted');
      expect(() => mergeCapture({ run })).toThrow(/2 of 3 parts not finished: 1 \(under way\), 2 \(run capture --shard I\/3/);
      const resumed = await capture({ ...base, shard: { index: 1, count: 3 } });
      expect(resumed.skipped).toBe(false);
      await capture({ ...base, shard: { index: 2, count: 3 } });
      const r = mergeCapture({ run });
      expect(r).toMatchObject({ parts: 3, clips: 6, skipped: false });
      // the same rows and manifest as one process with the same engine and options
      const ref = path.join(tmp, 'run-three-one');
      await capture({ ...base, run: ref });
      expect(comparable(readCaptureManifest(run))).toEqual(comparable(readCaptureManifest(ref)));
      const want = rowBytes(ref);
      const got = rowBytes(run);
      for (const l of ['0', '1']) expect(got[l]!.equals(want[l]!)).toBe(true);

      // parts of two different shardings: the merge must be told which
      await capture({ ...base, shard: { index: 0, count: 2 } });
      expect(() => mergeCapture({ run })).toThrow(/parts of 2 and 3-way captures are both there; choose one with --shards N/);
      expect(() => mergeCapture({ run, shards: 2 })).toThrow(/1 of 2 parts not finished: 1/);
      // a part captured with other options does not join the others
      await capture({ ...base, layers: [0], shard: { index: 1, count: 2 } });
      expect(() => mergeCapture({ run, shards: 2 })).toThrow(/its 'layers' differs from part 0's/);
      expect(runCli(['merge-capture', '--run', path.join(tmp, 'nothing')]).stderr).toEqual([expect.stringMatching(/^error: .*parts: no capture parts \(run capture with --shard I\/N/)]);
    } finally {
      model.dispose();
    }
  }, ownTimeout(200_000));
});
