// explain and steer --windows all from the CLI on a clip longer than the model's window (the tiny
// fixture's 2 s): explain's timeline covers the whole clip, steer sweeps each window with its time
// range, and without --windows all steer notes on stderr that it took the first window only.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeWav } from '../src/audio/wav.js';
import { getEngine, ownTimeout, runCli } from './helpers.js';
import { fixtureClip, LAYER, makeServeRun, NAMED } from './serve-fixture.js';
import { tinyModelDir } from './tiny-model.js';

let run: string;
let modelDir: string;
let tmp: string;
let longWav: string;

beforeAll(async () => {
  run = await makeServeRun(await getEngine());
  modelDir = tinyModelDir();
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ardgpu-windows-cli-'));
  longWav = path.join(tmp, 'long.wav');
  writeWav(longWav, fixtureClip(3, 5.25), 16000); // 2 + 2 + 1.25 s windows
});

afterAll(() => {
  for (const d of [run, modelDir, tmp]) if (d) fs.rmSync(d, { recursive: true, force: true });
});

describe('long clips through the CLI', () => {
  it('explain: the timeline runs over the whole clip, features firing past the first window', () => {
    const r = runCli(['explain', longWav, '--run', run, '--layer', String(LAYER), '--model', modelDir, '--json']);
    expect(r.code, r.stderr.join('\n')).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.duration).toBeCloseTo(5.25, 1);
    const ends = j.features.flatMap((f: { segments: { end: number }[] }) => f.segments.map((s) => s.end));
    expect(Math.max(...ends)).toBeGreaterThan(4); // rows of the third window are explained too
    expect(j.features.map((f: { feature: number }) => f.feature)).toEqual(expect.arrayContaining(NAMED));
  }, ownTimeout(240_000));

  it('steer --windows all: one sweep per window with its time range; the default notes the first window', () => {
    const args = ['steer', longWav, '--run', run, '--layer', String(LAYER), '--model', modelDir, '--feature', String(NAMED[0]), '--values', '0,6', '--prompt', 'What is it?', '--max-tokens', '4'];
    const all = runCli([...args, '--windows', 'all', '--json']);
    expect(all.code, all.stderr.join('\n')).toBe(0);
    const sweeps = JSON.parse(all.stdout);
    expect(sweeps.map((s: { window: { index: number; start: number; end: number } }) => [s.window.index, s.window.start, s.window.end])).toEqual([[0, 0, 2], [1, 2, 4], [2, 4, 5.25]]);
    for (const s of sweeps) expect(s.values.map((v: { value: number }) => v.value)).toEqual([0, 6]);
    expect(all.stderr).toEqual([]);
    const first = runCli([...args, '--json']);
    expect(first.code).toBe(0);
    const one = JSON.parse(first.stdout);
    expect(one.window.index).toBe(0);
    // the first window's sweep is the same whether asked alone or among all
    expect(one.values).toEqual(sweeps[0].values);
    expect(first.stderr.join('\n')).toMatch(/long\.wav is 5\.\d s; steered its first 2\.0 s window \(--windows all steers each\)/);
  }, ownTimeout(240_000));
});
