// eval-model over a user's label file (as the real-recordings check set is): gender and speech
// from its columns or its speech labels, compressed and long clips (first window, as ask takes),
// any split or all; a bad row is reported and the rest evaluated.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { writeWav } from '../src/audio/wav.js';
import { randn, runCli } from './helpers.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ardgpu-evallabels-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('eval-model --labels', () => {
  it('asks gender only where it is known, speaking where speech is known; FLAC and a 6 s clip read; bad rows reported', () => {
    writeWav(path.join(tmp, 'long.wav'), randn(96000, 3, 0.1), 16000); // 6 s: longer than the embedded model's 4 s window
    writeWav(path.join(tmp, 'short.wav'), randn(5000, 4, 0.1), 16000);
    fs.copyFileSync(path.join('test', 'fixtures', 'audio', 'chirp-mono-22050.flac'), path.join(tmp, 'chirp.flac'));
    fs.writeFileSync(path.join(tmp, 'broken.wav'), 'RIFF....WAVEfmt '); // does not decode: reported, left out
    const csv = path.join(tmp, 'labels.csv');
    fs.writeFileSync(csv, [
      'file,labels,split,gender,speech',
      'long.wav,speech;male speech,test,male,yes',
      'short.wav,speech,test,,yes', // speech of unknown gender: no gender question
      'chirp.flac,chirp,test,,no',
      'missing.wav,speech,test,female,yes',
      'chirp.flac,chirp,val,,no', // a duplicate
      'broken.wav,speech,test,female,yes',
    ].join('\n') + '\n');
    const out = path.join(tmp, 'eval.json');
    const r = runCli(['eval-model', '--labels', csv, '--split', 'all', '--out', out, '--json', '--quiet']);
    expect(r.code, r.stderr.join('\n')).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.clips).toBe(3);
    expect(j.bad).toHaveLength(1);
    expect(j.bad[0]).toMatch(/^\S*broken\.wav: /);
    expect(j.problems).toEqual([`${csv}:5: missing.wav not found`, `${csv}:6: chirp.flac is a duplicate of ${csv}:4`]);
    expect(j.gender.total).toBe(1);
    expect(j.speaking.total).toBe(3);
    expect(j.gender.correct + j.gender.unparsed).toBeLessThanOrEqual(1);
    const saved = JSON.parse(fs.readFileSync(out, 'utf8'));
    expect(saved.examples.map((e: { file: string }) => e.file)).toEqual(['long.wav', 'short.wav', 'chirp.flac']);
    expect(saved.examples[0].answers.gender).toBeTypeOf('string');
    expect(saved.examples[1].answers.gender).toBeUndefined();
    // --split names one split of the file
    const v = runCli(['eval-model', '--labels', csv, '--split', 'val', '--out', path.join(tmp, 'e2.json'), '--json', '--quiet']);
    expect(v.code).toBe(1);
    expect(v.stderr.join('\n')).toMatch(/no val clips/);
  });
});
