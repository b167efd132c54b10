// The corpus plan: which clips exist, their labels, split, voice, sentence, seeds, augmentation and
// caption. Pure and fast (no audio), so tests can check coverage and disjointness of a large corpus
// without synthesising it. Rendering (make-corpus.ts) follows the plan exactly.
import { ArdError } from '../util/errors.js';
import { makeCaption } from './captions.js';
import {
  allVoices, EXTRA_ENGLISH_VOICES, EXTRA_FEMALE_VARIANTS, EXTRA_MALE_VARIANTS, F0_RANGE, FEMALE_VARIANTS, MALE_VARIANTS,
  PITCH_RANGE, SAME_SPEAKER, SPEED_RANGE, SPEECH_LANGS, VTL_WARP, type Gender, type Voice, type VoiceQuality,
} from './espeak.js';
import { hasRecorded } from './recorded.js';
import { pitchFor, voiceF0 } from './voice-pitch.js';
import { Rng, hash32, mix32 } from './rng.js';
import { SOUND_CONCEPTS, hasVariedGenerator, type SoundConcept } from './synth.js';
import { makeSentence, SHORT_WORDS, type SpeechLang } from './text.js';

/** Bump when the recipe of any clip changes, so old files are not reused by a resumed run. */
export const CORPUS_VERSION = 1;
export const DEFAULT_SIZE = 1200;
export const DEFAULT_SEED = 0;
export const MIN_SIZE = 30;
export const MIN_DURATION = 1;
export const MAX_DURATION = 4;
/** Shortest clip of the varied corpus (single words, short sounds). */
export const MIN_DURATION_VARIED = 0.25;

export const SPEECH_CONCEPTS = ['female speech', 'male speech'] as const;
export type SpeechConcept = (typeof SPEECH_CONCEPTS)[number];
export type Concept = SpeechConcept | SoundConcept;
/** Every label the corpus can carry. */
export const CONCEPTS: readonly Concept[] = [...SPEECH_CONCEPTS, ...SOUND_CONCEPTS];

export const SPLITS = ['train', 'val', 'test'] as const;
export type Split = (typeof SPLITS)[number];

// Sounds too alike to be told apart in one mixture never share a clip; silence is never mixed.
const FAMILIES: readonly (readonly string[])[] = [
  ['white noise', 'pink noise', 'brown noise', 'rain'],
  ['square buzz', 'sawtooth buzz'],
  ['low tone', 'mid tone', 'high tone', 'chord'],
  ['rising chirp', 'falling chirp'],
];
const MIXABLE = SOUND_CONCEPTS.filter((c) => c !== 'silence');
export const NOISE_LIKE = new Set<string>(['white noise', 'pink noise', 'brown noise', 'rain', 'engine hum']);
/** Varied corpus version 2: share of 'chord', 'bell' and buzz layers rendered as music, chimes and buzzing melodies. */
export const VARIED_STYLE_SHARE = 0.6;
/**
 * Varied corpus: share of each gender's speech rendered from the other gender's variants, warped across,
 * by version. Version 2 gives women more: espeak-ng has few female variants, and unseen female voices
 * were the weak point.
 */
export const CROSS_GENDER_SHARE: Record<VarietyVersion, { female: number; male: number }> = {
  1: { female: 0.25, male: 0.25 }, 2: { female: 0.5, male: 0.25 }, 3: { female: 0.5, male: 0.25 }, 4: { female: 0.5, male: 0.25 }, 5: { female: 0.5, male: 0.25 }, 6: { female: 0.5, male: 0.25 }, 7: { female: 0.5, male: 0.25 },
};
/**
 * Varied corpus: share of single-speaker clips that are one word, by version. Version 3 raises it:
 * music-like negatives (version 2) made real single words sound like non-speech to the model.
 */
export const SINGLE_WORD_SHARE: Record<VarietyVersion, number> = { 1: 0.35, 2: 0.35, 3: 0.6, 4: 0.6, 5: 0.6, 6: 0.6, 7: 0.6 };
/**
 * Varied corpus version 4: share of the layers of chord, bell, the tones and the buzzes rendered from
 * recordings (recorded.ts: a SoundFont of sampled instruments, a desktop theme's sounds).
 */
export const RECORDED_SHARE = 0.6;
/**
 * Varied corpus version 5: share of speech rendered with a voice quality of its own on top of the
 * variant (espeak.ts VoiceQuality: creak, jitter, breath, voicing, spectral tilt). Why: unseen
 * variants warped across to the other gender were answered by their variant's timbre; qualities
 * drawn alike for both genders leave pitch and formants as what tells them apart.
 */
export const QUALITY_SHARE = 0.7;
/**
 * Varied corpus version 6: share of speech whose variant's formant envelope is reshaped (espeak.ts
 * VoiceQuality.formants). Why: version 5's qualities did not move the unseen variants warped across;
 * a probe of stage 8 found the variant `travis` warped up to a woman answered "male" 5 times in 6,
 * and 6 in 6 "female" once its file's formant lines were removed (each of frequencies, heights or
 * widths alone changed nothing): the model read the variant's envelope, not its pitch and scale.
 */
export const FORMANT_SHARE = 0.8;
/**
 * Version 6's per-formant changes, in % of the variant's own: frequency (formants 1–2, and 3–8 in a far
 * wider range: `travis` puts F4 at half the usual, `Mario` F4–F6 at 69–89 %), height and width.
 */
export const FORMANT_JITTER = { freqLow: [80, 125], freqHigh: [55, 150], height: [50, 170], width: [50, 200] } as const;

/**
 * Varied corpus version 7: share of speech whose vocal tract is warped towards the other gender's while
 * its pitch stays in its own gender's range (CONFLICT_WARP), so that pitch alone tells the gender. Why:
 * the unseen voices that fail are a female variant (`grandma`) whose average spectrum sits nearer the
 * men's than the women's, and male variants warped up whose envelopes stay male-like; every earlier
 * version's warps moved envelope and pitch together, so the model learnt to trust the envelope.
 */
export const CONFLICT_SHARE = 0.3;
/** Version 7's warps towards the other gender: women's tracts down, men's up (as the cross-gender warps). */
export const CONFLICT_WARP: Record<Gender, [number, number]> = { female: [0.84, 0.92], male: [1.1, 1.22] };

/** A reshaped formant envelope for version 6, drawn alike for both genders (log-uniform percentages). */
export function drawFormants(r: Rng): [number, number, number][] {
  const pct = ([lo, hi]: readonly [number, number]) => Math.round(lo * Math.pow(hi / lo, r.next()));
  return Array.from({ length: 8 }, (_, i) => [pct(i < 2 ? FORMANT_JITTER.freqLow : FORMANT_JITTER.freqHigh), pct(FORMANT_JITTER.height), pct(FORMANT_JITTER.width)] as [number, number, number]);
}

/** A voice quality for version 5, drawn alike for both genders (ranges as espeak-ng's own variants use). */
export function drawVoiceQuality(r: Rng): VoiceQuality {
  const q: VoiceQuality = { roughness: r.int(0, 5), flutter: r.int(0, 20) };
  if (r.chance(0.4)) q.breath = Array.from({ length: 8 }, () => r.int(0, 25));
  if (r.chance(0.5)) q.voicing = r.int(60, 180);
  if (r.chance(0.5)) q.tone = [r.int(200, 600), r.int(100, 250), r.int(1000, 1500), r.int(60, 200), r.int(2500, 3500), r.int(30, 150), r.int(4000, 5000), r.int(20, 100)];
  return q;
}

function compatible(a: string, b: string): boolean {
  if (a === b) return false;
  return !FAMILIES.some((f) => f.includes(a) && f.includes(b));
}

/** Whether two labels may share a mixture: not silence, not two voices, not one family (as the corpus mixes). */
export function mixable(a: string, b: string): boolean {
  const speech = (l: string) => l === 'female speech' || l === 'male speech';
  if (a === 'silence' || b === 'silence' || (speech(a) && speech(b))) return false;
  return compatible(a, b);
}

export interface SpeechPlan {
  gender: Gender;
  /** espeak-ng voice, e.g. 'fr+m3'. */
  voice: string;
  lang: SpeechLang;
  sentence: string;
  speed: number;
  pitch: number;
  /** Varied corpus: vocal-tract warp α (espeak.ts SpeakRequest.warp). */
  warp?: number;
  /** Varied corpus: the median F0 (Hz) the pitch and warp aim at. */
  f0?: number;
  /** Varied corpus: a single word (0.25–1.2 s) instead of a sentence. */
  short?: boolean;
  /** Varied corpus version 5: a voice quality on top of the variant. */
  quality?: VoiceQuality;
}

export interface SoundLayer {
  concept: SoundConcept;
  /** Level relative to the clip's reference (speech RMS, or the first sound's RMS), dB. */
  levelDb: number;
  /**
   * Varied corpus only: 'varied' renders the concept with its voiced-sounding variant (synth.ts VARIED_GENERATORS),
   * 'recorded' with sampled instruments or a desktop theme's sounds (recorded.ts, version 4).
   */
  style?: 'varied' | 'recorded';
}

export type NoiseColour = 'white' | 'pink' | 'brown';

export interface AugmentPlan {
  /** Peak level relative to the clean reference peak (0.7), dB. */
  gainDb?: number;
  noise?: { colour: NoiseColour; snrDb: number };
  telephone?: 'band' | '8k';
  reverb?: { rt60: number; wet: number };
  /** Leading silence, seconds. */
  offset?: number;
  /** Varied corpus: low-pass cutoff (Hz), as recordings made at lower sample rates have. */
  lowpass?: number;
  /** Varied corpus: driven this many dB above the clean peak, then hard-clipped. */
  clip?: number;
}

export interface ClipPlan {
  index: number;
  /** Relative to the corpus directory: clips/NNNNN-<labels>-<recipe hash>.wav */
  file: string;
  labels: Concept[];
  caption: string;
  gender: Gender | null;
  split: Split;
  /** Synthesis seed; unique within the corpus. */
  seed: number;
  speech: SpeechPlan | null;
  layers: SoundLayer[];
  /** Length of the sound before the time offset (non-speech clips); null for speech (espeak decides). */
  duration: number | null;
  /** Longest the clip may be before the time offset. */
  maxCore: number;
  augment: AugmentPlan;
  /** Human-readable list of what `augment` applies, as written to the manifest. */
  augmentTags: string[];
}

export interface PlanOptions {
  /**
   * The varied corpus: more voices and accents, gender set by a target F0 and vocal-tract warp
   * (cross-gender renderings included), single words, short sounds, band limits, clipping and more
   * augmentation. Its clips differ from the default corpus's; the default is unchanged.
   */
  variety?: boolean | VarietyVersion;
}

/**
 * Versions of the varied corpus. 1 (`--variety`): what the embedded model's stage 3 was trained on.
 * 2 (`--variety 2`): also renders 60 % of chord, bell and buzz layers as music, chimes and buzzing
 * melodies (music.ts), and half the women (not a quarter) from the other gender's variants, warped across.
 * 3 (`--variety 3`): version 2 with single words in 60 % (not 35 %) of single-speaker clips.
 * 4 (`--variety 4`): version 3 with 60 % of chord, bell, tone and buzz layers rendered from recordings:
 * sampled instruments (a General MIDI SoundFont, played by FluidSynth) and desktop notification sounds.
 * 5 (`--variety 5`): version 4 with 70 % of speech given a voice quality of its own (QUALITY_SHARE).
 * 6 (`--variety 6`): version 5 with 80 % of speech given a reshaped formant envelope (FORMANT_SHARE).
 * 7 (`--variety 7`): version 6 with 30 % of speech warped towards the other gender's vocal tract, its
 * pitch kept in its own gender's range (CONFLICT_SHARE).
 * Earlier versions' clips stay exactly as they were, so earlier models' training can be rebuilt.
 */
export type VarietyVersion = 1 | 2 | 3 | 4 | 5 | 6 | 7;
export const VARIETY_VERSIONS: readonly VarietyVersion[] = [1, 2, 3, 4, 5, 6, 7];

/** 0 for the default corpus, else the varied corpus's version. */
export function varietyLevel(v: PlanOptions['variety']): 0 | VarietyVersion {
  return v === true ? 1 : VARIETY_VERSIONS.includes(v as VarietyVersion) ? (v as VarietyVersion) : 0;
}

export interface CorpusPlan {
  seed: number;
  size: number;
  variety: boolean;
  clips: ClipPlan[];
  voices: Record<Split, { female: string[]; male: string[] }>;
}

interface Kind {
  labels: Concept[];
  group: string;
  split?: Split;
}

/** How many clips of each kind: singles per concept plus mixtures, balanced by appearances. */
function allocate(size: number, rng: Rng): Kind[] {
  const nMix = Math.round(0.22 * size);
  const nSpeechMix = Math.round(0.45 * nMix);
  const nSoundMix = nMix - nSpeechMix;
  const nSpeechSingle = 2 * Math.round(0.1 * size);
  const nSoundSingle = size - nMix - nSpeechSingle;
  const kinds: Kind[] = [];
  for (let i = 0; i < nSpeechSingle; i++) {
    const c: Concept = i % 2 ? 'male speech' : 'female speech';
    kinds.push({ labels: [c], group: c });
  }
  // Silence never appears in mixtures, so it gets a larger share of the singles.
  const share = (c: string) => (c === 'silence' ? 1.25 : 1);
  const total = SOUND_CONCEPTS.reduce((s, c) => s + share(c), 0);
  const counts = new Map<string, number>();
  let used = 0;
  for (const c of SOUND_CONCEPTS) {
    const k = Math.floor((nSoundSingle * share(c)) / total);
    counts.set(c, k);
    used += k;
  }
  const order = rng.shuffle([...SOUND_CONCEPTS]);
  for (let i = 0; used < nSoundSingle; i++, used++) {
    const c = order[i % order.length]!;
    counts.set(c, counts.get(c)! + 1);
  }
  for (const c of SOUND_CONCEPTS) for (let i = 0; i < counts.get(c)!; i++) kinds.push({ labels: [c], group: c });

  // Mixtures: always take the least-used compatible sounds, so totals even out.
  const pickLeast = (avoid: string[]): SoundConcept => {
    const cands = MIXABLE.filter((c) => avoid.every((a) => compatible(a, c)));
    const min = Math.min(...cands.map((c) => counts.get(c)!));
    const c = rng.pick(cands.filter((x) => counts.get(x) === min));
    counts.set(c, counts.get(c)! + 1);
    return c;
  };
  for (let i = 0; i < nSpeechMix; i++) {
    const sp: Concept = i % 2 ? 'male speech' : 'female speech';
    const b = pickLeast([]);
    const labels: Concept[] = [sp, b];
    if (rng.chance(0.2)) labels.push(pickLeast([b]));
    kinds.push({ labels, group: `mix:${sp}` });
  }
  for (let i = 0; i < nSoundMix; i++) {
    const a = pickLeast([]);
    const b = pickLeast([a]);
    const labels: Concept[] = [a, b];
    if (rng.chance(0.15)) labels.push(pickLeast([a, b]));
    kinds.push({ labels, group: 'mix:sound' });
  }
  return kinds;
}

/** Splits each group ~70/15/15 (at least one val and one test clip once a group has 3). */
function assignSplits(kinds: Kind[], rng: Rng): void {
  const groups = new Map<string, Kind[]>();
  for (const k of kinds) {
    if (!groups.has(k.group)) groups.set(k.group, []);
    groups.get(k.group)!.push(k);
  }
  for (const members of groups.values()) {
    rng.shuffle(members);
    const n = members.length;
    const nHold = n >= 3 ? Math.max(1, Math.round(0.15 * n)) : 0;
    members.forEach((k, i) => {
      k.split = i < nHold ? 'val' : i < 2 * nHold ? 'test' : 'train';
    });
  }
}

/**
 * Each espeak-ng voice variant (f3, m5, Annie, …) belongs to one split, in every language, so val
 * and test speakers are never heard in training (near-duplicate variants, SAME_SPEAKER, go together);
 * each split gets variants of both genders.
 */
export function splitVoices(seed: number, variety = false): Record<Split, { female: Voice[]; male: Voice[] }> {
  const out = splitBaseVoices(seed);
  if (!variety) return out;
  // The further variants and the English accents get splits of their own draw, so the default
  // corpus's voice splits hold in the varied corpus too (its val/test voices stay unheard).
  const rng = new Rng(hash32(seed, 'voices-variety'));
  const holdOut = <T>(items: readonly T[]): Map<T, Split> => {
    const g = rng.shuffle([...items]);
    const n = Math.max(1, Math.round(0.15 * g.length));
    return new Map(g.map((v, i) => [v, (i < n ? 'val' : i < 2 * n ? 'test' : 'train') as Split]));
  };
  const accentSplit = holdOut(EXTRA_ENGLISH_VOICES);
  for (const g of ['female', 'male'] as const) {
    const extra: readonly string[] = g === 'female' ? EXTRA_FEMALE_VARIANTS : EXTRA_MALE_VARIANTS;
    // one female extra variant: it goes to test, the split that reports unseen voices
    const variantSplit = extra.length < 3 ? new Map(extra.map((v) => [v, 'test' as Split])) : holdOut(extra);
    for (const v of extra) for (const l of SPEECH_LANGS) out[variantSplit.get(v)!][g].push({ id: `${l.voice}+${v}`, lang: l.lang, gender: g });
  }
  // Accents speak with every variant of the accent's split.
  for (const s of SPLITS) {
    for (const g of ['female', 'male'] as const) {
      const variants = [...new Set(out[s][g].map((v) => voiceVariant(v.id)))];
      for (const a of EXTRA_ENGLISH_VOICES) if (accentSplit.get(a) === s) for (const v of variants) out[s][g].push({ id: `${a}+${v}`, lang: 'en', gender: g });
    }
  }
  return out;
}

function splitBaseVoices(seed: number): Record<Split, { female: Voice[]; male: Voice[] }> {
  const rng = new Rng(hash32(seed, 'voices'));
  const out = { train: { female: [], male: [] }, val: { female: [], male: [] }, test: { female: [], male: [] } } as Record<Split, { female: Voice[]; male: Voice[] }>;
  for (const g of ['female', 'male'] as const) {
    const speakers = (g === 'female' ? FEMALE_VARIANTS : MALE_VARIANTS).map((v) => SAME_SPEAKER[v] ?? v);
    const groups = rng.shuffle([...new Set(speakers)]);
    const nHold = Math.max(1, Math.round(0.15 * groups.length));
    const splitOf = new Map(groups.map((v, i) => [v, (i < nHold ? 'val' : i < 2 * nHold ? 'test' : 'train') as Split]));
    for (const v of allVoices(g)) out[splitOf.get(voiceSpeaker(v.id))!][g].push(v);
  }
  return out;
}

/** The variant part of an espeak-ng voice id: 'de+f3' → 'f3'. */
export function voiceVariant(voice: string): string {
  const i = voice.indexOf('+');
  return i < 0 ? voice : voice.slice(i + 1);
}

/** The speaker behind a voice id (variants that are one speaker map to one name): 'fr+steph2' → 'steph'. */
export function voiceSpeaker(voice: string): string {
  const v = voiceVariant(voice);
  return SAME_SPEAKER[v] ?? v;
}

/** Rejection-samples a sentence of this split, preferring one not used yet, and marks it used. */
function drawSentence(rng: Rng, seed: number, lang: SpeechLang, split: Split, used: Set<string>): string {
  let sentence = '';
  for (let tries = 0; ; tries++) {
    const s = makeSentence(rng, lang);
    if (sentenceSplit(seed, s) !== split) continue;
    sentence = s;
    if (!used.has(s) || tries > 400) break;
  }
  used.add(sentence);
  return sentence;
}

/** The split a sentence belongs to (a fixed function of seed and text, so splits never share one). */
export function sentenceSplit(seed: number, sentence: string): Split {
  const h = hash32(seed, 'sentence', sentence) % 100;
  return h < 70 ? 'train' : h < 85 ? 'val' : 'test';
}

function planAugment(rng: Rng, split: Split, silent: boolean, variety: boolean): AugmentPlan {
  if (variety) return rng.chance(split === 'train' ? 0.8 : 0.6) ? drawVariedAugment(rng, silent) : {};
  if (!rng.chance(split === 'train' ? 0.65 : 0.2)) return {};
  return drawAugment(rng, silent);
}

/** The varied corpus's augmentations: wider levels and SNRs, band limits, clipping. */
function drawVariedAugment(rng: Rng, silent: boolean): AugmentPlan {
  const a = drawAugment(rng, silent);
  const r1 = (x: number) => Math.round(x * 10) / 10;
  if (a.gainDb !== undefined) a.gainDb = r1(rng.uniform(-32, 2.5));
  if (a.noise) a.noise.snrDb = rng.pick([30, 20, 15, 10, 5, 0]);
  // Recordings at 8, 11.025, 16 and 22.05 kHz and cheap microphones: band limits below 8 kHz.
  if (!a.telephone && rng.chance(0.35)) a.lowpass = rng.pick([3000, 3600, 4000, 5000, 5500, 7000]);
  if (!silent && rng.chance(0.12)) a.clip = r1(rng.uniform(4, 18));
  return a;
}

function drawAugment(rng: Rng, silent: boolean): AugmentPlan {
  const ops = new Set<string>();
  if (!silent && rng.chance(0.5)) ops.add('gain');
  if (!silent && rng.chance(0.45)) ops.add('noise');
  if (rng.chance(0.25)) ops.add('telephone');
  if (rng.chance(0.3)) ops.add('reverb');
  if (rng.chance(0.35)) ops.add('offset');
  if (ops.size === 0) ops.add(rng.pick(silent ? ['telephone', 'reverb', 'offset'] : ['gain', 'noise', 'telephone', 'reverb', 'offset']));
  const a: AugmentPlan = {};
  const r1 = (x: number) => Math.round(x * 10) / 10;
  const r2 = (x: number) => Math.round(x * 100) / 100;
  if (ops.has('gain')) a.gainDb = r1(rng.uniform(-20, 2.5));
  if (ops.has('noise')) a.noise = { colour: rng.pick(['white', 'pink', 'brown'] as const), snrDb: rng.pick([20, 10, 5]) };
  if (ops.has('telephone')) a.telephone = rng.chance(0.5) ? 'band' : '8k';
  if (ops.has('reverb')) a.reverb = { rt60: r2(rng.uniform(0.2, 0.9)), wet: r2(rng.uniform(0.2, 0.5)) };
  if (ops.has('offset')) a.offset = r2(rng.uniform(0.1, 0.8));
  return a;
}

export function augmentTags(a: AugmentPlan): string[] {
  const t: string[] = [];
  if (a.reverb) t.push(`reverb:${a.reverb.rt60.toFixed(2)}s`);
  if (a.noise) t.push(`noise:${a.noise.colour}:${a.noise.snrDb}dB`);
  if (a.telephone) t.push(a.telephone === 'band' ? 'telephone:300-3400Hz' : 'telephone:8kHz');
  if (a.gainDb !== undefined) t.push(`gain:${a.gainDb.toFixed(1)}dB`);
  if (a.offset !== undefined) t.push(`offset:${a.offset.toFixed(2)}s`);
  if (a.lowpass !== undefined) t.push(`lowpass:${a.lowpass}Hz`);
  if (a.clip !== undefined) t.push(`clip:+${a.clip.toFixed(1)}dB`);
  return t;
}

export function checkSize(size: number): void {
  if (!Number.isInteger(size) || size < MIN_SIZE || size > 1_000_000) {
    throw new ArdError(`make-corpus: --size must be an integer from ${MIN_SIZE} to 1000000 (got ${size})`);
  }
}

/** Plans a corpus of `size` clips for `seed` (a 32-bit integer). */
export function planCorpus(seed: number, size: number = DEFAULT_SIZE, opts: PlanOptions = {}): CorpusPlan {
  checkSize(size);
  seed = seed >>> 0;
  const level = varietyLevel(opts.variety);
  const variety = level > 0;
  const rng = new Rng(hash32(seed, size, 'plan'));
  const kinds = allocate(size, rng);
  assignSplits(kinds, rng);
  rng.shuffle(kinds);

  const voices = splitVoices(seed, variety);
  const usedSeeds = new Set<number>();
  const usedSentences = new Set<string>();
  const durationU: number[] = [];
  const clips: ClipPlan[] = kinds.map((k, index) => {
    const split = k.split!;
    const crng = new Rng(hash32(seed, size, 'clip', index));
    let clipSeed = crng.seed();
    while (usedSeeds.has(clipSeed)) clipSeed = mix32(clipSeed + 1);
    usedSeeds.add(clipSeed);

    const sp = k.labels.find((l): l is SpeechConcept => l === 'female speech' || l === 'male speech');
    let speech: SpeechPlan | null = null;
    if (sp && variety) {
      speech = planVariedSpeech(crng, seed, split, sp === 'female speech' ? 'female' : 'male', voices, k.labels.length === 1, usedSentences, level as VarietyVersion);
      // its own generator, so that every other draw (and every clip without a quality) is version 4's
      const qrng = new Rng(hash32(seed, size, 'quality', index));
      if (level >= 5 && qrng.chance(QUALITY_SHARE)) speech.quality = drawVoiceQuality(qrng);
      // and again its own for the envelope, so version 6 keeps every version-5 draw
      const frng = new Rng(hash32(seed, size, 'formants', index));
      if (level >= 6 && frng.chance(FORMANT_SHARE)) speech.quality = { ...speech.quality, formants: drawFormants(frng) };
      const wrng = new Rng(hash32(seed, size, 'conflict', index));
      if (level >= 7 && wrng.chance(CONFLICT_SHARE)) warpTowardsOther(wrng, speech, voices[split][speech.gender]);
    } else if (sp) {
      const gender: Gender = sp === 'female speech' ? 'female' : 'male';
      const voice = crng.pick(voices[split][gender]);
      const sentence = drawSentence(crng, seed, voice.lang, split, usedSentences);
      const [p0, p1] = PITCH_RANGE[gender];
      speech = {
        gender,
        voice: voice.id,
        lang: voice.lang,
        sentence,
        speed: crng.int(SPEED_RANGE[0], SPEED_RANGE[1]),
        pitch: crng.int(p0, p1),
      };
    }

    const sounds = k.labels.filter((l): l is SoundConcept => l !== 'female speech' && l !== 'male speech');
    const layers: SoundLayer[] = sounds.map((concept, j) => {
      let levelDb: number;
      if (speech) levelDb = -crng.uniform(0, 10); // background under speech at 0–10 dB SNR
      else if (j === 0) levelDb = 0;
      else levelDb = crng.uniform(-4, 4);
      if (!speech && sounds.length > 1 && NOISE_LIKE.has(concept)) levelDb -= crng.uniform(3, 8);
      const layer: SoundLayer = { concept, levelDb: Math.round(levelDb * 10) / 10 };
      // its own stream, so the varied corpus's other draws (and clips without such layers) stay as they were
      if (level >= 2 && hasVariedGenerator(concept) && new Rng(hash32(seed, size, 'style', index, j)).chance(VARIED_STYLE_SHARE)) layer.style = 'varied';
      if (level >= 4 && hasRecorded(concept) && new Rng(hash32(seed, size, 'recorded', index, j)).chance(RECORDED_SHARE)) layer.style = 'recorded';
      return layer;
    });
    durationU[index] = crng.next(); // mapped to seconds once the offset is known
    const caption = makeCaption(crng, k.labels);
    const silent = k.labels.length === 1 && k.labels[0] === 'silence';
    const augment = planAugment(new Rng(hash32(seed, size, 'aug', index)), split, silent, variety);
    return {
      index, file: '', labels: k.labels, caption, gender: speech?.gender ?? null, split, seed: clipSeed,
      speech, layers, duration: null, maxCore: MAX_DURATION, augment, augmentTags: [],
    };
  });

  // Every split keeps some clean and some augmented clips.
  for (const split of SPLITS) {
    const inSplit = clips.filter((c) => c.split === split);
    const isSilent = (c: ClipPlan) => c.labels.length === 1 && c.labels[0] === 'silence';
    if (!inSplit.some((c) => Object.keys(c.augment).length > 0)) {
      const c = inSplit.find((x) => !isSilent(x));
      if (c) c.augment = drawAugment(new Rng(hash32(seed, size, 'aug-fix', c.index)), false);
    }
    if (!inSplit.some((c) => Object.keys(c.augment).length === 0)) inSplit[0]!.augment = {};
  }

  for (const c of clips) {
    c.augmentTags = augmentTags(c.augment);
    c.maxCore = Math.round((MAX_DURATION - (c.augment.offset ?? 0)) * 100) / 100;
    if (c.speech?.short) c.maxCore = Math.min(c.maxCore, 1.2);
    // Non-speech length: uniform in [1 s, maxCore], snapped to 10 ms; in the varied corpus a fifth
    // of the single sounds are short (0.25–1 s).
    let lo = MIN_DURATION, hi = c.maxCore, u = durationU[c.index]!;
    if (variety && c.labels.length === 1 && u < 0.2) [lo, hi, u] = [MIN_DURATION_VARIED, 1, u / 0.2];
    c.duration = c.speech ? null : Math.round((lo + u * (hi - lo)) * 100) / 100;
    const recipe = JSON.stringify([CORPUS_VERSION, c.labels, c.seed, c.speech, c.layers, c.duration, c.maxCore, c.augment, ...(variety ? ['variety'] : [])]);
    const slug = c.labels.map((l) => l.replace(/ /g, '_')).join('+');
    c.file = `clips/${String(c.index).padStart(5, '0')}-${slug}-${hash32(recipe).toString(16).padStart(8, '0')}.wav`;
  }

  const voiceIds = {} as CorpusPlan['voices'];
  for (const s of SPLITS) voiceIds[s] = { female: voices[s].female.map((v) => v.id), male: voices[s].male.map((v) => v.id) };
  return { seed, size, variety, clips, voices: voiceIds };
}

/**
 * A varied-corpus speaker: a target F0 in the gender's range and a vocal-tract warp. Three in four
 * take a variant of the same gender (warp within the gender's range); one in four a variant of the
 * other gender, warped across (men's tracts up ≥ 12 %, women's down ≥ 10 %) with the pitch moved to
 * the target, so the label follows what the voice sounds like, not which variant made it. Single
 * speech clips are single words in SINGLE_WORD_SHARE of cases.
 */
function planVariedSpeech(
  crng: Rng, seed: number, split: Split, gender: Gender, voices: Record<Split, { female: Voice[]; male: Voice[] }>,
  single: boolean, usedSentences: Set<string>, version: VarietyVersion,
): SpeechPlan {
  const other: Gender = gender === 'female' ? 'male' : 'female';
  const [f0lo, f0hi] = F0_RANGE[gender];
  let plan: SpeechPlan | null = null;
  for (let tries = 0; tries < 20 && !plan; tries++) {
    const cross = tries < 10 && crng.chance(CROSS_GENDER_SHARE[version][gender]);
    const voice = crng.pick(voices[split][cross ? other : gender]);
    const warp = round3(cross ? (gender === 'female' ? crng.uniform(1.12, 1.22) : crng.uniform(0.82, 0.9)) : crng.uniform(...VTL_WARP[gender]));
    const target = f0lo * Math.pow(f0hi / f0lo, crng.next());
    const pitch = pitchFor(voiceVariant(voice.id), target / warp);
    const f0 = voiceF0(voiceVariant(voice.id), pitch) * warp;
    if (f0 < f0lo || f0 > f0hi) continue; // out of this variant's reach: draw again
    plan = { gender, voice: voice.id, lang: voice.lang, sentence: '', speed: crng.int(120, 240), pitch, warp, f0: Math.round(f0) };
  }
  if (!plan) {
    // own gender, no warp, pitch from the default range: always inside
    const voice = crng.pick(voices[split][gender]);
    const [p0, p1] = PITCH_RANGE[gender];
    plan = { gender, voice: voice.id, lang: voice.lang, sentence: '', speed: crng.int(...SPEED_RANGE), pitch: crng.int(p0, p1), warp: 1 };
  }
  if (single && crng.chance(SINGLE_WORD_SHARE[version])) {
    plan.sentence = crng.pick(SHORT_WORDS[plan.lang]);
    plan.short = true;
  } else {
    plan.sentence = drawSentence(crng, seed, plan.lang, split, usedSentences);
  }
  return plan;
}

const round3 = (x: number) => Math.round(x * 1000) / 1000;

/**
 * Version 7: re-voices `speech` with a variant of its own gender and language, its tract warped towards
 * the other gender's (CONFLICT_WARP) and its median F0 still in its own gender's range. Sentence, speed
 * and quality stay; if no draw reaches the range, the speech is left as it was.
 */
function warpTowardsOther(r: Rng, speech: SpeechPlan, voices: readonly Voice[]): void {
  const [f0lo, f0hi] = F0_RANGE[speech.gender];
  const sameLang = voices.filter((v) => v.lang === speech.lang);
  if (!sameLang.length) return;
  for (let tries = 0; tries < 10; tries++) {
    const voice = r.pick(sameLang);
    const warp = round3(r.uniform(...CONFLICT_WARP[speech.gender]));
    const target = f0lo * Math.pow(f0hi / f0lo, r.next());
    const pitch = pitchFor(voiceVariant(voice.id), target / warp);
    const f0 = voiceF0(voiceVariant(voice.id), pitch) * warp;
    if (f0 < f0lo || f0 > f0hi) continue;
    Object.assign(speech, { voice: voice.id, pitch, warp, f0: Math.round(f0) });
    return;
  }
}
