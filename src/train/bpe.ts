import { ArdError } from '../util/errors.js';
import { QWEN2_PATTERN, Tokenizer, bytesToUnicode } from '../model/tokenizer.js';

// Trains a small byte-level BPE tokenizer for the tiny default model. The 256 byte tokens are
// always in the vocabulary, so any text encodes and decodes exactly; the pre-tokeniser is Qwen2's,
// and the output is a Hugging Face tokenizer.json that tokenizer.ts (and HF tokenizers) load.

/** Qwen2-Audio's special tokens, in Qwen2's id order. */
export const QWEN2_AUDIO_SPECIAL_TOKENS: readonly string[] = [
  '<|endoftext|>',
  '<|im_start|>',
  '<|im_end|>',
  '<|AUDIO|>',
  '<|audio_bos|>',
  '<|audio_eos|>',
];

export interface BpeTrainOptions {
  /** Total vocabulary: 256 byte tokens + merges + special tokens. */
  vocabSize: number;
  /** Added after the merged tokens, in this order (default QWEN2_AUDIO_SPECIAL_TOKENS). */
  specialTokens?: readonly string[];
  /** Stop merging when the best pair occurs fewer times than this (default 2). */
  minFrequency?: number;
  /** Pre-tokeniser split regex (default QWEN2_PATTERN). */
  pattern?: string;
}

/** The parts of a Hugging Face tokenizer.json that trainBpe writes. */
export interface TokenizerJson {
  version: string;
  truncation: null;
  padding: null;
  added_tokens: {
    id: number;
    content: string;
    single_word: boolean;
    lstrip: boolean;
    rstrip: boolean;
    normalized: boolean;
    special: boolean;
  }[];
  normalizer: null;
  pre_tokenizer: unknown;
  post_processor: unknown;
  decoder: unknown;
  model: {
    type: 'BPE';
    dropout: null;
    unk_token: null;
    continuing_subword_prefix: null;
    end_of_word_suffix: null;
    fuse_unk: boolean;
    byte_fallback: boolean;
    ignore_merges: boolean;
    vocab: Record<string, number>;
    merges: [string, string][];
  };
}

function byteLevelSection() {
  return { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false };
}

function skeleton(pattern: string, specials: readonly string[], vocab: Record<string, number>, merges: [string, string][]): TokenizerJson {
  const base = Object.keys(vocab).length;
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: specials.map((content, i) => ({
      id: base + i,
      content,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    })),
    normalizer: null,
    pre_tokenizer: {
      type: 'Sequence',
      pretokenizers: [
        { type: 'Split', pattern: { Regex: pattern }, behavior: 'Isolated', invert: false },
        byteLevelSection(),
      ],
    },
    post_processor: byteLevelSection(),
    decoder: byteLevelSection(),
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges,
    },
  };
}

const ID_BITS = 2 ** 21; // pair key = left · 2^21 + right; ids stay below 2^21

export function trainBpe(corpus: Iterable<string>, opts: BpeTrainOptions): TokenizerJson {
  const specials = opts.specialTokens ?? QWEN2_AUDIO_SPECIAL_TOKENS;
  const minFreq = opts.minFrequency ?? 2;
  const pattern = opts.pattern ?? QWEN2_PATTERN;
  if (new Set(specials).size !== specials.length || specials.some((s) => s.length === 0)) {
    throw new ArdError('bpe-train: special tokens must be distinct and non-empty');
  }
  const minVocab = 256 + specials.length;
  if (!Number.isSafeInteger(opts.vocabSize) || opts.vocabSize < minVocab || opts.vocabSize >= ID_BITS) {
    throw new ArdError(`bpe-train: vocabSize must be an integer from ${minVocab} (256 bytes + ${specials.length} special tokens) up to ${ID_BITS - 1} (got ${opts.vocabSize})`);
  }
  const targetTokens = opts.vocabSize - specials.length;

  // Null-prototype objects: a token may well be spelled "__proto__".
  const byteVocab: Record<string, number> = Object.create(null);
  const byteChars = bytesToUnicode();
  for (let b = 0; b < 256; b++) byteVocab[byteChars[b]!] = b;

  // Pre-tokenise exactly as the finished tokenizer will, by asking a merge-less one.
  const pre = Tokenizer.fromJSON(skeleton(pattern, [], byteVocab, []), 'bpe-train');
  const specialRe = specials.length
    ? new RegExp(specials.map((s) => s.replace(/[\\^$.*+?()[\]{}|/]/g, '\\$&')).join('|'), 'gu')
    : null;
  const wordCount = new Map<string, number>();
  for (const text of corpus) {
    const parts = specialRe ? text.split(specialRe) : [text];
    for (const part of parts) {
      if (!part) continue;
      for (const piece of pre.preTokenize(part)) wordCount.set(piece, (wordCount.get(piece) ?? 0) + 1);
    }
  }

  // Words as byte-id arrays, with their corpus frequency.
  const enc = new TextEncoder();
  const words: number[][] = [];
  const freq: number[] = [];
  for (const [w, c] of wordCount) {
    words.push(Array.from(enc.encode(w)));
    freq.push(c);
  }

  const tokStr: string[] = byteChars.slice();
  const strToId = new Map<string, number>(tokStr.map((s, i) => [s, i]));
  const pairCount = new Map<number, number>();
  const where = new Map<number, Set<number>>();
  const addPairs = (wi: number, sign: 1 | -1) => {
    const w = words[wi]!;
    const f = freq[wi]! * sign;
    for (let i = 0; i + 1 < w.length; i++) {
      const key = w[i]! * ID_BITS + w[i + 1]!;
      const c = (pairCount.get(key) ?? 0) + f;
      if (c === 0) pairCount.delete(key);
      else pairCount.set(key, c);
      if (sign > 0) {
        let s = where.get(key);
        if (!s) where.set(key, (s = new Set()));
        s.add(wi);
      }
    }
  };
  for (let wi = 0; wi < words.length; wi++) addPairs(wi, 1);

  const merges: [string, string][] = [];
  while (tokStr.length < targetTokens) {
    // Most frequent pair; ties go to the smaller (left, right) ids, so the result is deterministic.
    let bestKey = -1;
    let bestCount = 0;
    for (const [key, c] of pairCount) {
      if (c > bestCount || (c === bestCount && key < bestKey)) {
        bestKey = key;
        bestCount = c;
      }
    }
    if (bestKey < 0 || bestCount < minFreq) break;
    const a = Math.floor(bestKey / ID_BITS);
    const b = bestKey % ID_BITS;
    const merged = tokStr[a]! + tokStr[b]!;
    let id = strToId.get(merged);
    if (id === undefined) {
      id = tokStr.length;
      tokStr.push(merged);
      strToId.set(merged, id);
    }
    merges.push([tokStr[a]!, tokStr[b]!]);

    for (const wi of where.get(bestKey) ?? []) {
      const w = words[wi]!;
      let has = false;
      for (let i = 0; i + 1 < w.length; i++) if (w[i] === a && w[i + 1] === b) { has = true; break; }
      if (!has) continue;
      addPairs(wi, -1);
      // Left to right, non-overlapping: the same order BPE encoding applies a merge in.
      const out: number[] = [];
      for (let i = 0; i < w.length; i++) {
        if (i + 1 < w.length && w[i] === a && w[i + 1] === b) {
          out.push(id);
          i++;
        } else out.push(w[i]!);
      }
      words[wi] = out;
      addPairs(wi, 1);
    }
    where.delete(bestKey);
    pairCount.delete(bestKey);
  }

  const vocab: Record<string, number> = Object.create(null);
  for (let i = 0; i < tokStr.length; i++) vocab[tokStr[i]!] = i;
  return skeleton(pattern, specials, vocab, merges);
}
