// Mixtures made while training (`--mix-rate`): a batch slot that holds a single-label clip may be
// replaced by that clip with a second single-label training clip added underneath.
//
// Why: the corpus's own mixtures are a fifth of its clips, so a run sees each of the few hundred
// training mixtures a handful of times, and the model learns to name one sound and stop (recall
// 0.91 on single-label test clips, 0.45 on two-label ones; showing the same mixtures three
// times as often did not help). Fresh pairs every step give it thousands of different mixtures.
// At rate 0.35: two-label recall 0.45 → 0.53, three-label 0.26 → 0.36, but it also named
// a second sound on 24 single-label test clips (precision 85 → 82 %); see weights/README.md.
//
// The mixing happens on the cached log-mel features, in the power domain: Whisper's feature is
// (max(log10 P, m − 8) + 4) / 4 with m the clip's largest log10 P, so P = 10^(4x − 4) where the
// floor did not clip, and the power spectrum of a sum of two unrelated sounds is the sum of their
// power spectra (the cross terms average out over a frame). The mixture is floored at its own m − 8
// again, as the front end would. Mixing rules follow the corpus's: never silence, never two voices,
// never two sounds of one family (plan.ts `mixable`); levels are by mean mel power (melPower), a
// background under speech sits 0–6 dB below it, two sounds within ±4 dB of each other, and the
// answer names the speech, or the louder sound, first.
import { makeCaption } from '../corpus/captions.js';
import type { ManifestEntry } from '../corpus/manifest.js';
import { NOISE_LIKE, mixable } from '../corpus/plan.js';
import { Rng } from '../corpus/rng.js';
import { mulberry32 } from '../util/random.js';
import { hashInts } from './data.js';

export interface MixPlan {
  /** The foreground clip (the speech, or the loudest sound) and the one added to it. */
  fg: number;
  bg: number;
  /** Level of `bg` relative to `fg` (mean power over their valid frames), dB (≤ 0). */
  levelDb: number;
  /** A third sound (MixOptions.third), no louder than `bg`; its level is relative to `fg`. */
  third?: { clip: number; levelDb: number };
  /** Seed of the mixture's caption. */
  captionSeed: number;
}

export interface MixOptions {
  /**
   * Share (0–1, default 0) of the fresh mixtures that get a third sound. Why: the corpus holds a
   * few dozen three-sound training clips, and a model trained on two-sound mixtures never names
   * three (none of 22 three-label test clips got a three-label answer).
   */
  third?: number;
  /**
   * Levels as the corpus draws them (plan.ts): in a mixture of sounds only, a noise-like sound
   * (NOISE_LIKE) sits a further 3–8 dB lower. Default false: all sounds within ±4 dB.
   */
  corpusLevels?: boolean;
}

const isSpeech = (l: string) => l === 'female speech' || l === 'male speech';

/**
 * Whether batch slot `slot` of `step`, holding clip `a`, becomes a mixture, and with what: a
 * seeded function of (seed, step, slot), so a resumed run makes the same mixtures. With default
 * options it makes exactly the mixtures it made before MixOptions existed (older runs replay).
 */
export function planMix(seed: number, step: number, slot: number, a: number, labels: readonly (readonly string[])[], rate: number, opts: MixOptions = {}): MixPlan | null {
  if (!(rate > 0)) return null;
  const rand = mulberry32(hashInts(seed, 0x6d1f, step, slot));
  if (rand() >= rate || labels[a]!.length !== 1) return null;
  const labelOf = (i: number) => labels[i]![0]!;
  // a random single-label clip that may share a mixture with every sound in `have` (16 tries)
  const pick = (have: string[]): number | null => {
    for (let tries = 0; tries < 16; tries++) {
      const b = Math.floor(rand() * labels.length);
      if (labels[b]!.length === 1 && have.every((h) => mixable(h, labelOf(b)))) return b;
    }
    return null;
  };
  const b = pick([labelOf(a)]);
  if (b === null) return null;
  const captionSeed = hashInts(seed, 0xca9, step, slot);
  const ids = [a, b];
  if ((opts.third ?? 0) > 0 && rand() < opts.third!) {
    const c = pick([labelOf(a), labelOf(b)]);
    if (c !== null) ids.push(c);
  }
  // levels in dB: relative to the speech, or to the first sound
  const speech = ids.find((i) => isSpeech(labelOf(i)));
  const levels = ids.map((i, j) => {
    if (speech !== undefined) return i === speech ? 0 : -6 * rand(); // 0–6 dB under the voice
    let l = j === 0 ? 0 : 8 * rand() - 4; // sounds within ±4 dB of each other
    if (opts.corpusLevels && NOISE_LIKE.has(labelOf(i))) l -= 3 + 5 * rand();
    return l;
  });
  // the speech, or the loudest sound, is the foreground and is named first; the rest loudest first
  const rank = (j: number) => (ids[j] === speech ? Infinity : levels[j]!);
  const order = ids.map((_, j) => j).sort((x, y) => rank(y) - rank(x) || x - y);
  const rel = order.map((j) => ({ clip: ids[j]!, levelDb: levels[j]! - levels[order[0]!]! }));
  return { fg: rel[0]!.clip, bg: rel[1]!.clip, levelDb: rel[1]!.levelDb, ...(rel[2] ? { third: rel[2] } : {}), captionSeed };
}

/** Log-mel features [nMels, frames] of one clip (a training cache Clip is one); `validFrames` of its frames hold the sound (they set its level). */
export interface MelPart {
  mel: Float32Array;
  frames: number;
  validFrames: number;
}

const power = (v: number) => Math.pow(10, 4 * v - 4);

/**
 * Mean mel power over a clip's valid frames. It sets the levels: mel filters of equal area weight a
 * band by its width in mel, so broadband sounds count for less than in the waveform's RMS (closer to
 * how loud they sound than the RMS is).
 */
export function melPower(p: MelPart, nMels: number): number {
  let s = 0;
  for (let m = 0; m < nMels; m++) for (let t = 0; t < p.validFrames; t++) s += power(p.mel[m * p.frames + t]!);
  return s / Math.max(1, nMels * p.validFrames);
}

/** Log-mel features of fg + bg with bg's mel power `levelDb` below fg's (see melPower). */
export function mixMels(fg: MelPart, bg: MelPart, nMels: number, levelDb: number): { mel: Float32Array; frames: number } {
  return mixMelsAtGain(fg, bg, nMels, Math.pow(10, levelDb / 10) * (melPower(fg, nMels) / melPower(bg, nMels)));
}

/**
 * Log-mel features of fg + bg with bg's power scaled by `gain` (its waveform by √gain), as many
 * frames as the longer: the training cache crops each clip's features after its sound, and the
 * shorter one is extended with its own floor, the value the front end gives a padded frame.
 */
export function mixMelsAtGain(fg: MelPart, bg: MelPart, nMels: number, gain: number): { mel: Float32Array; frames: number } {
  for (const p of [fg, bg]) {
    if (p.mel.length !== nMels * p.frames || p.validFrames > p.frames) throw new Error('mixMels: features must be [nMels, frames] with valid ≤ frames');
  }
  const floorOf = (p: MelPart) => p.mel.reduce((a, v) => Math.max(a, v), -Infinity) - 2;
  const frames = Math.max(fg.frames, bg.frames);
  const [ff, fb] = [floorOf(fg), floorOf(bg)];
  const out = new Float32Array(nMels * frames);
  let max = -Infinity;
  for (let m = 0; m < nMels; m++) {
    for (let t = 0; t < frames; t++) {
      const a = t < fg.frames ? fg.mel[m * fg.frames + t]! : ff;
      const b = t < bg.frames ? bg.mel[m * bg.frames + t]! : fb;
      const v = Math.log10(power(a) + gain * power(b));
      out[m * frames + t] = v;
      if (v > max) max = v;
    }
  }
  for (let i = 0; i < out.length; i++) out[i] = (Math.max(out[i]!, max - 8) + 4) / 4;
  return { mel: out, frames };
}

/**
 * The log-mel features of the same sound played `db` dB louder (negative: quieter). The front end takes
 * log10 of the mel power, clamps it 8 (80 dB) under the clip's maximum and maps x → (x + 4) / 4, so a gain
 * moves every value, the clamped floor included, by db / 40. (Exact while the clip's maximum stays above
 * −2, where digital silence at log10(1e-10) is clamped up to the floor both before and after: ordinary levels.)
 * Tried on the embedded model (`--level-jitter=-24,6`, weights/README.md): it heard more non-speech as speech.
 */
export function shiftLevel(p: MelPart, db: number): MelPart {
  const d = db / 40;
  const mel = new Float32Array(p.mel.length);
  for (let i = 0; i < mel.length; i++) mel[i] = p.mel[i]! + d;
  return { mel, frames: p.frames, validFrames: p.validFrames };
}

/** The level change (dB) of batch slot `slot` at `step`: uniform in [lo, hi], a seeded function of (seed, step, slot). */
export function levelJitterDb(seed: number, step: number, slot: number, [lo, hi]: readonly [number, number]): number {
  return lo + (hi - lo) * mulberry32(hashInts(seed, 0x1e7e1, step, slot))();
}

/** Log-mel features of a planned mixture of `clips` (indexed as the plan's): fg + bg (+ third). */
export function planMels(plan: MixPlan, clips: readonly MelPart[], nMels: number): MelPart {
  const fg = clips[plan.fg]!, bg = clips[plan.bg]!;
  let mix: MelPart = { ...mixMels(fg, bg, nMels, plan.levelDb), validFrames: Math.max(fg.validFrames, bg.validFrames) };
  if (plan.third) {
    // the third's level is relative to fg alone (the sum's power would shift it by bg's share)
    const t = clips[plan.third.clip]!;
    const gain = Math.pow(10, plan.third.levelDb / 10) * (melPower(fg, nMels) / melPower(t, nMels));
    mix = { ...mixMelsAtGain(mix, t, nMels, gain), validFrames: Math.max(mix.validFrames, t.validFrames) };
  }
  return mix;
}

/** The manifest entry a mixture answers for: labels in the given order (foreground first), a fresh caption, the speech's gender. */
export function mixedEntry(parts: readonly ManifestEntry[], captionSeed: number): ManifestEntry {
  const labels = parts.flatMap((p) => p.labels);
  const sp = parts.find((p) => p.speech) ?? null;
  return {
    ...parts[0]!,
    file: parts.map((p) => p.file).join('+'),
    labels,
    caption: makeCaption(new Rng(captionSeed), labels),
    speech: sp !== null,
    gender: sp ? sp.gender : null,
  };
}
