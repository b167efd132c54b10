// `--sae PATH`: the commands that take an SAE read an exported SAELens (or sparsify) folder, or
// another ardgpu file, in place of RUN/sae-L.safetensors, and give the same results.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../src/gpu/engine.js';
import { writeSafetensors } from '../src/io/safetensors.js';
import { SparseAutoencoder } from '../src/sae/model.js';
import { saeDigest, saeWeightsFile } from '../src/sae/load.js';
import { readRetrieve } from '../src/ard/retrieve.js';
import { expectClose, getEngine, randn, runCli } from './helpers.js';

const d = 16;
const m = 32;
const k = 4;
const LAYER = 2;
const CLIPS = 12;
const PER = 8;

let engine: Engine;
let tmp: string;
let run: string;
beforeAll(async () => {
  engine = await getEngine();
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ardgpu-saeflag-'));
  run = path.join(tmp, 'run');
  const rows = CLIPS * PER;
  const shard = `layer-${LAYER}/shard-00000.safetensors`;
  writeSafetensors(path.join(run, 'capture', shard), { acts: { dtype: 'F32', shape: [rows, d], data: randn(rows * d, 5, 3) } });
  const clips = Array.from({ length: CLIPS }, (_, i) => ({
    id: `c${i}`, file: `c${i}.wav`, labels: [i % 2 ? 'odd' : 'even'], split: ['train', 'val', 'test'][i % 3], duration: 1, rowStart: i * PER, rowCount: PER, frameSeconds: 0.04,
  }));
  fs.writeFileSync(path.join(run, 'capture', 'manifest.json'), JSON.stringify({
    model: 'tiny-model', corpus: '/corpus', prompt: 'Describe.', layers: [LAYER], d, dtype: 'f32', positions: 'audio', clips,
    shards: { [LAYER]: [{ file: shard, rowStart: 0, rowCount: rows }] },
  }));
  const W_dec = randn(m * d, 1);
  for (let j = 0; j < m; j++) {
    const n = Math.hypot(...W_dec.subarray(j * d, (j + 1) * d));
    for (let c = 0; c < d; c++) W_dec[j * d + c]! /= n;
  }
  const sae = SparseAutoencoder.fromArrays(engine, { d, m, k }, { W_enc: randn(d * m, 2, 0.5), b_enc: randn(m, 3, 0.1), W_dec, b_dec: randn(d, 4, 0.3) }, { inputScale: 0.4, layer: LAYER });
  await sae.save(path.join(run, `sae-${LAYER}.safetensors`));
  sae.dispose();
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('--sae PATH', () => {
  it('retrieve and export-sae read an exported SAELens folder and give what the run SAE gives', () => {
    const cli = (args: string[]) => {
      const r = runCli(args);
      expect(r.code, r.stderr.join('\n')).toBe(0);
      return r.stdout ? JSON.parse(r.stdout) : null;
    };
    const base = ['--run', run, '--layer', String(LAYER), '--json', '--quiet'];
    cli(['retrieve', ...base, '--p', '2']);
    const want = readRetrieve(path.join(run, `retrieve-${LAYER}.safetensors`));
    const folder = path.join(tmp, 'saelens');
    cli(['export-sae', ...base, '--format', 'saelens', '--out', folder]);
    // the run's own SAE out of the way: everything below must come from the folder
    fs.renameSync(path.join(run, `sae-${LAYER}.safetensors`), path.join(tmp, 'moved.safetensors'));
    const r = cli(['retrieve', ...base, '--p', '2', '--sae', folder]);
    expect(r.retrieve.skipped).toBe(false); // another SAE identity than the run file's
    const got = readRetrieve(path.join(run, `retrieve-${LAYER}.safetensors`));
    expectClose(got.mean, want.mean, 1e-4, 1e-5, 'clip means');
    expectClose(got.coverage, want.coverage, 0, 0, 'coverage');
    const features = JSON.parse(fs.readFileSync(path.join(run, `features-${LAYER}.json`), 'utf8'));
    expect(features.grouping.decoder).toBe(true); // decoder rows read from the folder's weights
    expect(cli(['retrieve', ...base, '--p', '2', '--sae', folder]).retrieve.skipped).toBe(true);
    // export-sae converts a given SAE: SAELens folder → sparsify
    const root = path.join(tmp, 'sparsify');
    const s = cli(['export-sae', ...base, '--format', 'sparsify', '--out', root, '--sae', folder]);
    expect(s).toMatchObject({ format: 'sparsify', d, m, k });
    expect(cli(['retrieve', ...base, '--p', '2', '--sae', s.dir]).retrieve.skipped).toBe(false);
    expectClose(readRetrieve(path.join(run, `retrieve-${LAYER}.safetensors`)).mean, want.mean, 1e-4, 1e-5, 'clip means (sparsify)');
  }, 300_000);

  it('identities: a folder hashes its cfg.json and weights; its weights file is the W_dec source', () => {
    const folder = path.join(tmp, 'id');
    fs.mkdirSync(folder);
    fs.writeFileSync(path.join(folder, 'cfg.json'), JSON.stringify({ d_in: d }));
    fs.writeFileSync(path.join(folder, 'sae_weights.safetensors'), 'x');
    expect(saeWeightsFile(folder)).toBe(path.join(folder, 'sae_weights.safetensors'));
    const a = saeDigest(folder);
    expect(saeDigest(path.join(folder, 'sae_weights.safetensors'))).toBe(a);
    fs.writeFileSync(path.join(folder, 'cfg.json'), JSON.stringify({ d_in: d, k: 3 }));
    expect(saeDigest(folder)).not.toBe(a);
  });

  it('every SAE command lists --sae; a missing path is one line', () => {
    for (const c of ['retrieve', 'explain', 'steer', 'steer-experiment', 'export-sae', 'splice']) expect(runCli([c, '--help']).stdout, c).toContain('--sae <path>');
    const bad = runCli(['steer', path.join(tmp, 'none.wav'), '--run', run, '--layer', String(LAYER), '--feature', '1', '--sae', path.join(tmp, 'nope')]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toEqual([`error: ${path.join(tmp, 'nope')}: no such SAE file or folder`]);
  }, 120_000);
});
