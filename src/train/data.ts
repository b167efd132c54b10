// Instruction data for training the small default AudioLLM: corpus manifest entries become chat
// examples in Qwen2-Audio's template (chat.ts), with the loss on answer tokens only.
//
//   "Describe the sound."                 → the caption
//   "What is the gender of the speaker?"  → "female" / "male"          (speech clips only)
//   "What sounds can you hear?"           → the labels, ", "-joined     ("female speech, white noise")
//   "Is anyone speaking?"                 → "yes" / "no"
//
// Every example is single-turn — exactly the prompt inference feeds. (Several questions about one
// clip in one multi-turn conversation would save decoder work, but then every later answer can be
// read off the earlier ones — "a woman speaking" gives away gender, labels and yes/no — and a small
// model learns that shortcut instead of listening.) A clip may instead be asked several questions
// in separate sequences that share one encoder pass.
import { mulberry32 } from '../util/random.js';
import { CONCEPT_LABELS, type ManifestEntry } from '../corpus/manifest.js';
import { ArdError } from '../util/errors.js';
import { QWEN2_AUDIO_SPECIAL_TOKENS, TokenizerJson, trainBpe } from './bpe.js';
import { chatPromptText } from '../model/chat.js';
import type { Tokenizer } from '../model/tokenizer.js';

export const PROMPTS = {
  describe: 'Describe the sound.',
  gender: 'What is the gender of the speaker?',
  sounds: 'What sounds can you hear?',
  speaking: 'Is anyone speaking?',
} as const;
export type PromptKind = keyof typeof PROMPTS;
export const PROMPT_KINDS = Object.keys(PROMPTS) as PromptKind[];

/** Target value for positions without loss (crossEntropy's ignoreIndex). */
export const IGNORE = -100;

export interface QA {
  kind: PromptKind;
  question: string;
  answer: string;
}

/**
 * Order of the labels in the "What sounds can you hear?" answer. 'given': as the manifest lists them
 * (foreground first, so loudest first in mixtures). 'canonical': in CONCEPT_LABELS order (speech
 * first, then a fixed order of sounds). Why offer it: with loudness order the model must judge which
 * of two sounds within a few dB is louder before it names either, and the order of the rest varies
 * from clip to clip; a fixed order makes the answer a function of the set of sounds alone, and each
 * next label a question of "which later concept is also present?" (order matters for sequence
 * prediction of sets: Vinyals et al. 2016).
 */
export type LabelOrder = 'given' | 'canonical';
export const LABEL_ORDERS: readonly LabelOrder[] = ['given', 'canonical'];

/** The label answer: the clip's labels ", "-joined, in the given order (see LabelOrder). */
export function labelsAnswer(labels: readonly string[], order: LabelOrder = 'given'): string {
  if (order === 'given') return labels.join(', ');
  // labels outside CONCEPT_LABELS (another corpus) keep their given order after the known ones
  const rank = (l: string) => {
    const i = CONCEPT_LABELS.indexOf(l);
    return i < 0 ? CONCEPT_LABELS.length : i;
  };
  return labels.map((l, i) => ({ l, i })).sort((a, b) => rank(a.l) - rank(b.l) || a.i - b.i).map((x) => x.l).join(', ');
}

/** Every question that applies to a clip, with its answer (fixed order: PROMPT_KINDS). */
export function clipQAs(e: ManifestEntry, labelOrder: LabelOrder = 'given'): QA[] {
  // a recording outside the corpus's labels (manifest `labelled: false`): what is known is asked
  if (e.labelled === false) {
    return [
      ...(e.speech && e.gender ? [{ kind: 'gender' as const, question: PROMPTS.gender, answer: e.gender }] : []),
      { kind: 'speaking', question: PROMPTS.speaking, answer: e.speech ? 'yes' : 'no' },
    ];
  }
  const out: QA[] = [{ kind: 'describe', question: PROMPTS.describe, answer: e.caption }];
  if (e.speech) {
    if (e.gender !== 'female' && e.gender !== 'male') throw new ArdError(`${e.file}: a speech clip without a gender`);
    out.push({ kind: 'gender', question: PROMPTS.gender, answer: e.gender });
  }
  out.push({ kind: 'sounds', question: PROMPTS.sounds, answer: labelsAnswer(e.labels, labelOrder) });
  out.push({ kind: 'speaking', question: PROMPTS.speaking, answer: e.speech ? 'yes' : 'no' });
  return out;
}

/**
 * Labels named in a free-text answer: every known label found as a whole phrase, longest first,
 * each match blanked out so 'female speech' is not also read as 'male speech'. Sorted as `known`.
 */
export function parseLabels(answer: string, known: readonly string[]): string[] {
  let text = ` ${answer.toLowerCase().replace(/[^a-z0-9]+/g, ' ')} `;
  const found = new Set<string>();
  for (const label of [...known].sort((a, b) => b.length - a.length)) {
    const needle = ` ${label.toLowerCase().replace(/[^a-z0-9]+/g, ' ').trim()} `;
    if (needle.trim() === '') continue;
    if (text.includes(needle)) {
      found.add(label);
      text = text.split(needle).join(' | ');
    }
  }
  return known.filter((l) => found.has(l));
}

/** Reads a yes/no answer: true, false, or null when it is neither. */
export function parseYesNo(answer: string): boolean | null {
  const w = answer.trim().toLowerCase().replace(/[^a-z]+/g, ' ').trim().split(' ')[0];
  return w === 'yes' ? true : w === 'no' ? false : null;
}

/** Reads a gender answer: 'female', 'male', or null. */
export function parseGender(answer: string): 'female' | 'male' | null {
  const t = ` ${answer.toLowerCase().replace(/[^a-z]+/g, ' ')} `;
  const f = /\s(female|woman|women)\s/.test(t);
  const m = /\s(male|man|men)\s/.test(t);
  return f && !m ? 'female' : m && !f ? 'male' : null;
}

// ---- the chat template ----------------------------------------------------------------------
// Qwen2-Audio's template from chat.ts (what inference feeds), for one audio in the first user
// turn; later turns follow the same template ("<|im_start|>user\n…<|im_end|>\n"). Text segments
// are tokenised separately at special tokens and newlines, where the pre-tokeniser splits anyway,
// so the ids equal those of buildChatPrompt (tested).

const AUDIO_MARK = '<|AUDIO|>';

/** The single-turn prompt around the audio: [text before the placeholders, text after them]. */
export function singleTurnParts(question: string): [string, string] {
  const text = chatPromptText(1, question);
  const i = text.indexOf(AUDIO_MARK);
  if (i < 0 || text.indexOf(AUDIO_MARK, i + 1) >= 0) throw new ArdError('train-data: the chat template must hold one audio placeholder');
  return [text.slice(0, i), text.slice(i + AUDIO_MARK.length)];
}

/** Text of a later question (after the previous answer's <|im_end|>). */
export function chatNextQuestion(question: string): string {
  return `\n<|im_start|>user\n${question}<|im_end|>\n<|im_start|>assistant\n`;
}

export interface EncodedConversation {
  /** Token ids (the audio placeholder repeated nAudio times). */
  ids: number[];
  /** Next-token targets aligned with ids: targets[i] is the label for the logits at row i. */
  targets: number[];
  /** Where the audio placeholders start. */
  audioStart: number;
  nAudio: number;
  /** Row (in ids) of the last prompt token before each answer (its logits predict the answer's first token). */
  answerRows: number[];
}

/** Token ids of the special tokens the template needs. */
export interface TemplateIds {
  audio: number;
  imEnd: number;
  imStart: number;
  endOfText: number;
}

export function templateIds(tok: Tokenizer): TemplateIds {
  const id = (t: string): number => {
    const v = tok.tokenToId(t);
    if (v === undefined) throw new ArdError(`${tok.source}: tokenizer has no ${t} token`);
    return v;
  };
  return { audio: id('<|AUDIO|>'), imEnd: id('<|im_end|>'), imStart: id('<|im_start|>'), endOfText: id('<|endoftext|>') };
}

/**
 * A conversation about one clip: the audio with the first question, then any others as later
 * turns (training uses one question per sequence). Loss on each answer's tokens and the
 * <|im_end|> that closes it.
 */
export function encodeConversation(tok: Tokenizer, nAudio: number, qas: readonly QA[]): EncodedConversation {
  if (!Number.isInteger(nAudio) || nAudio < 1) throw new ArdError(`encodeConversation: ${nAudio} audio tokens`);
  if (qas.length === 0) throw new ArdError('encodeConversation: no questions');
  const t = templateIds(tok);
  const ids: number[] = [];
  const lossMask: boolean[] = [];
  const push = (part: number[], loss: boolean) => {
    for (const x of part) {
      ids.push(x);
      lossMask.push(loss);
    }
  };
  const [before, after] = singleTurnParts(qas[0]!.question);
  push(tok.encode(before), false);
  const audioStart = ids.length;
  push(new Array<number>(nAudio).fill(t.audio), false);
  const answerRows: number[] = [];
  qas.forEach((qa, i) => {
    push(tok.encode(i === 0 ? after : chatNextQuestion(qa.question)), false);
    answerRows.push(ids.length - 1);
    push(tok.encode(qa.answer, { allowSpecial: false }), true);
    push([t.imEnd], true);
  });
  // targets[i] = ids[i + 1] where that token carries loss
  const targets = ids.map((_, i) => (i + 1 < ids.length && lossMask[i + 1] ? ids[i + 1]! : IGNORE));
  return { ids, targets, audioStart, nAudio, answerRows };
}

/** Every string the tokenizer has to encode well: template text, questions, answers. */
export function tokenizerTexts(entries: readonly ManifestEntry[]): string[] {
  const out: string[] = [];
  for (const e of entries) {
    const qas = clipQAs(e);
    out.push(chatPromptText(1, qas[0]!.question) + qas[0]!.answer + '<|im_end|>');
    for (const qa of qas.slice(1)) out.push(chatNextQuestion(qa.question) + qa.answer + '<|im_end|>');
  }
  return out;
}

/** Byte-level BPE on all the text the model will read and write (vocab may come out smaller). */
export function trainTokenizer(entries: readonly ManifestEntry[], vocabSize = 1024): TokenizerJson {
  return trainBpe(tokenizerTexts(entries), { vocabSize, specialTokens: QWEN2_AUDIO_SPECIAL_TOKENS });
}

// ---- deterministic sampling -----------------------------------------------------------------
// All training randomness is a pure function of (seed, what, indices), so resuming needs only the
// step number to continue exactly.

/** 32-bit hash of integers (splitmix-style avalanche). */
export function hashInts(...xs: number[]): number {
  let h = 0x9e3779b9;
  for (const x of xs) {
    h = Math.imul(h ^ (x >>> 0), 0x85ebca6b) >>> 0;
    h ^= h >>> 13;
    h = Math.imul(h, 0xc2b2ae35) >>> 0;
    h ^= h >>> 16;
  }
  return h >>> 0;
}

/** 32-bit FNV-1a hash of a string (per-tensor init streams, cache and run keys). */
export function fnv(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

/** fnv as 8 hex digits. */
export function fnvHex(s: string): string {
  return fnv(s).toString(16).padStart(8, '0');
}

export function shuffled<T>(items: readonly T[], rand: () => number): T[] {
  const a = [...items];
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}

/**
 * The clips of batch `step`: epochs are seeded permutations of the training clips, consumed
 * `batch` at a time (an epoch's tail that does not fill a batch moves to the next epoch's order).
 */
export function batchClips(seed: number, step: number, batch: number, nClips: number): number[] {
  if (nClips < 1) throw new ArdError('training: no training clips');
  const perEpoch = Math.max(1, Math.floor(nClips / batch));
  const epoch = Math.floor(step / perEpoch);
  const k = step % perEpoch;
  const order = shuffled(
    Array.from({ length: nClips }, (_, i) => i),
    mulberry32(hashInts(seed, 0x51ed, epoch)),
  );
  const out: number[] = [];
  for (let i = 0; i < batch; i++) out.push(order[(k * batch + i) % nClips]!);
  return out;
}

/**
 * The clip indices one epoch draws from: each clip once, and a clip with several labels (a
 * mixture) `mixtureRepeat` times. Mixtures are a fifth of the corpus and the model names only
 * their loudest sound; showing them 3× as often did not change that (the pooled audio features
 * barely carry the quieter sounds), but the knob stays for experiments.
 */
export function epochPool(labelCounts: readonly number[], mixtureRepeat = 1): number[] {
  if (!(Number.isInteger(mixtureRepeat) && mixtureRepeat >= 1)) throw new ArdError(`training: mixture repeat must be an integer ≥ 1 (got ${mixtureRepeat})`);
  return labelCounts.flatMap((n, i) => Array<number>(n > 1 ? mixtureRepeat : 1).fill(i));
}

/** The question order for clip `clip` at step `step`. */
export function questionOrder(seed: number, step: number, clip: number, qas: readonly QA[]): QA[] {
  return shuffled(qas, mulberry32(hashInts(seed, 0x0a5e, step, clip)));
}

/** Relative draw weights of the question kinds (a missing kind weighs 1; 0 never asks it). */
export type QuestionWeights = Partial<Record<PromptKind, number>>;

/** Checks question weights: finite, ≥ 0, and some question left for a clip without speech. */
export function checkQuestionWeights(w: QuestionWeights): void {
  for (const [kind, v] of Object.entries(w)) {
    if (!(PROMPT_KINDS as string[]).includes(kind)) throw new ArdError(`question weights: unknown question kind '${kind}' (kinds: ${PROMPT_KINDS.join(', ')})`);
    if (!(Number.isFinite(v) && v! >= 0)) throw new ArdError(`question weights: ${kind} must be a number ≥ 0 (got ${v})`);
  }
  if ((['describe', 'sounds', 'speaking'] as const).every((k) => (w[k] ?? 1) === 0)) throw new ArdError('question weights: a clip without speech would have no question left');
}

/**
 * `k` distinct questions (fewer if the clip has fewer) for clip `clip` at step `step`. With
 * weights: a weighted draw without replacement (each question's key u^(1/w), largest first).
 */
export function pickQuestions(seed: number, step: number, clip: number, qas: readonly QA[], k: number, weights?: QuestionWeights | null): QA[] {
  if (!weights) return questionOrder(seed, step, clip, qas).slice(0, Math.max(1, k));
  const r = mulberry32(hashInts(seed, 0x0a5e, step, clip));
  return qas
    .map((qa) => ({ qa, w: weights[qa.kind] ?? 1, u: r() }))
    .filter((e) => e.w > 0)
    .map((e) => ({ qa: e.qa, key: Math.log(Math.max(e.u, 1e-300)) / e.w }))
    .sort((a, b) => b.key - a.key)
    .slice(0, Math.max(1, k))
    .map((e) => e.qa);
}
