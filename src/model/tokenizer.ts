import { ArdError } from '../util/errors.js';
import { readJson } from '../util/fs.js';

// A Hugging Face `tokenizer.json` byte-level BPE tokenizer (GPT-2 / Qwen2 family).
// Pipeline: added tokens are split out of the raw text → normaliser (if any) → pre-tokeniser
// (regex splits) → each piece's UTF-8 bytes mapped to printable characters → BPE merges by rank.
// Decoding maps token characters back to bytes and UTF-8-decodes the lot, so any text whose
// normalised form is itself (always true without a normaliser) round-trips exactly.

/** Qwen2's split pattern (tokenizer.json of Qwen2 / Qwen2-Audio), as written for Oniguruma. */
export const QWEN2_PATTERN =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/** GPT-2's pattern, used by the ByteLevel pre-tokeniser when `use_regex` is true. */
export const GPT2_PATTERN = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

let b2u: string[] | undefined;
let u2b: Map<number, number> | undefined;

/** GPT-2's byte → printable character map (printable Latin-1 bytes map to themselves). */
export function bytesToUnicode(): string[] {
  if (!b2u) {
    const bs: number[] = [];
    for (let b = 0x21; b <= 0x7e; b++) bs.push(b);
    for (let b = 0xa1; b <= 0xac; b++) bs.push(b);
    for (let b = 0xae; b <= 0xff; b++) bs.push(b);
    const cs = bs.slice();
    let n = 0;
    for (let b = 0; b < 256; b++) {
      if (!bs.includes(b)) {
        bs.push(b);
        cs.push(256 + n++);
      }
    }
    b2u = new Array<string>(256);
    u2b = new Map();
    for (let i = 0; i < 256; i++) {
      b2u[bs[i]!] = String.fromCharCode(cs[i]!);
      u2b.set(cs[i]!, bs[i]!);
    }
  }
  return b2u;
}

function unicodeToBytes(): Map<number, number> {
  bytesToUnicode();
  return u2b!;
}

/** Byte-level form of a string: its UTF-8 bytes as GPT-2 characters. */
export function toByteLevel(text: string): string {
  const map = bytesToUnicode();
  let s = '';
  for (const b of utf8.encode(text)) s += map[b];
  return s;
}

const utf8 = new TextEncoder();

/**
 * Compiles an Oniguruma-style split pattern as a JS unicode regex. JS (Node 20) lacks `(?i:…)`
 * groups, so ASCII letters inside them become `[xX]`; `\s`/`\S` become White_Space property
 * classes, which is what Oniguruma's Unicode `\s` means (JS's own `\s` adds U+FEFF and drops U+0085).
 */
export function compileSplitPattern(pattern: string, source = 'pattern'): RegExp {
  let out = '';
  let i = 0;
  let inClass = false;
  // Stack of group kinds: true for a case-insensitive group.
  const groups: boolean[] = [];
  const ci = () => groups.includes(true);
  while (i < pattern.length) {
    const c = pattern[i]!;
    if (c === '\\') {
      const n = pattern[i + 1];
      if (n === undefined) throw new ArdError(`${source}: split pattern ends with a backslash`);
      if (n === 's' || n === 'S') {
        out += n === 's' ? '\\p{White_Space}' : '\\P{White_Space}';
        i += 2;
        continue;
      }
      let j = i + 2;
      if ((n === 'p' || n === 'P') && pattern[j] === '{') j = pattern.indexOf('}', j) + 1;
      else if (n === 'u' && pattern[j] === '{') j = pattern.indexOf('}', j) + 1;
      else if (n === 'u') j += 4;
      else if (n === 'x') j += 2;
      if (j <= i) throw new ArdError(`${source}: unterminated escape in split pattern`);
      out += pattern.slice(i, j);
      i = j;
      continue;
    }
    if (inClass) {
      if (c === ']') inClass = false;
      out += ci() && /[a-z]/i.test(c) ? c.toLowerCase() + c.toUpperCase() : c;
      i++;
      continue;
    }
    if (c === '[') {
      inClass = true;
      out += c;
      i++;
      if (pattern[i] === '^') {
        out += '^';
        i++;
      }
      if (pattern[i] === ']') {
        out += '\\]';
        i++;
      }
      continue;
    }
    if (c === '(') {
      if (pattern.startsWith('(?i:', i)) {
        groups.push(true);
        out += '(?:';
        i += 4;
        continue;
      }
      // Other inline flag groups ((?i), (?x), (?-i:…)) have no JS equivalent here.
      if (pattern[i + 1] === '?' && /[a-zA-Z-]/.test(pattern[i + 2] ?? '')) {
        throw new ArdError(`${source}: unsupported inline flags in split pattern at ${JSON.stringify(pattern.slice(i, i + 6))}`);
      }
      groups.push(false);
      out += c;
      i++;
      continue;
    }
    if (c === ')') {
      groups.pop();
      out += c;
      i++;
      continue;
    }
    out += ci() && /[a-z]/i.test(c) ? `[${c.toLowerCase()}${c.toUpperCase()}]` : c;
    i++;
  }
  try {
    return new RegExp(out, 'gu');
  } catch (e: any) {
    throw new ArdError(`${source}: cannot compile split pattern ${JSON.stringify(pattern)} (${e.message})`);
  }
}

function escapeRegex(s: string): string {
  return s.replace(/[\\^$.*+?()[\]{}|/]/g, '\\$&');
}

// ---------------------------------------------------------------------------------------------
// pipeline pieces, built from tokenizer.json

type Normalize = (s: string) => string;
type PreTokenize = (pieces: string[]) => string[];
type SplitBehavior = 'Isolated' | 'Removed' | 'MergedWithPrevious' | 'MergedWithNext' | 'Contiguous';

function splitWith(re: RegExp, behavior: SplitBehavior, invert: boolean): PreTokenize {
  return (pieces) => {
    const out: string[] = [];
    for (const text of pieces) {
      // (text, isMatch) runs covering the whole string.
      const runs: [string, boolean][] = [];
      let last = 0;
      for (const m of text.matchAll(re)) {
        if (m[0].length === 0) continue;
        if (m.index! > last) runs.push([text.slice(last, m.index), invert]);
        runs.push([m[0], !invert]);
        last = m.index! + m[0].length;
      }
      if (last < text.length) runs.push([text.slice(last), invert]);
      let pendingNext = '';
      for (let k = 0; k < runs.length; k++) {
        const [s, isMatch] = runs[k]!;
        if (!isMatch) {
          out.push(pendingNext + s);
          pendingNext = '';
          continue;
        }
        switch (behavior) {
          case 'Isolated':
            out.push(s);
            break;
          case 'Removed':
            break;
          case 'MergedWithPrevious':
            if (k > 0 && out.length > 0) out[out.length - 1] += s;
            else out.push(s);
            break;
          case 'MergedWithNext':
            pendingNext += s;
            break;
          case 'Contiguous':
            if (k > 0 && runs[k - 1]![1]) out[out.length - 1] += s;
            else out.push(s);
            break;
        }
      }
      if (pendingNext) out.push(pendingNext);
    }
    return out;
  };
}

function buildNormalizer(n: any, source: string): Normalize | null {
  if (n === null || n === undefined) return null;
  switch (n.type) {
    case 'NFC':
    case 'NFD':
    case 'NFKC':
    case 'NFKD':
      return (s) => s.normalize(n.type);
    case 'Lowercase':
      return (s) => s.toLowerCase();
    case 'Sequence': {
      const parts = (n.normalizers ?? []).map((x: any) => buildNormalizer(x, source)).filter(Boolean) as Normalize[];
      return (s) => parts.reduce((acc, f) => f(acc), s);
    }
    case 'Replace': {
      const re =
        n.pattern?.String !== undefined
          ? new RegExp(escapeRegex(n.pattern.String), 'gu')
          : compileSplitPattern(n.pattern?.Regex ?? '', source);
      return (s) => s.replace(re, () => n.content);
    }
    default:
      throw new ArdError(`${source}: unsupported normalizer ${JSON.stringify(n.type)}`);
  }
}

interface PreTokInfo {
  steps: PreTokenize[];
  byteLevel: boolean;
}

function buildPreTokenizer(p: any, source: string, info: PreTokInfo): void {
  if (p === null || p === undefined) return;
  switch (p.type) {
    case 'Sequence':
      for (const x of p.pretokenizers ?? []) buildPreTokenizer(x, source, info);
      return;
    case 'Split': {
      const re =
        p.pattern?.String !== undefined
          ? new RegExp(escapeRegex(p.pattern.String), 'gu')
          : compileSplitPattern(String(p.pattern?.Regex ?? ''), source);
      const behavior = (p.behavior ?? 'Isolated') as SplitBehavior;
      if (!['Isolated', 'Removed', 'MergedWithPrevious', 'MergedWithNext', 'Contiguous'].includes(behavior)) {
        throw new ArdError(`${source}: unsupported Split behavior ${JSON.stringify(p.behavior)}`);
      }
      info.steps.push(splitWith(re, behavior, p.invert === true));
      return;
    }
    case 'ByteLevel': {
      info.byteLevel = true;
      if (p.add_prefix_space) {
        // Like HF: every piece so far gets a leading space unless it has one.
        info.steps.push((pieces) => pieces.map((s) => (s.startsWith(' ') ? s : ' ' + s)));
      }
      if (p.use_regex !== false) info.steps.push(splitWith(compileSplitPattern(GPT2_PATTERN, source), 'Isolated', false));
      return;
    }
    default:
      throw new ArdError(`${source}: unsupported pre_tokenizer ${JSON.stringify(p.type)}`);
  }
}

export interface AddedToken {
  id: number;
  content: string;
  special: boolean;
  lstrip: boolean;
  rstrip: boolean;
  single_word: boolean;
  normalized: boolean;
}

interface Segment {
  text: string;
  id?: number;
}

// Splits added tokens out of text (leftmost, longest match), honouring lstrip/rstrip/single_word.
class AddedMatcher {
  private re: RegExp | null;
  private byContent = new Map<string, AddedToken>();
  constructor(tokens: AddedToken[]) {
    for (const t of tokens) this.byContent.set(t.content, t);
    const contents = [...this.byContent.keys()].filter((c) => c.length > 0).sort((a, b) => b.length - a.length);
    this.re = contents.length ? new RegExp(contents.map(escapeRegex).join('|'), 'gu') : null;
  }
  split(segments: Segment[]): Segment[] {
    if (!this.re) return segments;
    const out: Segment[] = [];
    for (const seg of segments) {
      if (seg.id !== undefined) {
        out.push(seg);
        continue;
      }
      const text = seg.text;
      const re = this.re;
      re.lastIndex = 0;
      let last = 0;
      let m: RegExpExecArray | null;
      while ((m = re.exec(text))) {
        const tok = this.byContent.get(m[0])!;
        let start = m.index;
        let end = start + m[0].length;
        if (tok.single_word) {
          const before = text.slice(0, start);
          const after = text.slice(end);
          if (/[\p{L}\p{N}_]$/u.test(before) || /^[\p{L}\p{N}_]/u.test(after)) {
            re.lastIndex = m.index + 1;
            continue;
          }
        }
        if (tok.lstrip) while (start > last && /\s/u.test(text[start - 1]!)) start--;
        if (tok.rstrip) while (end < text.length && /\s/u.test(text[end]!)) end++;
        if (start > last) out.push({ text: text.slice(last, start) });
        out.push({ text: m[0], id: tok.id });
        last = end;
        re.lastIndex = end;
      }
      if (last < text.length) out.push({ text: text.slice(last) });
    }
    return out;
  }
}

// Min-heap of candidate merges ordered by (rank, position), like HF's BPE word merge loop.
class MergeHeap {
  private rank: number[] = [];
  private pos: number[] = [];
  private left: number[] = [];
  private right: number[] = [];
  get size(): number {
    return this.rank.length;
  }
  private less(i: number, j: number): boolean {
    return this.rank[i]! < this.rank[j]! || (this.rank[i] === this.rank[j] && this.pos[i]! < this.pos[j]!);
  }
  private swap(i: number, j: number): void {
    for (const a of [this.rank, this.pos, this.left, this.right]) {
      const t = a[i]!;
      a[i] = a[j]!;
      a[j] = t;
    }
  }
  push(rank: number, pos: number, left: number, right: number): void {
    this.rank.push(rank);
    this.pos.push(pos);
    this.left.push(left);
    this.right.push(right);
    let i = this.rank.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.less(i, p)) break;
      this.swap(i, p);
      i = p;
    }
  }
  /** Pops the top into out = [rank, pos, left, right]. */
  pop(out: number[]): void {
    out[0] = this.rank[0]!;
    out[1] = this.pos[0]!;
    out[2] = this.left[0]!;
    out[3] = this.right[0]!;
    const last = this.rank.length - 1;
    if (last > 0) this.swap(0, last);
    for (const a of [this.rank, this.pos, this.left, this.right]) a.pop();
    let i = 0;
    const n = this.rank.length;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < n && this.less(l, m)) m = l;
      if (r < n && this.less(r, m)) m = r;
      if (m === i) break;
      this.swap(i, m);
      i = m;
    }
  }
}

export interface EncodeOptions {
  /** Match special added tokens in the text (default true); false treats them as plain text. */
  allowSpecial?: boolean;
}

export interface DecodeOptions {
  /** Leave special tokens out of the text (default false). */
  skipSpecial?: boolean;
}

export interface DecodeStream {
  /** Adds one token; returns the text completed so far (never half a UTF-8 sequence). */
  push(id: number): string;
  /** Ends the stream; returns any incomplete tail (as U+FFFD). */
  flush(): string;
}

const CACHE_LIMIT = 100_000;

export class Tokenizer {
  readonly source: string;
  /** Token string → id (model vocab and added tokens). */
  private readonly vocab = new Map<string, number>();
  private readonly idToTok: (string | undefined)[] = [];
  private readonly addedById = new Map<number, AddedToken>();
  readonly addedTokens: readonly AddedToken[];
  private readonly byteIds: Int32Array;
  // Merge table keyed by left id × stride + right id.
  private readonly mergeRank = new Map<number, number>();
  private readonly mergeResult = new Map<number, number>();
  private readonly stride: number;
  private readonly ignoreMerges: boolean;
  private readonly normalize: Normalize | null;
  private readonly preSteps: PreTokenize[];
  private readonly rawMatcherAll: AddedMatcher;
  private readonly rawMatcherPlain: AddedMatcher;
  private readonly normMatcherAll: AddedMatcher;
  private readonly normMatcherPlain: AddedMatcher;
  private readonly cache = new Map<string, number[]>();
  private readonly tokBytes: (Uint8Array | undefined)[] = [];
  readonly vocabSize: number;

  private constructor(json: any, source: string) {
    this.source = source;
    if (json === null || typeof json !== 'object') throw new ArdError(`${source}: not a JSON object`);
    const model = json.model;
    if (!model || typeof model !== 'object') throw new ArdError(`${source}: no "model" section`);
    if (model.type !== undefined && model.type !== 'BPE') {
      throw new ArdError(`${source}: model.type is ${JSON.stringify(model.type)}; only byte-level BPE is supported`);
    }
    if (model.byte_fallback || model.continuing_subword_prefix || model.end_of_word_suffix) {
      throw new ArdError(`${source}: byte_fallback / subword prefixes are not supported (byte-level BPE only)`);
    }
    if (!model.vocab || typeof model.vocab !== 'object' || Array.isArray(model.vocab)) {
      throw new ArdError(`${source}: model.vocab is missing or not an object`);
    }
    let maxId = -1;
    for (const [tok, id] of Object.entries(model.vocab as Record<string, unknown>)) {
      if (!Number.isSafeInteger(id) || (id as number) < 0) {
        throw new ArdError(`${source}: model.vocab[${JSON.stringify(tok)}] is not a non-negative integer id`);
      }
      this.vocab.set(tok, id as number);
      this.idToTok[id as number] = tok;
      maxId = Math.max(maxId, id as number);
    }

    const added: AddedToken[] = [];
    for (const [k, t] of ((json.added_tokens ?? []) as any[]).entries()) {
      if (!t || typeof t.content !== 'string' || !Number.isSafeInteger(t.id) || t.id < 0) {
        throw new ArdError(`${source}: added_tokens[${k}] needs an integer id and a string content`);
      }
      const a: AddedToken = {
        id: t.id,
        content: t.content,
        special: t.special === true,
        lstrip: t.lstrip === true,
        rstrip: t.rstrip === true,
        single_word: t.single_word === true,
        normalized: t.normalized ?? !(t.special === true),
      };
      added.push(a);
      this.addedById.set(a.id, a);
      this.vocab.set(a.content, a.id);
      this.idToTok[a.id] = a.content;
      maxId = Math.max(maxId, a.id);
    }
    this.addedTokens = added;
    this.vocabSize = maxId + 1;
    this.stride = this.vocabSize;

    const byteMap = bytesToUnicode();
    this.byteIds = new Int32Array(256).fill(-1);
    for (let b = 0; b < 256; b++) this.byteIds[b] = this.vocab.get(byteMap[b]!) ?? -1;

    const merges = model.merges ?? [];
    if (!Array.isArray(merges)) throw new ArdError(`${source}: model.merges is not a list`);
    for (let r = 0; r < merges.length; r++) {
      const m = merges[r];
      let a: string, b: string;
      if (typeof m === 'string') {
        const sp = m.indexOf(' ', 1);
        if (sp < 0) throw new ArdError(`${source}: model.merges[${r}] ${JSON.stringify(m)} is not "left right"`);
        a = m.slice(0, sp);
        b = m.slice(sp + 1);
      } else if (Array.isArray(m) && m.length === 2 && typeof m[0] === 'string' && typeof m[1] === 'string') {
        [a, b] = m as [string, string];
      } else {
        throw new ArdError(`${source}: model.merges[${r}] is neither "left right" nor ["left", "right"]`);
      }
      const ia = this.vocab.get(a);
      const ib = this.vocab.get(b);
      const ic = this.vocab.get(a + b);
      if (ia === undefined || ib === undefined || ic === undefined) {
        const miss = ia === undefined ? a : ib === undefined ? b : a + b;
        throw new ArdError(`${source}: model.merges[${r}] uses ${JSON.stringify(miss)}, which is not in the vocab`);
      }
      const key = ia * this.stride + ib;
      // The first (lowest-rank) occurrence of a pair wins.
      if (!this.mergeRank.has(key)) {
        this.mergeRank.set(key, r);
        this.mergeResult.set(key, ic);
      }
    }
    this.ignoreMerges = model.ignore_merges === true;

    this.normalize = buildNormalizer(json.normalizer, source);
    const info: PreTokInfo = { steps: [], byteLevel: false };
    buildPreTokenizer(json.pre_tokenizer, source, info);
    if (!info.byteLevel && json.decoder?.type !== 'ByteLevel') {
      throw new ArdError(`${source}: not a byte-level tokenizer (no ByteLevel pre_tokenizer or decoder)`);
    }
    this.preSteps = info.steps;

    const raw = added.filter((t) => !t.normalized || !this.normalize);
    const norm = this.normalize ? added.filter((t) => t.normalized) : [];
    this.rawMatcherAll = new AddedMatcher(raw);
    this.rawMatcherPlain = new AddedMatcher(raw.filter((t) => !t.special));
    this.normMatcherAll = new AddedMatcher(norm);
    this.normMatcherPlain = new AddedMatcher(norm.filter((t) => !t.special));
  }

  /** Builds a tokenizer from a parsed tokenizer.json; `source` names it in errors. */
  static fromJSON(json: unknown, source = 'tokenizer.json'): Tokenizer {
    return new Tokenizer(json, source);
  }

  /** Loads a tokenizer.json file. */
  static load(file: string): Tokenizer {
    return new Tokenizer(readJson(file), file);
  }

  tokenToId(token: string): number | undefined {
    return this.vocab.get(token);
  }

  idToToken(id: number): string | undefined {
    return this.idToTok[id];
  }

  isSpecial(id: number): boolean {
    return this.addedById.get(id)?.special === true;
  }

  /** The pre-tokenised pieces of plain text (no added-token matching), after normalisation. */
  preTokenize(text: string): string[] {
    const s = this.normalize ? this.normalize(text) : text;
    let pieces = [s];
    for (const step of this.preSteps) pieces = step(pieces);
    return pieces.filter((p) => p.length > 0);
  }

  encode(text: string, opts: EncodeOptions = {}): number[] {
    const allowSpecial = opts.allowSpecial ?? true;
    let segs = (allowSpecial ? this.rawMatcherAll : this.rawMatcherPlain).split([{ text }]);
    if (this.normalize) {
      const n = this.normalize;
      segs = segs.map((s) => (s.id === undefined ? { text: n(s.text) } : s));
      segs = (allowSpecial ? this.normMatcherAll : this.normMatcherPlain).split(segs);
    }
    const ids: number[] = [];
    for (const seg of segs) {
      if (seg.id !== undefined) {
        ids.push(seg.id);
        continue;
      }
      let pieces = [seg.text];
      for (const step of this.preSteps) pieces = step(pieces);
      for (const p of pieces) if (p.length) for (const id of this.bpe(p)) ids.push(id);
    }
    return ids;
  }

  /** BPE of one pre-tokenised piece. */
  private bpe(piece: string): number[] {
    const hit = this.cache.get(piece);
    if (hit) return hit;
    const bytes = utf8.encode(piece);
    let result: number[];
    const whole = this.ignoreMerges ? this.vocab.get(toByteLevel(piece)) : undefined;
    if (whole !== undefined && !this.addedById.has(whole)) {
      result = [whole];
    } else {
      const n = bytes.length;
      const sym = new Int32Array(n);
      for (let i = 0; i < n; i++) {
        const id = this.byteIds[bytes[i]!]!;
        if (id < 0) {
          throw new ArdError(`${this.source}: no token for byte 0x${bytes[i]!.toString(16).padStart(2, '0')} (vocab lacks the byte-level base tokens)`);
        }
        sym[i] = id;
      }
      const next = new Int32Array(n);
      const prev = new Int32Array(n);
      for (let i = 0; i < n; i++) {
        next[i] = i + 1 < n ? i + 1 : -1;
        prev[i] = i - 1;
      }
      const heap = new MergeHeap();
      const tryPush = (i: number) => {
        const j = next[i]!;
        if (j < 0) return;
        const r = this.mergeRank.get(sym[i]! * this.stride + sym[j]!);
        if (r !== undefined) heap.push(r, i, sym[i]!, sym[j]!);
      };
      for (let i = 0; i + 1 < n; i++) tryPush(i);
      const top = [0, 0, 0, 0];
      while (heap.size > 0) {
        heap.pop(top);
        const i = top[1]!;
        const j = next[i]!;
        // Stale entry: one side has been merged away since it was pushed.
        if (sym[i] !== top[2] || j < 0 || sym[j] !== top[3]) continue;
        sym[i] = this.mergeResult.get(top[2]! * this.stride + top[3]!)!;
        sym[j] = -1;
        const k = next[j]!;
        next[i] = k;
        if (k >= 0) prev[k] = i;
        if (prev[i]! >= 0) tryPush(prev[i]!);
        tryPush(i);
      }
      // Merges always absorb the right symbol into the left, so position 0 heads the list.
      result = [];
      if (n > 0) for (let i = 0; i >= 0; i = next[i]!) result.push(sym[i]!);
    }
    if (this.cache.size >= CACHE_LIMIT) this.cache.clear();
    this.cache.set(piece, result);
    return result;
  }

  /** The UTF-8 bytes a token stands for. */
  tokenBytes(id: number): Uint8Array {
    let b = this.tokBytes[id];
    if (b) return b;
    const tok = this.idToTok[id];
    if (tok === undefined) throw new ArdError(`${this.source}: token id ${id} is not in the vocabulary`);
    if (this.addedById.has(id)) b = utf8.encode(tok);
    else {
      const map = unicodeToBytes();
      const out: number[] = [];
      for (const ch of tok) {
        const byte = map.get(ch.codePointAt(0)!);
        if (byte !== undefined) out.push(byte);
        else for (const x of utf8.encode(ch)) out.push(x); // not byte-level: take the text as is
      }
      b = Uint8Array.from(out);
    }
    this.tokBytes[id] = b;
    return b;
  }

  decodeBytes(ids: readonly number[], opts: DecodeOptions = {}): Uint8Array {
    const parts: Uint8Array[] = [];
    let total = 0;
    for (const id of ids) {
      if (opts.skipSpecial && this.isSpecial(id)) continue;
      const b = this.tokenBytes(id);
      parts.push(b);
      total += b.length;
    }
    const out = new Uint8Array(total);
    let o = 0;
    for (const p of parts) {
      out.set(p, o);
      o += p.length;
    }
    return out;
  }

  decode(ids: readonly number[], opts: DecodeOptions = {}): string {
    // ignoreBOM: a leading U+FEFF is text, not a marker to strip.
    return new TextDecoder('utf-8', { ignoreBOM: true }).decode(this.decodeBytes(ids, opts));
  }

  /** Incremental decoder for streamed generation. */
  decodeStream(opts: DecodeOptions = {}): DecodeStream {
    const dec = new TextDecoder('utf-8', { ignoreBOM: true });
    return {
      push: (id) => {
        if (opts.skipSpecial && this.isSpecial(id)) return '';
        return dec.decode(this.tokenBytes(id), { stream: true });
      },
      flush: () => dec.decode(),
    };
  }
}

/** Loads a tokenizer.json file. */
export function loadTokenizer(file: string): Tokenizer {
  return Tokenizer.load(file);
}
