// Clip sources: a corpus folder's manifest.jsonl or its WAV files, as one list of clip records.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { writeWav } from '../src/audio/wav.js';
import { ManifestClipSource, openClipSource, WavFolderClipSource } from '../src/corpus/clips.js';
import { ArdError } from '../src/util/errors.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ardgpu-clips-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const entry = (file: string, split: string, labels: string[], gender: 'female' | 'male' | null) => ({
  file, labels, caption: `a ${labels[0]}`, gender, speech: gender !== null, split, augment: [], duration: 0.5, voice: null, sentence: gender ? 'hello' : null, seed: 1,
});

describe('clip sources', () => {
  it('a folder with manifest.jsonl: records with labels, splits and the optional fields; split filter', () => {
    const dir = path.join(tmp, 'labelled');
    fs.mkdirSync(path.join(dir, 'clips'), { recursive: true });
    const lines = [entry('clips/a.wav', 'train', ['female speech'], 'female'), entry('clips/sub/b.wav', 'test', ['alarm'], null)];
    fs.writeFileSync(path.join(dir, 'manifest.jsonl'), lines.map((l) => JSON.stringify(l)).join('\n') + '\n');
    const src = openClipSource(dir);
    expect(src).toBeInstanceOf(ManifestClipSource);
    expect(src.origin).toBe(path.join(dir, 'manifest.jsonl'));
    expect(src.clips()).toEqual([
      { id: 'a', file: path.resolve(dir, 'clips/a.wav'), labels: ['female speech'], split: 'train', gender: 'female', speech: true, caption: 'a female speech', duration: 0.5, sentence: 'hello' },
      { id: 'sub/b', file: path.resolve(dir, 'clips/sub/b.wav'), labels: ['alarm'], split: 'test', gender: null, speech: false, caption: 'a alarm', duration: 0.5, sentence: null },
    ]);
    expect(src.clips(['test']).map((c) => c.id)).toEqual(['sub/b']);
    expect(src.clips(['val'])).toEqual([]);
    // a bad manifest line is the manifest reader's one-line error
    fs.appendFileSync(path.join(dir, 'manifest.jsonl'), '{"file": 3}\n');
    expect(() => src.clips()).toThrow(ArdError);
    expect(() => src.clips()).toThrow(`${path.join(dir, 'manifest.jsonl')}:3: 'file' must be a non-empty string`);
  });

  it('any other folder: its WAV files at any depth, unlabelled, split all; a missing folder is named', () => {
    const dir = path.join(tmp, 'wavs');
    writeWav(path.join(dir, 'x.wav'), new Float32Array(160));
    writeWav(path.join(dir, 'deep', 'y.WAV'), new Float32Array(160));
    fs.writeFileSync(path.join(dir, 'notes.txt'), 'not audio');
    const src = openClipSource(dir);
    expect(src).toBeInstanceOf(WavFolderClipSource);
    expect(src.clips()).toEqual([
      { id: path.join('deep', 'y'), file: path.resolve(dir, 'deep', 'y.WAV'), labels: [], split: 'all', gender: null },
      { id: 'x', file: path.resolve(dir, 'x.wav'), labels: [], split: 'all', gender: null },
    ]);
    expect(src.clips(['train'])).toEqual([]);
    const missing = path.join(tmp, 'nope');
    expect(() => openClipSource(missing)).toThrow(`${missing}: corpus folder not found`);
  });
});
