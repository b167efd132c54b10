// The committed tiny Qwen2-Audio fixture (tools/reference) as a loadable model folder: the
// fixture has token ids but no tokenizer, so one is built from the tokenizer fixture with the
// tiny model's special-token ids (im_start 295, im_end 296, audio_bos 297, audio_eos 298, AUDIO 299).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

export const FIXTURE_DIR = path.join(import.meta.dirname, 'fixtures', 'tiny-audiollm');

export function tinyTokenizerJson(): any {
  const json = JSON.parse(fs.readFileSync(path.join(import.meta.dirname, 'fixtures', 'tokenizer', 'tiny.json'), 'utf8'));
  const specials = ['<|endoftext|>', '<|im_start|>', '<|im_end|>', '<|audio_bos|>', '<|audio_eos|>', '<|AUDIO|>'];
  json.added_tokens = [
    ...Array.from({ length: 28 }, (_, i) => ({ id: 266 + i, content: `<|extra_${i}|>` })),
    ...specials.map((content, i) => ({ id: 294 + i, content })),
  ].map((t) => ({ ...t, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }));
  return json;
}

/** A temporary model folder: the fixture's config + weights and a tokenizer.json. */
export function tinyModelDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ardgpu-tiny-'));
  for (const f of ['config.json', 'preprocessor_config.json', 'model.safetensors']) fs.copyFileSync(path.join(FIXTURE_DIR, f), path.join(dir, f));
  fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(tinyTokenizerJson()));
  fs.writeFileSync(path.join(dir, 'generation_config.json'), JSON.stringify({ eos_token_id: [296, 294], max_new_tokens: 8 }));
  return dir;
}
