// The run-folder contract: stage inputs keys and the freshness sidecar every stage uses to skip.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { clearFresh, fileDigest, fileStamp, freshnessFile, isFresh, markFresh, runPaths, stageInputsKey } from '../src/ard/run.js';
import { ArdError } from '../src/util/errors.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ardgpu-run-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('stage freshness', () => {
  it('an output is fresh for the key it was marked with, stale after an input changes, not fresh when missing', () => {
    const input = path.join(tmp, 'in.bin');
    const out = path.join(tmp, 'out.json');
    fs.writeFileSync(input, 'one');
    const key = () => stageInputsKey('stage', { input: fileDigest(input), opt: 3 });
    const k1 = key();
    // missing output: never fresh, and it cannot be marked
    expect(isFresh(out, k1)).toBe(false);
    expect(() => markFresh(out, k1)).toThrow(ArdError);
    fs.writeFileSync(out, '{}');
    // written but not marked (e.g. the run died after writing): not fresh
    expect(isFresh(out, k1)).toBe(false);
    markFresh(out, k1);
    expect(fs.existsSync(freshnessFile(out))).toBe(true);
    expect(path.basename(freshnessFile(out)).startsWith('.')).toBe(true);
    expect(isFresh(out, k1)).toBe(true);
    expect(key()).toBe(k1); // the key is a pure function of the inputs
    // changed input content → different key → stale
    fs.writeFileSync(input, 'two');
    const k2 = key();
    expect(k2).not.toBe(k1);
    expect(isFresh(out, k2)).toBe(false);
    // changed option → different key
    expect(stageInputsKey('stage', { input: fileDigest(input), opt: 4 })).not.toBe(k2);
    // same inputs under another stage name → different key
    expect(stageInputsKey('other', { input: fileDigest(input), opt: 3 })).not.toBe(stageInputsKey('stage', { input: fileDigest(input), opt: 3 }));
    // a stage that starts rewriting clears the record first
    markFresh(out, k2);
    expect(isFresh(out, k2)).toBe(true);
    clearFresh(out);
    expect(isFresh(out, k2)).toBe(false);
    // output deleted after marking: not fresh
    markFresh(out, k2);
    fs.rmSync(out);
    expect(isFresh(out, k2)).toBe(false);
    // an unreadable sidecar counts as stale, not as an error
    fs.writeFileSync(out, '{}');
    fs.writeFileSync(freshnessFile(out), 'not json');
    expect(isFresh(out, k2)).toBe(false);
  });

  it('file identities: digest by content, stamp by size and mtime, missing files named', () => {
    const a = path.join(tmp, 'a.txt');
    fs.writeFileSync(a, 'abc');
    expect(fileDigest(a)).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
    expect(fileStamp(a)).toMatch(/^3:/);
    expect(fileStamp(path.join(tmp, 'nope'))).toBe('missing');
    expect(() => fileDigest(path.join(tmp, 'nope'))).toThrow(/nope: cannot read/);
  });

  it('runPaths lays out one run folder', () => {
    const p = runPaths('/r', 2);
    expect(p.manifest).toBe(path.join('/r', 'capture', 'manifest.json'));
    expect(p.sae).toBe(path.join('/r', 'sae-2.safetensors'));
    expect(p.saeCheckpoint).toBe(path.join('/r', 'sae-2.ckpt.safetensors'));
    expect(p.features).toBe(path.join('/r', 'features-2.json'));
  });
});
