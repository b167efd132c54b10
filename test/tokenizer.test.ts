import { mulberry32 } from '../src/util/random.js';
import { describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ArdError } from '../src/util/errors.js';
import {
  QWEN2_PATTERN,
  Tokenizer,
  bytesToUnicode,
  compileSplitPattern,
  loadTokenizer,
  toByteLevel,
} from '../src/model/tokenizer.js';
import { QWEN2_AUDIO_SPECIAL_TOKENS, trainBpe } from '../src/train/bpe.js';

const FIXTURE = path.join(import.meta.dirname, 'fixtures', 'tokenizer', 'tiny.json');


// Random Unicode text: words, whitespace runs (incl. \r\n, tabs, NEL, NBSP), controls, CJK, emoji
// (astral, ZWJ sequences), combining marks, digits, punctuation, special-token look-alikes and
// arbitrary scalar values. Lone surrogates are not text (UTF-8 cannot hold them), so they are excluded.
function randomText(r: () => number, maxParts = 12): string {
  const pick = <T,>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  const randScalar = () => {
    for (;;) {
      const cp = r() < 0.5 ? Math.floor(r() * 0x10000) : Math.floor(r() * 0x110000);
      if (cp < 0xd800 || cp > 0xdfff) return String.fromCodePoint(cp);
    }
  };
  const gens: (() => string)[] = [
    () => pick(['hello', 'the', 'her', 'dog', 'barks', "it's", "I'LL", 'Über', 'naïve', 'ABC']),
    () => ' '.repeat(1 + Math.floor(r() * 4)),
    () => pick(['\r\n', '\n', '\r', '\t', '\n\n', ' \r\n ', '\u0085', '\u00a0', '\u3000', '\u2028']),
    () => String.fromCharCode(Math.floor(r() * 32)),
    () => pick(['中文', '日本語', '한국어', '音频', '猫が鳴く']),
    () => pick(['😀', '👩‍👩‍👧', '🇫🇷', '🎵🎶', '\u{1F600}\u{FE0F}']),
    () => pick(['e\u0301', 'a\u0308\u0323', '\u0301', 'n\u0303o']),
    () => String(Math.floor(r() * 100000)),
    () => pick(['!', '...', '?!', '"', "'", '(x)', '—', '«»', '<|', '|>', '<|im_end', '\ufeff']),
    () => pick(['<|im_start|>', '<|im_end|>', '<|endoftext|>']),
    randScalar,
    () => Array.from({ length: 1 + Math.floor(r() * 5) }, randScalar).join(''),
  ];
  const n = Math.floor(r() * maxParts);
  let s = '';
  for (let i = 0; i < n; i++) s += pick(gens)();
  return s;
}

describe('byte-level mapping and split pattern', () => {
  it('maps 256 bytes to 256 distinct printable characters, printable ASCII to itself', () => {
    const m = bytesToUnicode();
    expect(new Set(m).size).toBe(256);
    expect(m[0x41]).toBe('A');
    expect(m[0x20]).toBe('Ġ');
    expect(m[0x0a]).toBe('Ċ');
    for (const c of m) expect(/\s/.test(c)).toBe(false);
    expect(toByteLevel(' hé')).toBe('ĠhÃ©');
  });

  it('splits text like Qwen2 (contractions, single digits, whitespace runs)', () => {
    const re = compileSplitPattern(QWEN2_PATTERN);
    const split = (s: string) => [...s.matchAll(re)].map((m) => m[0]);
    expect(split("Hello world's 123")).toEqual(['Hello', ' world', "'s", ' ', '1', '2', '3']);
    expect(split("I'M HE'LL")).toEqual(['I', "'M", ' HE', "'LL"]); // (?i:…) group
    expect(split('a\r\n\r\nb')).toEqual(['a', '\r\n\r\n', 'b']);
    expect(split('x  \n y')).toEqual(['x', '  \n', ' y']);
    expect(split('wow...!!!\n')).toEqual(['wow', '...!!!\n']);
    expect(split('  the')).toEqual([' ', ' the']);
    expect(split('中文 text')).toEqual(['中文', ' text']);
    // Oniguruma's \s is Unicode White_Space: NEL is whitespace, U+FEFF is not.
    expect(split('a\u0085\u0085b')).toEqual(['a', '\u0085', '\u0085b']);
    expect(split('\ufeff\ufeffa')).toEqual(['\ufeff\ufeff', 'a']);
  });

  it('rejects inline flags JS cannot express', () => {
    expect(() => compileSplitPattern('(?x) a b', 'p.json')).toThrow(ArdError);
    expect(() => compileSplitPattern('(?i)ab', 'p.json')).toThrow(/p\.json/);
  });
});

describe('tiny handcrafted tokenizer.json', () => {
  const tok = loadTokenizer(FIXTURE);
  const id = (t: string) => {
    const v = tok.tokenToId(t);
    if (v === undefined) throw new Error(`no ${t}`);
    return v;
  };

  it('loads vocab, string- and array-form merges and added tokens', () => {
    expect(tok.vocabSize).toBe(269);
    expect(id('!')).toBe(0);
    expect(id('Ġ')).toBe(220);
    expect(id('he')).toBe(256);
    expect(id('ä¸Ń')).toBe(265);
    expect(id('<|im_end|>')).toBe(268);
    expect(tok.idToToken(260)).toBe('Ġthe');
    expect(tok.isSpecial(267)).toBe(true);
    expect(tok.isSpecial(260)).toBe(false);
  });

  it('applies merges by rank (hand-checked)', () => {
    expect(tok.encode('hello')).toEqual([id('hello')]);
    expect(tok.encode(' the')).toEqual([id('Ġthe')]);
    // "h e" (rank 0) beats "e r" (rank 6): her → he + r, not h + er.
    expect(tok.encode('her')).toEqual([id('he'), id('r')]);
    expect(tok.encode('er')).toEqual([id('er')]);
    // hell needs he + ll first; "helo" only gets "he".
    expect(tok.encode('helo')).toEqual([id('he'), id('l'), id('o')]);
    expect(tok.encode('hello the')).toEqual([id('hello'), id('Ġthe')]);
    // The regex gives ' ' and ' the', so ĠĠ never forms here...
    expect(tok.encode('  the')).toEqual([id('Ġ'), id('Ġthe')]);
    // ...but does within a whitespace run: three spaces → ĠĠ + Ġ (leftmost pair first).
    expect(tok.encode('   ')).toEqual([id('ĠĠ'), id('Ġ')]);
    expect(tok.encode('中')).toEqual([265]);
    expect(tok.encode('中中')).toEqual([265, 265]);
    // 文 has no merges: its three UTF-8 bytes.
    expect(tok.encode('文')).toHaveLength(3);
  });

  it('splits special tokens out first, unless allowSpecial is false', () => {
    const ids = tok.encode('<|im_start|>hello<|im_end|>');
    expect(ids).toEqual([267, id('hello'), 268]);
    const plain = tok.encode('<|im_start|>hello', { allowSpecial: false });
    expect(plain).not.toContain(267);
    expect(plain.length).toBeGreaterThan(3);
    expect(tok.decode(plain)).toBe('<|im_start|>hello');
    expect(tok.decode(ids)).toBe('<|im_start|>hello<|im_end|>');
    expect(tok.decode(ids, { skipSpecial: true })).toBe('hello');
  });

  it('keeps a leading BOM and control characters', () => {
    for (const s of ['\ufeffhello', '\u0000\u0001 \u007f', '\r\n\r\n', ' ']) expect(tok.decode(tok.encode(s))).toBe(s);
  });

  it('round-trips thousands of random Unicode strings exactly, also when streamed', () => {
    const r = mulberry32(12345);
    for (let i = 0; i < 3000; i++) {
      const s = randomText(r);
      const allowSpecial = i % 2 === 0;
      const ids = tok.encode(s, { allowSpecial });
      expect(tok.decode(ids)).toBe(s);
      const st = tok.decodeStream();
      let out = '';
      for (const t of ids) {
        const piece = st.push(t);
        // Never half a character: no replacement chars appear when the input had none.
        if (!s.includes('\ufffd')) expect(piece).not.toContain('\ufffd');
        out += piece;
      }
      out += st.flush();
      expect(out).toBe(s);
    }
  });

  it('matches a naive rank-order BPE on random words', () => {
    const json = JSON.parse(fs.readFileSync(FIXTURE, 'utf8'));
    const ranks = new Map<string, number>();
    json.model.merges.forEach((m: string | string[], i: number) => {
      const [a, b] = typeof m === 'string' ? m.split(' ') : m;
      ranks.set(`${a}\u0000${b}`, i);
    });
    const naive = (piece: string): number[] => {
      let syms = [...toByteLevel(piece)];
      for (;;) {
        let best = -1;
        let bestRank = Infinity;
        for (let i = 0; i + 1 < syms.length; i++) {
          const rk = ranks.get(`${syms[i]}\u0000${syms[i + 1]}`);
          if (rk !== undefined && rk < bestRank) {
            bestRank = rk;
            best = i;
          }
        }
        if (best < 0) break;
        syms = [...syms.slice(0, best), syms[best]! + syms[best + 1]!, ...syms.slice(best + 2)];
      }
      return syms.map((s) => id(s));
    };
    const r = mulberry32(7);
    const alphabet = ['h', 'e', 'l', 'o', 'r', ' ', 't', '中', 'x'];
    for (let i = 0; i < 2000; i++) {
      const len = 1 + Math.floor(r() * 14);
      let w = '';
      for (let k = 0; k < len; k++) w += alphabet[Math.floor(r() * alphabet.length)];
      const want = tok.preTokenize(w).flatMap(naive);
      expect(tok.encode(w)).toEqual(want);
    }
  });

  it('applies an NFC normaliser when tokenizer.json has one (as Qwen2 does)', () => {
    const json = JSON.parse(fs.readFileSync(FIXTURE, 'utf8'));
    json.normalizer = { type: 'NFC' };
    const t = Tokenizer.fromJSON(json);
    expect(t.encode('e\u0301')).toEqual(t.encode('é'));
    expect(t.decode(t.encode('e\u0301'))).toBe('é');
    expect(tok.decode(tok.encode('e\u0301'))).toBe('e\u0301');
  });

  it('honours ignore_merges for whole words in the vocab', () => {
    const json = JSON.parse(fs.readFileSync(FIXTURE, 'utf8'));
    json.model.vocab['her'] = 300;
    expect(Tokenizer.fromJSON(json).encode('her')).toEqual([id('he'), id('r')]);
    json.model.ignore_merges = true;
    expect(Tokenizer.fromJSON(json).encode('her')).toEqual([300]);
  });

  it('rejects broken tokenizer.json files with the file name', () => {
    const base = () => JSON.parse(fs.readFileSync(FIXTURE, 'utf8'));
    const bad1 = base();
    bad1.model.merges.push('zz qq');
    expect(() => Tokenizer.fromJSON(bad1, 'bad1.json')).toThrow(/bad1\.json: model\.merges\[10\] uses "zz"/);
    const bad2 = base();
    bad2.model.type = 'WordPiece';
    expect(() => Tokenizer.fromJSON(bad2, 'bad2.json')).toThrow(/bad2\.json: .*WordPiece/);
    const bad3 = base();
    bad3.model.merges.push(42);
    expect(() => Tokenizer.fromJSON(bad3, 'bad3.json')).toThrow(ArdError);
    const bad4 = base();
    bad4.pre_tokenizer = { type: 'Metaspace' };
    expect(() => Tokenizer.fromJSON(bad4, 'bad4.json')).toThrow(/bad4\.json: unsupported pre_tokenizer/);
    expect(() => tok.decode([99999])).toThrow(/token id 99999/);
    const missing = path.join(os.tmpdir(), 'no-such-tokenizer.json');
    expect(() => loadTokenizer(missing)).toThrow(/no-such-tokenizer\.json/);
  });
});

// Caption-like corpus for the trainer, seeded.
function corpus(n: number, seed: number): string[] {
  const r = mulberry32(seed);
  const pick = <T,>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  const subj = ['a dog', 'a woman', 'the man', 'a bird', 'rain', 'an engine', 'a crowd', 'the child', 'a cat'];
  const verb = ['barks', 'speaks', 'sings', 'chirps', 'falls', 'hums', 'cheers', 'laughs', 'meows'];
  const tail = ['loudly', 'softly', 'in the distance', 'while music plays', 'on a roof', 'nearby', 'happily'];
  const q = ['What is the sound?', 'Describe the audio.', 'Is the speaker happy?', 'What emotion is expressed?'];
  // Made-up names give the trainer enough distinct pairs to fill a few hundred merges.
  const syl = ['ka', 'lo', 'mi', 'ren', 'tu', 'sha', 'vo', 'qui', 'zen', 'bar', 'el', 'dra', 'pho', 'nyx'];
  const names = Array.from({ length: 300 }, () => {
    let w = '';
    for (let k = 0, m = 2 + Math.floor(r() * 3); k < m; k++) w += pick(syl);
    return w;
  });
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const k = r();
    if (k < 0.2) out.push(`${pick(names)} says ${pick(names)} to ${pick(names)}.`);
    else if (k < 0.6) out.push(`${pick(subj)} ${pick(verb)} ${pick(tail)}.`.replace(/^./, (c) => c.toUpperCase()));
    else if (k < 0.8) out.push(pick(q));
    else out.push(`<|im_start|>user\n<|audio_bos|><|AUDIO|><|audio_eos|>${pick(q)}<|im_end|>\n`);
  }
  return out;
}

describe('BPE training', () => {
  const texts = corpus(5000, 99);
  const json = trainBpe(texts, { vocabSize: 512 });

  it('fills the vocabulary: 256 bytes + merges + special tokens, ids dense', () => {
    const tok = Tokenizer.fromJSON(json, 'trained');
    expect(tok.vocabSize).toBe(512);
    expect(json.added_tokens.map((t) => t.content)).toEqual([...QWEN2_AUDIO_SPECIAL_TOKENS]);
    expect(json.added_tokens.map((t) => t.id)).toEqual([506, 507, 508, 509, 510, 511]);
    const ids = Object.values(json.model.vocab).sort((a, b) => a - b);
    expect(ids).toEqual(Array.from({ length: 506 }, (_, i) => i));
    for (const ch of bytesToUnicode()) expect(tok.tokenToId(ch)).toBeLessThan(256);
    expect(json.model.merges.length).toBeGreaterThanOrEqual(250);
  });

  it('is deterministic', () => {
    expect(JSON.stringify(trainBpe(texts, { vocabSize: 512 }))).toBe(JSON.stringify(json));
  });

  it('merges cut the token count and everything round-trips', () => {
    const tok = Tokenizer.fromJSON(JSON.parse(JSON.stringify(json)), 'trained');
    let bytes = 0;
    let tokens = 0;
    for (const s of corpus(500, 4242)) {
      const ids = tok.encode(s);
      expect(tok.decode(ids)).toBe(s);
      bytes += new TextEncoder().encode(s).length;
      tokens += ids.length;
    }
    // In-domain text should compress several-fold over raw bytes.
    expect(tokens).toBeLessThan(bytes / 3);
    const r = mulberry32(2024);
    for (let i = 0; i < 1000; i++) {
      const s = randomText(r);
      expect(tok.decode(tok.encode(s))).toBe(s);
    }
    // Frequent words become single tokens.
    expect(tok.encode(' barks')).toHaveLength(1);
  });

  it('encodes the Qwen2-Audio chat template with the special ids', () => {
    const tok = Tokenizer.fromJSON(json, 'trained');
    const ids = tok.encode('<|im_start|>user\n<|audio_bos|><|AUDIO|><|audio_eos|>Hi<|im_end|>');
    const sp = (s: string) => tok.tokenToId(s)!;
    expect(ids[0]).toBe(sp('<|im_start|>'));
    expect(ids).toContain(sp('<|AUDIO|>'));
    const a = ids.indexOf(sp('<|audio_bos|>'));
    expect(ids.slice(a, a + 3)).toEqual([sp('<|audio_bos|>'), sp('<|AUDIO|>'), sp('<|audio_eos|>')]);
    expect(ids.at(-1)).toBe(sp('<|im_end|>'));
  });

  it('writes a file that loads back', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bpe-'));
    const f = path.join(dir, 'tokenizer.json');
    fs.writeFileSync(f, JSON.stringify(json));
    const tok = loadTokenizer(f);
    expect(tok.decode(tok.encode('A dog barks loudly.'))).toBe('A dog barks loudly.');
    fs.rmSync(dir, { recursive: true });
  });

  it('trains on 20k strings (its time is logged, not asserted)', () => {
    const big = corpus(20000, 5);
    const t0 = performance.now();
    const j = trainBpe(big, { vocabSize: 1024 });
    console.log(`BPE on 20k strings: ${(performance.now() - t0).toFixed(0)} ms, ${j.model.merges.length} merges`);
    expect(j.model.merges.length).toBeGreaterThan(0);
  });

  it('breaks ties between equally frequent pairs by the smaller ids, not by corpus order', () => {
    for (const texts of [['ab', 'cd'], ['cd', 'ab']]) {
      const j = trainBpe(texts, { vocabSize: 256 + 6 + 1, minFrequency: 1 });
      expect(j.model.merges).toEqual([['a', 'b']]);
    }
  });

  it('stops early when no pair occurs twice', () => {
    const j = trainBpe(['abc abc', 'xyz'], { vocabSize: 1000 });
    // "ab", "abc" and " a"... only pairs seen at least twice are merged.
    const t = Tokenizer.fromJSON(j, 'small');
    expect(j.model.merges.length).toBeLessThan(10);
    expect(t.vocabSize).toBe(256 + j.model.merges.length + 6);
    expect(t.encode('abc')).toHaveLength(1);
    expect(t.encode('xyz')).toHaveLength(3);
  });

  it('rejects a vocabulary too small for the bytes and specials', () => {
    expect(() => trainBpe(['x'], { vocabSize: 100 })).toThrow(ArdError);
  });
});
