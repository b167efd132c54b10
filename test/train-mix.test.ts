// Mixtures made while training (src/train/mix.ts): mixing cached log-mels in the power domain
// against the front end run on the summed waveform, and the mixing plan's rules.
import { describe, expect, it } from 'vitest';
import { logMelRef } from '../reference/logmel.js';
import type { ManifestEntry } from '../src/corpus/manifest.js';
import { NOISE_LIKE, mixable } from '../src/corpus/plan.js';
import { mulberry32 } from '../src/util/random.js';
import { type MelPart, levelJitterDb, melPower, mixMels, mixMelsAtGain, mixedEntry, planMels, planMix, shiftLevel } from '../src/train/mix.js';

const SR = 16000;

/** A tone with a little noise, `seconds` long, then zeros up to `total` seconds. */
function signal(freq: number, amp: number, seconds: number, total: number, seed: number): Float32Array {
  const r = mulberry32(seed);
  const x = new Float32Array(Math.round(total * SR));
  for (let i = 0; i < Math.round(seconds * SR); i++) x[i] = amp * Math.sin((2 * Math.PI * freq * i) / SR) + 0.02 * amp * (r() - 0.5);
  return x;
}

describe('mixMels', () => {
  it('matches the log-mel features of the summed waveform', () => {
    // fg: 0.7 s of a 440 Hz tone; bg: 1.1 s of broadband noise-like chirp content; features cropped
    // to different frame counts, as the training cache stores them
    const total = 1.2;
    const fgWave = signal(440, 0.3, 0.7, total, 1);
    const r = mulberry32(7);
    const bgWave = new Float32Array(Math.round(total * SR));
    for (let i = 0; i < Math.round(1.1 * SR); i++) bgWave[i] = 0.2 * (r() - 0.5) + 0.05 * Math.sin((2 * Math.PI * 3000 * i) / SR);
    const fgFull = logMelRef(fgWave);
    const bgFull = logMelRef(bgWave);
    const framesAll = fgFull.length / 80;
    const crop = (m: Float32Array, frames: number) => {
      const out = new Float32Array(80 * frames);
      for (let b = 0; b < 80; b++) out.set(m.subarray(b * framesAll, b * framesAll + frames), b * frames);
      return out;
    };
    const vFg = 70, vBg = 110; // frames holding sound (100 frames per second)
    const fFg = 73, fBg = framesAll; // what the cache keeps: a few frames after the sound, or all
    const fgPart = { mel: crop(fgFull, fFg), frames: fFg, validFrames: vFg };
    const bgPart = { mel: bgFull, frames: fBg, validFrames: vBg };
    const gamma = 0.8; // bg's waveform gain
    const { mel, frames } = mixMelsAtGain(fgPart, bgPart, 80, gamma * gamma);
    expect(frames).toBe(fBg);
    const ref = logMelRef(fgWave.map((v, i) => v + gamma * bgWave[i]!));
    let sum = 0;
    for (let i = 0; i < mel.length; i++) sum += Math.abs(mel[i]! - ref[i]!);
    // 0.01 feature units = 0.4 dB: the power-domain sum drops the cross terms, and bins the front
    // end floored count at the floor's power
    expect(sum / mel.length).toBeLessThan(0.01);

    // levels follow mel power: scaling bg's waveform does not change the mixture at a given level
    const bgLoud = logMelRef(bgWave.map((v) => 3 * v));
    const m1 = mixMels(fgPart, bgPart, 80, -3).mel;
    const m2 = mixMels(fgPart, { mel: bgLoud, frames: fBg, validFrames: vBg }, 80, -3).mel;
    let d12 = 0;
    for (let i = 0; i < m1.length; i++) d12 = Math.max(d12, Math.abs(m1[i]! - m2[i]!));
    expect(d12).toBeLessThan(1e-3);
    // and the level is the mel-power ratio: at 0 dB bg's frames alone (after fg ends) carry fg's mean power
    const even = mixMels(fgPart, bgPart, 80, 0).mel;
    const tail = (x: Float32Array) => melPower({ mel: x.map((v, i) => ((i % fBg) >= 75 ? v : -10)), frames: fBg, validFrames: fBg }, 80);
    const bgOnlyShare = tail(bgFull) / melPower(bgPart, 80); // the part of bg's power in those frames
    expect(tail(even) / (melPower(fgPart, 80) * bgOnlyShare)).toBeCloseTo(1, 1);

    // and mixing changes something: the result is neither input
    let dFg = 0;
    for (let b = 0; b < 80; b++) for (let t = 0; t < fFg; t++) dFg += Math.abs(mel[b * frames + t]! - fgFull[b * framesAll + t]!);
    expect(dFg / (80 * fFg)).toBeGreaterThan(0.05);
  });

  it('mixes a planned third sound at its level relative to the foreground', () => {
    // the mixture in the power domain, written out: P = P_fg + Σ 10^(L/10)·(P̄_fg / P̄_x)·P_x over the
    // other sounds x (P̄: mean mel power, melPower), floored at its largest log10 P − 8. (Against the
    // summed waveform, two overlapping noises already differ by ~0.03 per feature from their cross
    // terms, which the first test avoids with a tone over noise.)
    const total = 1.0;
    const waves = [signal(440, 0.3, 0.9, total, 1), signal(1300, 0.1, 0.6, total, 2), signal(3100, 0.2, 0.8, total, 3)];
    const parts: MelPart[] = waves.map((w, i) => ({ mel: logMelRef(w), frames: logMelRef(w).length / 80, validFrames: [90, 60, 80][i]! }));
    const plan = { fg: 0, bg: 2, levelDb: -2, third: { clip: 1, levelDb: -5 }, captionSeed: 1 };
    const mix = planMels(plan, parts, 80);
    expect(mix.validFrames).toBe(90);
    expect(mix.frames).toBe(parts[0]!.frames);
    const P = (x: number) => Math.pow(10, 4 * x - 4);
    const gain = (j: number, db: number) => (Math.pow(10, db / 10) * melPower(parts[0]!, 80)) / melPower(parts[j]!, 80);
    const [g2, g1] = [gain(2, -2), gain(1, -5)];
    const logP = parts[0]!.mel.map((v, i) => Math.log10(P(v) + g2 * P(parts[2]!.mel[i]!) + g1 * P(parts[1]!.mel[i]!)));
    const top = logP.reduce((m, v) => Math.max(m, v), -Infinity);
    const ref = logP.map((v) => (Math.max(v, top - 8) + 4) / 4);
    let sum = 0;
    for (let i = 0; i < mix.mel.length; i++) sum += Math.abs(mix.mel[i]! - ref[i]!);
    expect(sum / mix.mel.length).toBeLessThan(1e-3);
    // and the third sound is in it: the two-sound mixture is far from it
    const two = mixMels(parts[0]!, parts[2]!, 80, -2).mel;
    let sum2 = 0;
    for (let i = 0; i < two.length; i++) sum2 += Math.abs(two[i]! - ref[i]!);
    expect(sum2 / two.length).toBeGreaterThan(0.01);
  });

  it('refuses features of the wrong size', () => {
    expect(() => mixMels({ mel: new Float32Array(10), frames: 2, validFrames: 2 }, { mel: new Float32Array(8), frames: 2, validFrames: 2 }, 4, 0)).toThrow(/nMels, frames/);
  });
});

describe('shiftLevel (--level-jitter)', () => {
  it('gives the log-mel features of the waveform played louder or quieter, padding and floor included', () => {
    const x = signal(523, 0.25, 0.8, 1.0, 3); // 0.8 s of sound, then digital silence
    const base = logMelRef(x);
    const frames = base.length / 80;
    for (const db of [-20, -6, 3, 8]) {
      const g = Math.pow(10, db / 20);
      const want = logMelRef(x.map((v) => v * g));
      const got = shiftLevel({ mel: base, frames, validFrames: 80 }, db);
      expect(got.frames).toBe(frames);
      expect(got.validFrames).toBe(80);
      let worst = 0;
      for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got.mel[i]! - want[i]!));
      expect(worst, `${db} dB`).toBeLessThan(1e-4); // f32 log of a scaled power
    }
    // the floor moved with the rest: a shifted silent frame is the shifted clip's own floor
    expect(shiftLevel({ mel: base, frames, validFrames: 80 }, -20).mel[frames - 1]).toBeCloseTo(base[frames - 1]! - 0.5, 6);
  });

  it('draws each slot\'s gain uniformly in [lo, hi], the same for the same (seed, step, slot)', () => {
    const draws: number[] = [];
    for (let step = 0; step < 200; step++) for (let slot = 0; slot < 8; slot++) draws.push(levelJitterDb(5, step, slot, [-24, 6]));
    expect(Math.min(...draws)).toBeGreaterThanOrEqual(-24);
    expect(Math.max(...draws)).toBeLessThan(6);
    const mean = draws.reduce((a, b) => a + b, 0) / draws.length;
    expect(Math.abs(mean - -9)).toBeLessThan(1);
    expect(draws.filter((d) => d < -16.5).length / draws.length).toBeGreaterThan(0.2); // the lowest quarter is used
    expect(levelJitterDb(5, 17, 3, [-24, 6])).toBe(draws[17 * 8 + 3]);
    expect(levelJitterDb(6, 17, 3, [-24, 6])).not.toBe(draws[17 * 8 + 3]);
  });
});

describe('planMix', () => {
  const labels = [['female speech'], ['low tone'], ['mid tone'], ['ticking'], ['male speech'], ['silence'], ['rain', 'ticking'], ['white noise']];

  it('mixes only single-label clips that the corpus would mix, speech or the louder sound first', () => {
    let made = 0;
    for (let step = 0; step < 300; step++) {
      for (let a = 0; a < labels.length; a++) {
        const m = planMix(5, step, a, a, labels, 1);
        if (labels[a]!.length !== 1 || labels[a]![0] === 'silence') {
          expect(m).toBeNull();
          continue;
        }
        if (!m) continue;
        made++;
        expect([m.fg, m.bg]).toContain(a);
        const [fl, bl] = [labels[m.fg]!, labels[m.bg]!];
        expect(fl).toHaveLength(1);
        expect(bl).toHaveLength(1);
        expect(mixable(fl[0]!, bl[0]!)).toBe(true);
        expect(bl[0]).not.toMatch(/speech/);
        expect(m.levelDb).toBeLessThanOrEqual(0);
        expect(m.levelDb).toBeGreaterThanOrEqual(fl[0]!.endsWith('speech') ? -6 : -4);
      }
    }
    expect(made).toBeGreaterThan(1000);
    // seeded: the same slot gives the same plan; the rate is honoured
    expect(planMix(5, 17, 2, 1, labels, 1)).toEqual(planMix(5, 17, 2, 1, labels, 1));
    expect(planMix(5, 17, 2, 1, labels, 0)).toBeNull();
    let some = 0;
    for (let step = 0; step < 1000; step++) if (planMix(9, step, 0, 1, labels, 0.3)) some++;
    expect(some).toBeGreaterThan(240);
    expect(some).toBeLessThan(360);
  });

  it('replays the mixtures it made before MixOptions existed when no option is set', () => {
    // [step, slot clip, fg, bg, levelDb] recorded from planMix at commit 65d76ca (seed 5, rate 0.7)
    const golden = [[0,0,0,7,-0.509385],[0,2,4,2,-0.850242],[0,3,1,3,-0.820453],[0,4,4,2,-1.682353],[0,7,0,7,-2.800148],[1,0,0,7,-4.152886],[1,1,4,1,-0.926644],[1,2,3,2,-2.387099],[1,3,3,1,-2.770991],[2,0,0,2,-3.846455],[2,1,4,1,-3.774592],[2,2,7,2,-3.646359],[2,3,0,3,-1.002073],[2,4,4,3,-4.695127],[2,7,1,7,-0.966486]];
    const got: number[][] = [];
    for (let step = 0; step < 3; step++) {
      for (let a = 0; a < labels.length; a++) {
        const m = planMix(5, step, a, a, labels, 0.7);
        if (m) got.push([step, a, m.fg, m.bg, Number(m.levelDb.toFixed(6))]);
        expect(m?.third).toBeUndefined();
      }
    }
    expect(got).toEqual(golden);
  });

  it('adds a third sound to the asked share, mixable with both, loudest first; noise-like sounds lower at corpus levels', () => {
    const many = [['female speech'], ['low tone'], ['ticking'], ['white noise'], ['alarm'], ['rain'], ['bell'], ['male speech'], ['square buzz'], ['knocking'], ['pink noise']];
    let mixtures = 0, threes = 0;
    const noiseLevels: number[] = [];
    const plainNoiseLevels: number[] = [];
    for (let step = 0; step < 400; step++) {
      for (let a = 0; a < many.length; a++) {
        const m = planMix(11, step, a, a, many, 1, { third: 0.4, corpusLevels: true });
        const plain = planMix(11, step, a, a, many, 1, { third: 0.4 });
        if (!m || !plain) continue;
        mixtures++;
        const ls = [m.fg, m.bg, ...(m.third ? [m.third.clip] : [])].map((i) => many[i]![0]!);
        expect(new Set(ls).size).toBe(ls.length);
        for (let i = 0; i < ls.length; i++) for (let j = i + 1; j < ls.length; j++) expect(mixable(ls[i]!, ls[j]!)).toBe(true);
        expect(ls).toContain(many[a]![0]);
        if (ls.some((l) => l.endsWith('speech'))) expect(ls[0]).toMatch(/speech/);
        if (m.third) {
          threes++;
          expect(m.third.levelDb).toBeLessThanOrEqual(m.levelDb);
        }
        expect(m.levelDb).toBeLessThanOrEqual(0);
        // in sound-only mixtures, a noise-like sound's level against the other sounds
        const speech = ls.some((l) => l.endsWith('speech'));
        const lvOf = (p: NonNullable<typeof m>, i: number) => (i === p.fg ? 0 : i === p.bg ? p.levelDb : p.third!.levelDb);
        const rel = (p: NonNullable<typeof m>, list: number[]) => {
          const n = list.find((i) => NOISE_LIKE.has(many[i]![0]!));
          const o = list.find((i) => !NOISE_LIKE.has(many[i]![0]!));
          return n !== undefined && o !== undefined ? lvOf(p, n) - lvOf(p, o) : null;
        };
        if (!speech && !m.third) {
          const r = rel(m, [m.fg, m.bg]);
          if (r !== null) noiseLevels.push(r);
        }
        if (!speech && !plain.third) {
          const r = rel(plain, [plain.fg, plain.bg]);
          if (r !== null) plainNoiseLevels.push(r);
        }
      }
    }
    expect(threes / mixtures).toBeGreaterThan(0.3);
    expect(threes / mixtures).toBeLessThan(0.5);
    const meanOf = (x: number[]) => x.reduce((p, q) => p + q, 0) / x.length;
    // ±4 dB draws centre on 0; corpus levels pull noise down by 3–8 dB (5.5 on average)
    expect(Math.abs(meanOf(plainNoiseLevels))).toBeLessThan(1);
    expect(meanOf(noiseLevels)).toBeLessThan(-4);
    expect(Math.min(...noiseLevels)).toBeGreaterThanOrEqual(-12);
  });

  it('builds the answer entry: labels foreground first, the speaker\'s gender, a caption naming both', () => {
    const e = (labels: string[], speech: boolean, gender: 'female' | 'male' | null): ManifestEntry => ({
      file: `${labels[0]}.wav`, labels, caption: labels[0]!, gender, speech, split: 'train', augment: [], duration: 2, voice: null, sentence: null, seed: 1,
    });
    const m = mixedEntry([e(['male speech'], true, 'male'), e(['alarm'], false, null)], 3);
    expect(m.labels).toEqual(['male speech', 'alarm']);
    expect(m.speech).toBe(true);
    expect(m.gender).toBe('male');
    expect(m.caption).toMatch(/(man|male)/);
    expect(m.caption).toMatch(/alarm/);
    const s = mixedEntry([e(['bell'], false, null), e(['rain'], false, null)], 4);
    expect(s.labels).toEqual(['bell', 'rain']);
    expect(s.speech).toBe(false);
    expect(s.gender).toBeNull();
    const t = mixedEntry([e(['bell'], false, null), e(['female speech'], true, 'female'), e(['rain'], false, null)], 5);
    expect(t.labels).toEqual(['bell', 'female speech', 'rain']);
    expect(t.gender).toBe('female');
    expect(t.file).toBe('bell.wav+female speech.wav+rain.wav');
  });
});
