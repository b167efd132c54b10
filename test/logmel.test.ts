import { describe, expect, it } from 'vitest';
import * as path from 'node:path';
import { clipFeatures, logMel, windowFeatures } from '../src/audio/logmel.js';
import { logMelRef } from '../reference/logmel.js';
import { openSafetensors } from '../src/io/safetensors.js';
import { expectClose, getEngine, randn } from './helpers.js';

const FIX = path.join(import.meta.dirname, 'fixtures', 'tiny-audiollm', 'fixtures.safetensors');
const TINY_FE = { nMels: 80, nSamples: 32000, hopLength: 160, nFft: 400, samplingRate: 16000 };

function maxAbs(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

describe('GPU log-mel', () => {
  const fx = openSafetensors(FIX);

  it('matches the float64 reference fixtures within 1e-4', async () => {
    const e = await getEngine();
    const audio = fx.readFloat32('audio');
    const tone = fx.readFloat32('tone');
    const a = logMel(e, audio);
    expect(a.shape).toEqual([80, 200]);
    expectClose(await a.read(), fx.readFloat32('logmel_audio'), 0, 1e-4, 'logmel_audio');
    const t = logMel(e, tone);
    expect(t.shape).toEqual([80, 100]);
    expectClose(await t.read(), fx.readFloat32('logmel_tone'), 0, 1e-4, 'logmel_tone');
    const t128 = logMel(e, tone, { nMels: 128 });
    expect(t128.shape).toEqual([128, 100]);
    expectClose(await t128.read(), fx.readFloat32('logmel_tone_128'), 0, 1e-4, 'logmel_tone_128');
    for (const x of [a, t, t128]) x.dispose();
  });

  it('pads a short clip to the model window like Qwen2AudioProcessor', async () => {
    const e = await getEngine();
    const tone = fx.readFloat32('tone');
    const w = windowFeatures(e, tone, TINY_FE);
    expect(w.mel.shape).toEqual([80, 200]);
    expect(w.validFrames).toBe(100);
    const got = await w.mel.read();
    expectClose(got, fx.readFloat32('logmel_tone_padded'), 0, 1e-4, 'logmel_tone_padded');
    // the padded run is not the unpadded one: the last valid frame sees zeros instead of a reflection
    const unpadded = fx.readFloat32('logmel_tone');
    let lastFrameDiff = 0;
    for (let m = 0; m < 80; m++) lastFrameDiff = Math.max(lastFrameDiff, Math.abs(got[m * 200 + 99]! - unpadded[m * 100 + 99]!));
    expect(lastFrameDiff).toBeGreaterThan(0.01);
    w.mel.dispose();
    // a long clip is cut into windows; a clip that fills its window needs no padding
    const audio = fx.readFloat32('audio');
    const two = new Float32Array(32000 + 16000);
    two.set(audio);
    two.set(tone, 32000);
    const ws = clipFeatures(e, two, TINY_FE);
    expect(ws.map((x) => x.validFrames)).toEqual([200, 100]);
    expectClose(await ws[0]!.mel.read(), fx.readFloat32('logmel_audio'), 0, 1e-4, 'window 0');
    expectClose(await ws[1]!.mel.read(), fx.readFloat32('logmel_tone_padded'), 0, 1e-4, 'window 1');
    for (const x of ws) x.mel.dispose();
  });

  it('matches the TypeScript reference on random audio of awkward lengths', async () => {
    const e = await getEngine();
    for (const [n, seed, scale, nMels] of [
      [401, 1, 0.3, 80],
      [4321, 2, 1.0, 128],
      [16007, 3, 0.01, 80],
    ] as const) {
      const x = randn(n, seed, scale);
      const got = logMel(e, x, { nMels });
      expect(got.shape).toEqual([nMels, Math.floor(n / 160)]);
      const want = logMelRef(x, nMels);
      const err = maxAbs(await got.read(), want);
      expect(err, `n=${n}`).toBeLessThan(1e-4);
      got.dispose();
    }
  });

  it('rejects audio too short to reflect-pad and non-finite samples', async () => {
    const e = await getEngine();
    expect(() => logMel(e, new Float32Array(200))).toThrow(/200 samples/);
    const bad = new Float32Array(1000);
    bad[17] = NaN;
    expect(() => logMel(e, bad)).toThrow(/sample 17/);
  });
});
