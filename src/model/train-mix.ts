// Mixtures made while training (`--mix-rate`): a batch slot that holds a single-label clip may be
// replaced by that clip with a second single-label training clip added underneath.
//
// Why: the corpus's own mixtures are a fifth of its clips, so a run sees each of the few hundred
// training mixtures a handful of times, and the model learns to name one sound and stop (session 4:
// recall 0.91 on single-label test clips, 0.45 on two-label ones; showing the same mixtures three
// times as often did not help). Fresh pairs every step give it thousands of different mixtures.
// Session 5, rate 0.35: two-label recall 0.45 → 0.53, three-label 0.26 → 0.36, but it also named
// a second sound on 24 single-label test clips (precision 85 → 82 %); see README.
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
import { mixable } from '../corpus/plan.js';
import { Rng } from '../corpus/rng.js';
import { mulberry32 } from '../util/random.js';
import { hashInts } from './train-data.js';

export interface MixPlan {
  /** The foreground clip (the speech, or the louder sound) and the one added to it. */
  fg: number;
  bg: number;
  /** Level of `bg` relative to `fg` (mean power over their valid frames), dB (≤ 0). */
  levelDb: number;
  /** Seed of the mixture's caption. */
  captionSeed: number;
}

const isSpeech = (l: string) => l === 'female speech' || l === 'male speech';

/**
 * Whether batch slot `slot` of `step`, holding clip `a`, becomes a mixture, and with what: a
 * seeded function of (seed, step, slot), so a resumed run makes the same mixtures.
 */
export function planMix(seed: number, step: number, slot: number, a: number, labels: readonly (readonly string[])[], rate: number): MixPlan | null {
  if (!(rate > 0)) return null;
  const rand = mulberry32(hashInts(seed, 0x6d1f, step, slot));
  if (rand() >= rate || labels[a]!.length !== 1) return null;
  const la = labels[a]![0]!;
  for (let tries = 0; tries < 16; tries++) {
    const b = Math.floor(rand() * labels.length);
    if (labels[b]!.length !== 1 || !mixable(la, labels[b]![0]!)) continue;
    const lb = labels[b]![0]!;
    const captionSeed = hashInts(seed, 0xca9, step, slot);
    if (isSpeech(la) || isSpeech(lb)) {
      const [fg, bg] = isSpeech(la) ? [a, b] : [b, a];
      return { fg, bg, levelDb: -6 * rand(), captionSeed };
    }
    const d = 8 * rand() - 4; // level of b relative to a
    return d <= 0 ? { fg: a, bg: b, levelDb: d, captionSeed } : { fg: b, bg: a, levelDb: -d, captionSeed };
  }
  return null;
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

/** The manifest entry a mixture answers for: labels foreground first, a fresh caption, the speech's gender. */
export function mixedEntry(fg: ManifestEntry, bg: ManifestEntry, captionSeed: number): ManifestEntry {
  const labels = [...fg.labels, ...bg.labels];
  const sp = fg.speech ? fg : bg.speech ? bg : null;
  return {
    ...fg,
    file: `${fg.file}+${bg.file}`,
    labels,
    caption: makeCaption(new Rng(captionSeed), labels),
    speech: sp !== null,
    gender: sp ? sp.gender : null,
  };
}
