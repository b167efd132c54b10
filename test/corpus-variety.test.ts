// The varied corpus (make-corpus --variety): gender set by a target F0 and a vocal-tract warp (the
// same variant may render either gender), single words, short sounds, band limits and clipping; the
// default corpus's voice splits kept, so its val/test voices stay unheard. Plan checks need no audio;
// one small render checks that a warped voice lands on its planned F0.
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCli, strongestHz } from './helpers.js';
import { applyAugment, MAX_PEAK, REF_PEAK } from '../src/corpus/augment.js';
import { F0_RANGE, VTL_WARP } from '../src/corpus/espeak.js';
import { CROSS_GENDER_SHARE, planCorpus, SINGLE_WORD_SHARE, splitVoices, VARIED_STYLE_SHARE, voiceSpeaker, voiceVariant } from '../src/corpus/plan.js';
import { buzzMelody, chime, music } from '../src/corpus/music.js';
import { VARIED_GENERATORS, synthesize } from '../src/corpus/synth.js';
import { Rng } from '../src/corpus/rng.js';
import { pitchFor, voiceF0 } from '../src/corpus/voice-pitch.js';
import { PITCH_POINTS, VOICE_F0 } from '../src/corpus/voice-pitch.table.js';
import { FEMALE_VARIANTS } from '../src/corpus/espeak.js';

describe('varied corpus plan', () => {
  const plan = planCorpus(0, 2000, { variety: true });
  const speech = plan.clips.filter((c) => c.speech);

  it('aims every voice inside its gender F0 range, through the measured pitch table and the warp', () => {
    expect(speech.length).toBeGreaterThan(500);
    for (const c of speech) {
      const s = c.speech!;
      const [lo, hi] = F0_RANGE[c.gender!];
      expect(s.f0 ?? (lo + hi) / 2, c.file).toBeGreaterThanOrEqual(lo);
      expect(s.f0 ?? lo, c.file).toBeLessThanOrEqual(hi);
      if (s.f0) expect(Math.abs(voiceF0(voiceVariant(s.voice), s.pitch) * s.warp! - s.f0)).toBeLessThan(1);
      expect(s.warp).toBeGreaterThanOrEqual(0.82);
      expect(s.warp).toBeLessThanOrEqual(1.22);
    }
  });

  const plan2 = planCorpus(0, 2000, { variety: 2 });
  it('renders a quarter of each gender (version 2: half the women) from the other gender\'s variants, warped across', () => {
    const female = new Set<string>([...FEMALE_VARIANTS, 'grandma']);
    for (const [version, p] of [[1, plan], [2, plan2]] as const) for (const g of ['female', 'male'] as const) {
      const CROSS = CROSS_GENDER_SHARE[version];
      const mine = p.clips.filter((c) => c.speech && c.gender === g);
      const cross = mine.filter((c) => female.has(voiceVariant(c.speech!.voice)) !== (g === 'female'));
      // the share is drawn per clip, and a draw out of the variant's F0 reach falls back to own variants
      expect(cross.length / mine.length, `${g} v${version}`).toBeGreaterThan(CROSS[g] - 0.12);
      expect(cross.length / mine.length, `${g} v${version}`).toBeLessThan(CROSS[g] + 0.1);
      for (const c of cross) {
        if (g === 'female') expect(c.speech!.warp).toBeGreaterThanOrEqual(1.12);
        else expect(c.speech!.warp).toBeLessThanOrEqual(0.9);
      }
      // within a gender's own variants the warp stays in its range
      for (const c of mine.filter((x) => !cross.includes(x)).filter((x) => x.speech!.f0)) {
        expect(c.speech!.warp).toBeGreaterThanOrEqual(VTL_WARP[g][0]);
        expect(c.speech!.warp).toBeLessThanOrEqual(VTL_WARP[g][1]);
      }
    }
  });

  it('version 2 renders chords, bells and buzzes as music, chimes and melodies in a share of their layers; nothing else does', () => {
    const layers = plan2.clips.flatMap((c) => c.layers);
    const eligible = layers.filter((l) => VARIED_GENERATORS[l.concept] !== undefined);
    const styled = layers.filter((l) => l.style === 'varied');
    expect(eligible.length).toBeGreaterThan(200);
    for (const l of styled) expect(VARIED_GENERATORS[l.concept], l.concept).toBeDefined();
    expect(styled.length / eligible.length).toBeGreaterThan(VARIED_STYLE_SHARE - 0.08);
    expect(styled.length / eligible.length).toBeLessThan(VARIED_STYLE_SHARE + 0.08);
    expect(planCorpus(0, 2000).clips.flatMap((c) => c.layers).some((l) => l.style !== undefined)).toBe(false);
    expect(plan.clips.flatMap((c) => c.layers).some((l) => l.style !== undefined)).toBe(false);
    // version 2 changes only speech (its sentence draws depend on every earlier voice) and styled layers:
    // other clips are version 1's
    const same = plan2.clips.filter((c) => !c.layers.some((l) => l.style) && !c.speech);
    expect(same.length).toBeGreaterThan(500);
    for (const c of same) expect(c.file).toBe(plan.clips[c.index]!.file);
  });

  it('has single words (at most 1.2 s) among single speech clips, and short sounds', () => {
    const single = speech.filter((c) => c.labels.length === 1);
    const short = single.filter((c) => c.speech!.short);
    expect(short.length / single.length).toBeGreaterThan(0.25);
    expect(short.length / single.length).toBeLessThan(0.45);
    for (const c of short) {
      expect(c.speech!.sentence.split(' ').length).toBe(1);
      expect(c.maxCore).toBeLessThanOrEqual(1.2);
    }
    const shortSounds = plan.clips.filter((c) => !c.speech && c.duration! < 1);
    expect(shortSounds.length).toBeGreaterThan(100);
    for (const c of shortSounds) expect(c.duration).toBeGreaterThanOrEqual(0.25);
  });

  it('version 3 is version 2 with more single words: nothing but the word-or-sentence draw changes', () => {
    const plan3 = planCorpus(0, 2000, { variety: 3 });
    const shareOf = (p: typeof plan) => {
      const single = p.clips.filter((c) => c.speech && c.labels.length === 1);
      return single.filter((c) => c.speech!.short).length / single.length;
    };
    expect(shareOf(plan2)).toBeLessThan(SINGLE_WORD_SHARE[2] + 0.1);
    expect(shareOf(plan3)).toBeGreaterThan(SINGLE_WORD_SHARE[3] - 0.1);
    expect(shareOf(plan3)).toBeLessThan(SINGLE_WORD_SHARE[3] + 0.1);
    let changed = 0;
    for (const c of plan3.clips) {
      const c2 = plan2.clips[c.index]!;
      expect(c.labels).toEqual(c2.labels);
      expect(c.layers).toEqual(c2.layers);
      expect(c.augment).toEqual(c2.augment);
      if (!c.speech) expect(c.file).toBe(c2.file);
      else {
        // same speaker, pitch and warp; a sentence may become a word (and later sentence draws move)
        expect({ ...c.speech, sentence: '', short: undefined }).toEqual({ ...c2.speech!, sentence: '', short: undefined });
        if (c.file !== c2.file) changed++;
      }
    }
    expect(changed).toBeGreaterThan(20);
  });

  it('augments most clips, with band limits and clipping among them', () => {
    const aug = plan.clips.filter((c) => Object.keys(c.augment).length > 0);
    expect(aug.length / plan.clips.length).toBeGreaterThan(0.6);
    expect(plan.clips.filter((c) => c.augment.lowpass).length).toBeGreaterThan(100);
    expect(plan.clips.filter((c) => c.augment.clip).length).toBeGreaterThan(50);
    expect(plan.clips.filter((c) => c.augment.gainDb !== undefined && c.augment.gainDb < -20).length).toBeGreaterThan(20);
  });

  it("keeps the default corpus's voice splits and holds out further variants and accents whole", () => {
    const base = splitVoices(0);
    const varied = splitVoices(0, true);
    const splitOf = new Map<string, string>();
    for (const s of ['train', 'val', 'test'] as const) {
      for (const g of ['female', 'male'] as const) {
        for (const v of base[s][g]) expect(varied[s][g].map((x) => x.id)).toContain(v.id);
        for (const v of varied[s][g]) {
          const speaker = voiceSpeaker(v.id);
          const accent = v.id.split('+')[0]!;
          for (const key of [`variant:${speaker}`, ...(accent.includes('-') && !['en-us'].includes(accent) ? [`accent:${accent}`] : [])]) {
            expect(splitOf.get(key) ?? s, key).toBe(s);
            splitOf.set(key, s);
          }
        }
      }
    }
    for (const c of speech) expect(splitOf.get(`variant:${voiceSpeaker(c.speech!.voice)}`)).toBe(c.split);
    // the default plan is untouched by the option
    expect(planCorpus(0, 300).clips.every((c) => c.speech?.warp === undefined && !c.augment.lowpass)).toBe(true);
  });
});

describe('voice pitch table', () => {
  it('rises with -p for every variant, and pitchFor inverts voiceF0 to the nearest step', () => {
    for (const [v, f] of Object.entries(VOICE_F0)) {
      expect(f.length, v).toBe(PITCH_POINTS.length);
      for (let i = 1; i < f.length; i++) expect(f[i]!, v).toBeGreaterThan(f[i - 1]!);
      for (const p of [0, 13, 50, 77, 99]) expect(Math.abs(pitchFor(v, voiceF0(v, p)) - p), `${v} ${p}`).toBeLessThanOrEqual(1);
    }
    // out of reach: clamped to the ends
    expect(pitchFor('m1', 1000)).toBe(99);
    expect(pitchFor('f3', 20)).toBe(0);
  });
});

describe('voiced-sounding non-speech (music.ts)', () => {
  // strongest spectral peak (Hz) of a stretch on a 5 Hz grid up to 2 kHz
  const grid = Array.from({ length: 389 }, (_, k) => 60 + 5 * k);
  const peakHz = (x: Float32Array, from: number, len: number) => strongestHz(x, from, len, grid);
  const gens = { music, chime, melody: (r: Rng, s: number) => buzzMelody(r, s, 'saw') };

  it('gives finite samples at the corpus peak, sound from the start even at 0.25 s, the same for the same seed', () => {
    for (const [name, g] of Object.entries(gens)) {
      for (const seconds of [0.25, 1, 4]) {
        for (let seed = 0; seed < 6; seed++) {
          const y = g(new Rng(seed), seconds);
          expect(y.length, name).toBe(Math.round(seconds * 16000));
          let pk = 0, early = 0, finite = true;
          for (let i = 0; i < y.length; i++) {
            const v = y[i]!;
            finite &&= Number.isFinite(v);
            pk = Math.max(pk, Math.abs(v));
            if (i < 0.25 * 16000) early = Math.max(early, Math.abs(v));
          }
          expect(finite, name).toBe(true);
          expect(pk, `${name} ${seconds} s seed ${seed}`).toBeGreaterThan(0.6);
          expect(pk).toBeLessThanOrEqual(0.8 + 1e-6);
          expect(early, `${name} silent at the start`).toBeGreaterThan(0.01);
          expect(g(new Rng(seed), seconds)).toEqual(y);
        }
      }
    }
  });

  it('changes pitch over time (notes, not one steady tone), unlike the default buzz', () => {
    let moving = 0;
    for (let seed = 0; seed < 8; seed++) {
      const y = gens.melody(new Rng(seed), 4);
      const pitches = new Set([0, 1, 2, 3].map((q) => peakHz(y, q * 16000 + 2000, 4000)));
      if (pitches.size >= 2) moving++;
    }
    expect(moving).toBeGreaterThanOrEqual(6);
    const steady = synthesize('sawtooth buzz', new Rng(3), 4);
    expect(new Set([0, 1, 2, 3].map((q) => peakHz(steady, q * 16000 + 2000, 4000))).size).toBe(1);
  });
});

describe('varied augmentations', () => {
  const tone = (f: number) => Float32Array.from({ length: 16000 }, (_, i) => REF_PEAK * Math.sin((2 * Math.PI * f * i) / 16000));
  it('low-pass removes what lies above its cutoff and keeps what lies below', () => {
    // equal 500 Hz and 6 kHz tones; amplitude of each by projection on its sinusoid (after the onset)
    const mix = Float32Array.from({ length: 16000 }, (_, i) => 0.3 * Math.sin((2 * Math.PI * 500 * i) / 16000) + 0.3 * Math.sin((2 * Math.PI * 6000 * i) / 16000));
    const amp = (x: Float32Array, f: number) => {
      let c = 0, s = 0;
      for (let i = 2000; i < x.length; i++) {
        c += x[i]! * Math.cos((2 * Math.PI * f * i) / 16000);
        s += x[i]! * Math.sin((2 * Math.PI * f * i) / 16000);
      }
      return (2 * Math.hypot(c, s)) / (x.length - 2000);
    };
    expect(amp(mix, 6000) / amp(mix, 500)).toBeGreaterThan(0.99);
    const y = applyAugment(mix.slice(), { lowpass: 3000 }, new Rng(1), false);
    // two 2nd-order sections: ≥ 20 dB down one octave above the cut-off, < 1 dB lost at 500 Hz
    expect(amp(y, 6000) / amp(y, 500)).toBeLessThan(0.1);
    const z = applyAugment(mix.slice(), { lowpass: 7000 }, new Rng(1), false);
    expect(amp(z, 6000) / amp(z, 500)).toBeGreaterThan(0.5);
  });
  it('clipping flattens the tops at the converter limit; the result never exceeds the corpus peak', () => {
    const y = applyAugment(tone(200), { clip: 12 }, new Rng(1), false);
    let atTop = 0;
    for (const v of y) {
      expect(Math.abs(v)).toBeLessThanOrEqual(MAX_PEAK + 1e-6);
      if (Math.abs(Math.abs(v) - REF_PEAK) < 1e-6) atTop++;
    }
    expect(atTop / y.length).toBeGreaterThan(0.5); // +12 dB of drive: most of a sine sits on the rails
  });
});
