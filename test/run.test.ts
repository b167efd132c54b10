// The run-folder contract: stage inputs keys and the freshness sidecar every stage uses to skip.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { captureShardReader, clearFresh, fileDigest, fileStamp, freshnessFile, isFresh, markFresh, runPaths, stageInputsKey, type CaptureManifest } from '../src/ard/run.js';
import { toFloat32, writeSafetensors } from '../src/io/safetensors.js';
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

describe('capture shards', () => {
  it('one reader serves training (whole shards) and retrieval (row ranges across shards); the manifest is checked', async () => {
    const run = path.join(tmp, 'run-shards');
    const d = 4;
    const sizes = [3, 5, 2];
    const shards: CaptureManifest['shards'][string] = [];
    let at = 0;
    sizes.forEach((n, i) => {
      const file = `layer-1/shard-${i}.safetensors`;
      // row r holds r in every column (exact in f16)
      const data = new Float32Array(n * d).map((_, j) => at + Math.floor(j / d));
      writeSafetensors(path.join(run, 'capture', file), { acts: { dtype: i === 1 ? 'F16' : 'F32', shape: [n, d], data } });
      shards.push({ file, rowStart: at, rowCount: n });
      at += n;
    });
    const manifest: CaptureManifest = { layers: [1], d, dtype: 'f32', clips: [], shards: { 1: [shards[2]!, shards[0]!, shards[1]!] } };
    const reader = captureShardReader(run, manifest, 1);
    expect(reader.totalRows).toBe(10);
    expect(reader.shards.map((s) => [s.rowStart, s.rows, s.dtype])).toEqual([[0, 3, 'F32'], [3, 5, 'F16'], [8, 2, 'F32']]);
    const whole = await reader.shards[1]!.read();
    expect(Array.from(whole.filter((_, j) => j % d === 0))).toEqual([3, 4, 5, 6, 7]);
    const pieces = reader.rowBytes(2, 7); // rows 2..8: the end of shard 0, all of shard 1, the start of shard 2
    expect(pieces.map((p) => p.dtype)).toEqual(['F32', 'F16', 'F32']);
    const rows = pieces.flatMap((p) => Array.from(toFloat32(p.bytes, p.dtype)).filter((_, j) => j % d === 0));
    expect(rows).toEqual([2, 3, 4, 5, 6, 7, 8]);
    expect(() => reader.rowBytes(8, 3)).toThrow(/rows 8…11 asked of shards holding 10 rows/);
    // a gap, an overlap, a shard shorter than the manifest says
    const man = runPaths(run, 1).manifest;
    expect(() => captureShardReader(run, { ...manifest, shards: { 1: [shards[0]!, shards[2]!] } }, 1)).toThrow(`${man}: layer 1 shards miss row 3`);
    expect(() => captureShardReader(run, { ...manifest, shards: { 1: [shards[0]!, { ...shards[1]!, rowStart: 2 }] } }, 1)).toThrow(/overlap at row 2/);
    expect(() => captureShardReader(run, { ...manifest, shards: { 1: [{ ...shards[0]!, rowCount: 4 }] } }, 1)).toThrow(/shard-0\.safetensors: acts has shape \[3, 4\], expected \[4, 4\]/);
    expect(() => captureShardReader(run, manifest, 2)).toThrow(/no capture shards for layer 2/);
  });
});
