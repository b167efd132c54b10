// The varied corpus version 5: voice qualities (espeak-ng's roughness, flutter, breath, voicing and
// tone, appended to a copy of the variant's file) on 70 % of speech, drawn alike for both genders;
// version 6: the variant's formant envelope reshaped on 80 % of speech; version 7: 30 % of voices
// warped towards the other gender's vocal tract, pitch kept in their own gender's range.
// The plan checks need no audio; the renders need espeak-ng (and, for a whole version-5 corpus,
// version 4's fluidsynth, timgm6mb-soundfont and deepin-sound-theme, which CI installs).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { F0_RANGE, formantLines, qualityLines, qualityTag, speak, type VoiceQuality } from '../src/corpus/espeak.js';
import { makeCorpus } from '../src/corpus/make-corpus.js';
import { readManifest } from '../src/corpus/manifest.js';
import { CONFLICT_SHARE, CONFLICT_WARP, FORMANT_JITTER, FORMANT_SHARE, planCorpus, QUALITY_SHARE } from '../src/corpus/plan.js';
import { ownTimeout } from './helpers.js';

/** Median F0 (Hz) of the loud frames: the lag of the autocorrelation peak between 60 and 400 Hz. */
function medianF0(x: Float32Array, sr = 16000): number {
  const n = Math.round(0.04 * sr);
  const frames: Float32Array[] = [];
  for (let i = 0; i + n <= x.length; i += n / 2) frames.push(x.subarray(i, i + n));
  const rms = frames.map((f) => Math.sqrt(f.reduce((a, v) => a + v * v, 0) / n));
  const top = Math.max(...rms);
  const f0s: number[] = [];
  frames.forEach((f, k) => {
    if (rms[k]! < 0.3 * top) return;
    let best = 0, bestLag = 0;
    for (let lag = Math.floor(sr / 400); lag <= Math.ceil(sr / 60); lag++) {
      let s = 0, e0 = 0, e1 = 0;
      for (let i = 0; i + lag < n; i++) {
        s += f[i]! * f[i + lag]!;
        e0 += f[i]! * f[i]!;
        e1 += f[i + lag]! * f[i + lag]!;
      }
      const r = s / Math.sqrt(e0 * e1 + 1e-12);
      if (r > best) [best, bestLag] = [r, lag];
    }
    if (best > 0.5) f0s.push(sr / bestLag);
  });
  f0s.sort((a, b) => a - b);
  return f0s[f0s.length >> 1]!;
}

describe('varied corpus version 5 plan', () => {
  const plan4 = planCorpus(0, 2000, { variety: 4 });
  const plan5 = planCorpus(0, 2000, { variety: 5 });

  it('gives a share of speech a voice quality, alike for both genders; every other draw is version 4\'s', () => {
    const speech = plan5.clips.filter((c) => c.speech);
    const withQ = speech.filter((c) => c.speech!.quality);
    expect(withQ.length / speech.length).toBeGreaterThan(QUALITY_SHARE - 0.08);
    expect(withQ.length / speech.length).toBeLessThan(QUALITY_SHARE + 0.08);
    const byGender = (g: string) => withQ.filter((c) => c.speech!.gender === g).map((c) => c.speech!.quality!);
    const mean = (qs: VoiceQuality[], f: (q: VoiceQuality) => number) => qs.reduce((a, q) => a + f(q), 0) / qs.length;
    for (const f of [(q: VoiceQuality) => q.roughness, (q: VoiceQuality) => q.flutter / 4, (q: VoiceQuality) => (q.breath ? 5 : 0)]) {
      expect(Math.abs(mean(byGender('female'), f) - mean(byGender('male'), f))).toBeLessThan(0.6);
    }
    let same = 0;
    for (const c of plan5.clips) {
      const c4 = plan4.clips[c.index]!;
      expect(c.labels).toEqual(c4.labels);
      expect(c.layers).toEqual(c4.layers);
      expect(c.augment).toEqual(c4.augment);
      expect(c.speech ? { ...c.speech, quality: undefined } : null).toEqual(c4.speech ? { ...c4.speech, quality: undefined } : null);
      if (c.speech?.quality) expect(c.file).not.toBe(c4.file);
      else {
        expect(c.file).toBe(c4.file);
        same++;
      }
    }
    expect(same).toBeGreaterThan(plan5.clips.length - speech.length);
    for (const v of [undefined, 1, 2, 3, 4] as const) expect(planCorpus(0, 500, { variety: v }).clips.some((c) => c.speech?.quality)).toBe(false);
  });
});

describe('varied corpus version 6 plan', () => {
  const plan5 = planCorpus(0, 2000, { variety: 5 });
  const plan6 = planCorpus(0, 2000, { variety: 6 });

  it('reshapes the formant envelope of a share of speech, alike for both genders; every other draw is version 5\'s', () => {
    const speech = plan6.clips.filter((c) => c.speech);
    const withF = speech.filter((c) => c.speech!.quality?.formants);
    expect(withF.length / speech.length).toBeGreaterThan(FORMANT_SHARE - 0.06);
    expect(withF.length / speech.length).toBeLessThan(FORMANT_SHARE + 0.06);
    for (const c of withF) {
      const f = c.speech!.quality!.formants!;
      expect(f).toHaveLength(8);
      for (const [i, [fr, h, w]] of f.entries()) {
        const range = i < 2 ? FORMANT_JITTER.freqLow : FORMANT_JITTER.freqHigh;
        expect(fr).toBeGreaterThanOrEqual(range[0]);
        expect(fr).toBeLessThanOrEqual(range[1]);
        expect(h).toBeGreaterThanOrEqual(FORMANT_JITTER.height[0]);
        expect(h).toBeLessThanOrEqual(FORMANT_JITTER.height[1]);
        expect(w).toBeGreaterThanOrEqual(FORMANT_JITTER.width[0]);
        expect(w).toBeLessThanOrEqual(FORMANT_JITTER.width[1]);
      }
    }
    // the mean log frequency change of F1–F4 is the same for both genders (no new cue of gender)
    const meanShift = (g: string) => {
      const xs = withF.filter((c) => c.speech!.gender === g).map((c) => c.speech!.quality!.formants!.slice(0, 4).reduce((a, [fr]) => a + Math.log(fr / 100), 0) / 4);
      return xs.reduce((a, x) => a + x, 0) / xs.length;
    };
    expect(Math.abs(meanShift('female') - meanShift('male'))).toBeLessThan(0.02);
    let same = 0;
    for (const c of plan6.clips) {
      const c5 = plan5.clips[c.index]!;
      expect(c.labels).toEqual(c5.labels);
      expect(c.layers).toEqual(c5.layers);
      expect(c.augment).toEqual(c5.augment);
      const { formants, ...rest } = c.speech?.quality ?? {};
      // without the envelope, the speech is version 5's (its quality too, or none)
      expect(c.speech ? { ...c.speech, quality: Object.keys(rest).length ? rest : undefined } : null).toEqual(c5.speech);
      if (formants) expect(c.file).not.toBe(c5.file);
      else {
        expect(c.file).toBe(c5.file);
        same++;
      }
    }
    expect(same).toBeGreaterThan(plan6.clips.length - speech.length);
    for (const v of [undefined, 1, 2, 3, 4, 5] as const) expect(planCorpus(0, 500, { variety: v }).clips.some((c) => c.speech?.quality?.formants)).toBe(false);
  });
});

describe('varied corpus version 7 plan', () => {
  it('warps a share of voices towards the other gender, pitch in their own range; every other draw is version 6\'s', () => {
    const plan6 = planCorpus(0, 2000, { variety: 6 });
    const plan7 = planCorpus(0, 2000, { variety: 7 });
    const speech = plan7.clips.filter((c) => c.speech);
    let moved = 0;
    const movedBy = { female: 0, male: 0 };
    for (const c of plan7.clips) {
      const c6 = plan6.clips[c.index]!;
      expect(c.labels).toEqual(c6.labels);
      expect(c.layers).toEqual(c6.layers);
      expect(c.augment).toEqual(c6.augment);
      if (!c.speech) continue;
      const { voice, pitch, warp, f0, ...rest } = c.speech;
      const { voice: v6, pitch: p6, warp: w6, f0: f6, ...rest6 } = c6.speech!;
      expect(rest).toEqual(rest6); // gender, language, sentence, speed, quality
      if (voice === v6 && pitch === p6 && warp === w6 && f0 === f6) {
        expect(c.file).toBe(c6.file);
        continue;
      }
      moved++;
      const g = c.speech.gender;
      movedBy[g]++;
      expect(plan7.voices[c.split][g]).toContain(voice); // a variant of its own gender, held out as before
      expect(warp!).toBeGreaterThanOrEqual(CONFLICT_WARP[g][0]);
      expect(warp!).toBeLessThanOrEqual(CONFLICT_WARP[g][1]);
      expect(f0!).toBeGreaterThanOrEqual(F0_RANGE[g][0]);
      expect(f0!).toBeLessThanOrEqual(F0_RANGE[g][1]);
      expect(c.file).not.toBe(c6.file);
    }
    expect(moved / speech.length).toBeGreaterThan(CONFLICT_SHARE - 0.07);
    expect(moved / speech.length).toBeLessThan(CONFLICT_SHARE + 0.05);
    expect(movedBy.female).toBeGreaterThan(0.4 * moved);
    expect(movedBy.male).toBeGreaterThan(0.4 * moved);
  });
});

describe('voice qualities (espeak.ts)', () => {
  const q: VoiceQuality = { roughness: 5, flutter: 20, breath: [20, 15, 10, 5, 0, 0, 0, 0], voicing: 80, tone: [400, 200, 1200, 100, 3000, 60, 4500, 30] };

  it('writes espeak-ng voice-file lines and a manifest tag', () => {
    expect(qualityLines(q)).toEqual(['roughness 5', 'flutter 20', 'breath 20 15 10 5 0 0 0 0', 'voicing 80', 'tone 400 200 1200 100 3000 60 4500 30']);
    expect(qualityLines({ roughness: 0, flutter: 3 })).toEqual(['roughness 0', 'flutter 3']);
    expect(qualityTag(q)).toBe('quality:r5,f20,b20-15-10-5-0-0-0-0,v80,t400-200-1200-100-3000-60-4500-30');
    expect(qualityTag({ roughness: 2, flutter: 0 })).toBe('quality:r2,f0');
  });

  it('reshapes the variant\'s own formant lines (a formant left out is 100 100 100; freqadd kept)', () => {
    const own = 'name x\nformant 1 50 100 80 95\nformant 2  90 60 90\n// formant 3 1 1 1\n';
    expect(formantLines(own, [[110, 50, 150], [100, 100, 100], [90, 120, 60]])).toEqual(['formant 1 55 50 120 95', 'formant 2 90 60 90', 'formant 3 90 120 60']);
    const f: VoiceQuality = { formants: [[110, 50, 150], [95, 100, 100]] };
    expect(qualityLines(f)).toEqual([]);
    expect(qualityTag(f)).toBe('quality:F110/50/150-95/100/100');
    expect(qualityTag({ ...q, formants: [[100, 90, 80]] })).toBe('quality:r5,f20,b20-15-10-5-0-0-0-0,v80,t400-200-1200-100-3000-60-4500-30,F100/90/80');
  });

  it('changes the voice, not its pitch; the same quality gives the same samples', async () => {
    const req = { voice: 'en+m3', text: 'the quick brown fox jumps over the lazy dog', speed: 160, pitch: 50 };
    const plain = (await speak(req, 0.5, 8)).samples;
    const a = (await speak({ ...req, quality: q }, 0.5, 8)).samples;
    const b = (await speak({ ...req, quality: q }, 0.5, 8)).samples;
    expect(b).toEqual(a);
    const other = (await speak({ ...req, quality: { roughness: 0, flutter: 0 } }, 0.5, 8)).samples;
    expect(other).not.toEqual(a);
    expect(a.length).not.toBe(0);
    // another sound, same words (length within 10 %) and same median F0 (within 12 %)
    expect(Math.abs(a.length / plain.length - 1)).toBeLessThan(0.1);
    const f0 = medianF0(plain);
    expect(f0).toBeGreaterThan(70);
    expect(Math.abs(medianF0(a) / f0 - 1)).toBeLessThan(0.12);
    // variants are found whatever their case, as espeak-ng finds them ('Rob' is the file 'rob')
    expect((await speak({ ...req, voice: 'de+Rob', quality: q }, 0.5, 8)).samples.length).toBeGreaterThan(8000);
    // a reshaped envelope: another sound, same length and pitch
    const env: VoiceQuality = { formants: [[112, 60, 170], [88, 150, 60], [110, 100, 100], [95, 70, 140], [100, 100, 100], [100, 100, 100], [100, 100, 100], [100, 100, 100]] };
    const e = (await speak({ ...req, quality: env }, 0.5, 8)).samples;
    expect(e).not.toEqual(plain);
    expect(Math.abs(e.length / plain.length - 1)).toBeLessThan(0.1);
    expect(Math.abs(medianF0(e) / f0 - 1)).toBeLessThan(0.12);
    await expect(speak({ ...req, voice: 'en', quality: q }, 0.5, 8)).rejects.toThrow(/a voice quality needs a variant/);
    await expect(speak({ ...req, voice: 'en+nosuchvariant', quality: q }, 0.5, 8)).rejects.toThrow(/no variant file 'nosuchvariant'/);
  }, ownTimeout(60_000));

  it('leaves no variant file behind: espeak-ng lists at most 349 voices, and Debian\'s already has over 300', async () => {
    const qs = Array.from({ length: 64 }, (_, i) => ({ roughness: i % 6, flutter: i % 21 }));
    for (let i = 0; i < qs.length; i += 8) {
      const rs = await Promise.all(qs.slice(i, i + 8).map((quality) => speak({ voice: 'en+f2', text: 'hi', speed: 200, pitch: 50, quality }, 0.2, 2)));
      for (const r of rs) expect(r.samples.length).toBeGreaterThan(1000);
    }
  }, ownTimeout(180_000));

  it('make-corpus --variety 5 lists each clip\'s quality with its augmentations', async () => {
    const out = fs.mkdtempSync(path.join(os.tmpdir(), 'ardgpu-v5-'));
    try {
      await makeCorpus({ out, seed: 3, size: 30, variety: 5 });
      const entries = readManifest(out);
      const tagged = entries.filter((e) => e.augment.some((t) => t.startsWith('quality:')));
      expect(tagged.length).toBeGreaterThan(0);
      for (const e of tagged) {
        expect(e.speech).toBe(true);
        expect(e.voice).toMatch(/^[a-z-]+\+[A-Za-z0-9]+$/); // the variant it was made from, not the private copy's name
      }
      expect(JSON.parse(fs.readFileSync(path.join(out, 'corpus.json'), 'utf8')).variety).toBe(5);
    } finally {
      fs.rmSync(out, { recursive: true, force: true });
    }
  }, ownTimeout(180_000));
});
